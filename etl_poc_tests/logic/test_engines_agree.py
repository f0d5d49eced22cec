"""Both engines on the generator's `small` data, from the files: identical rows, every row
accounted for, and the manifest's expectations met."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from etl_poc.lakehouse.landing_readers import polars_read_landing, spark_read_landing
from etl_poc.logic import polars_engine
from etl_poc.logic.compare import compare_frames
from etl_poc.reference.ip_ranges import load_packaged_ranges
from etl_poc.spark.session import spark_ip_ranges

START = date(2024, 1, 1)
PROCESSED_AT = datetime(2024, 3, 1, tzinfo=UTC)


def _parquet_files(result):
    root = result.manifest_path.parent
    return root, [root / f["paths"]["parquet"] for f in result.manifest["files"]]


def _window(result) -> dict:
    """The generator's window as pipeline() arguments: every row of the landing zone."""
    first, last = (date.fromisoformat(d) for d in result.manifest["window"])
    when = {"start_date": START, "processed_at": PROCESSED_AT}
    return {"start": first, "end": last + timedelta(days=1), **when}


@pytest.fixture(scope="module")
def polars_outputs(small_landing):
    root, files = _parquet_files(small_landing)
    raw = polars_read_landing(files, root)
    ranges = load_packaged_ranges()
    prepared = polars_engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
    sessions, rejects = polars_engine.pipeline(raw, **_window(small_landing), ranges=prepared)
    raw_rows = polars_engine.raw(raw, **_window(small_landing))
    raw_rows, valid, rejects, sessionized = pl.collect_all(
        [
            raw_rows.select(pl.len()),
            raw_rows.filter(pl.col("reject_reason").is_null()).select(pl.len()),
            rejects,
            sessions,
        ]
    )
    return {
        "raw": raw_rows.item(),
        "valid": valid.item(),
        "rejects": rejects,
        "sessionized": sessionized,
    }


def test_every_row_is_accounted_for(small_landing, polars_outputs):
    expected = small_landing.manifest["expected"]
    out = polars_outputs
    duplicates = out["valid"] - out["sessionized"].height
    assert out["raw"] == out["sessionized"].height + out["rejects"].height + duplicates
    assert out["rejects"].height == expected["must_reject"]
    assert duplicates == expected["duplicates"]
    assert out["sessionized"].height == expected["valid_unique_events"]


def test_generated_defects_get_the_expected_treatment(small_landing, polars_outputs):
    defects = small_landing.manifest["defects"]
    sessionized = polars_outputs["sessionized"]
    status = dict(sessionized["ip_status"].value_counts().iter_rows())
    # Missing and malformed IPs keep their rows; private ones are private (padded ones are public).
    assert status["missing"] == pytest.approx(defects["missing_ip"], abs=defects["duplicate"])
    assert status["invalid"] == pytest.approx(defects["malformed_ip"], abs=defects["duplicate"])
    assert status["private"] == pytest.approx(defects["private_ip"], abs=defects["duplicate"])
    public = sessionized.filter(pl.col("ip_status") == "public")
    assert public["country_code"].null_count() / public.height < 0.001
    reasons = dict(polars_outputs["rejects"]["reject_reason"].value_counts().iter_rows())
    assert reasons["INVALID_TIMESTAMP"] == defects["unparseable_timestamp"]
    assert reasons["MISSING_EVENT_ID"] == defects["null_event_id"] + defects["empty_event_id"]


@pytest.mark.spark
def test_spark_gives_the_same_rows(spark, small_landing, polars_outputs):
    from etl_poc.logic import spark_engine

    root, files = _parquet_files(small_landing)
    raw = spark_read_landing(spark, files, root)
    sessions, rejected = spark_engine.pipeline(
        raw, **_window(small_landing), ranges=spark_ip_ranges(spark)
    )
    spark_sessionized = pl.from_arrow(sessions.toArrow())
    spark_rejects = pl.from_arrow(rejected.toArrow())
    spark.catalog.clearCache()  # the pipeline's cached raw rows

    rejects = compare_frames(polars_outputs["rejects"], spark_rejects)
    assert rejects.equal, rejects.summary()
    sessionized = compare_frames(polars_outputs["sessionized"], spark_sessionized)
    assert sessionized.equal, (sessionized.summary(), sessionized.only_left, sessionized.only_right)


def test_the_duckdb_engine_baseline_gives_the_same_rows(small_landing, polars_outputs):
    """The benchmark's SQL baseline computes the same rows, from the same files."""
    import duckdb

    from etl_poc.lakehouse.landing_readers import duckdb_read_landing
    from etl_poc.logic import duckdb_engine

    root, files = _parquet_files(small_landing)
    connection = duckdb.connect()
    ranges = load_packaged_ranges()
    prepared = duckdb_engine.prepare_ranges(
        connection.from_arrow(ranges.ipv4.to_arrow()), connection.from_arrow(ranges.ipv6.to_arrow())
    )
    sessions, rejected = duckdb_engine.pipeline(
        duckdb_read_landing(connection, files, root), **_window(small_landing), ranges=prepared
    )

    def utc(relation) -> pl.DataFrame:
        frame = pl.from_arrow(relation.to_arrow_table())
        return frame.with_columns(pl.col(pl.Datetime).dt.replace_time_zone("UTC"))

    rejects = compare_frames(polars_outputs["rejects"], utc(rejected))
    assert rejects.equal, rejects.summary()
    sessionized = compare_frames(polars_outputs["sessionized"], utc(sessions))
    assert sessionized.equal, sessionized.summary()
