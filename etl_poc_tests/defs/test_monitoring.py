"""A run killed with SIGKILL is marked failed by the sensor, not left STARTED (issue 15,
defect 6), a run still going is left alone; and the killed run's window, run again, holds
what a fresh build holds (issue 15, faults: kill -9 wherever the run happened to be)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import dagster as dg
import polars as pl

from etl_poc.defs.monitoring import killed_runs_fail
from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.paths import Paths


def _started_run(instance: dg.DagsterInstance, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if runs:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("no run started")


def test_a_run_killed_outright_is_marked_failed_and_a_live_one_is_not(tmp_path):
    from etl_poc.cli import main as cli

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    cli(["generate", "--events", "600000", "--formats", "csv", "--days", "3",
         "--incremental-days", "0", "--out", str(tmp_path / "data" / "landing"),
         "--no-progress"])  # fmt: skip
    env = {**os.environ, "DAGSTER_HOME": str(home), "ETL_POC_DATA_DIR": str(tmp_path / "data")}
    tags = '{"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-03"}'
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "etl_poc.definitions",
               "-j", "polars_etl", "--tags", tags]  # fmt: skip
    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        run = _started_run(instance)
        context = dg.build_sensor_context(instance=instance)
        assert "all alive" in killed_runs_fail(context).skip_message  # it is still going
        time.sleep(random.uniform(0, 3))  # somewhere in the run (it takes about 10 s)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        result = killed_runs_fail(dg.build_sensor_context(instance=instance))
        assert run.run_id in result.skip_message
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    finally:
        if worker.poll() is None:
            worker.kill()
    # Run again: the window is whole, as one fresh run over the same landing zone leaves it.
    subprocess.run(command, env=env, check=True, capture_output=True)
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "data" / "landing", fresh / "landing")
    env_fresh = {**env, "ETL_POC_DATA_DIR": str(fresh), "DAGSTER_HOME": str(home)}
    subprocess.run(command, env=env_fresh, check=True, capture_output=True)
    for layout in (iceberg.EVENTS, iceberg.REJECTS):
        tables = [
            iceberg.read_window(iceberg.open_catalog(Paths(d).warehouse), "polars", layout)
            for d in (tmp_path / "data", fresh)
        ]
        assert tables[0].sort(pl.all()).equals(tables[1].sort(pl.all())), layout.name
