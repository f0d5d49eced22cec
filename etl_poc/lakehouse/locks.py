"""Runs that touch the same engine's days must not interleave: a lock per engine and day,
held for the whole run (a file lock under <layers>/.locks/<engine>/, released by the operating
system if the holder dies, so a killed run never leaves a day locked).

A second run of a day waits for the first (up to a timeout, ETL_POC_LOCK_TIMEOUT_SECONDS), then
fails with a clear message naming the day and the run holding it, before it has touched
anything. Days are locked in order, so two runs over overlapping windows cannot deadlock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime

from filelock import FileLock, Timeout

from etl_poc.lakehouse.layer_store import days
from etl_poc.lakehouse.paths import Paths


class WindowBusyError(RuntimeError):
    """Another run holds a day of the window."""


def _holder(path) -> str:
    try:
        return path.read_text().strip() or "a run"
    except OSError:
        return "a run"


@contextlib.contextmanager
def window_lock(
    paths: Paths, engine: str, start: date, end: date, holder: str, timeout: float
) -> Iterator[None]:
    """Hold every day of the window [start, end) of one engine, as `holder` (a run id)."""
    folder = paths.layers / ".locks" / engine
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        for day in days(start, end):
            lock = FileLock(folder / f"{day.isoformat()}.lock", timeout=timeout)
            note = folder / f"{day.isoformat()}.holder"
            try:
                held.enter_context(lock)
            except Timeout:
                raise WindowBusyError(
                    f"{engine} {day}: held by {_holder(note)}; waited {timeout:g} s "
                    f"(ETL_POC_LOCK_TIMEOUT_SECONDS). Runs of the same engine's days do not "
                    "interleave: let that run finish, or stop it, then run this one again"
                ) from None
            since = datetime.now(UTC).isoformat(timespec="seconds")
            note.write_text(f"run {holder} (since {since})\n")
        yield
