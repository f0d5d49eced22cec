"""The warehouse's raw schema: the lakehouse's Iceberg tables copied into its DuckDB file,
where dbt's models read them.

Per engine, `raw.events_<engine>` holds that engine's clickstream_events, kept a day at a
time: a day is copied again when the Iceberg table's per-day writer (the run whose window
replacement last covered it) differs from the one copied, and removed when the lakehouse no
longer has it, so the raw table always equals the Iceberg table and a load copies only what
changed. The operational tables (oltp.*, small) and the orders' change log are replaced whole.

DuckDB's iceberg extension needs a download this machine cannot make, and dbt-duckdb's
iceberg plugin reads a whole table on every reference: the day-wise copy here is what lets the
daily marts rebuild only the days that changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

from etl_poc.lakehouse import iceberg
from etl_poc.logic.spec import ENGINES, OLTP_TABLES
from etl_poc.oltp import lake

SCHEMA = "raw"
LOADED = f"{SCHEMA}._loaded_days"  # engine, day, writer: what raw.events_<engine> holds


@dataclass
class RawLoad:
    """What a load copied: per engine, the days copied again and the days removed."""

    engines: list[str] = field(default_factory=list)
    copied: dict[str, list[date]] = field(default_factory=dict)
    removed: dict[str, list[date]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # raw table -> rows after the load

    def changed_days(self, engine: str) -> list[date]:
        """The days whose sessions a daily model must rebuild: each changed day and the one
        before it (a session that started the day before can have events on it)."""
        days = set(self.copied.get(engine, [])) | set(self.removed.get(engine, []))
        return sorted(days | {d - timedelta(days=1) for d in days})


def _writers(catalog: SqlCatalog, engine: str) -> dict[date, str] | None:
    identifier = f"{engine}.{iceberg.EVENTS.name}"
    if not catalog.table_exists(identifier):
        return None
    properties = catalog.load_table(identifier).properties
    prefix = iceberg.DAY_WRITER_PREFIX
    return {date.fromisoformat(k[len(prefix):]): v for k, v in properties.items()
            if k.startswith(prefix)}  # fmt: skip


def _replace_table(connection: duckdb.DuckDBPyConnection, name: str, arrow) -> int:
    connection.register("_incoming", arrow)
    try:
        connection.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{name} AS FROM _incoming")
    finally:
        connection.unregister("_incoming")
    return arrow.num_rows


def load(catalog: SqlCatalog, database: Path, engines: tuple[str, ...] = ENGINES) -> RawLoad:
    """Bring the raw schema of `database` up to the lakehouse's current state."""
    database.parent.mkdir(parents=True, exist_ok=True)
    result = RawLoad()
    with duckdb.connect(str(database)) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {LOADED} (engine VARCHAR, day DATE, writer VARCHAR, "
            "PRIMARY KEY (engine, day))"
        )
        for table in OLTP_TABLES:
            state = lake.read_state(catalog, table).to_arrow()
            result.rows[table] = _replace_table(connection, table, state)
        orders_log = lake.read_changes(catalog, "orders").to_arrow()
        result.rows["orders_changes"] = _replace_table(connection, "orders_changes", orders_log)
        for engine in engines:
            writers = _writers(catalog, engine)
            if writers is None:
                continue
            result.engines.append(engine)
            _load_events(connection, catalog, engine, writers, result)
    return result


def _load_events(connection, catalog, engine: str, writers: dict[date, str], result) -> None:
    target = f"{SCHEMA}.events_{engine}"
    loaded = dict(connection.execute(f"SELECT day, writer FROM {LOADED} WHERE engine = ?",
                                     [engine]).fetchall())  # fmt: skip
    exists = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
        "table_name = ?", [SCHEMA, f"events_{engine}"],
    ).fetchall()[0][0]  # fmt: skip
    if not exists:
        empty = iceberg.EVENTS.schema.as_arrow().empty_table()
        _replace_table(connection, f"events_{engine}", empty)
        loaded = {}
    copied = [d for d in sorted(writers) if loaded.get(d) != writers[d]]
    removed = sorted(set(loaded) - set(writers))
    for day in removed:
        connection.execute(f"DELETE FROM {target} WHERE event_date = ?", [day])
        connection.execute(f"DELETE FROM {LOADED} WHERE engine = ? AND day = ?", [engine, day])
    for day in copied:
        rows = iceberg.read_window(catalog, engine, iceberg.EVENTS, day, day + timedelta(days=1))
        connection.execute("BEGIN")
        connection.execute(f"DELETE FROM {target} WHERE event_date = ?", [day])
        if rows is not None and rows.height:
            connection.register("_day", rows.to_arrow())
            connection.execute(f"INSERT INTO {target} BY NAME FROM _day")
            connection.unregister("_day")
        connection.execute(f"INSERT OR REPLACE INTO {LOADED} VALUES (?, ?, ?)",
                           [engine, day, writers[day]])  # fmt: skip
        connection.execute("COMMIT")
    result.copied[engine] = copied
    result.removed[engine] = removed
    result.rows[f"events_{engine}"] = connection.execute(f"SELECT count(*) FROM {target}") \
        .fetchall()[0][0]  # fmt: skip
