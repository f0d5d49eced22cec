"""Landing files into the raw contract, on both engines alike: text columns (a missing
optional column null, empty CSV fields null), source_file, malformed lines, typed Parquet
timestamps as UTC text, and a file without a required column named in the error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from etl_poc.lakehouse.landing_readers import polars_read_landing, spark_read_landing
from etl_poc.logic.spec import SOURCE_FILE, TEXT_COLUMNS


def _read(engine: str, files: list[Path], landing: Path, spark=None) -> pl.DataFrame:
    if engine == "polars":
        frame = polars_read_landing(files, landing).collect()
    else:
        frame = pl.from_arrow(spark_read_landing(spark, files, landing).toArrow())
    return frame.sort(SOURCE_FILE, "event_id", nulls_last=True)


@pytest.fixture(params=["polars", pytest.param("spark", marks=pytest.mark.spark)])
def read(request):
    spark = request.getfixturevalue("spark") if request.param == "spark" else None
    return lambda files, landing: _read(request.param, files, landing, spark)


def test_csv_and_parquet_give_the_raw_contract(read, tmp_path):
    (tmp_path / "day").mkdir()
    csv = tmp_path / "day" / "a.csv"
    # No device or page_url column; an empty user; a line with a field too many.
    csv.write_text(
        "event_id,user_id,timestamp,ip_address,event_type,user_tier\n"
        "c1,u1,2024-01-01 10:00:00,1.2.3.4,PAGE_VIEW,gold\n"
        "c2,,2024-01-01 10:01:00,1.2.3.4,PAGE_VIEW,gold\n"
        'c3,u3,"2024-01-01 10:02:00",1.2.3.4,"SEARCH, deep",gold,extra\n'
    )
    parquet = tmp_path / "b.parquet"
    pl.DataFrame(
        {
            "event_id": ["p1"],
            "user_id": ["u9"],
            "timestamp": [datetime(2024, 1, 1, 12, 30, tzinfo=UTC)],
            "device": ["mobile"],
        }
    ).write_parquet(parquet)
    frame = read([csv, parquet], tmp_path)
    assert frame.columns == [*TEXT_COLUMNS, SOURCE_FILE, "malformed"]
    rows = {row["event_id"]: row for row in frame.to_dicts()}
    assert rows["c1"]["device"] is None
    assert rows["c1"]["page_url"] is None
    assert rows["c2"]["user_id"] is None
    assert rows["c1"][SOURCE_FILE] == "day/a.csv"
    assert [rows[k]["malformed"] for k in ("c1", "c2", "c3", "p1")] == [False, False, True, False]
    assert rows["p1"]["timestamp"].startswith("2024-01-01 12:30:00")
    assert rows["p1"][SOURCE_FILE] == "b.parquet"


def test_a_file_without_a_required_column_is_named(read, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("event_id,timestamp\ne1,2024-01-01 00:00:00\n")
    with pytest.raises(ValueError, match=r"bad\.csv: lacks required column\(s\) \['user_id'\]"):
        read([bad], tmp_path)


def test_gzipped_and_upper_case_csv_files_read_like_plain_ones(read, tmp_path):
    """x.csv.gz and y.CSV used to be dropped silently (issue 15, defect 2)."""
    import gzip

    from etl_poc.lakehouse.landing_zone import landing_rows

    text = (
        "event_id,user_id,timestamp,device\n"
        "e1,u1,2024-01-01 10:00:00,mobile\n"
        'e2,u2,"2024-01-01 10:01:00",desktop\n'
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
