"""Dagster's webserver and daemon on loopback (`dagster dev` over workspace.yaml), and what
launches runs and backfills through them as a person in the UI would: the runs then carry
the code location's origin, so the job pages, the runs timeline and the backfill history
show them (a run executed in the command's own process shows on none of these). Used by
`etl-poc demo` (make demo) and by the browser test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

LOCATION = "etl_poc"  # workspace.yaml's location_name
REPOSITORY = "__repository__"
WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey }
    ... on UnauthorizedError { message }
  }
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DagsterService:
    """`dagster dev` (webserver, daemon, code server) for a DAGSTER_HOME, on 127.0.0.1 and a
    free port, started on entering and stopped, with every process it started, on leaving."""

    def __init__(
        self, home: Path, env: Mapping[str, str], log: Path, daemon: bool = True,
        port: int | None = None,
    ):  # fmt: skip
        self.home, self.log_path, self.daemon = Path(home), Path(log), daemon
        self.port = port or free_port()
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(Path(home).resolve())}
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> DagsterService:
        # Only the webserver and its code server, or (daemon) `dagster dev`: both, and the
        # daemon that runs queued runs, backfills, sensors and schedules.
        if self.daemon:
            command = ["-m", "dagster", "dev", "-w", str(WORKSPACE)]
        else:
            command = ["-m", "dagster_webserver", "-w", str(WORKSPACE)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self._process = subprocess.Popen(
            [sys.executable, *command, "-h", "127.0.0.1", "-p", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        try:
            self._wait_until_up(timeout=180)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.graphql("{ version }")
                if answer.get("data", {}).get("version"):
                    break
            except OSError:
                pass
            if self._process.poll() is not None:
                raise RuntimeError(f"Dagster exited while starting: see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Dagster did not answer within {timeout:.0f} s: see {self.log_path}"
                )
            time.sleep(1)
        # The code location loads in its own server: wait until its jobs are there.
        while time.monotonic() < deadline:
            answer = self.graphql(
                f'{{ repositoryOrError(repositorySelector: {{repositoryLocationName: "{LOCATION}", '
                f'repositoryName: "{REPOSITORY}"}}) {{ __typename }} }}'
            )
            if answer["data"]["repositoryOrError"]["__typename"] == "Repository":
                return
            time.sleep(1)
        raise RuntimeError(f"the code location {LOCATION} did not load: see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        except ProcessLookupError:
            pass
        self._process = None

    def graphql(self, query: str, variables: Mapping | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))

    def launch_run(self, job: str, tags: Mapping[str, str] | None = None, run_config=None) -> str:
        """Submit a run of a job to the instance's queue (the daemon starts it)."""
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient("127.0.0.1", port_number=self.port)
        return client.submit_job_execution(
            job, LOCATION, REPOSITORY, run_config=run_config or {}, tags=dict(tags or {})
        )

    def launch_backfill(self, job: str, partitions: list[str], title: str = "") -> str:
        """A backfill of a partitioned job over `partitions`, as the UI's launch dialog makes
        it: the daemon submits one run per range (the assets' single-run backfill policy)."""
        answer = self.graphql(
            _BACKFILL,
            {
                "params": {
                    "selector": {
                        "partitionSetName": f"{job}_partition_set",
                        "repositorySelector": {
                            "repositoryLocationName": LOCATION,
                            "repositoryName": REPOSITORY,
                        },
                    },
                    "partitionNames": partitions,
                    "title": title or None,
                }
            },
        )
        launched = answer.get("data", {}).get("launchPartitionBackfill") or {}
        if launched.get("__typename") != "LaunchBackfillSuccess":
            raise RuntimeError(f"the backfill of {job} was refused: {answer}")
        return launched["backfillId"]

    def wait_for_run(self, run_id: str, timeout: float = 3600) -> str:
        """The run's final status (SUCCESS, FAILURE, CANCELED)."""
        deadline = time.monotonic() + timeout
        with self.instance() as instance:
            while time.monotonic() < deadline:
                run = instance.get_run_by_id(run_id)
                if run is not None and run.status.value in TERMINAL:
                    return run.status.value
                time.sleep(1)
        raise TimeoutError(f"run {run_id} did not end within {timeout:.0f} s")

    def wait_for_backfill(self, backfill_id: str, timeout: float = 3600) -> list[tuple[str, str]]:
        """Once the backfill is done: each of its runs' id and final status."""
        import dagster as dg

        deadline = time.monotonic() + timeout
        with self.instance() as instance:
            while time.monotonic() < deadline:
                backfill = instance.get_backfill(backfill_id)
                if backfill is not None and backfill.status.value in BACKFILL_DONE:
                    runs = instance.get_runs(
                        filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
                    )
                    if all(run.status.value in TERMINAL for run in runs):
                        return [(run.run_id, run.status.value) for run in runs]
                time.sleep(1)
        raise TimeoutError(f"backfill {backfill_id} did not end within {timeout:.0f} s")

    def failure(self, run_id: str) -> str:
        """Why a run failed: its failure events' messages."""
        import dagster as dg

        with self.instance() as instance:
            records = instance.get_records_for_run(
                run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
            ).records
            return "\n".join(r.event_log_entry.message for r in records) or "no failure event"


def _partitions(first: str, last: str) -> list[str]:
    """The daily partition keys first..last (inclusive)."""
    from datetime import date, timedelta

    from etl_poc.lakehouse.layer_store import days

    end = date.fromisoformat(last) + timedelta(days=1)
    return [day.isoformat() for day in days(date.fromisoformat(first), end)]


def run_demo(
    home: Path, log: Path, bulk: tuple[str, str], days: list[str],
    jobs: list[tuple[str, dict]], say=print,
) -> None:  # fmt: skip
    """The demo's runs, launched through the daemon as from the UI: a backfill of
    compare_engines over the `bulk` days (one run), one compare_engines run per day of
    `days`, then each of `jobs` (name, run config) in order. Automation stays off meanwhile
    (ETL_POC_AUTOMATION=off), so only these runs run. A failed run stops it, saying why."""
    from etl_poc.defs.tags import PARTITION_TAG

    env = {"ETL_POC_AUTOMATION": "off"}
    with DagsterService(home, env, log) as service:
        say(f"Dagster (webserver and daemon) on {service.url}, instance {home}")
        say(f"compare_engines: a backfill of {bulk[0]} .. {bulk[1]} (one run: single-run policy)")
        backfill = service.launch_backfill("compare_engines", _partitions(*bulk), "demo bulk month")
        for run_id, status in service.wait_for_backfill(backfill):
            _require(service, "compare_engines (bulk)", run_id, status)
        launches = [
            ("compare_engines", {PARTITION_TAG: day}, {}, f"for the day {day}") for day in days
        ]
        launches += [(job, {}, config, "") for job, config in jobs]
        for job, tags, config, what in launches:
            say(f"{job} {what}".rstrip())
            run_id = service.launch_run(job, tags, config)
            _require(service, job, run_id, service.wait_for_run(run_id))


def _require(service: DagsterService, what: str, run_id: str, status: str) -> None:
    if status != "SUCCESS":
        raise RuntimeError(f"{what}: run {run_id} ended {status}: {service.failure(run_id)}")
