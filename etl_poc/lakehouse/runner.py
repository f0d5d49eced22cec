"""What every engine's runner shares: the result of a layer, the landing files a window
reads, the Iceberg step's result, and how to find an engine's runner.

A runner (lakehouse/<engine>_runner.py, class Runner) has the same constructor and the same
methods in every engine, one per layer of spec.LAYERS: raw, cleansed, enriched, sessionized
(start, end), and events (start, end, run_id, catalog). Each reads the window, makes one call
of its engine's logic module and writes, counting with its own engine. `run` materializes
several layers of a window in one go: by default one layer method after the other; an engine
may instead compute the chain once, writing each layer as it passes and never reading back
what it just wrote (Polars does: polars_runner.Runner.run). The Dagster assets (defs/) and
the run without Dagster (bench/plain.py) only turn a window into arguments and call `run`.

Layers, each per day under <data>/layers/<engine>/ (lakehouse.layer_store):
  raw          landing files -> standardized rows (typed, reject reason), by partition_date
  cleansed     raw -> usable rows, one per event_id (and `rejects`, by partition_date)
  enriched     cleansed -> ip_status, country_code
  sessionized  enriched -> session_id, session_start, event_seq (continuing the day before)
  events       sessionized and rejects -> the Iceberg tables <engine>.clickstream_*
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property

import polars as pl

from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.lakehouse.landing_zone import landing_rows, other_files, scan_landing_zone
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.spec import ENGINES, LAYERS
from etl_poc.logic.spec import layer as layer_named
from etl_poc.reference.ip_ranges import IpRangeTable

PREVIEW_ROWS = 5

# The stored layers each engine commits to Iceberg, and into which table.
ICEBERG_LAYERS = (("sessionized", iceberg.EVENTS), ("rejects", iceberg.REJECTS))


@dataclass
class LayerResult:
    rows: int
    preview: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    # The stored inputs handed over in memory by the layers before it in the same run (a
    # fused chain): nothing of them was read back.
    in_memory: frozenset[str] = frozenset()


# How a runner's caller tells the parts of a run apart (measure.usage.TreeSampler.phase): a
# context manager per layer name, entered around each stretch of that layer's work.
Phase = Callable[[str], AbstractContextManager]
LAYER_NAMES = tuple(item.name for item in LAYERS)


def no_phase(layer: str) -> AbstractContextManager:
    return nullcontext()


def in_chain_order(layers) -> list[str]:
    """Layer names in the chain's order (raw first); an unknown name is an error."""
    layers = set(layers)
    unknown = layers - set(LAYER_NAMES)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}: choose from {LAYER_NAMES}")
    return [name for name in LAYER_NAMES if name in layers]


def contiguous(layers: list[str]) -> bool:
    """The layers (in chain order) follow one another with none left out between them."""
    positions = [LAYER_NAMES.index(name) for name in layers]
    return positions == list(range(positions[0], positions[0] + len(positions)))


class RunnerBase:
    """What every engine's Runner is given and holds: the data directory, the start date and
    processing time the rules judge by, and the IP-to-country table as a table, a function
    that loads one (loaded only by the layer that needs it: the enriched layer, 0.9 s), or
    None for the packaged GeoLite2 table. Each engine's Runner adds its runtime."""

    engine: str
    fuses_chain = False  # whether `run` computes several layers as one chain

    def __init__(
        self,
        paths: Paths,
        start_date: date,
        processed_at: datetime,
        ip_ranges: IpRangeTable | Callable[[], IpRangeTable] | None = None,
    ):
        self.paths, self.start_date, self.processed_at = paths, start_date, processed_at
        self._ip_source = ip_ranges
        self._when = {"start_date": start_date, "processed_at": processed_at}

    def run(
        self, layers, start: date, end: date, run_id: str, catalog, phase: Phase = no_phase
    ) -> Iterator[tuple[str, LayerResult]]:
        """The layers of the window, in the chain's order, each (name, result) as it is done:
        one layer method after the other, each reading its stored input."""
        for name in in_chain_order(layers):
            with phase(name):
                if name == "events":
                    result = self.events(start, end, run_id, catalog)
                else:
                    result = getattr(self, name)(start, end)
            yield name, result

    @cached_property
    def ip_ranges(self) -> IpRangeTable:
        source = self._ip_source
        if source is None:
            from etl_poc.reference.ip_ranges import load_packaged_ranges

            return load_packaged_ranges()
        return source() if callable(source) else source


