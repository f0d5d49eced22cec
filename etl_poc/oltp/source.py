"""The operational database itself: its tables, loaded from the generator's `oltp/` files and
changed day by day as the shop's application would.

`load(server, source_dir, through)` creates the four tables (primary and foreign keys, and
REPLICA IDENTITY FULL, so a captured delete or update carries the whole row before it), inserts
the initial users and products, then applies each day's changes in change_seq order, one
transaction per day. Which days are in is kept in the database, in the same transaction as the
day's changes (`etl_poc.loaded_days`): a load killed at any point, run again, applies each day
exactly once. Nothing here knows about change data capture; it only writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import psycopg

from etl_poc.logic.spec import OLTP_KEYS, OLTP_TABLES
from etl_poc.oltp.server import Server

CONTROL_SCHEMA = "etl_poc"
MONEY = "numeric(12, 2)"
TIME = "timestamptz NOT NULL"
# Each table's columns and their types, in order (the generator's files have the same).
COLUMNS: dict[str, dict[str, str]] = {
    "users": {
        "user_id": "text", "email": "text", "full_name": "text", "country": "text",
        "tier": "text NOT NULL", "created_at": TIME, "updated_at": TIME,
    },
    "products": {
        "product_id": "text", "name": "text NOT NULL", "category": "text NOT NULL",
        "price": f"{MONEY} NOT NULL", "created_at": TIME, "updated_at": TIME,
    },
    "orders": {
        "order_id": "uuid", "user_id": "text NOT NULL REFERENCES users",
        "status": "text NOT NULL", "subtotal": f"{MONEY} NOT NULL",
        "discount": f"{MONEY} NOT NULL", "discount_percent": "integer NOT NULL",
        "tax": f"{MONEY} NOT NULL", "total": f"{MONEY} NOT NULL", "currency": "text NOT NULL",
        "created_at": TIME, "updated_at": TIME,
    },
    "order_items": {
        "order_id": "uuid NOT NULL REFERENCES orders", "line_number": "integer NOT NULL",
        "product_id": "text NOT NULL REFERENCES products", "quantity": "integer NOT NULL",
        "unit_price": f"{MONEY} NOT NULL", "line_total": f"{MONEY} NOT NULL",
        "created_at": TIME,
    },
}  # fmt: skip
CONTROL_DDL = f"""
    CREATE SCHEMA IF NOT EXISTS {CONTROL_SCHEMA};
    CREATE TABLE IF NOT EXISTS {CONTROL_SCHEMA}.loaded_days (
        day date PRIMARY KEY, changes integer NOT NULL, loaded_at timestamptz NOT NULL,
        txid bigint NOT NULL
    );
"""
# The transaction's id as a captured change carries it (32 bits, without the epoch).
XID = "txid_current() %% 4294967296"  # (%% : a literal % in a query with parameters)


@dataclass(frozen=True)
class LoadResult:
    """What a load did: the days it applied now (and their changes), the days already in."""

    applied: dict[date, int]
    already: list[date]
    initial_rows: dict[str, int]


def columns(table: str) -> list[str]:
    return list(COLUMNS[table])


def ddl(table: str) -> str:
    definitions = [f"{name} {kind}" for name, kind in COLUMNS[table].items()]
    definitions.append(f"PRIMARY KEY ({', '.join(OLTP_KEYS[table])})")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(definitions)})"


def create(connection: psycopg.Connection) -> None:
    with connection.transaction():
        for table in OLTP_TABLES:
            connection.execute(ddl(table))
            connection.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        connection.execute(CONTROL_DDL)


def _rows(frame: pl.DataFrame, names: Iterable[str]) -> list[tuple]:
    return frame.select(list(names)).rows()


def changes_by_day(source_dir: Path) -> dict[date, dict[str, pl.DataFrame]]:
    """Each day's changes (by change_ts, UTC), per table, in change_seq order."""
    days: dict[date, dict[str, pl.DataFrame]] = {}
    for table in OLTP_TABLES:
        path = source_dir / "changes" / f"{table}.parquet"
        if not path.exists():
            continue
        frame = pl.read_parquet(path).with_columns(_day=pl.col("change_ts").dt.date())
        for (day,), part in frame.partition_by("_day", as_dict=True, maintain_order=True).items():
            days.setdefault(day, {})[table] = part.drop("_day").sort("change_seq")
    return dict(sorted(days.items()))


