"""Each layer of the asset graph as one call per engine: read the window, apply logic/, write.

The Dagster assets (defs/) only turn a partition window into arguments and call these; both
runners have the same methods, so one asset factory serves both engines. A method returns a
LayerResult: its row counts and a small preview, as Dagster metadata wants them.

Layers, each per day under <data>/layers/<engine>/ (lakehouse.layer_store):
  raw          landing files -> standardized rows (typed, reject reason), by partition_date
  cleansed     raw -> usable rows, one per event_id (and `rejects`, by partition_date)
  enriched     cleansed -> ip_status, country_code
  sessionized  enriched -> session_id, session_start, event_seq (continuing the day before)
  events       sessionized and rejects -> the Iceberg tables <engine>.clickstream_*
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa

from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.lakehouse.landing_zone import LandingDays, landing_rows, scan_landing_zone
from etl_poc.logic.spec import (
    PARTITION_DATE,
    SESSION_CONTEXT_COLUMNS,
)
from etl_poc.reference.ip_ranges import IpRangeTable, load_packaged_ranges

PREVIEW_ROWS = 5
EVENT_KEY, REJECT_KEY = layer_store.EVENT_KEY, layer_store.REJECT_KEY


@dataclass(frozen=True)
class Paths:
    data: Path

    @property
    def landing(self) -> Path:
        return self.data / "landing"

    @property
    def layers(self) -> Path:
        return self.data / "layers"

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse"


@dataclass
class LayerResult:
    rows: int
    preview: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


def _landing_files(paths: Paths, start: date, end: date, start_date: date) -> tuple[list, dict]:
    """The landing files that may hold rows of the window (LandingDays.files_for_window),
    how many were read and skipped, and their rows and bytes."""
    everything = [paths.landing / info.path for info in scan_landing_zone(paths.landing)]
    if not everything:
        raise FileNotFoundError(f"no landing files under {paths.landing}")
    index = LandingDays(paths.landing, paths.layers / "landing_days.json")
    files = index.files_for_window(everything, start, end, start_date)
    return files, {
        "landing_files": len(files),
        "landing_files_skipped": len(everything) - len(files),
        "landing_rows": sum(landing_rows(f) for f in files),
        "landing_bytes": sum(f.stat().st_size for f in files),
    }


# Each layer's inputs and outputs among the layers on disk, for its I/O figures.
_LAYER_INPUTS = {
    "raw": (),
    "cleansed": (("raw", REJECT_KEY),),
    "enriched": (("cleansed", EVENT_KEY),),
    "sessionized": (("enriched", EVENT_KEY),),
    "events": (("sessionized", EVENT_KEY), ("rejects", REJECT_KEY)),
}
_LAYER_OUTPUTS = {
    "raw": (("raw", REJECT_KEY),),
    "cleansed": (("cleansed", EVENT_KEY), ("rejects", REJECT_KEY)),
    "enriched": (("enriched", EVENT_KEY),),
    "sessionized": (("sessionized", EVENT_KEY),),
    "events": (),  # the Iceberg data files: from the commits' summaries
}


def layer_io(
    paths: Paths, engine: str, layer: str, start: date, end: date, result: LayerResult
) -> dict[str, int]:
    """Rows in, and bytes read and written, by a layer's run over a window (file footers and
    sizes only; the landing files' figures come with the raw layer's result)."""
    rows_in = bytes_read = bytes_written = 0
    for name, key in _LAYER_INPUTS[layer]:
        rows, size = layer_store.window_size(paths.layers, engine, name, key, start, end)
        rows_in, bytes_read = rows_in + rows, bytes_read + size
    for name, key in _LAYER_OUTPUTS[layer]:
        bytes_written += layer_store.window_size(paths.layers, engine, name, key, start, end)[1]
    if layer == "raw":
        rows_in, bytes_read = result.counts["landing_rows"], result.counts["landing_bytes"]
    if layer == "events":
        bytes_written = sum(
            int(commit["summary"].get("added-files-size", 0)) for commit in result.details.values()
        )
    return {"rows_in": rows_in, "bytes_read": bytes_read, "bytes_written": bytes_written}


def _no_raw_rows(paths: Paths, engine: str, start: date, end: date, read: dict) -> LayerResult:
    """No landing file can hold rows of the window: the window's raw layer is emptied."""
    layer_store.clear_window(paths.layers, engine, "raw", REJECT_KEY, start, end)
    return LayerResult(0, pl.DataFrame(), read)


