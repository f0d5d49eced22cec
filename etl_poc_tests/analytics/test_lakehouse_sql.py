"""The analytical SQL over the lakehouse: every engine's tables registered, every query run on
each, answers compared; an engine whose table differs is found."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from etl_poc.analytics.lakehouse_sql import (
    queries,
    read_only_session,
    register_lakehouse,
    run_queries,
    run_read_only,
    run_sql,
)
from etl_poc.lakehouse import iceberg

DAY = date(2024, 1, 1)


def _events(n: int) -> pa.Table:
    start = datetime(2024, 1, 1, 10, tzinfo=UTC)
    times = [start + timedelta(minutes=i) for i in range(n)]
    types = ["PAGE_VIEW", "PRODUCT_VIEW", "ADD_TO_CART", "CHECKOUT_START", "PURCHASE"]
    return pa.table({
        "event_id": [f"e{i}" for i in range(n)], "user_id": [f"u{i % 2}" for i in range(n)],
        "event_ts": times, "event_date": [DAY] * n, "page_url": ["/p"] * n,
        "device": ["desktop"] * n, "event_type": [types[i % 5] for i in range(n)],
        "user_tier": ["gold"] * n, "ip_address": ["8.8.8.8"] * n, "ip_status": ["public"] * n,
        "country_code": ["US"] * n, "session_id": [f"u{i % 2}@s" for i in range(n)],
        "session_start": [start] * n, "event_seq": list(range(1, n + 1)),
        "source_file": ["f.parquet"] * n,
        "product_id": [None] * n, "search_query": [None] * n, "transaction_id": [None] * n,
        "amount": pa.array([None] * n, pa.decimal128(12, 2)),
    })  # fmt: skip


def _catalog(tmp_path, rows: dict[str, int]):
    catalog = iceberg.open_catalog(tmp_path / "warehouse")
    for engine, n in rows.items():
        iceberg.replace_window(catalog, engine, iceberg.EVENTS, _events(n), DAY,
                               DAY + timedelta(days=1), {"etl_poc.engine": engine})  # fmt: skip
    return catalog


def test_every_query_runs_on_every_engine_and_they_agree(tmp_path):
    connection = duckdb.connect()
    views = register_lakehouse(connection, _catalog(tmp_path, {"polars": 10, "spark": 10}))
    assert views == ["polars_events", "spark_events"]  # no rejects table was written
    results = run_queries(connection, ["polars", "spark"])
    assert [r.name for r in results] == list(queries())
    assert len(results) >= 4
    assert all(r.engines_agree for r in results)
    funnel = next(r for r in results if r.name == "conversion_funnel").by_engine["polars"]
    assert "PURCHASE" in funnel.write_csv()
    assert run_sql(connection, "SELECT count(*) AS n FROM spark_events").item() == 10


def test_a_table_that_differs_is_found(tmp_path):
    connection = duckdb.connect()
    register_lakehouse(connection, _catalog(tmp_path, {"polars": 10, "spark": 9}))
    results = run_queries(connection, ["polars", "spark"])
    assert not all(r.engines_agree for r in results)


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("COPY (SELECT 1) TO 'out.csv'", "only a SELECT runs here, not COPY"),
        ("SELECT 1; DROP VIEW polars_events", "one statement at a time, got 2"),
        ("CREATE TABLE copy AS SELECT * FROM polars_events", "not CREATE"),
        ("ATTACH 'other.duckdb'", "not ATTACH"),
        ("SET enable_external_access = true", "not SET"),
    ],
)
def test_ad_hoc_sql_reads_the_lakehouse_and_nothing_else(tmp_path, sql, refused):
    """`etl-poc query`: one SELECT over the views; no files, no writes (issue 15, security)."""
    connection = read_only_session(_catalog(tmp_path, {"polars": 3}))
    assert (
        run_read_only(connection, "WITH e AS (FROM polars_events) SELECT count(*) FROM e").item()
        == 3
    )
    with pytest.raises((ValueError, duckdb.Error), match=refused):
        run_read_only(connection, sql)
    assert run_read_only(connection, "SELECT count(*) FROM polars_events").item() == 3
