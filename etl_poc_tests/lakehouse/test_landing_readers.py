"""Landing files into the raw contract, on every engine alike: every column of the contract
(a file lacking one refused, naming it), empty CSV fields null, source_file, malformed
records, RFC 4180 CSV (quoted commas, doubled quotes and line breaks, CRLF), a byte-order
mark and spaced header names, blank lines, bytes that are not UTF-8, typed Parquet
timestamps as UTC text (issue 15, defect 9)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from etl_poc.lakehouse.landing_readers import (
    duckdb_read_landing,
    polars_read_landing,
    spark_read_landing,
)
from etl_poc.logic.spec import (
    COMMERCE,
    COMMERCE_COLUMNS,
    REQUIRED_COLUMNS,
    SOURCE_FILE,
    TEXT_COLUMNS,
    RejectReason,
)

# A file from before the commerce columns: event_id,user_id,timestamp,page_url,device,...
HEADER = ",".join(REQUIRED_COLUMNS)


def _read(engine: str, files: list[Path], landing: Path, spark=None) -> pl.DataFrame:
    if engine == "polars":
        frame = polars_read_landing(files, landing).collect()
    elif engine == "duckdb":
        import duckdb

        frame = pl.from_arrow(
            duckdb_read_landing(duckdb.connect(), files, landing).to_arrow_table()
        )
    else:
        frame = pl.from_arrow(spark_read_landing(spark, files, landing).toArrow())
    return frame.sort(SOURCE_FILE, "event_id", nulls_last=True)


@pytest.fixture(params=["polars", pytest.param("spark", marks=pytest.mark.spark), "duckdb"])
def engine(request):
    return request.param


@pytest.fixture
def read(request, engine):
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    return lambda files, landing: _read(engine, files, landing, spark)


def test_csv_and_parquet_give_the_raw_contract(read, tmp_path):
    (tmp_path / "day").mkdir()
    csv = tmp_path / "day" / "a.csv"
    # An empty user; a record with a field too many, one with a field too few.
    csv.write_text(
        f"{HEADER}\n"
        "c1,u1,2024-01-01 10:00:00,/a,mobile,1.2.3.4,PAGE_VIEW,gold\n"
        "c2,,2024-01-01 10:01:00,/a,mobile,1.2.3.4,PAGE_VIEW,gold\n"
        'c3,u3,"2024-01-01 10:02:00",/a,mobile,1.2.3.4,"SEARCH, deep",gold,extra\n'
        "c4,u4,2024-01-01 10:03:00,/a,mobile,1.2.3.4,PAGE_VIEW\n"
    )
    parquet = tmp_path / "b.parquet"
    row = {c: ["x"] for c in TEXT_COLUMNS}
    row.update(event_id=["p1"], timestamp=[datetime(2024, 1, 1, 12, 30, tzinfo=UTC)])
    pl.DataFrame(row).write_parquet(parquet)
    frame = read([csv, parquet], tmp_path)
    assert frame.columns == [*TEXT_COLUMNS, SOURCE_FILE, "malformed", COMMERCE]
    rows = {row["event_id"]: row for row in frame.to_dicts()}
    assert [rows[k][COMMERCE] for k in ("c1", "p1")] == [False, True]
    assert all(rows["c1"][c] is None for c in COMMERCE_COLUMNS)  # not in the file: null
    assert rows["c2"]["user_id"] is None
    assert rows["c1"][SOURCE_FILE] == "day/a.csv"
    assert [rows[k]["malformed"] for k in ("c1", "c2", "c3", "c4", "p1")] == [
        False, False, True, True, False,
    ]  # fmt: skip
    assert rows["p1"]["timestamp"].startswith("2024-01-01 12:30:00")
    assert rows["p1"][SOURCE_FILE] == "b.parquet"


@pytest.mark.parametrize("missing", [("device",), ("page_url", "ip_address"), ("user_id",)])
def test_a_file_lacking_a_column_of_the_contract_is_refused_naming_them(read, tmp_path, missing):
    """A file without device, ip_address or page_url used to load with defaults."""
    columns = [c for c in REQUIRED_COLUMNS if c not in missing]
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(columns) + "\n" + ",".join("v" for _ in columns) + "\n")
    with pytest.raises(
        ValueError, match=rf"bad\.csv: line 1: lacks required column\(s\) {', '.join(missing)}$"
    ):
        read([bad], tmp_path)
    parquet = tmp_path / "bad.parquet"
    pl.DataFrame({c: ["v"] for c in columns}).write_parquet(parquet)
    with pytest.raises(ValueError, match=r"bad\.parquet: schema: lacks required column\(s\)"):
        read([parquet], tmp_path)


def test_the_commerce_columns_come_all_or_none(read, tmp_path):
    """A file with the commerce columns gives them (its rows `commerce`); one with some of
    them but not all is refused, naming what it lacks (CSV and Parquet alike)."""
    header = ",".join([*REQUIRED_COLUMNS, *COMMERCE_COLUMNS])
    good = tmp_path / "good.csv"
    order = "0ce10ca5-7365-431a-a3f0-711ef8a1b2c3"
    good.write_text(
        f"{header}\ne1,u1,2024-01-01 10:00:00,/p,mobile,1.2.3.4,PURCHASE,gold,,,{order},12.30\n"
    )
    row = read([good], tmp_path).row(0, named=True)
    assert (row["transaction_id"], row["amount"], row["product_id"]) == (order, "12.30", None)
    assert row[COMMERCE] is True
    partial = [*REQUIRED_COLUMNS, "product_id", "amount"]
    bad = tmp_path / "some.csv"
    bad.write_text(",".join(partial) + "\n" + ",".join("1" for _ in partial) + "\n")
    lacking = r"lacks search_query, transaction_id \(a file has all of"
    with pytest.raises(
        ValueError, match=rf"some\.csv: line 1: has some commerce columns but {lacking}"
    ):
        read([bad], tmp_path)
    parquet = tmp_path / "some.parquet"
    pl.DataFrame({c: ["1"] for c in partial}).write_parquet(parquet)
    with pytest.raises(ValueError, match=r"some\.parquet: schema: has some commerce columns"):
        read([parquet], tmp_path)


def test_rfc_4180_records_bom_spaced_header_crlf_and_blank_lines(read, tmp_path):
    """A line break inside quotes is one record (Polars crashed with ShapeError, Spark made
    two MALFORMED_LINE rejects of it); a BOM and spaces around names are not part of them;
    a blank line holds no record on either engine."""
    shuffled = ["user_id", "event_id", *REQUIRED_COLUMNS[2:]]
    header = "\ufeff" + ", ".join(f" {name} " for name in shuffled)
    text = (
        f"{header}\r\n"
        'u1,e1,2024-01-01 10:00:00,"/a,\r\nb ""c""",mobile,1.2.3.4,PAGE_VIEW,gold\r\n'
        "\r\n"
        "u2,e2,2024-01-01 10:01:00,/d,desktop,1.2.3.4,PAGE_VIEW,silver\r\n"
        '"u3\nstill u3",e3,2024-01-01 10:02:00,/e,desktop,1.2.3.4,PAGE_VIEW,gold,extra\n'
        "\n"
    )
    path = tmp_path / "rfc.csv"
    path.write_bytes(text.encode())
    frame = read([path], tmp_path)
    assert frame["event_id"].to_list() == ["e1", "e2", "e3"]
    rows = {row["event_id"]: row for row in frame.to_dicts()}
    assert rows["e1"]["page_url"] == '/a,\nb "c"'  # a quoted CRLF reads as LF on both
    assert rows["e1"]["user_id"] == "u1"
    assert rows["e2"]["user_tier"] == "silver"  # the CR of the line end is not in the value
    assert rows["e3"]["user_id"] == "u3\nstill u3"
    assert [rows[k]["malformed"] for k in ("e1", "e2", "e3")] == [False, False, True]


