"""The Iceberg tables: a write replaces exactly its window, atomically, and writers in
several processes at once all land."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from etl_poc.lakehouse import iceberg
from etl_poc.logic.compare import compare_frames
from etl_poc.logic.spec import COMMERCE_COLUMNS


def _events(day: date, n: int, tag: str) -> pl.DataFrame:
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pl.DataFrame(
        {
            **{c: [f"{tag}-{i}" for i in range(n)] for c in iceberg.EVENT_COLUMNS},
            "event_ts": [ts] * n,
            "session_start": [ts] * n,
            "event_date": [day] * n,
            "event_seq": list(range(1, n + 1)),
            "amount": pl.Series([None] * n, dtype=pl.Decimal(12, 2)),
        }
    ).select(iceberg.EVENT_COLUMNS)


def _rows(warehouse: Path) -> pl.DataFrame:
    catalog = iceberg.open_catalog(warehouse)
    return pl.from_arrow(catalog.load_table("polars.clickstream_events").scan().to_arrow())


def test_a_write_replaces_exactly_its_window(tmp_path):
    catalog = iceberg.open_catalog(tmp_path)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(3)]
    everything = pl.concat([_events(d, 4, "first") for d in days])
    props = {"dagster.run_id": "run-1"}
    iceberg.replace_window(catalog, "polars", iceberg.EVENTS, everything.to_arrow(), days[0],
                           days[-1] + timedelta(days=1), props)  # fmt: skip
    # The middle day again, with other rows: only that day changes.
    result = iceberg.replace_window(
        catalog, "polars", iceberg.EVENTS, _events(days[1], 2, "second").to_arrow(),
        days[1], days[2], {"dagster.run_id": "run-2"},
    )  # fmt: skip
    rows = _rows(tmp_path)
    per_day = dict(rows.group_by("event_date").len().iter_rows())
    assert per_day == {days[0]: 4, days[1]: 2, days[2]: 4}
    assert rows.filter(pl.col("event_date") == days[1])["event_id"].str.starts_with("second").all()
    assert result["summary"]["dagster.run_id"] == "run-2"
    # The same write again: nothing duplicated.
    iceberg.replace_window(catalog, "polars", iceberg.EVENTS,
                           _events(days[1], 2, "second").to_arrow(), days[1], days[2], props)  # fmt: skip
    assert _rows(tmp_path).height == 10


def test_a_preview_reads_the_first_days_only(tmp_path, monkeypatch):
    """A preview of a window reads day after day until it has its rows: PyIceberg reads every
    file of a scan whole, at once, before applying the limit (6 GB at 100M rows)."""
    catalog = iceberg.open_catalog(tmp_path)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(6)]
    rows = pl.concat([_events(d, 3, f"d{i}") for i, d in enumerate(days) if i != 1])
    iceberg.replace_window(catalog, "polars", iceberg.EVENTS, rows.to_arrow(), days[0],
                           days[-1] + timedelta(days=1), {})  # fmt: skip
    from pyiceberg.table import Table

    scanned = []
    scan = Table.scan
    monkeypatch.setattr(
        Table, "scan", lambda self, *a, **k: scanned.append(k) or scan(self, *a, **k)
    )
    end = days[-1] + timedelta(days=1)
    shown = iceberg.read_window(catalog, "polars", iceberg.EVENTS, days[0], end, limit=5)
    assert shown.height == 5
    assert set(shown["event_date"]) == {days[0], days[2]}  # the second day has no rows
    assert len(scanned) == 3  # days 1, 2 and 3: none after
    empty = iceberg.read_window(catalog, "polars", iceberg.EVENTS, days[1], days[2], limit=5)
    assert empty.height == 0
    assert empty.columns == list(iceberg.EVENT_COLUMNS)
    whole = iceberg.read_window(catalog, "polars", iceberg.EVENTS, days[0], end)
    assert whole.height == 15


def test_a_table_from_before_the_commerce_columns_is_evolved_to_the_new_fields(tmp_path):
    """A lakehouse built before issue 18: its tables gain the new fields (optional, at the end,
    as a new table has them) when a writer opens them, and keep their rows."""
    from pyiceberg.schema import Schema

    catalog = iceberg.open_catalog(tmp_path)
    old_fields = [f for f in iceberg.EVENTS_SCHEMA.fields if f.name not in COMMERCE_COLUMNS]
    old = iceberg.TableLayout(
        iceberg.EVENTS_TABLE, Schema(*old_fields), iceberg.EVENTS.spec, "event_date"
    )
    day = date(2024, 1, 1)
    rows = _events(day, 3, "old").drop(*COMMERCE_COLUMNS)
    table = iceberg.table_for(catalog, "polars", old)
    assert "amount" not in {f.name for f in table.schema().fields}
    table.append(iceberg.arrow_for(rows.to_arrow(), old))
    evolved = iceberg.table_for(catalog, "polars", iceberg.EVENTS)
    assert [f.name for f in evolved.schema().fields] == list(iceberg.EVENT_COLUMNS)
    assert [f.field_id for f in evolved.schema().fields] == [
        f.field_id for f in iceberg.EVENTS_SCHEMA.fields
    ]
    kept = pl.from_arrow(evolved.scan().to_arrow())
    assert kept.height == 3
    assert kept["amount"].null_count() == 3


def _writer(warehouse: str, day: str, rounds: int) -> None:
    catalog = iceberg.open_catalog(Path(warehouse))
    start = date.fromisoformat(day)
    for i in range(rounds):
        rows = _events(start, 3 + i, f"{day}-{i}").to_arrow()
        iceberg.replace_window(catalog, "polars", iceberg.EVENTS, rows, start,
                               start + timedelta(days=1), {"round": str(i)})  # fmt: skip


def test_writers_in_several_processes_all_land(tmp_path):
    """Two engines' runs commit to the SQLite catalog at the same time: every commit lands
    (WAL, busy timeout, retry of a lost race on the re-read table)."""
    iceberg.table_for(iceberg.open_catalog(tmp_path), "polars", iceberg.EVENTS)
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    rounds = 4
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(tmp_path), d, rounds)) for d in days]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    per_day = dict(_rows(tmp_path).group_by("event_date").len().iter_rows())
    assert per_day == {date.fromisoformat(d): 3 + rounds - 1 for d in days}


def test_rows_outside_the_window_are_refused(tmp_path):
    catalog = iceberg.open_catalog(tmp_path)
    rows = _events(date(2024, 1, 2), 3, "late").to_arrow()
    with pytest.raises(ValueError, match="3 rows outside the window"):
        iceberg.replace_window(catalog, "polars", iceberg.EVENTS, rows, date(2024, 1, 1),
                               date(2024, 1, 2), {})  # fmt: skip


def _spark_commit(spark, catalog, frame: pl.DataFrame, start: date, end: date, run: str):
    table = iceberg.table_for(catalog, "spark", iceberg.EVENTS)
    files, rows = iceberg.spark_data_files(
        spark.createDataFrame(frame.to_arrow()), table, iceberg.EVENTS
    )
    iceberg.replace_window_with_files(catalog, "spark", iceberg.EVENTS, files, start, end,
                                      {"dagster.run_id": run})  # fmt: skip
    return files, rows


@pytest.mark.spark
def test_spark_writes_the_data_files_and_pyiceberg_commits_them(spark, tmp_path):
    catalog = iceberg.open_catalog(tmp_path)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(3)]
    first = pl.concat([_events(d, 4, "first") for d in days]).with_columns(
        pl.col("event_ts").dt.offset_by("123456us")  # microseconds survive
    )
    files, rows = _spark_commit(spark, catalog, first, days[0], days[-1] + timedelta(days=1), "a")
    assert rows == 12
    assert len(files) == 3  # one day per file: its partition comes from its statistics
    table = catalog.load_table("spark.clickstream_events")
    assert table.inspect.files()["file_path"].to_pylist() == files
    stored = pl.from_arrow(table.scan().to_arrow())
    assert compare_frames(first, stored).equal
    assert stored["event_ts"].dt.microsecond().unique().to_list() == [123456]
    partitions = sorted(p["event_date_day"] for p in table.inspect.files()["partition"].to_pylist())
    assert partitions == days
    # Re-running the middle day replaces it, and only it.
    _spark_commit(spark, catalog, _events(days[1], 2, "second"), days[1], days[2], "b")
    stored = pl.from_arrow(catalog.load_table("spark.clickstream_events").scan().to_arrow())
    assert dict(stored.group_by("event_date").len().iter_rows()) == {
        days[0]: 4, days[1]: 2, days[2]: 4,
    }  # fmt: skip
    summary = catalog.load_table("spark.clickstream_events").current_snapshot().summary
    assert summary.additional_properties["dagster.run_id"] == "b"


@pytest.mark.spark
def test_spark_files_with_a_null_key_or_outside_the_window_are_refused(spark, tmp_path):
    catalog = iceberg.open_catalog(tmp_path)
    day = date(2024, 1, 1)
    table = iceberg.table_for(catalog, "spark", iceberg.EVENTS)
    data_dir = Path(table.location().removeprefix("file://")) / "data"
    broken = _events(day, 3, "x").with_columns(
        pl.when(pl.col("event_seq") == 2).then(None).otherwise(pl.col("user_id")).alias("user_id")
    )
    with pytest.raises(ValueError, match=r"nulls in required columns: \{'user_id': 1\}"):
        iceberg.spark_data_files(spark.createDataFrame(broken.to_arrow()), table, iceberg.EVENTS)
    assert not list(data_dir.glob("spark-*"))  # nothing left behind
    files, _ = iceberg.spark_data_files(
        spark.createDataFrame(_events(day, 3, "y").to_arrow()), table, iceberg.EVENTS
    )
    with pytest.raises(ValueError, match="not in"):
        iceberg.replace_window_with_files(catalog, "spark", iceberg.EVENTS, files,
                                          day + timedelta(days=1), day + timedelta(days=2), {})  # fmt: skip
    assert catalog.load_table("spark.clickstream_events").current_snapshot() is None


# --- The catalog on PostgreSQL (the containers' configuration) ---------------------------------


def _engine_writer(uri: str, warehouse: str, engine: str, day: str, rounds: int, barrier) -> None:
    """One engine's run: opens the (maybe new) catalog when every writer is ready, then
    replaces its day `rounds` times; Polars gives PyIceberg the rows, Spark's path commits
    Parquet files written beforehand (here by PyArrow, as `spark_data_files` would)."""
    import uuid

    import pyarrow.parquet as pq

    start = date.fromisoformat(day)
    end = start + timedelta(days=1)
    barrier.wait(timeout=120)
    catalog = iceberg.open_catalog(Path(warehouse), uri)
    for i in range(rounds):
        rows = _events(start, 3 + i, f"{engine}-{day}-{i}").to_arrow()
        props = {"round": str(i)}
        if engine == "polars":
            iceberg.replace_window(catalog, engine, iceberg.EVENTS, rows, start, end, props)
            continue
        table = iceberg.table_for(catalog, engine, iceberg.EVENTS)
        file = Path(iceberg.local_path(table.location())) / "data" / f"{uuid.uuid4().hex}.parquet"
        file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(iceberg.arrow_for(rows, iceberg.EVENTS), file)
        iceberg.replace_window_with_files(catalog, engine, iceberg.EVENTS, [f"file://{file}"],
                                          start, end, props)  # fmt: skip


def test_two_engines_commit_at_once_to_a_new_postgres_catalog(tmp_path, postgres_database):
    """Both lineages' runs start together on an empty PostgreSQL catalog (as two queued runs do
    in the containers), each engine writing two days from two processes: every table and
    namespace is created once, every commit lands, and the last round of each day wins."""
    uri = postgres_database("iceberg").url
    writers = [(e, d) for e in ("polars", "spark") for d in ("2024-01-01", "2024-01-02")]
    rounds = 3
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(writers))
    processes = [
        context.Process(target=_engine_writer, args=(uri, str(tmp_path), e, d, rounds, barrier))
        for e, d in writers
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * len(writers)
    catalog = iceberg.open_catalog(tmp_path, uri)
    assert sorted(catalog.list_tables("polars") + catalog.list_tables("spark")) == [
        ("polars", "clickstream_events"), ("spark", "clickstream_events"),
    ]  # fmt: skip
    for engine in ("polars", "spark"):
        table = catalog.load_table(f"{engine}.clickstream_events")
        stored = pl.from_arrow(table.scan().to_arrow())
        last = rounds - 1
        assert dict(stored.group_by("event_date").len().iter_rows()) == {
            date(2024, 1, 1): 3 + last, date(2024, 1, 2): 3 + last,
        }  # fmt: skip
        assert stored["event_id"].str.starts_with(f"{engine}-").all()
        assert stored["event_id"].str.contains(f"-{last}-").all()
        # Every round of both days committed: a delete and an append each, none lost.
        assert len(table.snapshots()) >= 2 * rounds * 2 - 2


def _open_new_catalog(uri: str | None, warehouse: str, namespace: str, barrier) -> None:
    barrier.wait(timeout=120)
    iceberg.table_for(iceberg.open_catalog(Path(warehouse), uri), namespace, iceberg.EVENTS)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_runs_opening_a_new_catalog_at_once_all_get_it(tmp_path, request, backend):
    """The race two queued runs of a new lakehouse run into without the retry: processes
    creating the catalog's tables (PostgreSQL: a pg_type unique violation or a duplicate type;
    SQLite: "table ... already exists") and the same namespace (a primary key violation) at
    the same moment. Three new catalogs, four processes each: none fails."""
    context = multiprocessing.get_context("spawn")
    for trial in range(3):
        uri = None
        if backend == "postgres":
            uri = request.getfixturevalue("postgres_database")(f"race{trial}").url
        warehouse = tmp_path / f"trial{trial}"
        barrier = context.Barrier(4)
        processes = [
            context.Process(target=_open_new_catalog, args=(uri, str(warehouse), ns, barrier))
            for ns in ("polars", "spark", "polars", "spark")
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [p.exitcode for p in processes] == [0, 0, 0, 0], f"trial {trial}"


def test_a_catalog_that_outlived_its_warehouse_is_a_clear_error(tmp_path, postgres_database):
    """A catalog on a server survives the removal of the warehouse (make clean, a volume):
    writing again says what happened and what to do."""
    import shutil

    uri = postgres_database("orphan").url
    iceberg.table_for(iceberg.open_catalog(tmp_path / "warehouse", uri), "polars", iceberg.EVENTS)
    shutil.rmtree(tmp_path / "warehouse")
    catalog = iceberg.open_catalog(tmp_path / "warehouse", uri)
    with pytest.raises(RuntimeError, match=r"metadata file is gone.*restore the warehouse"):
        iceberg.table_for(catalog, "polars", iceberg.EVENTS)


def test_maintenance_expires_old_snapshots_and_removes_orphan_files(tmp_path):
    """Re-runs and killed writers pile up snapshots and files nothing references (issue 15,
    defect 11): maintenance expires the old snapshots, removes those files, keeps what a
    commit under way may still need, and leaves the table's rows as they were."""
    import os
    import time

    catalog = iceberg.open_catalog(tmp_path)
    day = date(2024, 1, 1)
    for run in ("a", "b", "c"):  # three runs of the same day
        rows = _events(day, 3, run).to_arrow()
        iceberg.replace_window(catalog, "polars", iceberg.EVENTS, rows, day,
                               day + timedelta(days=1), {iceberg.RUN_PROPERTY: run})  # fmt: skip
    table = catalog.load_table("polars.clickstream_events")
    data = iceberg.local_path(table.location()) / "data"
    killed = data / "spark-0123456789abcdef" / "event_date_day=2024-01-01"
    killed.mkdir(parents=True)
    (killed / "part-00000.zstd.parquet").write_bytes(b"a killed writer's part")
    under_way = data / "under-way.parquet"
    under_way.write_bytes(b"a commit under way")
    old, later = time.time() - 7200, time.time() + 3600
    for path in data.rglob("*"):
        if path.is_file():  # every file older than the cut, but the one under way
            os.utime(path, (later, later) if path == under_way else (old, old))
    before = pl.from_arrow(table.scan().to_arrow())
    files_before = sum(1 for p in data.rglob("*") if p.is_file())
    result = iceberg.maintain(table, datetime.now(UTC))
    table = catalog.load_table("polars.clickstream_events")
    assert result["snapshots_after"] == 1 < result["snapshots_before"]
    assert result["data_files_removed"] == files_before - 2  # all but the live file, under way
    assert not killed.parent.exists()
    assert under_way.exists()  # younger than the cut: perhaps another writer's
    assert compare_frames(before, pl.from_arrow(table.scan().to_arrow())).equal
    assert iceberg.day_writers(table, day, day + timedelta(days=1)) == {day: "c"}
    again = iceberg.maintain(table, datetime.now(UTC))
    assert again["data_files_removed"] == again["metadata_files_removed"] == 0
