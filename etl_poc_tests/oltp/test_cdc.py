"""The operational database into the lakehouse: an embedded PostgreSQL with wal_level=logical,
the generator's tables and changes loaded a day per transaction, Debezium capturing them into
the Iceberg change logs, the current state rebuilt and equal to a SELECT of the source; a
capture killed in the middle of its stream, run again, loses and repeats nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.spec import OLTP_KEYS, OLTP_TABLES
from etl_poc.oltp import capture, lake, source, sync
from etl_poc.oltp.server import Server, ServerError

pytestmark = pytest.mark.slow
FIRST_DAYS = date(2024, 1, 5)  # the days loaded before the first capture (its snapshot)


@pytest.fixture
def data_dir(small_landing, tmp_path) -> Path:
    """A data directory with the small size's operational tables, nothing loaded yet."""
    shutil.copytree(small_landing.manifest_path.parent.parent / "oltp", tmp_path / "oltp")
    return tmp_path


def _change_log_rows(catalog) -> int:
    return sum(lake.read_changes(catalog, t).height for t in OLTP_TABLES)


def _assert_each_change_once(catalog) -> None:
    for table in OLTP_TABLES:
        changes = lake.read_changes(catalog, table)
        identity = ["__source_lsn", "__op", *OLTP_KEYS[table]]
        assert changes.select(identity).is_duplicated().sum() == 0, table


def test_load_applies_each_day_once_in_its_own_transaction(data_dir):
    database = sync.Database(Paths(data_dir))
    first = sync.load(database, through=FIRST_DAYS)
    assert first.initial_rows == {"users": 2500, "products": 5000}
    assert max(first.applied) == FIRST_DAYS
    assert not first.already
    rest = sync.load(database)
    assert not set(rest.applied) & set(first.applied)
    assert sorted(rest.already) == sorted(first.applied)
    again = sync.load(database)
    assert again.applied == {}
    assert again.initial_rows == {}
    with database.started() as server, server.connect() as connection:
        assert connection.execute("SHOW wal_level").fetchone()[0] == "logical"
        days = connection.execute("SELECT count(*) FROM etl_poc.loaded_days").fetchone()[0]
        assert days == len(first.applied) + len(rest.applied)
        # every order's total = its items - discount + tax (the source is consistent)
        wrong = connection.execute(
            "SELECT count(*) FROM orders o JOIN (SELECT order_id, sum(line_total) AS items "
            "FROM order_items GROUP BY 1) i USING (order_id) "
            "WHERE o.subtotal <> i.items OR o.total <> o.subtotal - o.discount + o.tax"
        ).fetchone()[0]
        assert wrong == 0


def test_capture_snapshots_then_streams_and_the_state_equals_the_source(data_dir):
    paths = Paths(data_dir)
    database = sync.Database(paths)
    catalog = iceberg.open_catalog(paths.warehouse)
    sync.load(database, through=FIRST_DAYS)
    snapshot = sync.capture_changes(database, catalog)
    assert snapshot.added["users"] == 2500
    assert snapshot.added["products"] == 5000
    assert all(lake.read_changes(catalog, t)["__op"].unique().to_list() in ([], ["r"])
               for t in OLTP_TABLES)  # fmt: skip
    streamed = sync.load(database)
    result = sync.capture_changes(database, catalog)
    assert sum(result.added.values()) == sum(streamed.applied.values())
    sync.rebuild(catalog)
    assert all(c.equal for c in sync.compare(database, catalog).values())
    orders = lake.read_changes(catalog, "orders")
    assert set(orders["__op"]) == {"r", "c", "u", "d"}  # inserts, status changes, purges
    # the loader's day of each streamed change is its partition
    streamed_days = orders.filter(pl.col("__op") != "r")[lake.DAY]
    assert streamed_days.min() > FIRST_DAYS
    assert set(streamed_days) <= set(streamed.applied)
    state = lake.read_state(catalog, "orders")
    assert state["__op"].is_in(["r", "c", "u"]).all()  # a deleted order is gone
    assert state.height == orders.filter(pl.col("__op") != "d")["order_id"].n_unique() - (
        orders.filter(pl.col("__op") == "d").height
    )
    nothing = sync.capture_changes(database, catalog)
    assert sum(nothing.added.values()) == 0
    _assert_each_change_once(catalog)
    # a batch Debezium delivers again (after a kill before its offset was stored) adds nothing
    replayed = lake.read_changes(catalog, "orders").sort("__source_lsn").tail(40)
    assert lake.ChangeLogWriter(catalog, "orders").append(replayed.to_arrow()) == 0
    _assert_each_change_once(catalog)