def runner_module(engine: str):
    """The module lakehouse/<engine>_runner.py of an engine of spec.ENGINES."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {ENGINES}")
    return importlib.import_module(f"etl_poc.lakehouse.{engine}_runner")


def landing_files(
    paths: Paths, start: date, end: date, start_date: date
) -> tuple[list, dict, dict]:
    """The landing files that may hold rows of the window (LandingIndex.files_for_window);
    how many were read and skipped, their rows and bytes, how many files under landing/ are
    not ingested (no landing format) and how many are quarantined (unreadable, or not the
    contract); and (details) those files' names, and why each quarantined one is."""
    everything = [paths.landing / info.path for info in scan_landing_zone(paths.landing)]
    if not everything:
        raise FileNotFoundError(f"no landing files under {paths.landing}")
    index = paths.landing_index
    files = index.files_for_window(everything, start, end, start_date)
    rejected = index.rejected(everything)
    ignored = [path.as_posix() for path in other_files(paths.landing)]
    return files, {
        "landing_files": len(files),
        "landing_files_skipped": len(everything) - len(files) - len(rejected),
        "landing_rows": sum(landing_rows(f) for f in files),
        "landing_bytes": sum(f.stat().st_size for f in files),
        "landing_files_not_ingested": len(ignored),
        "landing_files_rejected": len(rejected),
    }, {
        "landing_files_not_ingested": ignored,
        "landing_rejected_files": [{"file": f, "reason": r} for f, r in rejected.items()],
    }  # fmt: skip


def earlier_event_id_files(paths: Paths, start: date) -> list:
    """The landing index's event-id files of the landing files with a day before `start`:
    where a window's cleansing finds the earlier copies of its events (spec: the earliest
    copy wins)."""
    everything = [paths.landing / info.path for info in scan_landing_zone(paths.landing)]
    return paths.landing_index.event_ids_before(everything, start)


def no_raw_rows(
    paths: Paths, engine: str, start: date, end: date, read: dict, details: dict
) -> LayerResult:
    """No landing file can hold rows of the window: the window's raw layer is emptied."""
    layer_store.clear_window(paths.layers, engine, "raw", start, end)
    return LayerResult(0, pl.DataFrame(), read, details)


def empty_window(
    paths: Paths, engine: str, layer: str, start: date, end: date, counts: dict
) -> LayerResult | None:
    """An empty window is a valid state (a day whose rows were all rejected, or whose landing
    file was removed): when the layer's inputs hold no row of the window, its outputs are
    emptied for the window and its result has no rows (`counts`, all zero); None otherwise."""
    described = layer_named(layer)
    if any(
        layer_store.window_size(paths.layers, engine, s, start, end)[0] for s in described.inputs
    ):
        return None
    for stored in described.outputs:
        layer_store.clear_window(paths.layers, engine, stored, start, end)
    return LayerResult(0, pl.DataFrame(), counts)


def nothing_for(engine: str, stored: str, start: date, end: date) -> FileNotFoundError:
    return FileNotFoundError(f"{engine} {stored}: nothing for [{start}, {end})")


def detached(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame's rows in buffers of their own. A head or a filter of a String column is a
    view into the whole column's data buffers and keeps them alive (`clone`, `rechunk` and
    `shrink_to_fit` keep them too): what a window worked in pieces keeps from one piece must
    be detached, or every piece stays in memory (measured: 3 filters of 3,000 ids out of
    3M-row frames held 350 MB; detached, 1 MB)."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    buffer.seek(0)
    return pl.read_ipc(buffer)


def preview(frame: pl.DataFrame) -> pl.DataFrame:
    """The first rows, detached from the frame."""
    return detached(frame.head(PREVIEW_ROWS))


REJECTS_SAMPLE_ROWS = 10


def rejects_summary(paths: Paths, engine: str, start: date, end: date):
    """The window's rejected rows (the stored rejects layer) per reason, in the spec's order,
    and a sample of them: what a person inspecting the rejects wants first."""
    from etl_poc.logic.spec import RejectReason

    rejects = layer_store.read_layer(paths.layers, engine, "rejects", start, end)
    if rejects.is_empty():
        return {}, rejects
    counts = dict(rejects.group_by("reject_reason").len().iter_rows())
    order = [str(reason) for reason in RejectReason.ORDER]
    rank = {reason: order.index(reason) if reason in order else len(order) for reason in counts}
    by_reason = {reason: counts[reason] for reason in sorted(counts, key=lambda r: (rank[r], r))}
    # One row of each reason first, then the rest in order: every reason gets an example.
    firsts = rejects.group_by("reject_reason", maintain_order=True).head(1).select(rejects.columns)
    rest = rejects.head(REJECTS_SAMPLE_ROWS)
    sample = pl.concat([firsts, rest]).unique(maintain_order=True)
    return by_reason, sample.head(max(REJECTS_SAMPLE_ROWS, len(by_reason)))


def snapshot_properties(engine: str, run_id: str) -> dict[str, str]:
    """What every Iceberg snapshot of a run carries: who wrote it."""
    return {iceberg.RUN_PROPERTY: run_id, "etl_poc.engine": engine}


def iceberg_result(catalog, engine: str, start: date, end: date, commits: dict) -> LayerResult:
    """The result of every engine's last step, once its sessionized and rejects windows are
    committed (`commits`: each table's row count and commit)."""
    shown = iceberg.read_window(catalog, engine, iceberg.EVENTS, start, end, limit=PREVIEW_ROWS)
    counts = {name: rows for name, (rows, _) in commits.items()}
    details = {name: commit for name, (_, commit) in commits.items()}
    return LayerResult(counts[iceberg.EVENTS_TABLE], shown, counts, details)
