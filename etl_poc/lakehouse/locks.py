"""Runs that touch the same engine's days must not interleave: a lock per engine and day,
held for the whole run (a file lock under <layers>/.locks/<engine>/, released by the operating
system if the holder dies, so a killed run never leaves a day locked).

A second run of a day waits for the first (up to a timeout, ETL_POC_LOCK_TIMEOUT_SECONDS), then
fails with a clear message naming the day and the run holding it, before it has touched
anything. Days are locked in order, so two runs over overlapping windows cannot deadlock.

A file lock covers the runs of one host (the embedded setup, and the containers, whose runs all
start in the code location's container). When the catalog is on PostgreSQL, runs on other
hosts may share it: each day is then also held with a PostgreSQL session advisory lock, in the
catalog's database, which the server releases when the session ends (a killed run included).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
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


def advisory_key(engine: str, day: date) -> int:
    """The PostgreSQL advisory lock key of an engine's day (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"etl_poc:{engine}:{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _catalog_locks(
    catalog_uri: str | None, engine: str, start: date, end: date, timeout: float
) -> Iterator[None]:
    """Each day's advisory lock in the catalog's PostgreSQL database (nothing otherwise)."""
    if not catalog_uri or not catalog_uri.startswith("postgresql"):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from etl_poc.lakehouse.iceberg import masked_url

    database = sqlalchemy.create_engine(
        catalog_uri, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with database.connect() as session:
            for day in days(start, end):
                key, deadline = advisory_key(engine, day), time.monotonic() + timeout
                try_lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
                while not session.execute(try_lock, {"key": key}).scalar():
                    if time.monotonic() > deadline:
                        raise WindowBusyError(
                            f"{engine} {day}: held by another run that shares the catalog "
                            f"{masked_url(catalog_uri)}; waited {timeout:g} s "
                            "(ETL_POC_LOCK_TIMEOUT_SECONDS)"
                        )
                    time.sleep(0.2)
            yield  # the locks go with the session
    finally:
        database.dispose()


@contextlib.contextmanager
def window_lock(
    paths: Paths,
    engine: str,
    start: date,
    end: date,
    holder: str,
    timeout: float,
    catalog_uri: str | None = None,
) -> Iterator[None]:
    """Hold every day of the window [start, end) of one engine, as `holder` (a run id): on
    this host, and on every host sharing the catalog when it is on PostgreSQL."""
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
        held.enter_context(_catalog_locks(catalog_uri, engine, start, end, timeout))
        yield
