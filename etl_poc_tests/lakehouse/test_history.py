"""History independence (issue 15): after any sequence of landing changes (files added,
replaced, removed) and runs of any windows, some killed at any write and run again, the
Iceberg tables hold exactly what one fresh run over the current landing zone gives.

Which days a run must cover afterwards is what the graph declares: a day's layers depend on
the landing files holding its rows and, through the sessions continuing from the day
before, on the day before. So once a day is touched (a landing change with rows on it, a
run of it killed, or a run of a later day without it), it and every day after it are run
again, in day order, in any windows: the days before it are not, and must already be right.
Hypothesis draws random histories on Polars (random piece sizes too); a fixed history runs
on Spark and on DuckDB.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog.sql import SqlCatalog

from etl_poc.lakehouse import iceberg, layer_store, polars_runner
from etl_poc.lakehouse.paths import Paths
from etl_poc.lakehouse.runner import runner_module
from etl_poc.logic.spec import TEXT_COLUMNS

START = date(2024, 1, 1)
PROCESSED_AT = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 4
LAST = START + timedelta(days=DAYS)  # the end of the landing zone's days
SLOTS = ("a.csv", "b.csv", "sub/c.parquet")  # where files land; a.csv is never removed
LAYER_STEPS = ("raw", "cleansed", "enriched", "sessionized")
_MINUTES = (0, 10, 40, 70, 23 * 60 + 40, 23 * 60 + 59)  # some sessions run past midnight


def landing_rows(seed: int, rows: int = 10) -> list[dict]:
    """A small dirty file's rows: event ids from a pool shared by every file (so copies land
    on other days and in other files), users near midnight, a missing user, bad times."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        when = datetime(2024, 1, 1) + timedelta(
            days=rng.randrange(DAYS), minutes=rng.choice(_MINUTES)
        )
        out.append({
            "event_id": f"e{rng.randrange(25)}",
            "user_id": rng.choice(["u1", "u2", "u3", "u3", ""]),
            "timestamp": "not a time" if rng.random() < 0.1 else when.isoformat(),
            "page_url": f"/p{seed}-{i}",
            "device": rng.choice(["mobile", "Desktop ", "toaster"]),
            "ip_address": rng.choice(["8.8.8.8", "10.0.0.1", ""]),
            "event_type": rng.choice(["PAGE_VIEW", "purchase"]),
            "user_tier": "gold",
        })  # fmt: skip
    return out


def write_landing(landing: Path, slot: str, seed: int) -> None:
    path = landing / slot
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(landing_rows(seed), schema=dict.fromkeys(TEXT_COLUMNS, pl.String))
    partial = path.with_name(path.name + ".tmp")  # dropped into place whole, as a source does
    if slot.endswith(".parquet"):
        frame.write_parquet(partial)
    else:
        frame.write_csv(partial)
    partial.replace(path)


class RunKilledError(Exception):
    """The run stopped here, as if killed: nothing after this write happened."""


@dataclass
class Lakehouse:
    """A data directory, its runs, and the first day a run has yet to redo (None: none)."""

    data: Path
    engine: str = "polars"
    runtime: object = None
    dirty_from: date | None = START  # nothing built yet
    runs: int = field(default=0)
    killed: list = field(default_factory=list)  # the windows of the runs killed

    @property
    def paths(self) -> Paths:
        return Paths(self.data)

    def touch(self, day: date) -> None:
        self.dirty_from = day if self.dirty_from is None else min(self.dirty_from, day)

    def land(self, slot: str, seed: int | None) -> None:
        """Put (or with seed None remove) a landing file; the first day of its rows, old and
        new, is touched (the days after it follow)."""
        path = self.paths.landing / slot
        for rows in (_file_rows(path), landing_rows(seed) if seed is not None else []):
            if rows:
                self.touch(_first_day(rows))
        if seed is None:
            path.unlink(missing_ok=True)
        else:
            write_landing(self.paths.landing, slot, seed)

    def run(self, start: date, end: date, kill_at: int | None = None, chunk_rows=None) -> None:
        """Every layer of the window, then its Iceberg commits; killed before the
        `kill_at`-th write (layer parts, cleared windows, table commits) when given."""
        self.runs += 1
        if self.engine == "polars":
            runtime = polars_runner.PolarsRuntime(chunk_rows=chunk_rows)
        else:
            runtime = self.runtime
        runner = runner_module(self.engine).Runner(self.paths, START, PROCESSED_AT, runtime)
        catalog = iceberg.open_catalog(self.paths.warehouse)
        try:
            with _killed_at(kill_at):
                for layer in LAYER_STEPS:
                    getattr(runner, layer)(start, end)
                runner.events(start, end, f"run-{self.runs}", catalog)
        except RunKilledError:
            self.killed.append((start, end))
            self.touch(start)
            return
        # Days before the first touched one come out as they were; the first touched one and
        # those after it in the window are right now, and the next day continues the last.
        if self.dirty_from is not None and start <= self.dirty_from < end:
            self.dirty_from = end if end < LAST else None

    def play(self, history: list[tuple], chunk_rows=None) -> None:
        """Steps ("land", slot, seed), ("remove", slot), ("run", (start, end), kill_at)."""
        for step in history:
            if step[0] == "land":
                self.land(step[1], step[2])
            elif step[0] == "remove":
                self.land(step[1], None)
            else:
                self.run(*step[1], kill_at=step[2], chunk_rows=chunk_rows)

    def catch_up(self, rng: random.Random, chunk_rows=None) -> None:
        """Run the touched days and every day after, in day order, in random windows."""
        day = self.dirty_from
        while day is not None and day < LAST:
            end = min(day + timedelta(days=rng.randint(1, DAYS)), LAST)
            self.run(day, end, chunk_rows=chunk_rows)
            day = end
        assert self.dirty_from is None

    def tables(self) -> dict[str, pl.DataFrame]:
        catalog = iceberg.open_catalog(self.paths.warehouse)
        out = {}
        for layout in (iceberg.EVENTS, iceberg.REJECTS):
            rows = iceberg.read_window(catalog, self.engine, layout)
            out[layout.name] = (
                pl.DataFrame() if rows is None or rows.is_empty() else rows.sort(pl.all())
            )
        return out