def _summary(paths: Paths, engine: str, layer: str, key: str, start: date, end: date):
    """Rows and a preview of a written window, read back from the files."""
    frame = layer_store.polars_read(paths.layers, engine, layer, key, start, end, schema={})
    rows = frame.select(pl.len()).collect().item() if frame.collect_schema() else 0
    preview = frame.head(PREVIEW_ROWS).collect() if rows else pl.DataFrame()
    return rows, preview


_ICEBERG_LAYERS = (
    ("sessionized", EVENT_KEY, iceberg.EVENTS),
    ("rejects", REJECT_KEY, iceberg.REJECTS),
)


def _to_iceberg(catalog, engine: str, start: date, end: date, commits: dict) -> LayerResult:
    """The result of both engines' last step, once their sessionized and rejects windows
    are committed (`commits`: each table's row count and commit)."""
    preview = catalog.load_table(f"{engine}.{iceberg.EVENTS_TABLE}").scan(
        row_filter=iceberg.window_filter(iceberg.EVENTS, start, end), limit=PREVIEW_ROWS
    )
    counts = {name: rows for name, (rows, _) in commits.items()}
    details = {name: commit for name, (_, commit) in commits.items()}
    return LayerResult(
        counts[iceberg.EVENTS_TABLE], pl.from_arrow(preview.to_arrow()), counts, details
    )


def _properties(engine: str, run_id: str) -> dict[str, str]:
    return {"dagster.run_id": run_id, "etl_poc.engine": engine}


def _empty(layout: iceberg.TableLayout) -> pa.Table:
    return layout.schema.as_arrow().empty_table()


