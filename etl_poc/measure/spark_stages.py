"""Spark's own account of a step: the stages its actions ran, from the driver's status store
(what the Spark UI and its REST API show, kept by the driver with the UI off), read through
the session's JVM gateway. Each stage's wall time (submission to completion), the task time
its executors spent, its input, shuffle and spill; for a layer, the stages run since a mark.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

SLOWEST = 3  # the stages a summary names


@dataclass(frozen=True)
class Stage:
    stage_id: int
    name: str  # Spark's call site, e.g. "parquet at NativeMethodAccessorImpl.java:0"
    tasks: int
    seconds: float  # submission to completion
    executor_run_seconds: float  # summed over its tasks
    input_bytes: int
    shuffle_read_bytes: int
    shuffle_write_bytes: int
    spilled_bytes: int  # memory and disk


def _store(spark):
    return spark.sparkContext._jsc.sc().statusStore()


def _stage_list(store):
    # AppStatusStore.stageList(statuses, details, withSummaries, quantiles, taskStatuses):
    # Scala's default arguments are methods of their own through the gateway.
    defaults = [getattr(store, "stageList$default$" + str(n))() for n in (4, 5)]
    return store.stageList(None, False, False, *defaults)


LISTENER_WAIT_MS = 5000


def completed_stages(spark) -> list[Stage]:
    """Every completed stage attempt the driver still holds (spark.ui.retainedStages)."""
    # The status store is filled by an asynchronous listener: an action's last stage may not
    # be in it yet when the action returns (a shuffle's read side was seen missing so).
    # Still busy after the wait (a TimeoutException through the gateway): read what is there.
    with contextlib.suppress(Exception):
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(LISTENER_WAIT_MS)
    store = _store(spark)
    listed = _stage_list(store)
    found = []
    for index in range(listed.size()):
        data = listed.apply(index)
        if data.status().toString() != "COMPLETE":
            continue
        submitted, completed = data.submissionTime(), data.completionTime()
        seconds = 0.0
        if submitted.isDefined() and completed.isDefined():
            seconds = (completed.get().getTime() - submitted.get().getTime()) / 1000
        found.append(
            Stage(
                stage_id=data.stageId(),
                name=str(data.name()),
                tasks=data.numTasks(),
                seconds=seconds,
                executor_run_seconds=data.executorRunTime() / 1000,
                input_bytes=data.inputBytes(),
                shuffle_read_bytes=data.shuffleReadBytes(),
                shuffle_write_bytes=data.shuffleWriteBytes(),
                spilled_bytes=data.memoryBytesSpilled() + data.diskBytesSpilled(),
            )
        )
    return sorted(found, key=lambda s: s.stage_id)


def stage_mark(spark) -> int:
    """The highest stage id so far (-1 before any): what a later stages_since counts from."""
    stages = completed_stages(spark)
    return max((s.stage_id for s in stages), default=-1)


def stages_since(spark, mark: int) -> list[Stage]:
    return [s for s in completed_stages(spark) if s.stage_id > mark]


def stage_summary(stages: list[Stage]) -> dict:
    """Totals over the stages and the slowest few, for a layer's metadata. Stages of one
    action can overlap in time, so stage_seconds may exceed the step's wall time."""
    slowest = sorted(stages, key=lambda s: s.seconds, reverse=True)[:SLOWEST]
    return {
        "stages": len(stages),
        "tasks": sum(s.tasks for s in stages),
        "stage_seconds": round(sum(s.seconds for s in stages), 3),
        "executor_run_seconds": round(sum(s.executor_run_seconds for s in stages), 3),
        **{
            f"{name}_mib": _mib(sum(getattr(s, f"{name}_bytes") for s in stages))
            for name in ("input", "shuffle_read", "shuffle_write", "spilled")
        },
        "slowest": [
            {
                key.removesuffix("_bytes") + "_mib" if key.endswith("_bytes") else key: (
                    _mib(value) if key.endswith("_bytes") else value
                )
                for key, value in asdict(s).items()
            }
            for s in slowest
        ],
    }


def _mib(value: int) -> float:
    return round(value / 2**20, 2)
