"""The real-time store: ClickHouse tables and materialized views, written exactly once.

chdb (embedded ClickHouse, in this process, a directory per store) by default; a ClickHouse
server through clickhouse-connect when a URL is set (the containers' ClickHouse). The same SQL
runs on both. A micro-batch's sessionized events are written through a staging table: rows
whose event_id the table already holds are left out, so a batch written again after a kill
(its offsets not yet committed) adds nothing, and the materialized views, which count what is
inserted, stay exact.

Types (the platform design): event_id a UUID (the speed layer's rule: an id that is not one
goes to the dead-letter topic); user_id and session_id text, since this data's user ids are
not UUIDs and session_id is the spec's `user_id@start`, identical to the batch layer's; the
address as text (it may be IPv6 or invalid, as in the batch layer) and as Nullable(IPv4);
LowCardinality for event_type, device, user_tier and the country; amounts as Decimal(12, 2).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa

from etl_poc.logic.spec import AMOUNT_PRECISION, AMOUNT_SCALE, FUNNEL_STEPS

# The SQL below names the database DATABASE; a Store runs it in its own (one per engine, so
# both engines' tables can live on one server): `realtime_<engine>`.
DATABASE = "realtime"
EVENTS = f"{DATABASE}.user_events_realtime"
STAGING = f"{DATABASE}.user_events_staging"
TRANSACTIONS = f"{DATABASE}.transactions_realtime"
# Every message not stored as an event (dead letters and late events), with its reason: what
# reconciliation accounts for. Keyed by the message, so a replayed batch adds no copy.
SET_ASIDE = f"{DATABASE}.events_set_aside"
SET_ASIDE_COLUMNS: dict[str, str] = {
    "message_partition": "Int32",
    "message_offset": "Int64",
    "reason": "LowCardinality(String)",
    "event_id": "Nullable(String)",
    "event_date": "Nullable(Date)",
    "value": "String",
}
DECIMAL = f"Decimal({AMOUNT_PRECISION}, {AMOUNT_SCALE})"
TS = "DateTime64(6, 'UTC')"

# What a micro-batch writes, in this order (the staging table's columns).
EVENT_COLUMNS: dict[str, str] = {
    "event_id": "UUID",
    "user_id": "String",
    "session_id": "String",
    "session_start": TS,
    "event_seq": "UInt32",
    "event_ts": TS,
    "event_date": "Date",
    "event_type": "LowCardinality(String)",
    "device": "LowCardinality(String)",
    "user_tier": "LowCardinality(String)",
    "page_url": "Nullable(String)",
    "ip_address": "Nullable(String)",
    "ip_status": "LowCardinality(String)",
    "country_code": "LowCardinality(Nullable(String))",
    "product_id": "Nullable(String)",
    "search_query": "Nullable(String)",
    "transaction_id": "Nullable(String)",
    "amount": f"Nullable({DECIMAL})",
    "produced_at": "DateTime64(3, 'UTC')",  # when the producer sent it (the message timestamp)
}
_COLUMNS_SQL = ",\n    ".join(f"{name} {kind}" for name, kind in EVENT_COLUMNS.items())
_FUNNEL = ", ".join(f"'{step}'" for step in FUNNEL_STEPS)

SCHEMA: tuple[str, ...] = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
    {_COLUMNS_SQL},
    ipv4 Nullable(IPv4) DEFAULT toIPv4OrNull(ifNull(ip_address, '')),
    stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree
PARTITION BY toYYYYMM(event_ts)
ORDER BY (event_date, user_id, event_ts, event_id)""",
    f"""CREATE TABLE IF NOT EXISTS {STAGING} (
    {_COLUMNS_SQL}
) ENGINE = Memory""",
    f"""CREATE TABLE IF NOT EXISTS {SET_ASIDE} (
    {", ".join(f"{name} {kind}" for name, kind in SET_ASIDE_COLUMNS.items())},
    stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (message_partition, message_offset)""",
    f"""CREATE TABLE IF NOT EXISTS {TRANSACTIONS} (
    transaction_id String,
    event_id UUID,
    user_id String,
    session_id String,
    user_tier LowCardinality(String),
    event_ts {TS},
    event_date Date,
    amount {DECIMAL}
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_ts)
ORDER BY (event_date, transaction_id)""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.transactions_mv TO {TRANSACTIONS} AS
SELECT ifNull(transaction_id, '') AS transaction_id, event_id, user_id, session_id, user_tier,
       event_ts, event_date, ifNull(amount, toDecimal64(0, {AMOUNT_SCALE})) AS amount
FROM {EVENTS} WHERE event_type = 'PURCHASE'""",
    f"""CREATE TABLE IF NOT EXISTS {DATABASE}.user_activity_summary (
    event_date Date,
    user_id String,
    events AggregateFunction(count),
    sessions AggregateFunction(uniqExact, String),
    first_seen AggregateFunction(min, {TS}),
    last_seen AggregateFunction(max, {TS}),
    purchases AggregateFunction(countIf, UInt8),
    revenue AggregateFunction(sum, Nullable({DECIMAL}))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(event_date)
ORDER BY (event_date, user_id)""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.user_activity_summary_mv
TO {DATABASE}.user_activity_summary AS
SELECT event_date, user_id, countState() AS events, uniqExactState(session_id) AS sessions,
       minState(event_ts) AS first_seen, maxState(event_ts) AS last_seen,
       countIfState(event_type = 'PURCHASE') AS purchases, sumState(amount) AS revenue
FROM {EVENTS} GROUP BY event_date, user_id""",
    f"""CREATE TABLE IF NOT EXISTS {DATABASE}.conversion_funnel (
    event_date Date,
    step LowCardinality(String),
    users AggregateFunction(uniqExact, String),
    sessions AggregateFunction(uniqExact, String),
    events AggregateFunction(count)
) ENGINE = AggregatingMergeTree
ORDER BY (event_date, step)""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.conversion_funnel_mv
TO {DATABASE}.conversion_funnel AS
SELECT event_date, event_type AS step, uniqExactState(user_id) AS users,
       uniqExactState(session_id) AS sessions, countState() AS events
FROM {EVENTS} WHERE event_type IN ({_FUNNEL}) GROUP BY event_date, step""",
    f"""CREATE TABLE IF NOT EXISTS {DATABASE}.product_performance (
    event_date Date,
    product_id String,
    views AggregateFunction(countIf, UInt8),
    cart_adds AggregateFunction(countIf, UInt8),
    cart_removes AggregateFunction(countIf, UInt8),
    viewers AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree
ORDER BY (event_date, product_id)""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.product_performance_mv
TO {DATABASE}.product_performance AS
SELECT event_date, assumeNotNull(product_id) AS product_id,
       countIfState(event_type = 'PRODUCT_VIEW') AS views,
       countIfState(event_type = 'ADD_TO_CART') AS cart_adds,
       countIfState(event_type = 'REMOVE_FROM_CART') AS cart_removes,
       uniqExactState(user_id) AS viewers
FROM {EVENTS} WHERE product_id IS NOT NULL GROUP BY event_date, product_id""",
)