class PolarsRunner:
    """The layers on Polars: each window collected in memory once, written per day."""

    engine = "polars"

    def __init__(
        self,
        paths: Paths,
        start_date: date,
        processed_at: datetime,
        ip_ranges: IpRangeTable | None = None,
    ):
        self.paths, self.start_date, self.processed_at = paths, start_date, processed_at
        self.ip_ranges = ip_ranges or load_packaged_ranges()

    def _write(self, frame: pl.DataFrame, layer: str, key: str, start: date, end: date) -> None:
        layer_store.polars_write(frame, self.paths.layers, self.engine, layer, key, start, end)

    def _read(self, layer: str, key: str, start: date, end: date) -> pl.LazyFrame:
        return layer_store.polars_read(self.paths.layers, self.engine, layer, key, start, end)

    def raw(self, start: date, end: date) -> LayerResult:
        from etl_poc.lakehouse.landing_readers import polars_read_landing
        from etl_poc.logic import polars_engine as engine

        files, read = _landing_files(self.paths, start, end, self.start_date)
        when = {"start_date": self.start_date, "processed_at": self.processed_at}
        if not files:
            return _no_raw_rows(self.paths, self.engine, start, end, read)
        standardized = engine.standardize(polars_read_landing(files, self.paths.landing), **when)
        window = (
            engine.attribute_partition_date(standardized, **when)
            .filter(pl.col(PARTITION_DATE).is_between(start, end, closed="left"))
            .collect()
        )
        self._write(window, "raw", REJECT_KEY, start, end)
        return LayerResult(window.height, window.head(PREVIEW_ROWS), read)

    def cleansed(self, start: date, end: date) -> LayerResult:
        from etl_poc.logic import polars_engine as engine

        raw = self._read("raw", REJECT_KEY, start, end).collect().lazy()
        rejects, clean = pl.collect_all([engine.rejected(raw), engine.deduplicate(raw)])
        self._write(rejects, "rejects", REJECT_KEY, start, end)
        self._write(clean, "cleansed", EVENT_KEY, start, end)
        raw_rows = raw.select(pl.len()).collect().item()
        return LayerResult(
            clean.height,
            clean.head(PREVIEW_ROWS),
            {
                "raw_rows": raw_rows,
                "rejected_rows": rejects.height,
                "duplicates_removed": raw_rows - rejects.height - clean.height,
            },
        )

    def enriched(self, start: date, end: date) -> LayerResult:
        from etl_poc.logic import polars_engine as engine

        ranges = self.ip_ranges
        prepared = engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
        enriched = engine.enrich(self._read("cleansed", EVENT_KEY, start, end), prepared).collect()
        self._write(enriched, "enriched", EVENT_KEY, start, end)
        status = dict(enriched["ip_status"].value_counts().iter_rows())
        return LayerResult(
            enriched.height,
            enriched.head(PREVIEW_ROWS),
            {f"ip_{name}": int(count) for name, count in status.items()},
            {"ip_ranges": ranges.info.as_dict()},
        )

    def sessionized(self, start: date, end: date) -> LayerResult:
        from etl_poc.logic import polars_engine as engine

        before = start - timedelta(days=1)
        previous = layer_store.window_files(
            self.paths.layers, self.engine, "sessionized", EVENT_KEY, before, start
        )
        context = None
        if previous:
            context = (
                self._read("sessionized", EVENT_KEY, before, start)
                .sort("event_ts", "event_id")
                .group_by("user_id")
                .last()
                .select(SESSION_CONTEXT_COLUMNS)
            )
        events = self._read("enriched", EVENT_KEY, start, end)
        sessionized = engine.sessionize(events, context).collect()
        self._write(sessionized, "sessionized", EVENT_KEY, start, end)
        return LayerResult(
            sessionized.height,
            sessionized.head(PREVIEW_ROWS),
            {"sessions": sessionized["session_id"].n_unique()},
            {"context_day": before.isoformat() if previous else None},
        )

    def events(self, start: date, end: date, run_id: str, catalog) -> LayerResult:
        """The sessionized and rejects windows into <engine>.clickstream_*: PyIceberg writes
        the rows and commits, each window replaced in one transaction."""
        commits = {}
        for layer, key, layout in _ICEBERG_LAYERS:
            frame = layer_store.polars_read(
                self.paths.layers, self.engine, layer, key, start, end, schema={}
            )
            table = frame.collect().to_arrow() if frame.collect_schema() else _empty(layout)
            commit = iceberg.replace_window(
                catalog, self.engine, layout, table, start, end, _properties(self.engine, run_id)
            )
            commits[layout.name] = (table.num_rows, commit)
        return _to_iceberg(catalog, self.engine, start, end, commits)


