"""Generate a landing zone: bulk history plus one incremental file per day, and its manifest.

A period (a day, or part of one) is planned and rendered on its own, from its own seed, so
worker processes render periods ahead while this process writes. Each period's rows are in
arrival order; rows arriving after the period ends (late events, visits running past
midnight) are carried into the next period, so every file holds what *arrived* in its
window, in arrival order, and the files together hold every row exactly once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from etl_poc.generate import worker
from etl_poc.generate.config import EVENT_TYPE_MIX, TIER_ACTIVITY, USER_TIER_MIX, GeneratorConfig
from etl_poc.generate.events import (
    HOUR_MS,
    HOUR_WEIGHTS,
    RETURN_GAP_KINDS,
    WEEKDAY_WEIGHTS,
    Defect,
    allocate,
)
from etl_poc.generate.operational import write_operational
from etl_poc.generate.population import build_catalog, build_pages, build_population
from etl_poc.generate.render import RENDERED_SCHEMA
from etl_poc.generate.vocab import Catalog, PageVocabulary, Population
from etl_poc.generate.worker import Period, RenderedPeriod
from etl_poc.logic.spec import LANDING_COLUMNS, USER_TIERS
from etl_poc.reference.ip_ranges import load_packaged_ranges

MANIFEST_VERSION = 1
_UNIQUE_COLUMNS = ("event_id", "session_id", "timestamp")
PERIOD_CHUNKS = 2  # a period plans at most this many chunks' worth of events at once


@dataclass
class LandingFile:
    """One landing file's worth of rows, written in each requested format."""

    kind: str  # "bulk" or "incremental"
    first_day: date
    last_day: date
    paths: dict[str, Path]
    rows: int = 0
    defects: np.ndarray = field(default_factory=lambda: np.zeros(len(Defect), dtype=np.int64))


def landing_paths(config: GeneratorConfig) -> list[LandingFile]:
    """The files a config produces, in time order: the bulk file, then one per incremental day."""
    end_of_bulk = config.start_date + timedelta(days=config.days - 1)
    files = [
        LandingFile(
            "bulk",
            config.start_date,
            end_of_bulk,
            {f: Path("bulk") / f"bulk_data_{config.label}.{f}" for f in config.formats},
        )
    ]
    for offset in range(config.incremental_days):
        day = end_of_bulk + timedelta(days=offset + 1)
        name = f"incremental_{day.isoformat()}_{config.label}"
        paths = {f: Path("incremental") / f"{name}.{f}" for f in config.formats}
        files.append(LandingFile("incremental", day, day, paths))
    return files


