"""The layers on Polars (lakehouse.runner says what every runner has): a window worked in
pieces held in memory one at a time.

A piece is a run of whole days (for the raw layer: of whole landing files) of at most
`chunk_rows` rows, so memory is bounded by the piece, not by the window (0 or None: the whole
window at once). The pieces give exactly the rows of the whole window at once: a duplicate is
also looked for in the pieces before (spec: a window worked in pieces), sessions continue from
the day before, and the Iceberg window is replaced in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl

from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.lakehouse.landing_readers import polars_read_landing
from etl_poc.lakehouse.landing_zone import landing_rows
from etl_poc.lakehouse.paths import Paths
from etl_poc.lakehouse.runner import (
    ICEBERG_LAYERS,
    LayerResult,
    RunnerBase,
    earlier_event_id_files,
    empty_window,
    iceberg_result,
    landing_files,
    no_raw_rows,
    nothing_for,
    preview,
    snapshot_properties,
)
from etl_poc.logic import polars_engine as rules
from etl_poc.reference.ip_ranges import IpRangeTable
from etl_poc.settings import DEFAULT_POLARS_CHUNK_ROWS, POLARS_ENGINES, Settings

ENGINE = "polars"

log = logging.getLogger("etl_poc")  # progress per piece: the run log shows it


@dataclass(frozen=True)
class PolarsRuntime:
    """How the runner works a window: the rows it holds at once, and Polars' in-memory or
    streaming engine for every collect."""

    chunk_rows: int | None = DEFAULT_POLARS_CHUNK_ROWS
    collect_engine: str = "in-memory"

    def __post_init__(self):
        if self.collect_engine not in POLARS_ENGINES:
            raise ValueError(
                f"Polars engine {self.collect_engine!r}: choose one of {POLARS_ENGINES}"
            )
        if self.chunk_rows is not None and self.chunk_rows < 0:
            raise ValueError(f"chunk_rows must be 0 (no pieces) or more, got {self.chunk_rows}")


def start_runtime(settings: Settings) -> PolarsRuntime:
    """The runtime the settings describe (ETL_POC_POLARS_CHUNK_ROWS, ETL_POC_POLARS_ENGINE)."""
    return PolarsRuntime(settings.polars_chunk_rows, settings.polars_engine)


def stop_runtime(runtime: PolarsRuntime) -> None:
    """Nothing to stop: Polars runs inside this process."""


def _sum_counts(results: list[LayerResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        for name, value in result.counts.items():
            counts[name] = counts.get(name, 0) + value
    return counts


def _combined(results: list[LayerResult], details: dict | None = None) -> LayerResult:
    """One window's result from its pieces'."""
    return LayerResult(
        sum(r.rows for r in results),
        next((r.preview for r in results if r.rows), pl.DataFrame()),
        {**_sum_counts(results), "pieces": len(results)},
        details or {},
    )


class Runner(RunnerBase):
    engine = ENGINE

    def __init__(
        self,
        paths: Paths,
        start_date: date,
        processed_at: datetime,
        runtime: PolarsRuntime | None = None,
        ip_ranges: IpRangeTable | Callable[[], IpRangeTable] | None = None,
    ):
        super().__init__(paths, start_date, processed_at, ip_ranges)
        self.runtime = runtime or PolarsRuntime()

    def _collect(self, frame: pl.LazyFrame) -> pl.DataFrame:
        return frame.collect(engine=self.runtime.collect_engine)

    def _write(self, frame: pl.DataFrame, stored: str, start: date, end: date) -> None:
        layer_store.polars_write(frame, self.paths.layers, ENGINE, stored, start, end)

    def _read(self, stored: str, start: date, end: date) -> pl.LazyFrame:
        frame = layer_store.polars_read(self.paths.layers, ENGINE, stored, start, end)
        if frame is None:
            raise nothing_for(ENGINE, stored, start, end)
        return frame

    def _chunks(self, stored: str, start: date, end: date) -> list[tuple[date, date]]:
        """The window in pieces of whole days, by the rows of the layer it reads."""
        return layer_store.day_chunks(
            self.paths.layers, ENGINE, stored, start, end, self.runtime.chunk_rows
        )

    def raw(self, start: date, end: date) -> LayerResult:
        files, read, details = landing_files(self.paths, start, end, self.start_date)
        if not files:
            return no_raw_rows(self.paths, ENGINE, start, end, read, details)
        layer_store.clear_window(self.paths.layers, ENGINE, "raw", start, end)
        rows, shown, pieces = 0, pl.DataFrame(), self._landing_pieces(files)
        for part, (group, slice_, days_of_files) in enumerate(pieces):
            landing = polars_read_landing(group, self.paths.landing)
            if slice_ is not None:
                landing = landing.slice(*slice_)
            window = self._collect(
                rules.raw(landing, start=start, end=end, **self._when, days_of_files=days_of_files)
            )
            layer_store.polars_add_part(window, self.paths.layers, ENGINE, "raw", start, end, part)
            rows += window.height
            log.info(f"polars raw: piece {part + 1}/{len(pieces)}: {window.height:,} rows")
            shown = shown if shown.height else preview(window)
        return LayerResult(rows, shown, {**read, "pieces": len(pieces)}, details)

    def _landing_pieces(self, files: list[Path]) -> list[tuple]:
        """The landing files in pieces of at most chunk_rows rows: (files, None, None) for
        whole files, a few at a time (a row's day depends on its own file only), and
        ([file], (offset, rows), its first usable day) for a part of a file larger than
        that, whose first usable day is found first, reading it once."""
        rows = [landing_rows(f) for f in files]
        size = self.runtime.chunk_rows
        whole = [(f, n) for f, n in zip(files, rows, strict=True) if not size or n <= size]
        pieces: list[tuple] = [
            (group, None, None)
            for group in layer_store.in_pieces([f for f, _ in whole], [n for _, n in whole], size)
        ]
        for file, count in zip(files, rows, strict=True):
            if not size or count <= size:
                continue
            standardized = rules.standardize(
                polars_read_landing([file], self.paths.landing), **self._when
            )
            days = rules.first_usable_days(standardized, **self._when)
            days = days.collect(engine="streaming").lazy()
            pieces += [([file], (offset, size), days) for offset in range(0, count, size)]
        return pieces

    def cleansed(self, start: date, end: date) -> LayerResult:
        zero = {"raw_rows": 0, "rejected_rows": 0, "duplicates_removed": 0}
        if empty := empty_window(self.paths, ENGINE, "cleansed", start, end, zero):
            return empty
        pieces = self._chunks("raw", start, end)
        # The ids with a copy on a day before the window (the landing index), and, for a
        # later piece, those an earlier piece kept. Only ids seen more than once in the window
        # can have been kept by an earlier piece: found first from the ids' hashes alone, and
        # only those kept are remembered.
        before = self._earlier_copies(start)
        repeated = self._repeated_hashes(start, end) if len(pieces) > 1 else None
        kept = pl.DataFrame(schema={"event_id": pl.String})
        results = []
        for first, stop in pieces:
            raw_rows = self._collect(self._read("raw", first, stop)).lazy()
            earlier = [f for f in (before, kept.lazy() if kept.height else None) if f is not None]
            clean, rejects = pl.collect_all(
                rules.cleansed(raw_rows, pl.concat(earlier) if earlier else None),
                engine=self.runtime.collect_engine,
            )
            if repeated is not None:
                candidates = clean.filter(pl.col("event_id").hash().is_in(repeated))
                kept = pl.concat([kept, candidates.select("event_id")])
            self._write(rejects, "rejects", first, stop)
            self._write(clean, "cleansed", first, stop)
            raw_count = raw_rows.select(pl.len()).collect().item()
            counts = {
                "raw_rows": raw_count,
                "rejected_rows": rejects.height,
                "duplicates_removed": raw_count - rejects.height - clean.height,
            }
            results.append(LayerResult(clean.height, preview(clean), counts))
            log.info(f"polars cleansed: [{first}, {stop}) {clean.height:,} rows kept, "
                     f"{rejects.height:,} rejected")  # fmt: skip
        return _combined(results)

    def _earlier_copies(self, start: date) -> pl.LazyFrame | None:
        """The event_ids with a usable copy on a day before the window (spec: the earliest
        copy wins), from the landing index; None when no landing file has such a day."""
        files = earlier_event_id_files(self.paths, start)
        if not files:
            return None
        return rules.earlier_copies(pl.scan_parquet(files), before=start, **self._when)

    def _repeated_hashes(self, start: date, end: date) -> pl.Series:
        """The hashes of the usable event ids that occur more than once in the window (read
        from the raw layer's two columns, streaming)."""
        usable = self._read("raw", start, end).filter(pl.col("reject_reason").is_null())
        hashes = usable.select(pl.col("event_id").hash()).collect(engine="streaming")
        ordered = hashes.to_series().sort()
        return ordered.filter(ordered == ordered.shift()).unique().implode()

    def enriched(self, start: date, end: date) -> LayerResult:
        if empty := empty_window(self.paths, ENGINE, "enriched", start, end, {}):
            return empty
        ranges = self.ip_ranges
        prepared = rules.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
        prepared = {name: frame.collect().lazy() for name, frame in prepared.items()}  # once
        results = []
        for first, stop in self._chunks("cleansed", start, end):
            enriched = self._collect(rules.enriched(self._read("cleansed", first, stop), prepared))
            self._write(enriched, "enriched", first, stop)
            status = dict(enriched["ip_status"].value_counts().iter_rows())
            counts = {f"ip_{name}": int(count) for name, count in status.items()}
            results.append(LayerResult(enriched.height, preview(enriched), counts))
        if not results:
            raise nothing_for(ENGINE, "cleansed", start, end)
        return _combined(results, {"ip_ranges": ranges.info.as_dict()})

    def sessionized(self, start: date, end: date) -> LayerResult:
        if empty := empty_window(self.paths, ENGINE, "sessionized", start, end, {"sessions": 0}):
            return empty
        """Each piece continues the sessions of the day before it (written by the piece
        before, or by an earlier run). A session running across pieces is counted once."""
        results, continued, context_day = [], 0, None
        for first, stop in self._chunks("enriched", start, end):
            before = first - timedelta(days=1)
            previous = layer_store.polars_read(
                self.paths.layers, ENGINE, "sessionized", before, first
            )
            events = self._read("enriched", first, stop)
            sessionized = self._collect(rules.sessionized(events, previous))
            self._write(sessionized, "sessionized", first, stop)
            if first > start:  # started in an earlier piece of this window: counted there
                started_before = pl.col("session_start") < datetime.combine(first, time(), UTC)
                continued += sessionized.filter(started_before)["session_id"].n_unique()
            elif previous is not None:
                context_day = before.isoformat()
            sessions = {"sessions": sessionized["session_id"].n_unique()}
            results.append(LayerResult(sessionized.height, preview(sessionized), sessions))
        if not results:
            raise nothing_for(ENGINE, "enriched", start, end)
        combined = _combined(results, {"context_day": context_day})
        combined.counts["sessions"] -= continued
        return combined

    def events(self, start: date, end: date, run_id: str, catalog) -> LayerResult:
        """The sessionized and rejects windows into <engine>.clickstream_*: the rows, a piece
        at a time, written as the tables' data files by Polars (iceberg.data_files) and committed
        by PyIceberg, each window replaced in one transaction."""
        commits = {}
        for stored, layout in ICEBERG_LAYERS:
            table = iceberg.table_for(catalog, ENGINE, layout)
            pieces = (
                self._collect(frame)
                for a, b in self._chunks(stored, start, end)
                if (frame := layer_store.polars_read(self.paths.layers, ENGINE, stored, a, b))
                is not None
            )
            files, rows = iceberg.data_files(pieces, table, layout, ENGINE)
            commit = iceberg.replace_window_with_files(
                catalog, ENGINE, layout, files, start, end, snapshot_properties(ENGINE, run_id)
            )
            commits[layout.name] = (rows, commit)
        return iceberg_result(catalog, ENGINE, start, end, commits)
