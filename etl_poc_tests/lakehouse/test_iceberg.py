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


def _events(day: date, n: int, tag: str) -> pl.DataFrame:
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pl.DataFrame(
        {
            **{c: [f"{tag}-{i}" for i in range(n)] for c in iceberg.EVENT_COLUMNS},
            "event_ts": [ts] * n,
            "session_start": [ts] * n,
            "event_date": [day] * n,
            "event_seq": list(range(1, n + 1)),
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