def _periods(config: GeneratorConfig) -> Iterator[Period]:
    first_day = np.datetime64(config.start_date, "D")
    days = first_day + np.arange(config.total_days)
    weekday = (days.astype("datetime64[D]").view("int64") - 4) % 7  # 1970-01-01 was a Thursday
    day_budgets = allocate(config.events, WEEKDAY_WEIGHTS[weekday])
    cap = PERIOD_CHUNKS * config.chunk_events
    for day_index, budget in enumerate(day_budgets):
        start_ms = int(days[day_index].astype("datetime64[ms]").view("int64"))
        n_slices = min(24, max(1, -(-int(budget) // cap)))
        bounds = allocate(24, np.ones(n_slices)).cumsum()
        slices = [range(int(a), int(b)) for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
        slice_budgets = allocate(int(budget), [HOUR_WEIGHTS[s].sum() for s in slices])
        for hours, slice_budget in zip(slices, slice_budgets, strict=True):
            yield Period(day_index, start_ms, hours, int(slice_budget))


class _FormatWriters:
    """Open writers for one landing file, in every format; files appear only when complete.

    Rows are buffered into row groups of `row_group_rows`: a Parquet row group repeats the
    page-URL dictionary, so small ones cost time and space."""

    def __init__(self, out_dir: Path, landing: LandingFile, row_group_rows: int):
        self.row_group_rows = row_group_rows
        self.buffered: list[pa.Table] = []
        self.buffered_rows = 0
        self.targets = {fmt: out_dir / rel for fmt, rel in landing.paths.items()}
        self.temps = {
            fmt: path.with_name(f".{path.name}.partial") for fmt, path in self.targets.items()
        }
        for path in self.temps.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        self.csv = self.temps["csv"].open("wb") if "csv" in self.temps else None
        self.parquet = (
            pq.ParquetWriter(
                self.temps["parquet"],
                RENDERED_SCHEMA,
                compression="zstd",
                store_schema=False,
                # Min/max of random ids or URLs prune nothing; of the timestamp text they do,
                # and skipping the rest makes writing about a third cheaper.
                write_statistics=["timestamp"],
                # Ids and timestamps are (nearly) unique: trying a dictionary first only wastes time.
                use_dictionary=[c for c in LANDING_COLUMNS if c not in _UNIQUE_COLUMNS],
            )
            if "parquet" in self.temps
            else None
        )
        self.wrote_header = False

    def write(self, table: pa.Table) -> None:
        self.buffered.append(table)
        self.buffered_rows += table.num_rows
        while self.buffered_rows >= self.row_group_rows:
            pending = pa.concat_tables(self.buffered)
            self._write(pending.slice(0, self.row_group_rows))
            rest = pending.slice(self.row_group_rows)
            self.buffered, self.buffered_rows = [rest], rest.num_rows

    def _write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.csv is not None:
            pl.from_arrow(table).write_csv(self.csv, include_header=not self.wrote_header)
            self.wrote_header = True
        if self.parquet is not None:
            self.parquet.write_table(table)

    def close(self) -> None:
        if self.buffered_rows:
            self._write(pa.concat_tables(self.buffered))
        if self.csv is not None:
            if not self.wrote_header:
                pl.DataFrame(schema=dict.fromkeys(LANDING_COLUMNS, pl.String)).write_csv(self.csv)
            self.csv.close()
        if self.parquet is not None:
            self.parquet.close()
        for fmt, temp in self.temps.items():
            temp.replace(self.targets[fmt])

    def abort(self) -> None:
        if self.csv is not None:
            self.csv.close()
        if self.parquet is not None:
            self.parquet.close()
        for temp in self.temps.values():
            temp.unlink(missing_ok=True)


@dataclass
class GenerationResult:
    manifest: dict
    manifest_path: Path
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.manifest["events"] / self.seconds if self.seconds else float("inf")


def manifest_path(config: GeneratorConfig) -> Path:
    return config.out_dir / f"manifest_{config.label}.json"


def _merge(carry: RenderedPeriod, own: RenderedPeriod) -> RenderedPeriod:
    """Carried rows slotted into a period's rows by arrival (before own rows of equal arrival).

    Carried rows arrive within hours of the period's start, so only the period's first rows
    are gathered anew; slicing row by row instead would leave thousands of tiny chunks that
    make the Parquet writer several times slower."""
    position = np.searchsorted(own.arrival_ms, carry.arrival_ms, side="left")
    n_head = int(position.max()) if len(position) else 0
    n_carry = len(carry.arrival_ms)
    order = np.empty(n_head + n_carry, dtype=np.int64)
    own_before = np.searchsorted(position, np.arange(n_head), side="right")
    order[np.arange(n_head) + own_before] = np.arange(n_head)
    order[position + np.arange(n_carry)] = n_head + np.arange(n_carry)
    own_table = own.load()
    head = pa.concat_tables([own_table.slice(0, n_head), carry.load()]).combine_chunks().take(order)
    return RenderedPeriod(
        arrival_ms=np.concatenate(
            [
                np.concatenate([own.arrival_ms[:n_head], carry.arrival_ms])[order],
                own.arrival_ms[n_head:],
            ]
        ),
        defect=np.concatenate(
            [np.concatenate([own.defect[:n_head], carry.defect])[order], own.defect[n_head:]]
        ),
        stats=own.stats,
        table=pa.concat_tables([head, own_table.slice(n_head)]),
    )


def _split(rendered: RenderedPeriod, boundary_ms: int) -> tuple[RenderedPeriod, RenderedPeriod]:
    keep = int(np.searchsorted(rendered.arrival_ms, boundary_ms, side="left"))
    table = rendered.load()
    head = RenderedPeriod(
        rendered.arrival_ms[:keep], rendered.defect[:keep], rendered.stats, table.slice(0, keep)
    )
    tail = RenderedPeriod(
        rendered.arrival_ms[keep:], rendered.defect[keep:], rendered.stats, table.slice(keep)
    )
    return head, tail


def _rendered_periods(
    config: GeneratorConfig,
    periods: list[Period],
    population: Population,
    pages: PageVocabulary,
    catalog: Catalog,
) -> Iterator[RenderedPeriod]:
    """Periods in order, rendered ahead by worker processes when there is more than one core.

    The users and pages are built once, by the caller, and handed to the workers: a worker
    then only imports NumPy and Arrow before it renders."""
    if config.worker_count <= 1:
        worker.start(config, population, pages, catalog)
        for period in periods:
            yield worker.render_period(period, None)
        return
    spill_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with (
        tempfile.TemporaryDirectory(prefix="etl-poc-generate-", dir=spill_root) as spill_dir,
        ProcessPoolExecutor(
            max_workers=config.worker_count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.start,
            initargs=(config, population, pages, catalog),
        ) as pool,
    ):
        ahead = config.worker_count + 1  # bounds memory: so many periods rendered but not written
        queue = deque(pool.submit(worker.render_period, p, spill_dir) for p in periods[:ahead])
        for index in range(len(periods)):
            rendered = queue.popleft().result()
            if index + ahead < len(periods):
                queue.append(pool.submit(worker.render_period, periods[index + ahead], spill_dir))
            yield rendered


def generate(config: GeneratorConfig) -> GenerationResult:
    """Write the landing files and the manifest for `config`; the same config, the same bytes
    whatever the number of workers."""
    started = time.perf_counter()
    population_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    population = build_population(
        config.n_users, load_packaged_ranges(), population_rng, config.total_days
    )
    catalog = build_catalog(config.seed, config.total_days)
    pages = build_pages(catalog, config.seed)
    orders: list = []
    files = landing_paths(config)
    day_file = [0] * config.days + list(range(1, config.incremental_days + 1))
    periods = list(_periods(config))
    totals = {
        "visits": 0,
        "bounce_visits": 0,
        "visits_crossing_midnight": 0,
        "ipv6_events": 0,
        "return_gaps": np.zeros(len(RETURN_GAP_KINDS), dtype=np.int64),
        "events_by_tier": np.zeros(len(USER_TIERS), dtype=np.int64),
    }
    carry: RenderedPeriod | None = None
    open_file = -1
    writers: _FormatWriters | None = None
    bar = tqdm(
        total=config.events, unit="ev", unit_scale=True, disable=not config.show_progress,
        desc=f"generate {config.label}",
    )  # fmt: skip
    try:
        rendered_periods = _rendered_periods(config, periods, population, pages, catalog)
        for index, rendered in enumerate(rendered_periods):
            stats = rendered.stats
            orders.append(rendered.orders)
            for key in ("visits", "bounce_visits", "visits_crossing_midnight", "ipv6_events"):
                totals[key] += getattr(stats, key)
            totals["return_gaps"] += stats.return_gaps
            totals["events_by_tier"] += stats.events_by_tier

            if carry is not None and len(carry.arrival_ms):
                rendered = _merge(carry, rendered)
            carry = None
            if index < len(periods) - 1:  # the last period writes everything left
                nxt = periods[index + 1]
                rendered, carry = _split(rendered, nxt.start_ms + nxt.hours.start * HOUR_MS)

            target = day_file[periods[index].day_index]
            while open_file < target:  # every file is created, even one that receives no rows
                if writers is not None:
                    writers.close()
                open_file += 1
                writers = _FormatWriters(config.out_dir, files[open_file], config.chunk_events)
            landing = files[target]
            landing.rows += len(rendered.arrival_ms)
            landing.defects += np.bincount(rendered.defect, minlength=len(Defect))
            writers.write(rendered.load())
            bar.update(len(rendered.arrival_ms))
        if writers is not None:
            writers.close()
            writers = None
    finally:
        bar.close()
        if writers is not None:  # failed half-way: leave no partial file behind
            writers.abort()

    window_start = int(np.datetime64(config.start_date, "ms").view("int64"))
    operational = write_operational(
        config.oltp_root, population, catalog, orders, window_start,
        window_start + config.total_days * 86_400_000, config.seed,
    )  # fmt: skip
    users_by_tier = np.bincount(population.tier, minlength=len(USER_TIERS)).tolist()
    manifest = _manifest(config, files, totals, users_by_tier)
    manifest["operational"] = operational
    path = manifest_path(config)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return GenerationResult(manifest, path, time.perf_counter() - started)


def _defect_counts(counts: np.ndarray) -> dict[str, int]:
    return {d.key: int(counts[d]) for d in Defect if d != Defect.CLEAN}


def _manifest(config, files, totals, users_by_tier: list[int]) -> dict:
    defects = sum((f.defects for f in files), np.zeros(len(Defect), dtype=np.int64))
    must_reject = sum(
        int(defects[d])
        for d in (
            Defect.NULL_EVENT_ID,
            Defect.EMPTY_EVENT_ID,
            Defect.NULL_USER_ID,
            Defect.EMPTY_USER_ID,
            Defect.UNPARSEABLE_TIMESTAMP,
            Defect.MISSING_PRODUCT_ID,  # INVALID_EVENT_FIELDS: the files have those columns
            Defect.MALFORMED_AMOUNT,
        )
    )
    window_end = config.start_date + timedelta(days=config.total_days)
    return {
        "manifest_version": MANIFEST_VERSION,
        "label": config.label,
        "events": config.events,
        "seed": config.seed,
        "formats": list(config.formats),
        "start_date": config.start_date.isoformat(),
        "days": config.days,
        "incremental_days": config.incremental_days,
        "window": [config.start_date.isoformat(), window_end.isoformat()],
        "users": config.n_users,
        "columns": list(LANDING_COLUMNS),
        "files": [
            {
                "kind": f.kind,
                "first_day": f.first_day.isoformat(),
                "last_day": f.last_day.isoformat(),
                "paths": {fmt: p.as_posix() for fmt, p in f.paths.items()},
                "rows": f.rows,
                "defects": _defect_counts(f.defects),
            }
            for f in files
        ],
        "defect_rates": config.defects.as_dict(),
        "defects": _defect_counts(defects),
        "expected": {
            "rows": config.events,
            "must_reject": must_reject,
            "duplicates": int(defects[Defect.DUPLICATE]),
            "valid_unique_events": config.events - must_reject - int(defects[Defect.DUPLICATE]),
        },
        "shape": {
            "visits": totals["visits"],
            "bounce_visits": totals["bounce_visits"],
            "visits_crossing_midnight": totals["visits_crossing_midnight"],
            "return_gaps": dict(zip(RETURN_GAP_KINDS, totals["return_gaps"].tolist(), strict=True)),
            "ipv6_events": totals["ipv6_events"],
            "users_by_tier": dict(zip(USER_TIERS, users_by_tier, strict=True)),
            "events_by_tier": dict(zip(USER_TIERS, totals["events_by_tier"].tolist(), strict=True)),
        },
        "mix": {
            "event_type": EVENT_TYPE_MIX,
            "user_tier": USER_TIER_MIX,
            "tier_activity": TIER_ACTIVITY,
        },
        "ip_dataset": load_packaged_ranges().info.as_dict(),
        # No wall-clock time here: the same config gives a byte-identical manifest too.
        "generated_by": "etl-poc generate",
    }


def foreign_files(config: GeneratorConfig) -> list[Path]:
    """Landing files under out_dir that this config did not write (another size or layout)."""
    from etl_poc.lakehouse.landing_zone import landing_format

    mine = {config.out_dir / p for f in landing_paths(config) for p in f.paths.values()}
    found = [p for p in config.out_dir.rglob("*") if p.is_file() and landing_format(p)]
    return sorted(p for p in found if p not in mine)
