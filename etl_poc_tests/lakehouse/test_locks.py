"""Runs of the same engine's days do not interleave (issue 15, defect 7): the second waits,
then fails naming the day and the holder before touching anything; other engines and other
days go on; a killed holder leaves nothing locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from etl_poc.lakehouse.locks import WindowBusyError, window_lock
from etl_poc.lakehouse.paths import Paths

HOLD = """
import sys, time
from datetime import date
from pathlib import Path
from etl_poc.lakehouse.locks import window_lock
from etl_poc.lakehouse.paths import Paths
with window_lock(Paths(Path(sys.argv[1])), "polars", date(2024, 1, 1), date(2024, 1, 3),
                 "run-a", 5):
    Path(sys.argv[2]).write_text("held")
    time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """Another process holding polars 2024-01-01 and 2024-01-02, as run-a."""
    ready = tmp_path / "ready"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready.exists(), "the holder did not start"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_held_day_makes_a_second_run_fail_and_other_days_go_on(held, tmp_path):
    paths = Paths(tmp_path)
    began = time.monotonic()
    with (
        pytest.raises(WindowBusyError, match=r"polars 2024-01-02: held by run run-a \(since "),
        window_lock(paths, "polars", date(2024, 1, 2), date(2024, 1, 4), "run-b", 0.5),
    ):
        pytest.fail("the lock was taken twice")
    assert time.monotonic() - began >= 0.5  # it waited before giving up
    with window_lock(paths, "spark", date(2024, 1, 1), date(2024, 1, 3), "run-c", 0.5):
        pass  # another engine's days
    with window_lock(paths, "polars", date(2024, 1, 3), date(2024, 1, 5), "run-d", 0.5):
        pass  # other days of the same engine
    # A holder killed outright leaves nothing locked.
    os.kill(held.pid, signal.SIGKILL)
    held.wait()
    with window_lock(paths, "polars", date(2024, 1, 1), date(2024, 1, 3), "run-e", 5):
        pass


def test_a_run_of_held_days_fails_before_touching_anything(held, tmp_path):
    from etl_poc.cli import main as cli
    from etl_poc.definitions import defs
    from etl_poc.defs.resources import DataDirectory, PolarsResource, resources_for
    from etl_poc.defs.tags import range_tags

    cli(["generate", "--events", "500", "--formats", "parquet", "--days", "2",
         "--incremental-days", "0", "--out", str(tmp_path / "landing"), "--no-progress"])  # fmt: skip
    resources = {
        **resources_for(DataDirectory(path=str(tmp_path))),
        "polars": PolarsResource(lock_timeout_seconds=0.5),
    }
    result = defs.resolve_job_def("polars_etl").execute_in_process(
        tags=range_tags("2024-01-01", "2024-01-02"), resources=resources,
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert "polars 2024-01-01: held by run run-a" in failures[0].step_failure_data.error.to_string()
    assert not (Path(tmp_path) / "layers" / "polars").exists()  # nothing was written


def test_with_a_postgresql_catalog_hosts_sharing_it_do_not_interleave(postgres_database, tmp_path):
    """Two data directories (two hosts) on one PostgreSQL catalog: a run of the same
    engine's day on the other waits, then fails naming the catalog (password masked); other
    engines and days go on; the lock goes with the holder's session (issue 15, defect 7)."""
    url = postgres_database("locks").url
    here, there = Paths(tmp_path / "host-a"), Paths(tmp_path / "host-b")
    with window_lock(here, "polars", date(2024, 1, 1), date(2024, 1, 3), "run-a", 0.5, url):
        with (
            pytest.raises(
                WindowBusyError,
                match=r"polars 2024-01-02: held by another run that shares the catalog postgresql",
            ),
            window_lock(there, "polars", date(2024, 1, 2), date(2024, 1, 4), "run-b", 0.5, url),
        ):
            pass
        with window_lock(there, "spark", date(2024, 1, 1), date(2024, 1, 3), "run-c", 0.5, url):
            pass
        with window_lock(there, "polars", date(2024, 1, 3), date(2024, 1, 4), "run-d", 0.5, url):
            pass
    with window_lock(there, "polars", date(2024, 1, 2), date(2024, 1, 4), "run-e", 0.5, url):
        pass
