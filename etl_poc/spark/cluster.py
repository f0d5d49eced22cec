"""A Spark standalone cluster on this machine: a master and N workers on 127.0.0.1, started
with the pyspark package's own launcher (bin/spark-class with the standalone Master and Worker
classes), so nothing beyond the locked environment and Java is needed.

`start` launches each daemon in a session of its own, records its pid under the state
directory, and waits until the master lists every worker as ALIVE; `stop` ends every recorded
daemon (and what it started) and checks that none is left. The Spark backend uses the cluster
by configuration only: ETL_POC_SPARK_MASTER=spark://127.0.0.1:7077.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

HOST = "127.0.0.1"
MASTER_PORT = 7077
MASTER_UI_PORT = 8080
MASTER_URL = f"spark://{HOST}:{MASTER_PORT}"
DAEMON_CLASSES = (
    "org.apache.spark.deploy.master.Master",
    "org.apache.spark.deploy.worker.Worker",
)


@dataclass(frozen=True)
class ClusterSpec:
    workers: int = 2
    cores_per_worker: int = 1
    memory_per_worker: str = "6g"
    state_dir: Path = Path("spark-cluster")
    master_port: int = MASTER_PORT
    master_ui_port: int = MASTER_UI_PORT

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _environment(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOG_DIR": str(state / "logs"),
        "SPARK_WORKER_DIR": str(state / "work"),
        "SPARK_NO_DAEMONIZE": "1",
    }


def _launch(name: str, arguments: list[str], spec: ClusterSpec) -> int:
    state = spec.state_dir
    (state / "logs").mkdir(parents=True, exist_ok=True)
    log = (state / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [str(spark_home() / "bin" / "spark-class"), *arguments],
        env=_environment(state.resolve()),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole
    )
    (state / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def master_status(spec: ClusterSpec) -> dict | None:
    """The master's JSON status page, or None when it does not answer."""
    url = f"http://{HOST}:{spec.master_ui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def start(spec: ClusterSpec, timeout: float = 120.0) -> dict:
    """Start the master and the workers; returns the master's status once every worker is
    ALIVE. A cluster already running from the same state directory is an error."""
    if running_pids(spec):
        raise RuntimeError(f"a cluster is already running from {spec.state_dir}: stop it first")
    _launch(
        "master",
        ["org.apache.spark.deploy.master.Master", "--host", HOST,
         "--port", str(spec.master_port), "--webui-port", str(spec.master_ui_port)],
        spec,
    )  # fmt: skip
    for index in range(spec.workers):
        work = spec.state_dir / "work" / f"worker-{index + 1}"
        work.mkdir(parents=True, exist_ok=True)
        _launch(
            f"worker-{index + 1}",
            ["org.apache.spark.deploy.worker.Worker", spec.master_url, "--host", HOST,
             "--cores", str(spec.cores_per_worker), "--memory", spec.memory_per_worker,
             "--webui-port", str(spec.master_ui_port + 1 + index),
             "--work-dir", str(work.resolve())],
            spec,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = master_status(spec)
        if status is not None:
            alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) >= spec.workers:
                return status
        if len(running_pids(spec)) < spec.workers + 1:
            stop(spec)
            raise RuntimeError(f"a cluster daemon exited; see {spec.state_dir / 'logs'}")
        time.sleep(0.5)
    stop(spec)
    raise TimeoutError(f"the workers did not register within {timeout:.0f} s")


def running_pids(spec: ClusterSpec) -> list[int]:
    """The recorded daemons that are still running."""
    alive = []
    for pid_file in sorted(spec.state_dir.glob("*.pid")):
        pid = int(pid_file.read_text())
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            alive.append(pid)
    return alive


def stop(spec: ClusterSpec, timeout: float = 30.0) -> int:
    """Stop every recorded daemon with what it started (SIGTERM, then SIGKILL); returns how
    many were stopped. Raises when a daemon is still there afterwards."""
    stopped = 0
    for pid_file in sorted(spec.state_dir.glob("*.pid")):
        pid = int(pid_file.read_text())
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            pid_file.unlink()
            continue
        processes = _group(group)
        for process in processes:
            _signal(process, signal.SIGTERM)
        _, left = psutil.wait_procs(processes, timeout=timeout)
        for process in left:
            _signal(process, signal.SIGKILL)
        psutil.wait_procs(left, timeout=5)
        stopped += 1
        pid_file.unlink()
    leftovers = daemons()
    if leftovers:
        raise RuntimeError(f"Spark daemons still running: {leftovers}")
    return stopped


def _group(group: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == group:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def _signal(process: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(sig)


def daemons() -> list[int]:
    """Every standalone master or worker JVM on this machine, recorded or not."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if any(name in cmdline for name in DAEMON_CLASSES):
            found.append(process.info["pid"])
    return found