# The live queries an operator runs (the platform design: under 100 ms at p95).
LIVE_QUERIES: dict[str, str] = {
    "funnel": f"""SELECT event_date, step, uniqExactMerge(users) AS users,
       uniqExactMerge(sessions) AS sessions, countMerge(events) AS events
FROM {DATABASE}.conversion_funnel GROUP BY event_date, step
ORDER BY event_date, indexOf([{_FUNNEL}], step)""",
    "top_products": f"""SELECT product_id, countIfMerge(views) AS views,
       countIfMerge(cart_adds) AS cart_adds, uniqExactMerge(viewers) AS viewers
FROM {DATABASE}.product_performance GROUP BY product_id ORDER BY views DESC, product_id LIMIT 10""",
    "active_users_last_hour": f"""SELECT count() AS users, sum(events) AS events FROM (
    SELECT user_id, countMerge(events) AS events, maxMerge(last_seen) AS last_seen
    FROM {DATABASE}.user_activity_summary GROUP BY user_id)
WHERE last_seen > (SELECT max(event_ts) FROM {EVENTS}) - INTERVAL 1 HOUR""",
    "revenue_by_tier": f"""SELECT user_tier, count() AS orders, sum(amount) AS revenue
FROM {TRANSACTIONS} FINAL GROUP BY user_tier ORDER BY revenue DESC""",
}