class SparkRunner:
    """The layers on Spark: each window read from and written to Parquet by Spark itself."""

    engine = "spark"

    def __init__(
        self,
        paths: Paths,
        start_date: date,
        processed_at: datetime,
        spark,
        ip_ranges: IpRangeTable | None = None,
    ):
        self.paths, self.start_date, self.processed_at = paths, start_date, processed_at
        self.spark = spark
        self.ip_ranges = ip_ranges or load_packaged_ranges()

    def _write(self, frame, layer: str, key: str, start: date, end: date) -> tuple:
        layer_store.spark_write(frame, self.paths.layers, self.engine, layer, key, start, end)
        return _summary(self.paths, self.engine, layer, key, start, end)

    def _read(self, layer: str, key: str, start: date, end: date):
        frame = layer_store.spark_read(
            self.spark, self.paths.layers, self.engine, layer, key, start, end
        )
        if frame is None:
            raise FileNotFoundError(f"spark {layer}: nothing for [{start}, {end})")
        return frame

    def raw(self, start: date, end: date) -> LayerResult:
        from pyspark.sql import functions as F

        from etl_poc.lakehouse.landing_readers import spark_read_landing
        from etl_poc.logic import spark_engine as engine

        files, read = _landing_files(self.paths, start, end, self.start_date)
        if not files:
            return _no_raw_rows(self.paths, self.engine, start, end, read)
        when = {"start_date": self.start_date, "processed_at": self.processed_at}
        raw = spark_read_landing(self.spark, files, self.paths.landing)
        window = engine.attribute_partition_date(engine.standardize(raw, **when), **when).where(
            (F.col(PARTITION_DATE) >= F.lit(start)) & (F.col(PARTITION_DATE) < F.lit(end))
        )
        rows, preview = self._write(window, "raw", REJECT_KEY, start, end)
        return LayerResult(rows, preview, read)

    def cleansed(self, start: date, end: date) -> LayerResult:
        from etl_poc.logic import spark_engine as engine

        raw = self._read("raw", REJECT_KEY, start, end)
        rejected, _ = self._write(engine.rejected(raw), "rejects", REJECT_KEY, start, end)
        rows, preview = self._write(engine.deduplicate(raw), "cleansed", EVENT_KEY, start, end)
        raw_rows = raw.count()
        return LayerResult(
            rows,
            preview,
            {
                "raw_rows": raw_rows,
                "rejected_rows": rejected,
                "duplicates_removed": raw_rows - rejected - rows,
            },
        )

    def enriched(self, start: date, end: date) -> LayerResult:
        from etl_poc.lakehouse.spark_session import spark_ip_ranges
        from etl_poc.logic import spark_engine as engine

        enriched = engine.enrich(
            self._read("cleansed", EVENT_KEY, start, end),
            spark_ip_ranges(self.spark, self.ip_ranges),
        )
        rows, preview = self._write(enriched, "enriched", EVENT_KEY, start, end)
        written = layer_store.polars_read(
            self.paths.layers, self.engine, "enriched", EVENT_KEY, start, end
        )
        status = dict(written.group_by("ip_status").len().collect().iter_rows())
        return LayerResult(
            rows,
            preview,
            {f"ip_{name}": int(count) for name, count in status.items()},
            {"ip_ranges": self.ip_ranges.info.as_dict()},
        )

    def sessionized(self, start: date, end: date) -> LayerResult:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        from etl_poc.logic import spark_engine as engine

        before = start - timedelta(days=1)
        previous = layer_store.spark_read(
            self.spark, self.paths.layers, self.engine, "sessionized", EVENT_KEY, before, start
        )
        context = None
        if previous is not None:
            last_first = Window.partitionBy("user_id").orderBy(
                F.col("event_ts").desc(), F.col("event_id").desc()
            )
            context = (
                previous.withColumn("_n", F.row_number().over(last_first))
                .where(F.col("_n") == 1)
                .select(*SESSION_CONTEXT_COLUMNS)
            )
        events = self._read("enriched", EVENT_KEY, start, end)
        rows, preview = self._write(
            engine.sessionize(events, context), "sessionized", EVENT_KEY, start, end
        )
        written = layer_store.polars_read(
            self.paths.layers, self.engine, "sessionized", EVENT_KEY, start, end
        )
        sessions = written.select(pl.col("session_id").n_unique()).collect().item()
        return LayerResult(
            rows,
            preview,
            {"sessions": sessions},
            {"context_day": before.isoformat() if previous is not None else None},
        )

    def events(self, start: date, end: date, run_id: str, catalog) -> LayerResult:
        """The sessionized and rejects windows into <engine>.clickstream_*: Spark writes the
        Parquet data files, PyIceberg commits them, each window replaced in one
        transaction."""
        commits = {}
        for layer, key, layout in _ICEBERG_LAYERS:
            table = iceberg.table_for(catalog, self.engine, layout)
            frame = layer_store.spark_read(
                self.spark, self.paths.layers, self.engine, layer, key, start, end
            )
            files, rows = [], 0
            if frame is not None:
                files, rows = iceberg.spark_data_files(frame, table, layout)
            commit = iceberg.replace_window_with_files(
                catalog, self.engine, layout, files, start, end, _properties(self.engine, run_id)
            )
            commits[layout.name] = (rows, commit)
        return _to_iceberg(catalog, self.engine, start, end, commits)


def read_layer(paths: Paths, engine: str, layer: str, start: date, end: date) -> pl.DataFrame:
    """A layer's window as written by either engine, as a Polars frame (for the checks)."""
    key = REJECT_KEY if layer in ("raw", "rejects") else EVENT_KEY
    frame = layer_store.polars_read(paths.layers, engine, layer, key, start, end, schema={})
    return frame.collect()
