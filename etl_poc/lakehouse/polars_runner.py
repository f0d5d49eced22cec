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
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.lakehouse.landing_readers import polars_read_landing
from etl_poc.lakehouse.landing_zone import landing_rows
from etl_poc.lakehouse.paths import Paths
from etl_poc.lakehouse.runner import (
    ICEBERG_LAYERS,
    LayerResult,
    Phase,
    RunnerBase,
    contiguous,
    detached,
    earlier_event_id_files,
    empty_window,
    iceberg_result,
    in_chain_order,
    landing_files,
    no_phase,
    no_raw_rows,
    nothing_for,
    preview,
    snapshot_properties,
)
from etl_poc.logic import polars_engine as rules
from etl_poc.logic.spec import layer as layer_named
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
    fuses_chain = True

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
        return self._raw(start, end)[0]

    def _raw(self, start: date, end: date, hold: bool = False):
        """The raw layer, and (`hold`) the window's rows as written when they were one piece
        (None otherwise): what a fused chain hands to the cleansed layer."""
        files, read, details = landing_files(self.paths, start, end, self.start_date)
        if not files:
            return no_raw_rows(self.paths, ENGINE, start, end, read, details), None
        layer_store.clear_window(self.paths.layers, ENGINE, "raw", start, end)
        rows, shown, pieces = 0, pl.DataFrame(), self._landing_pieces(files)
        held = None
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
            if hold and len(pieces) == 1 and window.height:
                held = layer_store.as_stored(window, "raw")
            del window  # not alive while the next piece is computed
        return LayerResult(rows, shown, {**read, "pieces": len(pieces)}, details), held

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

    # --- One layer at a time, each from its stored input ---------------------------------

    def cleansed(self, start: date, end: date) -> LayerResult:
        zero = {"raw_rows": 0, "rejected_rows": 0, "duplicates_removed": 0}
        if empty := empty_window(self.paths, ENGINE, "cleansed", start, end, zero):
            return empty
        pieces = self._chunks("raw", start, end)
        cleanse = self._cleanser(start, end, pieces)
        results = []
        for first, stop in pieces:
            *_, result = cleanse(self._read("raw", first, stop), first, stop)
            results.append(result)
        return _combined(results)

    def enriched(self, start: date, end: date) -> LayerResult:
        if empty := empty_window(self.paths, ENGINE, "enriched", start, end, {}):
            return empty
        prepared = self._prepared_ranges()
        results = [
            self._enrich(self._read("cleansed", first, stop), prepared, first, stop)[1]
            for first, stop in self._chunks("cleansed", start, end)
        ]
        if not results:
            raise nothing_for(ENGINE, "cleansed", start, end)
        return _combined(results, {"ip_ranges": self.ip_ranges.info.as_dict()})

    def sessionized(self, start: date, end: date) -> LayerResult:
        """Each piece continues the sessions of the day before it (written by the piece
        before, or by an earlier run). A session running across pieces is counted once."""
        if empty := empty_window(self.paths, ENGINE, "sessionized", start, end, {"sessions": 0}):
            return empty
        sessions = _Sessions(start)
        for first, stop in self._chunks("enriched", start, end):
            previous = self._stored_day_before(first)
            sessions.add(self._sessionize(self._read("enriched", first, stop), previous, first, stop),
                         first, previous is not None)  # fmt: skip
        if not sessions.results:
            raise nothing_for(ENGINE, "enriched", start, end)
        return sessions.result()

    def events(self, start: date, end: date, run_id: str, catalog) -> LayerResult:
        """The sessionized and rejects windows into <engine>.clickstream_*: the rows, a piece
        at a time, written as the tables' data files by Polars (iceberg.DataFileWriter) and
        committed by PyIceberg, each window replaced in one transaction."""
        writers = self._data_file_writers(catalog)
        try:
            for stored, layout in ICEBERG_LAYERS:
                for a, b in self._chunks(stored, start, end):
                    frame = layer_store.polars_read(self.paths.layers, ENGINE, stored, a, b)
                    if frame is not None:
                        writers[layout.name].add(self._collect(frame))
            return self._commit(writers, start, end, run_id, catalog)
        except BaseException:
            for writer in writers.values():
                writer.discard()
            raise

    # --- Each layer's work on one piece -------------------------------------------------

    def _cleanser(self, start: date, end: date, pieces: list[tuple[date, date]]):
        """What cleanses the window's pieces, in order: (clean, rejects, result) of a piece's
        raw rows, both written. A duplicate is looked for in the ids with a copy on a day
        before the window (the landing index), and, for a later piece, in those an earlier
        piece kept. Only ids seen more than once in the window can have been kept by an
        earlier piece: found first from the ids' hashes alone, and only those kept are
        remembered."""
        before = self._earlier_copies(start)
        repeated = self._repeated_hashes(start, end) if len(pieces) > 1 else None
        kept = [pl.DataFrame(schema={"event_id": pl.String})]

        def cleanse(raw_rows: pl.LazyFrame, first: date, stop: date):
            raw_rows = self._collect(raw_rows).lazy()
            earlier = [
                f for f in (before, kept[0].lazy() if kept[0].height else None) if f is not None
            ]
            clean, rejects = pl.collect_all(
                rules.cleansed(raw_rows, pl.concat(earlier) if earlier else None),
                engine=self.runtime.collect_engine,
            )  # fmt: skip
            if repeated is not None:
                candidates = clean.filter(pl.col("event_id").hash().is_in(repeated))
                kept[0] = pl.concat([kept[0], detached(candidates.select("event_id"))])
            self._write(rejects, "rejects", first, stop)
            self._write(clean, "cleansed", first, stop)
            raw_count = raw_rows.select(pl.len()).collect().item()
            counts = {
                "raw_rows": raw_count,
                "rejected_rows": rejects.height,
                "duplicates_removed": raw_count - rejects.height - clean.height,
            }
            log.info(f"polars cleansed: [{first}, {stop}) {clean.height:,} rows kept, "
                     f"{rejects.height:,} rejected")  # fmt: skip
            return clean, rejects, LayerResult(clean.height, preview(clean), counts)

        return cleanse

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
        # Sorted in place, compared as views: one copy of the window's hashes (8 bytes per
        # row) besides Polars' own, not the three a sort, a shift and a filter would make.
        ordered = hashes.to_series().to_numpy(writable=True)
        del hashes
        ordered.sort()
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        return pl.Series("event_id", np.unique(repeated), dtype=pl.UInt64).implode()

    def _prepared_ranges(self) -> dict[str, pl.LazyFrame]:
        ranges = self.ip_ranges
        prepared = rules.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
        return {name: frame.collect().lazy() for name, frame in prepared.items()}  # once

    def _enrich(self, frame: pl.LazyFrame, prepared, first: date, stop: date):
        enriched = self._collect(rules.enriched(frame, prepared))
        self._write(enriched, "enriched", first, stop)
        status = dict(enriched["ip_status"].value_counts().iter_rows())
        counts = {f"ip_{name}": int(count) for name, count in status.items()}
        return enriched, LayerResult(enriched.height, preview(enriched), counts)

    def _stored_day_before(self, first: date) -> pl.LazyFrame | None:
        before = first - timedelta(days=1)
        return layer_store.polars_read(self.paths.layers, ENGINE, "sessionized", before, first)

    def _sessionize(self, frame: pl.LazyFrame, previous, first: date, stop: date) -> pl.DataFrame:
        sessionized = self._collect(rules.sessionized(frame, previous))
        self._write(sessionized, "sessionized", first, stop)
        return sessionized

    def _data_file_writers(self, catalog) -> dict[str, iceberg.DataFileWriter]:
        return {
            layout.name: iceberg.DataFileWriter(
                iceberg.table_for(catalog, ENGINE, layout), layout, ENGINE
            )
            for _, layout in ICEBERG_LAYERS
        }

    def _commit(self, writers, start: date, end: date, run_id: str, catalog) -> LayerResult:
        commits = {}
        for _, layout in ICEBERG_LAYERS:
            writer = writers[layout.name]
            commit = iceberg.replace_window_with_files(
                catalog, ENGINE, layout, writer.files, start, end,
                snapshot_properties(ENGINE, run_id),
            )  # fmt: skip
            commits[layout.name] = (writer.rows, commit)
        return iceberg_result(catalog, ENGINE, start, end, commits)

    # --- The chain computed once ------------------------------------------------------------

    def run(self, layers, start, end, run_id, catalog, phase: Phase = no_phase):
        """Several layers of the window in one go. When they follow one another, the chain
        is computed once: each layer is written as it passes and handed to the next in
        memory, never read back (a window of more than one piece: from the cleansed layer on,
        a piece of whole days at a time; the raw layer is written in pieces of landing files,
        which the cleansed layer then reads back by day). Anything else: one layer after
        another (RunnerBase.run)."""
        names = in_chain_order(layers)
        if len(names) < 2 or not contiguous(names):
            yield from super().run(names, start, end, run_id, catalog, phase)
            return
        yield from self._chain(names, start, end, run_id, catalog, phase)

    def _chain(self, names, start, end, run_id, catalog, phase):
        held = None
        if names[0] == "raw":
            with phase("raw"):
                result, held = self._raw(start, end, hold=True)
            yield "raw", result
            names = names[1:]
        source = layer_named(names[0]).inputs[0]
        if (
            held is None
            and not layer_store.window_size(self.paths.layers, ENGINE, source, start, end)[0]
        ):  # nothing to chain: each layer empties its window (or says what is missing)
            yield from super().run(names, start, end, run_id, catalog, phase)
            return
        from_memory = held is not None
        pieces = [(start, end)] if from_memory else self._chunks(source, start, end)
        with phase("cleansed") if "cleansed" in names else nullcontext():
            cleanse = self._cleanser(start, end, pieces) if "cleansed" in names else None
        with phase("enriched") if "enriched" in names else nullcontext():
            prepared = self._prepared_ranges() if "enriched" in names else None
        results: dict[str, list[LayerResult]] = {name: [] for name in names}
        sessions = _Sessions(start)
        writers = self._data_file_writers(catalog) if "events" in names else {}
        previous, committed = None, False
        try:
            for index, (first, stop) in enumerate(pieces):
                if held is not None:  # handed over, and let go of as the chain goes on
                    frame, held = held.lazy(), None
                else:
                    frame = self._read(source, first, stop)
                rejects = None
                if cleanse is not None:
                    with phase("cleansed"):
                        frame, rejects, result = cleanse(frame, first, stop)
                    results["cleansed"].append(result)
                    frame = layer_store.as_stored(frame, "cleansed").lazy()
                if prepared is not None:
                    with phase("enriched"):
                        frame, result = self._enrich(frame, prepared, first, stop)
                    results["enriched"].append(result)
                    frame = layer_store.as_stored(frame, "enriched").lazy()
                if "sessionized" in names:
                    with phase("sessionized"):
                        if index == 0:  # later pieces continue the piece before, in memory
                            previous = self._stored_day_before(first)
                        sessionized = self._sessionize(frame, previous, first, stop)
                        sessions.add(sessionized, first, previous is not None)
                        previous = _last_day(sessionized, stop)
                    frame = layer_store.as_stored(sessionized, "sessionized").lazy()
                    del sessionized
                if writers:
                    with phase("events"):
                        writers[iceberg.EVENTS_TABLE].add(self._collect(frame))
                        if rejects is None:
                            stored = layer_store.polars_read(
                                self.paths.layers, ENGINE, "rejects", first, stop
                            )
                            rejects = None if stored is None else self._collect(stored)
                        if rejects is not None:
                            writers[iceberg.REJECTS_TABLE].add(rejects)
                del frame, rejects
            done = {}
            for name in names:
                if name == "events":
                    with phase("events"):
                        done[name] = self._commit(writers, start, end, run_id, catalog)
                    committed = True
                elif name == "sessionized":
                    done[name] = sessions.result()
                elif name == "enriched":
                    ranges = {"ip_ranges": self.ip_ranges.info.as_dict()}
                    done[name] = _combined(results[name], ranges)
                else:  # cleansed: the IP table is not loaded for a chain that does not enrich
                    done[name] = _combined(results[name])
                inputs = set(layer_named(name).inputs)
                if name == names[0] and not from_memory:
                    inputs = set()
                elif name == "events" and "cleansed" not in names:
                    inputs -= {"rejects"}  # read from the stored layer, a piece at a time
                done[name].in_memory = frozenset(inputs)
        except BaseException:
            if not committed:
                for writer in writers.values():
                    writer.discard()
            raise
        yield from done.items()


