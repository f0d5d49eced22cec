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

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl

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

    @property
    def landing_days(self) -> LandingDays:
        """The landing files' days, cached per file version in <layers>/landing_days.json."""
        return LandingDays(self.landing, self.layers / "landing_days.json")


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
    files = paths.landing_days.files_for_window(everything, start, end, start_date)
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


# Rows a Polars runner holds at once by default (ETL_POC_POLARS_CHUNK_ROWS): at 10M events with
# 5M-row pieces the lineage peaked at 6.5 GiB (the process tree, Dagster included), about 1.1 KB
# per row held, so 3M rows (about a day of the `large` data) keep a run near 4-5 GiB.
DEFAULT_CHUNK_ROWS = 3_000_000
POLARS_ENGINES = ("in-memory", "streaming")
POLARS_CHUNK_ROWS_ENV = "ETL_POC_POLARS_CHUNK_ROWS"
POLARS_ENGINE_ENV = "ETL_POC_POLARS_ENGINE"


def polars_options(environ=os.environ) -> dict:
    """The Polars runner's chunk_rows and engine as the environment sets them (the Dagster
    resource's defaults, and the run without Dagster's)."""
    return {
        "chunk_rows": int(environ.get(POLARS_CHUNK_ROWS_ENV) or DEFAULT_CHUNK_ROWS),
        "engine": environ.get(POLARS_ENGINE_ENV) or "in-memory",
    }


def _preview(frame: pl.DataFrame) -> pl.DataFrame:
    """The first rows as a frame of their own: `head` is a view that keeps the whole frame's
    buffers alive, which would keep every piece of a window in memory."""
    import io

    buffer = io.BytesIO()
    frame.head(PREVIEW_ROWS).write_ipc(buffer)
    buffer.seek(0)
    return pl.read_ipc(buffer)


