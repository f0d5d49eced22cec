"""The cost model: what a run costs on a given machine or cluster, from measured wall times.

Cost per run = (wall time + start-up) x nodes x hourly price, billed per second with a minimum
(cloud providers bill Linux instances per second after the first minute). Prices come from the
table in report/data/prices.csv, each row naming its source and date.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

BILLING_MINIMUM_SECONDS = 60.0


@dataclass(frozen=True)
class Instance:
    name: str
    vcpu: int
    memory_gib: float
    usd_per_hour: float
    family: str
    source: str
    as_of: str


def load_prices(path=None) -> dict[str, Instance]:
    """The price table, by instance name (default: the one shipped with the package)."""
    if path is None:
        text = resources.files("etl_poc.report").joinpath("data/prices.csv").read_text()
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    rows = csv.DictReader(text.splitlines())
    table = {}
    for row in rows:
        table[row["instance"]] = Instance(
            row["instance"], int(row["vcpu"]), float(row["memory_gib"]),
            float(row["usd_per_hour"]), row["family"], row["source"], row["as_of"],
        )  # fmt: skip
    return table


@dataclass(frozen=True)
class Deployment:
    """Nodes of one instance type running a job: one large node, or a cluster."""

    instance: Instance
    nodes: int = 1

    @property
    def label(self) -> str:
        return self.instance.name if self.nodes == 1 else f"{self.nodes} x {self.instance.name}"

    @property
    def vcpu(self) -> int:
        return self.instance.vcpu * self.nodes

    @property
    def memory_gib(self) -> float:
        return self.instance.memory_gib * self.nodes


def run_cost(deployment: Deployment, wall_seconds: float, startup_seconds: float = 0.0) -> float:
    """US dollars for one run: every node is paid from start-up to the end of the run."""
    if wall_seconds < 0 or startup_seconds < 0:
        raise ValueError("times cannot be negative")
    billed = max(wall_seconds + startup_seconds, BILLING_MINIMUM_SECONDS)
    return billed * deployment.nodes * deployment.instance.usd_per_hour / 3600.0


def cost_per_million_events(cost: float, events: int) -> float:
    if events <= 0:
        raise ValueError("events must be positive")
    return cost * 1_000_000 / events


def crossover(sizes: list[float], first: list[float], second: list[float]) -> float | None:
    """The smallest size at which `second` becomes at most `first` (two curves sampled at the
    same increasing sizes, e.g. cost or time), interpolated linearly between samples; None when
    it never does within the samples. If `second` is already lower at the first size, that size."""
    if not (len(sizes) == len(first) == len(second)) or not sizes:
        raise ValueError("the curves need the same, non-empty sizes")
    gaps = [b - a for a, b in zip(first, second, strict=True)]
    if gaps[0] <= 0:
        return sizes[0]
    for i in range(1, len(sizes)):
        if gaps[i] <= 0:
            share = gaps[i - 1] / (gaps[i - 1] - gaps[i])
            return sizes[i - 1] + share * (sizes[i] - sizes[i - 1])
    return None


MEMORY_HEADROOM = 1.25  # a node needs this much more memory than the measured peak


def smallest_node(peak_bytes: float, prices: dict) -> Deployment | None:
    """The cheapest single node whose memory holds the peak with headroom."""
    needed = peak_bytes * MEMORY_HEADROOM / 2**30
    fitting = [i for i in prices.values() if i.memory_gib >= needed]
    if not fitting:
        return None
    return Deployment(min(fitting, key=lambda i: i.usd_per_hour))
