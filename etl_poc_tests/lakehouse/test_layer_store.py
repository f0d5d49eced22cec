"""The layers on disk behave the same for every engine's writers and readers: a window is
replaced exactly, rows outside it (or without a day) are refused before anything changes, and
an empty window reads as None."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from etl_poc.lakehouse import layer_store

DAY1, DAY2, DAY3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)


def _rows(*days) -> pl.DataFrame:
    return pl.DataFrame(
        {"event_id": [f"e{i}" for i in range(len(days))], "event_date": list(days)},
        schema={"event_id": pl.String, "event_date": pl.Date},
    )


def _polars_write(frame, root, start, end, spark=None):
    layer_store.polars_write(frame, root, "polars", "cleansed", start, end)


def _spark_write(frame, root, start, end, spark=None):
    layer_store.spark_write(spark.createDataFrame(frame.to_arrow()), root, "spark", "cleansed",
                            start, end)  # fmt: skip


def _duckdb_write(frame, root, start, end, spark=None):
    import duckdb

    connection = duckdb.connect()
    layer_store.duckdb_write(connection.from_arrow(frame.to_arrow()), root, "duckdb", "cleansed",
                             start, end)  # fmt: skip
    connection.close()


WRITERS = [
    pytest.param(("polars", _polars_write), id="polars"),
    pytest.param(("duckdb", _duckdb_write), id="duckdb"),
    pytest.param(("spark", _spark_write), id="spark", marks=pytest.mark.spark),
]


@pytest.fixture(params=WRITERS)
def writer(request):
    engine, write = request.param
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    return engine, lambda frame, root, start, end: write(frame, root, start, end, spark)


def test_a_window_is_replaced_exactly(writer, tmp_path):
    engine, write = writer
    write(_rows(DAY1, DAY2, DAY2), tmp_path, DAY1, DAY3)
    assert layer_store.window_size(tmp_path, engine, "cleansed", DAY1, DAY3)[0] == 3
    write(_rows(DAY2), tmp_path, DAY2, DAY3)  # re-run of the second day only
    frame = layer_store.read_layer(tmp_path, engine, "cleansed", DAY1, DAY3)
    assert sorted(frame["event_date"].to_list()) == [DAY1, DAY2]
    write(_rows(), tmp_path, DAY1, DAY3)  # a window with no rows any more
    assert layer_store.polars_read(tmp_path, engine, "cleansed", DAY1, DAY3) is None
    assert layer_store.read_layer(tmp_path, engine, "cleansed", DAY1, DAY3).is_empty()


@pytest.mark.parametrize("days", [(DAY1, DAY3), (DAY1, None)], ids=["outside", "null day"])
def test_rows_outside_the_window_are_refused_and_nothing_changes(writer, tmp_path, days):
    engine, write = writer
    write(_rows(DAY1), tmp_path, DAY1, DAY2)
    with pytest.raises(ValueError, match=r"cleansed: 1 rows outside the window \[2024-01-01"):
        write(_rows(*days), tmp_path, DAY1, DAY3)
    kept = layer_store.read_layer(tmp_path, engine, "cleansed", DAY1, DAY3)
    assert kept["event_id"].to_list() == ["e0"]
    assert [p.name for p in (tmp_path / engine).iterdir()] == ["cleansed"]  # no staging left


@pytest.mark.spark
def test_every_reader_sees_nothing_in_an_empty_window(spark, tmp_path):
    import duckdb

    assert layer_store.polars_read(tmp_path, "polars", "raw", DAY1, DAY2) is None
    assert layer_store.spark_read(spark, tmp_path, "spark", "raw", DAY1, DAY2) is None
    assert layer_store.duckdb_read(duckdb.connect(), tmp_path, "duckdb", "raw", DAY1, DAY2) is None


def test_duckdb_reads_what_it_wrote_with_utc_instants_as_naive_utc(tmp_path):
    """DuckDB stores the rules' naive UTC timestamps as UTC instants (as Polars and Spark
    store them) and reads them back naive; Polars reads the same files as UTC instants."""
    from datetime import datetime

    import duckdb

    when = datetime(2024, 1, 1, 23, 59, 59, 999999)
    frame = _rows(DAY1).with_columns(event_ts=pl.lit(when))
    _duckdb_write(frame, tmp_path, DAY1, DAY2)
    relation = layer_store.duckdb_read(duckdb.connect(), tmp_path, "duckdb", "cleansed", DAY1, DAY2)
    assert relation.fetchall() == [("e0", when, DAY1)]
    stored = layer_store.read_layer(tmp_path, "duckdb", "cleansed", DAY1, DAY2)
    assert stored["event_ts"].dtype == pl.Datetime("us", "UTC")
    assert stored["event_ts"].dt.replace_time_zone(None).to_list() == [when]


def test_the_day_key_of_each_stored_layer(tmp_path):
    frame = pl.DataFrame({"x": [1], "partition_date": [DAY1]})
    layer_store.polars_write(frame, tmp_path, "polars", "rejects", DAY1, DAY2)
    assert (tmp_path / "polars" / "rejects" / "partition_date=2024-01-01").is_dir()
    read = layer_store.polars_read(tmp_path, "polars", "rejects", DAY1, DAY2).collect()
    assert read.to_dicts() == [{"x": 1, "partition_date": DAY1}]


@pytest.mark.parametrize("code", [28, 30], ids=["disk full", "read-only"])
def test_a_full_or_read_only_disk_names_the_file_and_leaves_the_window_as_it_was(
    tmp_path, monkeypatch, code
):
    """Issue 15, faults: the write fails half-way through a file (ENOSPC, EROFS). The error
    names the file; what readers see is the window before the write, whole; nothing of the
    failed write is left."""
    import errno
    import os

    layer_store.polars_write(_rows(DAY1, DAY2), tmp_path, "polars", "cleansed", DAY1, DAY3)
    before = layer_store.read_layer(tmp_path, "polars", "cleansed", DAY1, DAY3)
    written = []

    def fails_half_way(self, path, *args, **kwargs):
        if written:  # the second day's file: half of it, then the disk says no
            Path(path).write_bytes(b"PAR1 half a file")
            raise OSError(code, os.strerror(code))
        written.append(path)
        return original(self, path, *args, **kwargs)

    original = pl.DataFrame.write_parquet
    monkeypatch.setattr(pl.DataFrame, "write_parquet", fails_half_way)
    with pytest.raises(
        OSError,
        match=r"cannot write the layer file .*/cleansed/event_date=2024-01-0[12]/part-0\.parquet: ",
    ) as raised:
        layer_store.polars_write(
            _rows(DAY1, DAY2, DAY2), tmp_path, "polars", "cleansed", DAY1, DAY3
        )
    assert os.strerror(code) in str(raised.value)
    assert code in (errno.ENOSPC, errno.EROFS)
    monkeypatch.undo()
    assert layer_store.read_layer(tmp_path, "polars", "cleansed", DAY1, DAY3).equals(before)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert leftovers == []