def _sum_counts(results: list[LayerResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        for name, value in result.counts.items():
            counts[name] = counts.get(name, 0) + value
    return counts


def _first_preview(results: list[LayerResult]) -> pl.DataFrame:
    return next((r.preview for r in results if r.rows), pl.DataFrame())


class PolarsRunner:
    """The layers on Polars, a window worked in pieces held in memory one at a time.

    A piece is a run of whole days (for the raw layer: of whole landing files) of at most
    `chunk_rows` rows, so memory is bounded by the piece, not by the window (0 or None: the
    whole window at once). The pieces give exactly the rows of the whole window at once: a
    duplicate is also looked for in the pieces before (which hold only earlier event times),
    sessions continue from the day before, and the Iceberg window is replaced in one
    transaction. `engine`: Polars' in-memory or streaming engine for every collect.
    """

    engine = "polars"

    def __init__(
        self,
        paths: Paths,
        start_date: date,
        processed_at: datetime,
        ip_ranges: IpRangeTable | None = None,
        chunk_rows: int | None = DEFAULT_CHUNK_ROWS,
        engine: str = "in-memory",
    ):
        if engine not in POLARS_ENGINES:
            raise ValueError(f"Polars engine {engine!r}: choose one of {POLARS_ENGINES}")
        if chunk_rows is not None and chunk_rows < 0:
            raise ValueError(f"chunk_rows must be 0 (no pieces) or more, got {chunk_rows}")
        self.paths, self.start_date, self.processed_at = paths, start_date, processed_at
        self.ip_ranges = ip_ranges or load_packaged_ranges()
        self.chunk_rows, self.collect_engine = chunk_rows, engine

    def _collect(self, frame: pl.LazyFrame) -> pl.DataFrame:
        return frame.collect(engine=self.collect_engine)

    def _write(self, frame: pl.DataFrame, layer: str, key: str, start: date, end: date) -> None:
        layer_store.polars_write(frame, self.paths.layers, self.engine, layer, key, start, end)

    def _read(self, layer: str, key: str, start: date, end: date) -> pl.LazyFrame:
        return layer_store.polars_read(self.paths.layers, self.engine, layer, key, start, end)

    def _chunks(self, layer: str, key: str, start: date, end: date) -> list[tuple[date, date]]:
        """The window in pieces of whole days, by the rows of the layer it reads."""
        return layer_store.day_chunks(
            self.paths.layers, self.engine, layer, key, start, end, self.chunk_rows
        )

    def raw(self, start: date, end: date) -> LayerResult:
        from etl_poc.lakehouse.landing_readers import polars_read_landing
        from etl_poc.logic import polars_engine as engine

        files, read = _landing_files(self.paths, start, end, self.start_date)
        if not files:
            return _no_raw_rows(self.paths, self.engine, start, end, read)
        when = {"start_date": self.start_date, "processed_at": self.processed_at}
        layers = self.paths.layers
        layer_store.clear_window(layers, self.engine, "raw", REJECT_KEY, start, end)
        rows, preview, pieces = 0, pl.DataFrame(), self._landing_pieces(files)
        for part, (group, slice_, days_of_files) in enumerate(pieces):
            landing = polars_read_landing(group, self.paths.landing)
            if slice_ is not None:
                landing = landing.slice(*slice_)
            standardized = engine.standardize(landing, **when)
            window = self._collect(
                engine.attribute_partition_date(
                    standardized, **when, days_of_files=days_of_files
                ).filter(pl.col(PARTITION_DATE).is_between(start, end, closed="left"))
            )
            layer_store.polars_add_part(
                window, layers, self.engine, "raw", REJECT_KEY, start, end, part
            )
            rows += window.height
            preview = preview if preview.height else _preview(window)
        return LayerResult(rows, preview, {**read, "pieces": len(pieces)})

    def _landing_pieces(self, files: list[Path]) -> list[tuple]:
        """The landing files in pieces of at most chunk_rows rows: (files, None, None) for
        whole files, a few at a time (a row's day depends on its own file only), and
        ([file], (offset, rows), its file_days) for a part of a file larger than that, whose
        earliest usable day is found first, reading it once."""
        from etl_poc.lakehouse.landing_readers import polars_read_landing
        from etl_poc.logic import polars_engine as engine

        rows = [landing_rows(f) for f in files]
        size = self.chunk_rows
        whole = [(f, n) for f, n in zip(files, rows, strict=True) if not size or n <= size]
        pieces: list[tuple] = [
            (group, None, None)
            for group in layer_store.in_pieces([f for f, _ in whole], [n for _, n in whole], size)
        ]
        when = {"start_date": self.start_date, "processed_at": self.processed_at}
        for file, count in zip(files, rows, strict=True):
            if not size or count <= size:
                continue
            standardized = engine.standardize(
                polars_read_landing([file], self.paths.landing), **when
            )
            days = engine.file_days(standardized, **when).collect(engine="streaming").lazy()
            pieces += [([file], (offset, size), days) for offset in range(0, count, size)]
        return pieces

    def cleansed(self, start: date, end: date) -> LayerResult:
        from etl_poc.logic import polars_engine as engine

        pieces = self._chunks("raw", REJECT_KEY, start, end)
        # An event kept by an earlier piece (earlier days, so an earlier event time) is the one
        # the whole window keeps: later pieces drop their copies. Only ids seen more than once
        # in the window can have one, found first from the ids' hashes alone.
        repeated = self._repeated_hashes(start, end) if len(pieces) > 1 else None
        kept = pl.Series("event_id", [], pl.String)
        results = []
        for first, stop in pieces:
            raw = self._collect(self._read("raw", REJECT_KEY, first, stop)).lazy()
            rejects, clean = pl.collect_all(
                [engine.rejected(raw), engine.deduplicate(raw)], engine=self.collect_engine
            )
            if repeated is not None:
                candidate = pl.col("event_id").hash().is_in(repeated)
                clean = clean.filter(~(candidate & pl.col("event_id").is_in(kept.implode())))
                kept = pl.concat([kept, clean.filter(candidate)["event_id"]])
            self._write(rejects, "rejects", REJECT_KEY, first, stop)
            self._write(clean, "cleansed", EVENT_KEY, first, stop)
            raw_rows = raw.select(pl.len()).collect().item()
            counts = {
                "raw_rows": raw_rows,
                "rejected_rows": rejects.height,
                "duplicates_removed": raw_rows - rejects.height - clean.height,
            }
            results.append(LayerResult(clean.height, _preview(clean), counts))
        return LayerResult(
            sum(r.rows for r in results),
            _first_preview(results),
            {**_sum_counts(results), "pieces": len(results)},
        )

    def _repeated_hashes(self, start: date, end: date) -> pl.Series:
        """The hashes of the usable event ids that occur more than once in the window (read
        from the raw layer's two columns, streaming)."""
        usable = self._read("raw", REJECT_KEY, start, end).filter(pl.col("reject_reason").is_null())
        hashes = usable.select(pl.col("event_id").hash()).collect(engine="streaming")
        ordered = hashes.to_series().sort()
        return ordered.filter(ordered == ordered.shift()).unique().implode()

    def enriched(self, start: date, end: date) -> LayerResult:
        from etl_poc.logic import polars_engine as engine

        ranges = self.ip_ranges
        prepared = engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
        prepared = {name: frame.collect().lazy() for name, frame in prepared.items()}  # once
        results = []
        for first, stop in self._chunks("cleansed", EVENT_KEY, start, end):
            cleansed = self._read("cleansed", EVENT_KEY, first, stop)
            enriched = self._collect(engine.enrich(cleansed, prepared))
            self._write(enriched, "enriched", EVENT_KEY, first, stop)
            status = dict(enriched["ip_status"].value_counts().iter_rows())
            counts = {f"ip_{name}": int(count) for name, count in status.items()}
            results.append(LayerResult(enriched.height, _preview(enriched), counts))
        if not results:
            raise FileNotFoundError(f"polars cleansed: nothing for [{start}, {end})")
        return LayerResult(
            sum(r.rows for r in results),
            _first_preview(results),
            {**_sum_counts(results), "pieces": len(results)},
            {"ip_ranges": ranges.info.as_dict()},
        )

    def sessionized(self, start: date, end: date) -> LayerResult:
        """Each piece continues the sessions of the day before it (written by the piece
        before, or by an earlier run). A session running across pieces is counted once."""
        results, continued = [], 0
        for first, stop in self._chunks("enriched", EVENT_KEY, start, end):
            sessionized, context_day = self._sessionize(first, stop)
            self._write(sessionized, "sessionized", EVENT_KEY, first, stop)
            if first > start:  # started in an earlier piece of this window: counted there
                started_before = pl.col("session_start") < datetime.combine(first, time(), UTC)
                continued += sessionized.filter(started_before)["session_id"].n_unique()
            sessions = {"sessions": sessionized["session_id"].n_unique()}
            results.append(LayerResult(sessionized.height, _preview(sessionized), sessions))
            context = context_day if first == start else None
            results[-1].details = {"context_day": context}
        if not results:
            raise FileNotFoundError(f"polars enriched: nothing for [{start}, {end})")
        counts = _sum_counts(results)
        counts["sessions"] -= continued
        return LayerResult(
            sum(r.rows for r in results),
            _first_preview(results),
            {**counts, "pieces": len(results)},
            results[0].details,
        )

    def _sessionize(self, start: date, end: date) -> tuple[pl.DataFrame, str | None]:
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
        sessionized = self._collect(engine.sessionize(events, context))
        return sessionized, before.isoformat() if previous else None

    def events(self, start: date, end: date, run_id: str, catalog) -> LayerResult:
        """The sessionized and rejects windows into <engine>.clickstream_*: PyIceberg writes
        the rows and commits, each window replaced in one transaction (a piece at a time
        appended inside it)."""
        commits = {}
        for layer, key, layout in _ICEBERG_LAYERS:
            pieces = self._chunks(layer, key, start, end)
            rows = sum(
                layer_store.window_size(self.paths.layers, self.engine, layer, key, a, b)[0]
                for a, b in pieces
            )

            def tables(layer=layer, key=key, pieces=pieces):
                for a, b in pieces:
                    if layer_store.window_files(self.paths.layers, self.engine, layer, key, a, b):
                        yield self._collect(self._read(layer, key, a, b)).to_arrow()

            commit = iceberg.replace_window(
                catalog, self.engine, layout, tables, start, end, _properties(self.engine, run_id)
            )
            commits[layout.name] = (rows, commit)
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
