"""What the containers run, run for real on this host without Docker: the services started
with docker/compose.yaml's own commands and environment (the code location, the webserver, the
daemon), the image's Dagster instance (docker/dagster.yaml: storage on PostgreSQL), the Iceberg
catalog on PostgreSQL, and a Spark standalone cluster of two workers. Host names become
127.0.0.1 and ports free ones; everything else is the files' own.

Then `make docker-demo`'s script (docker/demo.sh) runs compare_engines, and a run launched
through the webserver the way the UI does is queued, dequeued by the daemon and executed by
the code location."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from etl_poc.dagster_service import free_port
from etl_poc.lakehouse import iceberg
from etl_poc.logic.compare import compare_frames
from etl_poc.spark import cluster as spark_cluster
from etl_poc_tests.deploy.test_compose import DOCKER, _dockerfile_env, _interpolate, _services

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BIN = Path(sys.executable).parent  # the image puts its environment's bin first on PATH, too
CLUSTER_PORTS = {"master_port": 27077, "master_ui_port": 28080}  # of this test's own


def _on_this_host(command: list, ports: dict[str, int], workspace: Path) -> list[str]:
    """A compose command with 127.0.0.1 for every interface, free ports for the fixed ones and
    this test's workspace file for the image's."""
    words = [str(w) for w in command]
    for i, word in enumerate(words[:-1]):
        following = words[i + 1]
        if word in ("--host", "-h") and following == "0.0.0.0":
            words[i + 1] = "127.0.0.1"
        elif word in ("--port", "-p") and following in ports:
            words[i + 1] = str(ports[following])
        elif word in ("--workspace", "-w"):
            words[i + 1] = str(workspace)
    return words


def _wait_for(check: list[str], env: dict, what: str, logs: Path, seconds: float = 180) -> None:
    deadline, result = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        result = subprocess.run(check, env=env, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        time.sleep(2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))
    pytest.fail(f"{what} not healthy after {seconds} s: {result.stdout}{result.stderr}\n{tails}")


def test_the_containers_configuration_runs_the_pipeline(tmp_path, postgres_database, monkeypatch):
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    services = _services()
    dagster_db, iceberg_db = postgres_database("dagster"), postgres_database("iceberg")
    # One server for Dagster's storage and the catalog, in compose.yaml as in this test.
    code_env = services["code"]["environment"]
    pg_server = f"@{code_env['DAGSTER_PG_HOST']}:{code_env['DAGSTER_PG_PORT']}/"
    assert pg_server in code_env["ETL_POC_CATALOG_URI"]
    server = f"{dagster_db.host}:{dagster_db.port}"
    # The image's settings, moved under tmp_path, and DAGSTER_HOME with the image's instance.
    image_env = {k: v.replace("/data", str(tmp_path / "data")) for k, v in _dockerfile_env().items()
                 if k.startswith(("DAGSTER_", "ETL_POC_"))}  # fmt: skip
    image_env["DAGSTER_HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    shutil.copy(DOCKER / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    # The code location's environment from compose.yaml, as docker/.env's values fill it in.
    values = {"POSTGRES_USER": dagster_db.user, "POSTGRES_PASSWORD": dagster_db.password,
              "DAGSTER_DB": dagster_db.name, "ICEBERG_DB": iceberg_db.name,
              "SPARK_EXECUTOR_MEMORY": "1g", "SPARK_DRIVER_MEMORY": "2g"}  # fmt: skip
    if not values["POSTGRES_PASSWORD"]:  # compose's ${...:?} refuses an empty one; a server
        values["POSTGRES_PASSWORD"] = "ignored-by-trust-auth"  # with trust auth ignores it
    master = spark_cluster.ClusterSpec(
        workers=2, cores_per_worker=1, memory_per_worker="1g",
        state_dir=tmp_path / "cluster", **CLUSTER_PORTS,
    )  # fmt: skip
    compose_env = {
        k: _interpolate(v, values)
        .replace("@postgres:5432", f"@{server}")
        .replace("spark://spark-master:7077", master.master_url)
        for k, v in services["code"]["environment"].items()
    }
    compose_env |= {"DAGSTER_PG_HOST": dagster_db.host, "DAGSTER_PG_PORT": str(dagster_db.port),
                    "ETL_POC_SPARK_DRIVER_HOST": "127.0.0.1"}  # fmt: skip
    assert compose_env["ETL_POC_SPARK_MASTER"] == master.master_url
    env = {**os.environ, **image_env, **compose_env,
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DEMO_GENERATE_ARGS": "--events 3000 --days 2 --incremental-days 0"}  # fmt: skip

    ports = {"4000": free_port(), "3000": free_port()}
    workspace = tmp_path / "workspace.yaml"
    load_from = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    grpc = load_from["load_from"][0]["grpc_server"]
    grpc |= {"host": "127.0.0.1", "port": ports[str(grpc["port"])]}
    workspace.write_text(yaml.safe_dump(load_from))
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []
    try:
        spark_cluster.start(master)
        for name in ("code", "webserver", "daemon"):
            command = _on_this_host(services[name]["command"], ports, workspace)
            service_env = {**env, **{k: v for k, v in services[name]["environment"].items()
                                     if k == "ETL_POC_HEALTH_URL"}}  # fmt: skip
            with (logs / f"{name}.log").open("w") as log:
                processes.append(subprocess.Popen(
                    command, env=service_env, cwd=tmp_path, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))  # fmt: skip
            if name == "code":  # the others wait for it to be healthy, as compose makes them
                check = _on_this_host(services["code"]["healthcheck"]["test"][1:], ports, workspace)
                _wait_for(check, env, "the code location", logs)
        webserver = f"http://127.0.0.1:{ports['3000']}/server_info"
        _wait_for([str(BIN / "etl-poc"), "health", webserver], env, "the webserver", logs)
        _wait_for(services["daemon"]["healthcheck"]["test"][1:], env, "the daemon", logs)

        # make docker-demo: generate, compare_engines (Spark on the cluster), the summary.
        demo = subprocess.run(["bash", str(DOCKER / "demo.sh")], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-5000:]
        assert "polars vs spark events: identical" in demo.stdout
        assert "failed" not in demo.stdout.split("== summary")[1]

        # A run launched as the UI launches one: queued, dequeued by the daemon, executed
        # by the code location (DefaultRunLauncher) against the PostgreSQL catalog.
        client = DagsterGraphQLClient("127.0.0.1", port_number=ports["3000"])
        run_id = client.submit_job_execution("lakehouse_analytics", "etl_poc")
        deadline = time.monotonic() + 600
        while (status := client.get_run_status(run_id)) not in (
            dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED,
        ) and time.monotonic() < deadline:  # fmt: skip
            time.sleep(3)
        assert status == dg.DagsterRunStatus.SUCCESS, (logs / "daemon.log").read_text()[-3000:]
        applications = spark_cluster.master_status(master)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        spark_cluster.stop(master)
    assert spark_cluster.daemons() == []

    # Dagster's runs, events, schedules and daemon heartbeats are in PostgreSQL.
    for key in (k for k in env if k.startswith("DAGSTER_")):
        monkeypatch.setenv(key, env[key])
    instance = dg.DagsterInstance.from_config(str(tmp_path / "home"))
    storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    assert [type(s).__name__ for s in storages] == [
        "PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage",
    ]  # fmt: skip
    runs = {r.job_name: r for r in instance.get_runs()}
    assert set(runs) == {"compare_engines", "lakehouse_analytics"}
    assert {r.status for r in runs.values()} == {dg.DagsterRunStatus.SUCCESS}
    checks = instance.get_records_for_run(
        runs["compare_engines"].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    outcomes = [r.event_log_entry.dagster_event.event_specific_data.passed for r in checks]
    assert len(outcomes) >= 10
    assert all(outcomes)
    assert instance.get_daemon_heartbeats()  # the daemon wrote to the same storage
    instance.dispose()

    # Both engines' tables are in the PostgreSQL catalog, with the same rows.
    catalog = iceberg.open_catalog(tmp_path / "data" / "warehouse", iceberg_db.url)
    tables = sorted(catalog.list_tables("polars") + catalog.list_tables("spark"))
    assert len(tables) == 4
    polars_rows, spark_rows = (
        pl.from_arrow(catalog.load_table(f"{e}.clickstream_events").scan().to_arrow())
        for e in ("polars", "spark")
    )
    assert polars_rows.height > 2000
    assert compare_frames(polars_rows, spark_rows).equal
    # The Spark lineage ran on the cluster's executors, the two workers registered.
    assert len(applications["workers"]) == 2
    assert "etl-poc" in [a["name"] for a in applications["completedapps"]]
