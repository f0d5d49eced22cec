"""The engines' range joins agree with the dataset's own reader on random public addresses."""

from __future__ import annotations

import ipaddress
import random

import polars as pl
import pytest
from geoip2fast import GeoIP2Fast

from etl_poc.lakehouse.spark_session import spark_frame
from etl_poc.logic import polars_engine
from etl_poc.reference.ip_ranges import load_packaged_ranges
from etl_poc_tests.logic.test_contract import _spark_ranges


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    rng = random.Random(23)
    ranges = load_packaged_ranges()
    addresses = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(4000)]
    for row in ranges.ipv6.filter(~pl.col("reserved")).sample(600, seed=5).iter_rows(named=True):
        start = (row["range_start_hi"] << 64) | row["range_start_lo"]
        end = (row["range_end_hi"] << 64) | row["range_end_lo"]
        addresses.append(str(ipaddress.IPv6Address(start + rng.randrange(end - start + 1))))
    return pl.DataFrame(
        {"event_id": [f"e{i}" for i in range(len(addresses))], "ip_address": addresses}
    )


def _expected(sample: pl.DataFrame) -> pl.DataFrame:
    """What the reader says: its reserved networks are private, the rest public with the
    country it finds (none when the address is not in the data)."""
    reader = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    rows = []
    for event_id, text in sample.iter_rows():
        found = reader.lookup(text)
        private = found.is_private
        code = found.country_code if found.country_code.isalpha() else None
        rows.append((event_id, "private" if private else "public", None if private else code))
    return pl.DataFrame(rows, schema=["event_id", "ip_status", "country_code"], orient="row")


def _check(result: pl.DataFrame, expected: pl.DataFrame) -> None:
    joined = expected.join(
        result.select("event_id", "ip_status", "country_code"), on="event_id", suffix="_got"
    )
    wrong = joined.filter(
        (pl.col("ip_status") != pl.col("ip_status_got"))
        | ~pl.col("country_code").eq_missing(pl.col("country_code_got"))
    )
    assert wrong.height == 0, wrong.head(10)
    assert joined.height == expected.height


def test_polars_lookup_agrees_with_the_reader(sample):
    ranges = load_packaged_ranges()
    prepared = polars_engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
    _check(polars_engine.enrich(sample.lazy(), prepared).collect(), _expected(sample))


@pytest.mark.spark
def test_spark_lookup_agrees_with_the_reader(spark, sample):
    from etl_poc.logic import spark_engine

    result = spark_engine.enrich(spark_frame(spark, sample), _spark_ranges(spark))
    _check(pl.from_arrow(result.toArrow()), _expected(sample))
