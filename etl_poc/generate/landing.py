"""Generate a landing zone: bulk history plus one incremental file per day, and its manifest.

Periods are planned in time order. Each period's rows are sorted by arrival; rows arriving
after the period ends (late events, visits running past midnight) are carried into the next
period, so every file holds what *arrived* in its window, in arrival order, and the files
together hold every row exactly once. Rendering and writing happen in chunks of at most
`chunk_events` rows, and writing runs on a second thread while the next chunk is built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from etl_poc.generate.config import EVENT_TYPE_MIX, TIER_ACTIVITY, USER_TIER_MIX, GeneratorConfig
from etl_poc.generate.events import (
    HOUR_MS,
    HOUR_WEIGHTS,
    RETURN_GAP_KINDS,
    WEEKDAY_WEIGHTS,
    Defect,
    Rows,
    allocate,
    plan_period,
)
from etl_poc.generate.population import build_pages, build_population
from etl_poc.generate.render import RENDERED_SCHEMA, render
from etl_poc.logic.spec import LANDING_COLUMNS, USER_TIERS
from etl_poc.reference.ip_ranges import load_packaged_ranges

MANIFEST_VERSION = 1
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


@dataclass(frozen=True)
class Period:
    day_index: int
    start_ms: int
    hours: range
    budget: int


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
    """Open writers for one landing file, in every format; files appear only when complete."""

    def __init__(self, out_dir: Path, landing: LandingFile):
        self.targets = {fmt: out_dir / rel for fmt, rel in landing.paths.items()}
        self.temps = {fmt: path.with_name(f".{path.name}.partial") for fmt, path in self.targets.items()}
        for path in self.temps.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        self.csv = self.temps["csv"].open("wb") if "csv" in self.temps else None
        self.parquet = (
            pq.ParquetWriter(
                self.temps["parquet"], RENDERED_SCHEMA, compression="zstd", store_schema=False
            )
            if "parquet" in self.temps
            else None
        )
        self.wrote_header = False

    def write(self, table: pa.Table) -> None:
        if self.csv is not None:
            pl.from_arrow(table).write_csv(self.csv, include_header=not self.wrote_header)
            self.wrote_header = True
        if self.parquet is not None:
            self.parquet.write_table(table)

    def close(self) -> None:
        if self.csv is not None:
            if not self.wrote_header:
                pl.DataFrame(schema=dict.fromkeys(LANDING_COLUMNS, pl.String)).write_csv(self.csv)
            self.csv.close()
        if self.parquet is not None:
            self.parquet.close()
        for fmt, temp in self.temps.items():
            temp.replace(self.targets[fmt])


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


def generate(config: GeneratorConfig) -> GenerationResult:
    """Write the landing files and the manifest for `config`; the same config, the same bytes."""
    started = time.perf_counter()
    seeds = np.random.SeedSequence(config.seed)
    ranges = load_packaged_ranges()
    population = build_population(config.n_users, ranges, np.random.default_rng(seeds.spawn(1)[0]))
    pages = build_pages(config.seed)
    files = landing_paths(config)
    day_file = [0] * config.days + list(range(1, config.incremental_days + 1))

    totals = {
        "visits": 0,
        "bounce_visits": 0,
        "visits_crossing_midnight": 0,
        "ipv6_events": 0,
        "return_gaps": np.zeros(len(RETURN_GAP_KINDS), dtype=np.int64),
        "events_by_tier": np.zeros(len(USER_TIERS), dtype=np.int64),
    }
    periods = list(_periods(config))
    carry: Rows | None = None
    open_file = -1
    writers: _FormatWriters | None = None
    pending: Future | None = None
    bar = tqdm(
        total=config.events, unit="ev", unit_scale=True, disable=not config.show_progress,
        desc=f"generate {config.label}",
    )  # fmt: skip

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-writer") as io_thread:
        for index, period in enumerate(periods):
            rng = np.random.default_rng(
                np.random.SeedSequence(config.seed, spawn_key=(1, period.day_index, period.hours.start))
            )
            rows, stats = plan_period(
                period.start_ms, period.hours, period.budget, population, pages, config.defects, rng
            )
            for key in ("visits", "bounce_visits", "visits_crossing_midnight", "ipv6_events"):
                totals[key] += getattr(stats, key)
            totals["return_gaps"] += stats.return_gaps
            totals["events_by_tier"] += stats.events_by_tier

            if carry is not None and len(carry):
                rows = Rows.concat([carry, rows])
            rows = rows.take(np.argsort(rows.arrival_ms, kind="stable"))
            last = index == len(periods) - 1
            if not last:
                nxt = periods[index + 1]
                boundary = nxt.start_ms + nxt.hours.start * HOUR_MS
                keep = int(np.searchsorted(rows.arrival_ms, boundary, side="left"))
                rows, carry = rows.take(np.arange(keep)), rows.take(np.arange(keep, len(rows)))

            target = day_file[period.day_index]
            while open_file < target:  # every file is created, even one that receives no rows
                if pending is not None:
                    pending.result()
                if writers is not None:
                    writers.close()
                open_file += 1
                writers = _FormatWriters(config.out_dir, files[open_file])
            landing = files[target]
            landing.rows += len(rows)
            landing.defects += np.bincount(rows.defect, minlength=len(Defect))

            for start in range(0, len(rows), config.chunk_events):
                chunk = rows.take(np.arange(start, min(start + config.chunk_events, len(rows))))
                frame = render(chunk, population, pages)
                if pending is not None:
                    pending.result()  # surfaces a write error, and bounds memory to two chunks
                pending = io_thread.submit(writers.write, frame)
                bar.update(len(chunk))
        if pending is not None:
            pending.result()
        if writers is not None:
            writers.close()
    bar.close()

    manifest = _manifest(config, files, totals, population, ranges.info.as_dict())
    path = manifest_path(config)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return GenerationResult(manifest, path, time.perf_counter() - started)


def _defect_counts(counts: np.ndarray) -> dict[str, int]:
    return {d.key: int(counts[d]) for d in Defect if d != Defect.CLEAN}


def _manifest(config, files, totals, population, geo_info) -> dict:
    defects = sum((f.defects for f in files), np.zeros(len(Defect), dtype=np.int64))
    must_reject = sum(
        int(defects[d])
        for d in (
            Defect.NULL_EVENT_ID,
            Defect.EMPTY_EVENT_ID,
            Defect.NULL_USER_ID,
            Defect.EMPTY_USER_ID,
            Defect.UNPARSEABLE_TIMESTAMP,
        )
    )
    users_by_tier = np.bincount(population.tier, minlength=len(USER_TIERS))
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
        "users": population.size,
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
            "users_by_tier": dict(zip(USER_TIERS, users_by_tier.tolist(), strict=True)),
            "events_by_tier": dict(zip(USER_TIERS, totals["events_by_tier"].tolist(), strict=True)),
        },
        "mix": {
            "event_type": EVENT_TYPE_MIX,
            "user_tier": USER_TIER_MIX,
            "tier_activity": TIER_ACTIVITY,
        },
        "ip_dataset": geo_info,
        # No wall-clock time here: the same config gives a byte-identical manifest too.
        "generated_by": "etl-poc generate",
    }


def foreign_files(config: GeneratorConfig) -> list[Path]:
    """Landing files under out_dir that this config did not write (another size or layout)."""
    mine = {config.out_dir / p for f in landing_paths(config) for p in f.paths.values()}
    found = [
        p for p in config.out_dir.rglob("*") if p.suffix in (".csv", ".parquet") and p.is_file()
    ]
    return sorted(p for p in found if p not in mine)
