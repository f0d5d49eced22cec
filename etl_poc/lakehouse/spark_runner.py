"""The layers on Spark (lakehouse.runner says what every runner has): each window read from
and written to Parquet by Spark itself, worked whole (Spark spills what does not fit), and
counted by Spark from what it wrote."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

import polars as pl
from pyspark.sql import functions as F

from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.lakehouse.landing_readers import spark_read_landing
from etl_poc.lakehouse.paths import Paths
from etl_poc.lakehouse.runner import (
    ICEBERG_LAYERS,
    PREVIEW_ROWS,
    LayerResult,
    RunnerBase,
    earlier_event_id_files,
    empty_window,
    iceberg_result,
    landing_files,
    no_raw_rows,
    nothing_for,
    snapshot_properties,
)
from etl_poc.logic import spark_engine as rules
from etl_poc.reference.ip_ranges import IpRangeTable
from etl_poc.settings import Settings
from etl_poc.spark.session import build_spark_session, spark_ip_ranges

ENGINE = "spark"


_STARTED: set[int] = set()  # the sessions start_runtime started (not found already running)


def start_runtime(settings: Settings):
    """A Spark session as the settings describe it (ETL_POC_SPARK_*)."""
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    session = build_spark_session(
        settings.spark_master,
        settings.spark_driver_memory,
        executor_memory=settings.spark_executor_memory,
        driver_host=settings.spark_driver_host,
    )
    if running is None:
        _STARTED.add(id(session))
    return session


def stop_runtime(runtime) -> None:
    """Stop the session, if start_runtime started it (one it found running is left so)."""
    if id(runtime) in _STARTED:
        _STARTED.discard(id(runtime))
        runtime.stop()


class Runner(RunnerBase):
    engine = ENGINE

    def __init__(
        self,
        paths: Paths,
        start_date: date,
        processed_at: datetime,
        runtime=None,
        ip_ranges: IpRangeTable | Callable[[], IpRangeTable] | None = None,
    ):
        """`runtime`: the Spark session to run on (start_runtime makes one)."""
        if runtime is None:
            raise ValueError("the Spark runner needs a Spark session (spark_runner.start_runtime)")
        super().__init__(paths, start_date, processed_at, ip_ranges)
        self.spark = runtime

    def _stored(self, stored: str, start: date, end: date):
        """A window Spark wrote, or None."""
        return layer_store.spark_read(self.spark, self.paths.layers, ENGINE, stored, start, end)

    def _read(self, stored: str, start: date, end: date):
        frame = self._stored(stored, start, end)
        if frame is None:
            raise nothing_for(ENGINE, stored, start, end)
        return frame

    def _write(self, frame, stored: str, start: date, end: date):
        """Write the window, then read it back: (rows, preview, the written frame)."""
        layer_store.spark_write(frame, self.paths.layers, ENGINE, stored, start, end)
        written = self._stored(stored, start, end)
        if written is None:
            return 0, pl.DataFrame(), None
        shown = pl.from_arrow(written.limit(PREVIEW_ROWS).toArrow())
        return written.count(), shown, written

    def raw(self, start: date, end: date) -> LayerResult:
        files, read, details = landing_files(self.paths, start, end, self.start_date)
        if not files:
            return no_raw_rows(self.paths, ENGINE, start, end, read, details)
        landing = spark_read_landing(self.spark, files, self.paths.landing)
        rows, shown, _ = self._write(
            rules.raw(landing, start=start, end=end, **self._when), "raw", start, end
        )
        return LayerResult(rows, shown, read, details)

    def cleansed(self, start: date, end: date) -> LayerResult:
        zero = {"raw_rows": 0, "rejected_rows": 0, "duplicates_removed": 0}
        if empty := empty_window(self.paths, ENGINE, "cleansed", start, end, zero):
            return empty
        raw_rows = self._read("raw", start, end)
        earlier = None
        if files := earlier_event_id_files(self.paths, start):
            ids = self.spark.read.parquet(*(str(f) for f in files))
            earlier = rules.earlier_copies(ids, before=start, **self._when)
        clean, rejects = rules.cleansed(raw_rows, earlier)
        rejected, _, _ = self._write(rejects, "rejects", start, end)
        rows, shown, _ = self._write(clean, "cleansed", start, end)
        raw_count = raw_rows.count()
        counts = {
            "raw_rows": raw_count,
            "rejected_rows": rejected,
            "duplicates_removed": raw_count - rejected - rows,
        }
        return LayerResult(rows, shown, counts)

    def enriched(self, start: date, end: date) -> LayerResult:
        if empty := empty_window(self.paths, ENGINE, "enriched", start, end, {}):
            return empty
        ranges = spark_ip_ranges(self.spark, self.ip_ranges)
        try:
            enriched = rules.enriched(self._read("cleansed", start, end), ranges)
            rows, shown, written = self._write(enriched, "enriched", start, end)
        finally:  # cached for this layer only: a long-lived session must not pile them up
            for table in ranges.values():
                table.unpersist(blocking=True)
        status = {} if written is None else dict(written.groupBy("ip_status").count().collect())
        return LayerResult(
            rows,
            shown,
            {f"ip_{name}": int(count) for name, count in status.items()},
            {"ip_ranges": self.ip_ranges.info.as_dict()},
        )

    def sessionized(self, start: date, end: date) -> LayerResult:
        if empty := empty_window(self.paths, ENGINE, "sessionized", start, end, {"sessions": 0}):
            return empty
        before = start - timedelta(days=1)
        previous = self._stored("sessionized", before, start)
        events = self._read("enriched", start, end)
        rows, shown, written = self._write(
            rules.sessionized(events, previous), "sessionized", start, end
        )
        sessions = 0
        if written is not None:
            sessions = written.select(F.count_distinct("session_id")).first()[0]
        return LayerResult(
            rows,
            shown,
            {"sessions": sessions},
            {"context_day": before.isoformat() if previous is not None else None},
        )

    def events(self, start: date, end: date, run_id: str, catalog) -> LayerResult:
        """The sessionized and rejects windows into <engine>.clickstream_*: Spark writes the
        Parquet data files, PyIceberg commits them, each window replaced in one
        transaction."""
        commits = {}
        for stored, layout in ICEBERG_LAYERS:
            table = iceberg.table_for(catalog, ENGINE, layout)
            frame = self._stored(stored, start, end)
            files, rows = [], 0
            if frame is not None:
                files, rows = iceberg.spark_data_files(frame, table, layout)
            commit = iceberg.replace_window_with_files(
                catalog, ENGINE, layout, files, start, end, snapshot_properties(ENGINE, run_id)
            )
            commits[layout.name] = (rows, commit)
        return iceberg_result(catalog, ENGINE, start, end, commits)
