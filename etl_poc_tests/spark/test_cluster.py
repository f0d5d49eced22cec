"""A real Spark standalone cluster on 127.0.0.1: up, a tiny run whose executor is killed
mid-run and whose result still equals local mode's, down with no process left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from etl_poc.cli import main as cli
from etl_poc.lakehouse import layer_store, spark_runner
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.compare import compare_frames
from etl_poc.spark import cluster as spark_cluster

# Ports of their own, so that a cluster a user runs on the default ports is not disturbed.
SPEC_PORTS = {"master_port": 17077, "master_ui_port": 18080}


@pytest.mark.spark
@pytest.mark.slow
def test_a_cluster_runs_the_pipeline_like_local_mode(tmp_path, spark):
    spec = spark_cluster.ClusterSpec(
        workers=1, cores_per_worker=1, memory_per_worker="2g",
        state_dir=tmp_path / "cluster", **SPEC_PORTS,
    )  # fmt: skip
    landing_args = ["generate", "--events", "3000", "--formats", "parquet", "--days", "2",
                    "--incremental-days", "0", "--no-progress"]  # fmt: skip
    on_cluster, local = tmp_path / "cluster-data", tmp_path / "local-data"
    for data in (on_cluster, local):
        cli([*landing_args, "--out", str(data / "landing")])
    processed_at = datetime(2024, 6, 1, tzinfo=UTC)
    try:
        status = spark_cluster.start(spec)
        assert [w["state"] for w in status["workers"]] == ["ALIVE"]
        assert len(spark_cluster.running_pids(spec)) == 2
        with pytest.raises(RuntimeError, match="already running"):
            spark_cluster.start(spec)
        log = tmp_path / "run.log"
        with log.open("w") as output:
            run = subprocess.Popen(
                [sys.executable, "-m", "etl_poc.bench.plain", "--engine", "spark",
                 "--data", str(on_cluster), "--start", "2024-01-01", "--last", "2024-01-02",
                 "--processed-at", processed_at.isoformat(), "--out", str(tmp_path / "out")],
                stdout=output, stderr=subprocess.STDOUT,
                env={**os.environ, "ETL_POC_SPARK_MASTER": spec.master_url,
                     "ETL_POC_SPARK_EXECUTOR_MEMORY": "1g"},
            )  # fmt: skip
            # Issue 15, faults: the executor killed mid-run (kill -9), at work on tasks. The
            # worker starts another, and Spark runs the lost tasks again.
            killed = _kill_an_executor_once_working(run, cpu_seconds=12)
            assert run.wait(timeout=600) == 0, log.read_text()[-3000:]
        assert killed is not None, "the run ended before its executor could be killed"
        # The driver saw its executor lost mid-run (and a task with it when one was running at
        # that instant: an executor busy between tasks, on a broadcast or GC, loses none), and
        # went on.
        assert re.search(r"Lost (task|executor)", log.read_text())
        # The application ran on the cluster's executor, not in a local driver.
        applications = spark_cluster.master_status(spec)["completedapps"]
        assert [a["name"] for a in applications] == ["etl-poc"]
    finally:
        spark_cluster.stop(spec)
    assert spark_cluster.daemons() == []
    assert not list(spec.state_dir.glob("*.pid"))
    # The same window on local mode (the tests' shared session): the same rows.
    runner = spark_runner.Runner(Paths(local), date(2024, 1, 1), processed_at, spark)
    for layer in ("raw", "cleansed", "enriched", "sessionized"):
        getattr(runner, layer)(date(2024, 1, 1), date(2024, 1, 3))
    for layer in ("cleansed", "sessionized"):
        window = (date(2024, 1, 1), date(2024, 1, 3))
        a = layer_store.read_layer(Paths(on_cluster).layers, "spark", layer, *window)
        b = layer_store.read_layer(Paths(local).layers, "spark", layer, *window)
        assert a.height > 2000
        assert compare_frames(a, b).equal, layer
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["rows"] == a.height  # every sessionized row reached the Iceberg table


def _kill_an_executor_once_working(run: subprocess.Popen, cpu_seconds: float) -> int | None:
    """SIGKILL the first Spark executor that has spent `cpu_seconds` of CPU (past its JVM's
    start-up) and is busy right now (over half a core in the last 0.2 s: at work on a task,
    not idle between stages); its pid (None if the run ended first)."""
    import time

    import psutil

    before: dict[int, float] = {}
    while run.poll() is None:
        for process in psutil.process_iter(["pid", "cmdline"]):
            if "CoarseGrainedExecutorBackend" not in " ".join(process.info["cmdline"] or []):
                continue
            try:
                spent = sum(process.cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
            busy = spent - before.get(process.info["pid"], spent) > 0.1
            before[process.info["pid"]] = spent
            if spent > cpu_seconds and busy:
                process.kill()
                return process.info["pid"]
        time.sleep(0.2)
    return None


def test_stopping_without_a_cluster_stops_nothing(tmp_path: Path):
    spec = spark_cluster.ClusterSpec(state_dir=tmp_path / "none", **SPEC_PORTS)
    assert spark_cluster.stop(spec) == 0
    assert spark_cluster.master_status(spec) is None