def test_a_capture_killed_mid_stream_resumes_with_no_loss_or_duplicate(data_dir):
    paths = Paths(data_dir)
    database = sync.Database(paths)
    catalog = iceberg.open_catalog(paths.warehouse)
    sync.load(database, through=FIRST_DAYS)
    sync.capture_changes(database, catalog)
    before = _change_log_rows(catalog)
    streamed = sum(sync.load(database).applied.values())
    command = [sys.executable, "-m", "etl_poc.cli", "cdc", "--data", str(data_dir), "--steps",
               "capture", "--batch-size", "100"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "ETL_POC_TRACEBACK": "1"})  # fmt: skip
    deadline = time.monotonic() + 120
    while _change_log_rows(catalog) == before:  # until its first batches are in
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the capture wrote nothing in 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    partial = _change_log_rows(catalog) - before
    assert 0 < partial < streamed, "the kill came after the capture ended: nothing to resume"
    sync.capture_changes(database, catalog)
    assert _change_log_rows(catalog) - before == streamed
    _assert_each_change_once(catalog)
    sync.rebuild(catalog)
    assert all(c.equal for c in sync.compare(database, catalog).values())


def test_offsets_of_another_database_are_refused(data_dir):
    paths = Paths(data_dir)
    database = sync.Database(paths)
    catalog = iceberg.open_catalog(paths.warehouse)
    sync.load(database, through=FIRST_DAYS)
    sync.capture_changes(database, catalog)
    shutil.rmtree(paths.postgres)  # the database rebuilt under the stored offsets
    sync.load(database, through=FIRST_DAYS)
    with pytest.raises(capture.CaptureError, match="offsets are of another database"):
        sync.capture_changes(database, catalog)


def test_current_state_applies_changes_in_lsn_order():
    rows = [
        ("u1", "bronze", "r", 10), ("u1", "gold", "u", 30), ("u1", "silver", "u", 20),
        ("u2", "bronze", "r", 10), ("u2", "bronze", "d", 40), ("u3", "gold", "c", 50),
    ]  # fmt: skip
    changes = pl.DataFrame(
        [{**dict.fromkeys(source.COLUMNS["users"]), "user_id": u, "tier": t, "__op": op,
          "__source_lsn": lsn, "__ts_ms": lsn, "__source_ts_ms": lsn} for u, t, op, lsn in rows],
        schema_overrides={"__source_lsn": pl.Int64},
    )  # fmt: skip
    state = lake.current_state(changes, "users")
    assert state.select("user_id", "tier").rows() == [("u1", "gold"), ("u3", "gold")]


def test_a_delete_is_read_from_the_row_before_it():
    value = (
        '{"before":{"order_id":"o1","status":"cancelled"},"after":null,'
        '"source":{"table":"orders","ts_ms":5,"lsn":99,"txId":7,"snapshot":"false"},'
        '"op":"d","ts_ms":6}'
    )
    table, change = capture.parse(value)
    assert table == "orders"
    assert change["row"]["order_id"] == "o1"
    assert change["op"] == "d"
    assert change["lsn"] == 99
    assert not change["snapshot"]


def test_a_server_without_logical_decoding_is_refused(postgres_server):
    _, url = postgres_server
    server = Server(url.render_as_string(hide_password=False), embedded=False)
    with server.connect() as connection:
        level = connection.execute("SHOW wal_level").fetchone()[0]
    if level == "logical":
        pytest.skip("the test server has wal_level=logical: nothing to refuse")
    database = sync.Database(Paths(Path("unused")), server.url)
    with pytest.raises(ServerError, match=f"wal_level={level}"), database.started():
        pass


def test_change_logs_removed_under_the_offsets_are_captured_again_from_a_snapshot(data_dir):
    paths = Paths(data_dir)
    database = sync.Database(paths)
    sync.load(database)
    sync.capture_changes(database, iceberg.open_catalog(paths.warehouse))
    shutil.rmtree(paths.warehouse)  # the lakehouse removed, the offsets kept
    catalog = iceberg.open_catalog(paths.warehouse)
    again = sync.capture_changes(database, catalog)
    assert again.added["users"] == 2500
    sync.rebuild(catalog)
    assert all(c.equal for c in sync.compare(database, catalog).values())
