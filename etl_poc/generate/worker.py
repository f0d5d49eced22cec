"""Rendering one period: what a worker process runs, importing only NumPy and Arrow.

A period is planned from its own seed and rendered to an Arrow table in arrival order. In a
worker the table is spilled to an Arrow IPC file (in shared memory where there is some) that
the writing process maps without copying.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from etl_poc.generate.commerce import Orders
from etl_poc.generate.config import GeneratorConfig
from etl_poc.generate.events import PeriodStats, plan_period
from etl_poc.generate.render import render
from etl_poc.generate.vocab import Catalog, PageVocabulary, Population

_STATE: dict = {}


@dataclass(frozen=True)
class Period:
    day_index: int
    start_ms: int
    hours: range
    budget: int


def start(
    config: GeneratorConfig, population: Population, pages: PageVocabulary, catalog: Catalog
) -> None:
    """Keep what every period needs (a process pool's initializer)."""
    _STATE.update(config=config, population=population, pages=pages, catalog=catalog)


@dataclass
class RenderedPeriod:
    """A period's rows in arrival order: the table (or the Arrow file holding it) plus the
    arrival time and defect of every row, which decide where each row is written."""

    arrival_ms: np.ndarray
    defect: np.ndarray
    stats: PeriodStats
    table: pa.Table | None = None
    spill: str | None = None
    orders: Orders | None = None  # the period's orders (operational.py writes them)

    def load(self) -> pa.Table:
        if self.table is None:
            # Memory-mapped: no copy, and the mapping outlives the unlinked file.
            self.table = pa.ipc.open_file(pa.memory_map(self.spill)).read_all()
            os.unlink(self.spill)
        return self.table


def render_period(period: Period, spill_dir: str | None) -> RenderedPeriod:
    config: GeneratorConfig = _STATE["config"]
    population, pages, catalog = _STATE["population"], _STATE["pages"], _STATE["catalog"]
    rng = np.random.default_rng(
        np.random.SeedSequence(config.seed, spawn_key=(1, period.day_index, period.hours.start))
    )
    rows, stats, orders = plan_period(
        period.start_ms, period.hours, period.budget, population, pages, config.defects, rng,
        catalog, period.day_index,
    )  # fmt: skip
    rows = rows.take(np.argsort(rows.arrival_ms, kind="stable"))
    table = render(rows, population, pages, catalog, orders)
    rendered = RenderedPeriod(rows.arrival_ms, rows.defect, stats, orders=orders)
    if spill_dir is None:
        rendered.table = table
        return rendered
    path = os.path.join(spill_dir, f"period-{period.day_index}-{period.hours.start}.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    rendered.spill = path
    return rendered