def test_bytes_that_are_not_utf8_are_rejected_as_invalid_encoding(engine, request, tmp_path):
    """Polars failed the file with a decoding error; Spark silently kept U+FFFD."""
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        f"{HEADER}\n".encode()
        + b"e1,u1,2024-01-01 10:00:00,/caf\xe9,mobile,1.2.3.4,PAGE_VIEW,gold\n"
        + b"e2,u2,2024-01-01 10:01:00,/cafe,mobile,1.2.3.4,PAGE_VIEW,gold\n"
    )
    when = {"start_date": date(2024, 1, 1), "processed_at": datetime(2024, 1, 2, tzinfo=UTC)}
    if engine == "polars":
        from etl_poc.logic import polars_engine

        frame = polars_engine.standardize(polars_read_landing([path], tmp_path), **when).collect()
    elif engine == "duckdb":
        import duckdb

        from etl_poc.logic import duckdb_engine

        raw = duckdb_read_landing(duckdb.connect(), [path], tmp_path)
        frame = pl.from_arrow(duckdb_engine.standardize(raw, **when).to_arrow_table())
    else:
        from etl_poc.logic import spark_engine

        spark = request.getfixturevalue("spark")
        standardized = spark_engine.standardize(spark_read_landing(spark, [path], tmp_path), **when)
        frame = pl.from_arrow(standardized.toArrow())
    reasons = dict(frame.select("event_id", "reject_reason").iter_rows())
    assert reasons == {"e1": RejectReason.INVALID_ENCODING, "e2": None}


def test_gzipped_and_upper_case_csv_files_read_like_plain_ones(read, tmp_path):
    """x.csv.gz and y.CSV used to be dropped silently (issue 15, defect 2)."""
    import gzip

    from etl_poc.lakehouse.landing_zone import landing_rows

    text = (
        f"{HEADER}\n"
        "e1,u1,2024-01-01 10:00:00,/a,mobile,1.2.3.4,PAGE_VIEW,gold\n"
        'e2,u2,"2024-01-01 10:01:00",/b,desktop,1.2.3.4,SEARCH,gold\n'
    )
    plain = tmp_path / "plain" / "a.csv"
    plain.parent.mkdir()
    plain.write_text(text)
    gzipped = tmp_path / "gz" / "a.csv.gz"
    gzipped.parent.mkdir()
    gzipped.write_bytes(gzip.compress(text.encode()))
    upper = tmp_path / "upper" / "A.CSV"
    upper.parent.mkdir()
    upper.write_text(text)
    expected = read([plain], tmp_path).drop(SOURCE_FILE)
    for other in (gzipped, upper):
        assert landing_rows(other) == 2
        assert read([other], tmp_path).drop(SOURCE_FILE).equals(expected), other.name