class Store:
    """One ClickHouse: chdb's embedded session on a directory, or a server's client."""

    def __init__(
        self, *, path: Path | None = None, url: str = "", password: str = "", database: str = ""
    ):
        self.database = database or DATABASE
        if url:
            import clickhouse_connect

            parts = urlsplit(url)
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 8123,
                username=parts.username or "default",
                password=password or parts.password or "",
            )
            self._session = None
            self.where = f"ClickHouse at {parts.hostname}:{parts.port or 8123}/{self.database}"
        else:
            from chdb import session

            path.mkdir(parents=True, exist_ok=True)
            self._session = session.Session(str(path))
            self._client = None
            self.where = f"chdb at {path}"

    def _in_database(self, sql: str) -> str:
        return re.sub(rf"\b{DATABASE}\b", self.database, sql)

    def command(self, sql: str) -> None:
        sql = self._in_database(sql)
        if self._session is not None:
            self._session.query(sql)
        else:
            self._client.command(sql)

    def query(self, sql: str) -> pa.Table:
        sql = self._in_database(sql)
        if self._session is not None:
            result = self._session.query(sql, "Arrow")
            return pa.ipc.open_file(pa.BufferReader(result.bytes())).read_all()
        return self._client.query_arrow(sql)

    def scalar(self, sql: str):
        table = self.query(sql)
        return table.column(0)[0].as_py() if table.num_rows else None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        else:
            self._client.close()

    def create(self) -> None:
        for statement in SCHEMA:
            self.command(statement)

    def write_events(self, events: pa.Table) -> int:
        """Insert the events the table does not hold yet (by event_id); the number inserted."""
        events = events.select(list(EVENT_COLUMNS))
        self.command(f"TRUNCATE TABLE {STAGING}")  # what a killed write left
        if self._session is not None:
            staged = events  # noqa: F841 (chdb's Python() reads it by name)
            self._session.query(
                self._in_database(f"INSERT INTO {STAGING} SELECT * FROM Python(staged)")
            )
        else:
            self._client.insert_arrow(self._in_database(STAGING), events)
        before = self.scalar(f"SELECT count() FROM {EVENTS}")
        self.command(
            f"""INSERT INTO {EVENTS} ({", ".join(EVENT_COLUMNS)})
SELECT * FROM {STAGING} WHERE event_id NOT IN (
    SELECT event_id FROM {EVENTS}
    WHERE event_date IN (SELECT DISTINCT event_date FROM {STAGING}))"""
        )
        self.command(f"TRUNCATE TABLE {STAGING}")
        return self.scalar(f"SELECT count() FROM {EVENTS}") - before

    def write_set_aside(self, rows: pa.Table) -> None:
        """Record the dead letters and late events of a batch (a replay replaces, by message)."""
        if not rows.num_rows:
            return
        rows = rows.select(list(SET_ASIDE_COLUMNS))
        if self._session is not None:
            staged = rows  # noqa: F841 (chdb's Python() reads it by name)
            columns = ", ".join(SET_ASIDE_COLUMNS)
            insert = f"INSERT INTO {SET_ASIDE} ({columns}) SELECT * FROM Python(staged)"
            self._session.query(self._in_database(insert))
        else:
            self._client.insert_arrow(
                self._in_database(SET_ASIDE), rows, column_names=list(SET_ASIDE_COLUMNS)
            )


@contextlib.contextmanager
def opened(
    *, path: Path | None = None, url: str = "", password: str = "", database: str = ""
) -> Iterator[Store]:
    """The store for the block, its tables and views created when missing."""
    store = Store(path=path, url=url, password=password, database=database)
    try:
        store.create()
        yield store
    finally:
        store.close()
