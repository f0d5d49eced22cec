"""The marts as analysts use them: the queries they run (etl_poc/warehouse/queries/*.sql) and
their latency, and the check that the marts built from one engine's events equal those built
from another's (both engines produce the same events, so the marts must agree to the cent)."""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from etl_poc.logic.compare import Comparison, compare_frames
from etl_poc.warehouse import project

QUERY_DIR = Path(__file__).with_name("queries")
LATENCY_TARGET_MS = 500.0  # the platform's target for a complex mart query


@cache
def queries() -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted(QUERY_DIR.glob("*.sql"))}


def read_mart(database: Path, mart: str) -> pl.DataFrame:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.sql(f"SELECT * FROM marts.{mart}").pl()


def run_query(database: Path, name: str) -> pl.DataFrame:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.sql(queries()[name]).pl()


@dataclass(frozen=True)
class Latency:
    name: str
    runs: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    rows: int

    @property
    def within_target(self) -> bool:
        return self.p95_ms < LATENCY_TARGET_MS


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1] \
        if len(ordered) > 1 else ordered[0]  # fmt: skip


def latencies(database: Path, repeat: int = 20, warmup: int = 2) -> list[Latency]:
    """Each analyst query run `repeat` times on one read-only connection (as a BI tool holds
    one) after `warmup` runs, the result fetched whole: p50, p95 and max in milliseconds."""
    out = []
    with duckdb.connect(str(database), read_only=True) as connection:
        for name, sql in queries().items():
            for _ in range(warmup):
                connection.sql(sql).fetchall()
            times, rows = [], 0
            for _ in range(repeat):
                began = time.perf_counter()
                rows = len(connection.sql(sql).fetchall())
                times.append((time.perf_counter() - began) * 1000)
            out.append(Latency(name, repeat, round(_percentile(times, 50), 2),
                               round(_percentile(times, 95), 2), round(max(times), 2), rows))  # fmt: skip
    return out


def build_for_engine(database: Path, engine: str, scratch: Path) -> project.DbtRun:
    """The marts from `engine`'s events, built whole in a copy of the warehouse (its raw
    schema holds every engine's events), tests included."""
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.unlink(missing_ok=True)
    shutil.copyfile(database, scratch)
    return project.run(scratch, ["build", "--full-refresh"], engine=engine)


def compare_marts(left: Path, right: Path) -> dict[str, Comparison]:
    """Every mart of two warehouse files, row for row."""
    return {mart: compare_frames(read_mart(left, mart), read_mart(right, mart))
            for mart in project.MARTS}  # fmt: skip