def _file_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    if path.suffix == ".parquet":
        return pl.read_parquet(path).to_dicts()
    return pl.read_csv(path, infer_schema=False).to_dicts()


def _first_day(rows: list[dict]) -> date:
    """The first day a file's rows belong to: its first usable time's (a row without one
    goes to that day too), or the start date when no time is usable."""
    days = []
    for row in rows:
        try:
            days.append(datetime.fromisoformat(row["timestamp"]).date())
        except (TypeError, ValueError):
            continue
    return min(days, default=START)


# Where a run is killed: before a layer write (a part, a cleared window, a Spark write),
# before a table's window replacement, and inside one, once its data files are written and
# before the catalog points at the new metadata (SqlCatalog.commit_table).
WRITES = (
    (layer_store, "polars_add_part"),
    (layer_store, "spark_write"),
    (layer_store, "duckdb_write"),
    (layer_store, "clear_window"),
    (iceberg, "replace_window"),
    (iceberg, "replace_window_with_files"),
    (SqlCatalog, "commit_table"),
)


def _killed_at(kill_at: int | None):
    """A context in which the kill_at-th write (counting from 1) raises RunKilledError before it."""
    stack = ExitStack()
    if kill_at is None:
        return stack
    count = [0]
    for module, name in WRITES:
        original = getattr(module, name)

        def wrapped(*args, _original=original, **kwargs):
            count[0] += 1
            if count[0] >= kill_at:
                raise RunKilledError
            return _original(*args, **kwargs)

        stack.enter_context(mock.patch.object(module, name, wrapped))
    return stack


def fresh_build(landing: Path, scratch: Path, engine: str = "polars", runtime=None):
    """One run over every day of the current landing zone, in a new data directory."""
    fresh = Lakehouse(scratch / "fresh", engine, runtime)
    shutil.copytree(landing, fresh.paths.landing)
    fresh.run(START, LAST)
    assert fresh.dirty_from is None
    return fresh.tables()


def assert_same_tables(found: dict, expected: dict) -> None:
    for name, rows in expected.items():
        assert found[name].height == rows.height, name
        assert found[name].equals(rows), name


_day = st.integers(0, DAYS - 1).map(lambda n: START + timedelta(days=n))
_window = st.tuples(_day, st.integers(1, DAYS)).map(
    lambda w: (w[0], min(w[0] + timedelta(days=w[1]), LAST))
)
_step = st.one_of(
    st.tuples(st.just("land"), st.sampled_from(SLOTS), st.integers(0, 40)),
    st.tuples(st.just("remove"), st.sampled_from(SLOTS[1:])),
    st.tuples(st.just("run"), _window, st.none() | st.integers(1, 16)),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    first=st.integers(0, 40),
    history=st.lists(_step, min_size=1, max_size=9),
    chunk_rows=st.sampled_from([None, 0, 4, 9]),
    seed=st.integers(0, 1000),
)
def test_any_history_on_polars_ends_equal_to_a_fresh_build(first, history, chunk_rows, seed):
    with tempfile.TemporaryDirectory() as scratch:
        house = Lakehouse(Path(scratch) / "data")
        house.land(SLOTS[0], first)
        house.play(history, chunk_rows)
        house.catch_up(random.Random(seed), chunk_rows)
        assert_same_tables(house.tables(), fresh_build(house.paths.landing, Path(scratch)))


# A fixed history for the other engines: a replay across days processed later day first, a
# run killed between its two commits (the 8th write of a Spark or DuckDB run: raw, rejects, cleansed,
# enriched, sessionized, the events' window and its catalog commit, the rejects' window), a
# file added, one replaced, a run killed inside cleansing (after its rejects, before its
# clean rows), one killed inside its first commit, and a file removed.
FIXED_HISTORY = [
    ("land", "b.csv", 7), ("run", (date(2024, 1, 3), LAST), None),
    ("run", (START, date(2024, 1, 3)), 8), ("land", "sub/c.parquet", 3), ("land", "b.csv", 11),
    ("run", (date(2024, 1, 2), date(2024, 1, 4)), 3), ("run", (START, LAST), 7),
    ("remove", "b.csv"),
]  # fmt: skip


@pytest.mark.parametrize("engine", [pytest.param("spark", marks=pytest.mark.spark), "duckdb"])
def test_a_fixed_history_on_another_engine_ends_equal_to_a_fresh_build(engine, request, tmp_path):
    runtime = request.getfixturevalue("spark") if engine == "spark" else None
    house = Lakehouse(tmp_path / "data", engine, runtime)
    house.land(SLOTS[0], 1)
    house.play(FIXED_HISTORY)
    assert house.killed == [
        (START, date(2024, 1, 3)), (date(2024, 1, 2), date(2024, 1, 4)), (START, LAST)
    ]  # fmt: skip
    house.catch_up(random.Random(0))
    expected = fresh_build(house.paths.landing, tmp_path, engine, runtime)
    assert_same_tables(house.tables(), expected)
    # And the same rows as Polars builds fresh (the engines agree on histories too).
    polars_fresh = fresh_build(house.paths.landing, tmp_path / "polars")
    for name, rows in polars_fresh.items():
        assert house.tables()[name].select(rows.columns).sort(pl.all()).equals(rows), name