def _apply(connection: psycopg.Connection, changes: dict[str, pl.DataFrame]) -> int:
    """One day's changes, in change_seq order across the tables (an order before its items,
    its items deleted before it), consecutive changes of one kind to one table together."""
    merged = pl.concat(
        [f.select("change_seq", "op").with_columns(table=pl.lit(t)) for t, f in changes.items()]
    ).sort("change_seq")
    runs = merged.with_columns(
        run=(
            (pl.col("op") != pl.col("op").shift()) | (pl.col("table") != pl.col("table").shift())
        ).cum_sum()
    )
    with connection.cursor() as cursor:
        for part in runs.partition_by("run", maintain_order=True):
            table, op = part["table"][0], part["op"][0]
            rows = changes[table].join(part.select("change_seq"), on="change_seq", how="semi")
            names = columns(table)
            keys = OLTP_KEYS[table]
            if op == "insert":
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) "
                    f"VALUES ({', '.join(['%s'] * len(names))})",
                    _rows(rows, names),
                )
            elif op == "update":
                rest = [c for c in names if c not in keys]
                cursor.executemany(
                    f"UPDATE {table} SET {', '.join(f'{c} = %s' for c in rest)} "
                    f"WHERE {' AND '.join(f'{k} = %s' for k in keys)}",
                    _rows(rows, [*rest, *keys]),
                )
            elif op == "delete":
                cursor.executemany(
                    f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = %s' for k in keys)}",
                    _rows(rows, keys),
                )
            else:
                raise ValueError(f"{table}: change {rows['change_seq'][0]} has op {op!r}")
    return merged.height


def load(server: Server, source_dir: Path, through: date | None = None) -> LoadResult:
    """The initial tables (once) and every day's changes up to `through` (all when None)."""
    source_dir = Path(source_dir)
    if not (source_dir / "initial").is_dir():
        raise FileNotFoundError(
            f"{source_dir}/initial: no operational tables (etl-poc generate writes them)"
        )
    with server.connect() as connection:
        create(connection)
        initial = {}
        with connection.transaction():
            for table in ("users", "products"):
                count = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                loaded = connection.execute(
                    f"SELECT count(*) FROM {CONTROL_SCHEMA}.loaded_days"
                ).fetchone()[0]
                if count or loaded:
                    continue
                frame = pl.read_parquet(source_dir / "initial" / f"{table}.parquet")
                names = columns(table)
                with connection.cursor().copy(
                    f"COPY {table} ({', '.join(names)}) FROM STDIN"
                ) as copy:
                    for row in _rows(frame, names):
                        copy.write_row(row)
                initial[table] = frame.height
        done = {
            row[0] for row in connection.execute(f"SELECT day FROM {CONTROL_SCHEMA}.loaded_days")
        }
        applied, already = {}, []
        for day, changes in changes_by_day(source_dir).items():
            if through is not None and day > through:
                break
            if day in done:
                already.append(day)
                continue
            with connection.transaction():
                count = _apply(connection, changes)
                connection.execute(
                    f"INSERT INTO {CONTROL_SCHEMA}.loaded_days VALUES (%s, %s, now(), {XID})",
                    (day, count),
                )
            applied[day] = count
    return LoadResult(applied, already, initial)


def snapshot(server: Server, table: str) -> pl.DataFrame:
    """A table as it is now (a direct SELECT), sorted by its key: what the lakehouse's current
    state is checked against."""
    names = columns(table)
    keys = OLTP_KEYS[table]
    selected = [f"{n}::text AS {n}" if COLUMNS[table][n].startswith("uuid") else n for n in names]
    with server.connect() as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        cursor = connection.execute(
            f"SELECT {', '.join(selected)} FROM {table} ORDER BY {', '.join(keys)}"
        )
        rows = cursor.fetchall()
    frame = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    return frame.with_columns(
        pl.col(n).dt.convert_time_zone("UTC")
        for n in names
        if COLUMNS[table][n].startswith("timestamptz")
    )
