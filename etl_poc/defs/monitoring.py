"""Runs killed outright (kill -9, the OOM killer, a lost host process) are marked failed.

Dagster's run monitoring fails a run whose worker the run launcher reports dead, but the
DefaultRunLauncher (this project's, embedded and in the containers) cannot tell: such a run
stays STARTED until the monitoring's maximum runtime. This sensor can: every event of a run
carries the pid of the process that wrote it, and the sensor runs where the run workers run
(the code location's server starts them, in the same process namespace, embedded and in the
`code` container), so a STARTED run whose worker process is gone (or is another process now
holding the same pid) is reported failed. Its day locks went with the process; its half-done
windows are what the next run of those days repairs (`events_and_rejects_from_one_run`).
"""

from __future__ import annotations

import dagster as dg
import psutil

KILLED_RUNS_SENSOR = "killed_runs_fail"


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the process that started the run, and when (its RUN_START event)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
    ).records
    if not records or records[0].event_log_entry.dagster_event is None:
        return None
    entry = records[0].event_log_entry
    pid = entry.dagster_event.pid
    return None if pid is None else (pid, entry.timestamp)


def process_gone(pid: int, started: float) -> bool:
    """No process with that pid, or one started after the run's worker (the pid reused)."""
    try:
        return psutil.Process(pid).create_time() > started + 1
    except psutil.NoSuchProcess:
        return True
    except psutil.ZombieProcess:
        return True


@dg.sensor(
    name=KILLED_RUNS_SENSOR,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed the STARTED runs whose worker process is gone (killed with "
    "SIGKILL, out of memory), instead of leaving them STARTED for hours.",
)
def killed_runs_fail(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    instance = context.instance
    started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    failed = []
    for run in started:
        found = worker_pid(instance, run.run_id)
        if found is None or not process_gone(*found):
            continue
        instance.report_run_failed(
            run, f"the run's worker process (pid {found[0]}) is gone: killed or crashed"
        )
        failed.append(run.run_id)
    return dg.SkipReason(
        f"marked failed: {', '.join(failed)}" if failed else f"{len(started)} started, all alive"
    )