def _last_day(sessionized: pl.DataFrame, stop: date) -> pl.LazyFrame | None:
    """A piece's last day of sessions, which the next piece continues (None: no rows)."""
    last = detached(sessionized.filter(pl.col("event_date") == stop - timedelta(days=1)))
    return layer_store.as_stored(last, "sessionized").lazy() if last.height else None


class _Sessions:
    """The sessionized layer's result over a window's pieces: each piece continues the
    sessions of the day before it, and a session running across pieces is counted once."""

    def __init__(self, start: date):
        self.start, self.results, self.continued, self.context_day = start, [], 0, None

    def add(self, sessionized: pl.DataFrame, first: date, continues: bool) -> None:
        if first > self.start:  # started in an earlier piece of this window: counted there
            started_before = pl.col("session_start") < datetime.combine(first, time(), UTC)
            self.continued += sessionized.filter(started_before)["session_id"].n_unique()
        elif continues:
            self.context_day = (first - timedelta(days=1)).isoformat()
        sessions = {"sessions": sessionized["session_id"].n_unique()}
        self.results.append(LayerResult(sessionized.height, preview(sessionized), sessions))

    def result(self) -> LayerResult:
        combined = _combined(self.results, {"context_day": self.context_day})
        combined.counts["sessions"] -= self.continued
        return combined
