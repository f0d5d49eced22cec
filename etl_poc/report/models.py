"""The benchmark files the report is built from, and the models it fits to them: growth
exponents (least squares on log-log) and Amdahl's law for a cluster. No rendering here."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from etl_poc.logic.spec import ENGINES

# The run kind of each engine's orchestrated runs in a benchmark file.
ENGINE_RUNS = {engine: f"dagster/{engine}" for engine in ENGINES}


@dataclass(frozen=True)
class BenchmarkFile:
    """One benchmark file of the harness (measurements/benchmark-<label>.json)."""

    source: str  # the JSON file
    measured_at: str
    size: str
    label: str
    spark_master: str
    events: int
    host: dict
    by_run_kind: dict
    derived: dict
    settings: dict = field(default_factory=dict)
    cpus: str | None = None
    cluster: dict | None = None
    failed: dict = field(default_factory=dict)  # run kinds that failed: when, at what peak, why
    graph: dict | None = None  # the per-layer comparison of the same runs

    @property
    def on_cluster(self) -> bool:
        return self.spark_master.startswith("spark://")

    @property
    def is_default(self) -> bool:
        """Local mode, every setting at its default, every core."""
        return not self.on_cluster and not self.settings and not self.cpus

    @property
    def variant(self) -> str:
        parts = [f"CPUs {self.cpus} only"] if self.cpus else []
        parts += [f"{k}={v}" for k, v in sorted(self.settings.items())]
        if self.on_cluster:
            workers = (self.cluster or {}).get("workers")
            parts.append(f"{self.spark_master}, {workers if workers else '?'} worker(s)")
        return ", ".join(parts) or "default"

    @property
    def workers(self) -> int | None:
        return (self.cluster or {}).get("workers") or None


def load_generator_runs(measurements_dir: Path) -> list[dict]:
    """Every generator benchmark JSON under `measurements_dir` (etl-poc bench generator
    --reports measurements), each with its file name as `source`."""
    found = []
    for path in sorted(measurements_dir.glob("generator-benchmark-*.json")):
        content = json.loads(path.read_text())
        if content.get("benchmark") == "generator":
            found.append({**content, "source": path.name})
    return found


def load_measurements(measurements_dir: Path) -> list[BenchmarkFile]:
    """Every pipeline benchmark JSON under `measurements_dir`, smallest data first."""
    found = []
    for path in sorted(measurements_dir.glob("benchmark-*.json")):
        content = json.loads(path.read_text())
        if content.get("benchmark") != "pipeline":
            continue
        found.append(
            BenchmarkFile(
                source=path.name,
                measured_at=content["measured_at"],
                size=content["size"],
                label=content.get("label", content["size"]),
                spark_master=content.get("spark_master", "local[*]"),
                events=_events(content),
                host=content["host"],
                by_run_kind=content["summary"]["by_run_kind"],
                derived=content["summary"]["derived"],
                settings=content.get("settings") or {},
                cpus=content.get("cpus"),
                cluster=content.get("spark_cluster"),
                failed=content["summary"].get("failed") or {},
                graph=content.get("graph"),
            )
        )
    return sorted(found, key=lambda m: (m.events, m.label))


def _events(content: dict) -> int:
    """The events of a benchmark's data: from the graph comparison's raw rows when present,
    else from the size's name."""
    graph = content.get("graph") or {}
    raw = graph.get("layers", {}).get("raw", {}).get("polars", {}).get("rows_in")
    if raw:
        return int(raw["median"])
    sizes = {"small": 100_000, "medium": 10_000_000, "large": 100_000_000}
    size = content["size"]
    return sizes.get(size) or int(size)


def fitted_exponent(points: list[tuple[float, float]]) -> float | None:
    """The slope of log(y) over log(x) by least squares: y grows like x ** slope. None with
    fewer than two distinct x."""
    usable = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len({x for x, _ in usable}) < 2:
        return None
    mean_x = sum(x for x, _ in usable) / len(usable)
    mean_y = sum(y for _, y in usable) / len(usable)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in usable)
    variance = sum((x - mean_x) ** 2 for x, _ in usable)
    return covariance / variance


def newest(defaults: list[BenchmarkFile], run: str) -> list[BenchmarkFile]:
    """Per size, the newest default measurement that has this run kind (a later, narrower
    measurement of one engine supersedes an earlier one; both stay in the results table)."""
    by_events: dict[int, BenchmarkFile] = {}
    for m in defaults:
        if m.by_run_kind.get(run) and (
            m.events not in by_events or m.measured_at > by_events[m.events].measured_at
        ):
            by_events[m.events] = m
    return [by_events[events] for events in sorted(by_events)]


def at(defaults: list[BenchmarkFile], events: int, run: str) -> BenchmarkFile | None:
    return next((m for m in newest(defaults, run) if m.events == events), None)


def value(defaults: list[BenchmarkFile], events: int, run: str, key: str) -> float | None:
    """The median of a run kind at a size, from the newest default measurement with it."""
    m = at(defaults, events, run)
    return median(m, run, key) if m else None


def median(measured: BenchmarkFile, run: str, key: str) -> float | None:
    figures = measured.by_run_kind.get(run)
    return figures[key]["median"] if figures else None


def serial_fraction(one_worker: float, two_workers: float) -> float:
    """Amdahl's serial share s from the wall times on 1 and 2 workers: T2 = T1 (s + (1-s)/2),
    clamped to [0, 1] (a second worker that slows the run down gives 1)."""
    return min(1.0, max(0.0, 2 * two_workers / one_worker - 1))


def amdahl(one_worker: float, share: float, workers: int) -> float:
    return one_worker * (share + (1 - share) / workers)


def speedup(share: float) -> str:
    return "any amount" if share <= 0 else f"{1 / share:.1f}x"


def workers_to_beat(one: float, share: float, target: float | None) -> int | None:
    """The fewest workers whose projected time is under `target`; None if none can."""
    if target is None or one * share >= target:
        return None
    if one <= target:
        return 1
    return math.ceil((1 - share) / (target / one - share))
