"""The engines' range joins agree with the dataset's own reader on random public addresses."""

from __future__ import annotations

import ipaddress
import random

import polars as pl
import pytest
from geoip2fast import GeoIP2Fast

from etl_poc.logic import polars_engine
from etl_poc.reference.ip_ranges import (
    IPV4_SPECIAL_NETWORKS,
    IPV6_SPECIAL_NETWORKS,
    load_ip_ranges,
    load_packaged_ranges,
)
from etl_poc.spark.session import spark_frame
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


# A user's own MaxMind file: written here with mmdb-writer, looked up by both engines, and
# compared with what MaxMind's own reader (maxminddb) says for each address.
MMDB_NETWORKS = {
    "8.8.8.0/24": {"country": {"iso_code": "US"}},
    "5.0.0.0/16": {"registered_country": {"iso_code": "FR"}},  # no country: the registered one
    "81.0.0.0/8": {"country": {"iso_code": "GB"}},
    "10.1.0.0/16": {"country": {"iso_code": "ZZ"}},  # inside 10/8: reserved wins
    "2a00:1450::/32": {"country": {"iso_code": "DE"}},
    "2001:4860::/32": {"country": {"iso_code": "US"}},
}
MMDB_ADDRESSES = [
    "8.8.8.8", "8.8.9.1", "5.0.255.255", "81.2.3.4", "10.1.2.3", "192.168.1.1", "1.1.1.1",
    "2a00:1450:4001:81c::200e", "2001:4860:4860::8888", "2a01::1", "::1", "fe80::1",
]  # fmt: skip


@pytest.fixture(scope="module")
def mmdb_file(tmp_path_factory) -> str:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True, languages=["en"]
    )
    for network, record in MMDB_NETWORKS.items():
        writer.insert_network(IPSet([network]), record)
    path = tmp_path_factory.mktemp("mmdb") / "GeoLite2-Country.mmdb"
    writer.to_db_file(str(path))
    return str(path)


def _mmdb_expected(path: str) -> pl.DataFrame:
    import maxminddb

    reserved = [ipaddress.ip_network(n) for n in (*IPV4_SPECIAL_NETWORKS, *IPV6_SPECIAL_NETWORKS)]
    rows = []
    with maxminddb.open_database(path) as reader:
        for i, text in enumerate(MMDB_ADDRESSES):
            address = ipaddress.ip_address(text)
            if any(address.version == n.version and address in n for n in reserved):
                rows.append((f"m{i}", "private", None))
                continue
            record = reader.get(text) or {}
            country = record.get("country") or record.get("registered_country") or {}
            rows.append((f"m{i}", "public", country.get("iso_code")))
    return pl.DataFrame(rows, schema=["event_id", "ip_status", "country_code"], orient="row")


def _mmdb_sample() -> pl.DataFrame:
    return pl.DataFrame(
        {"event_id": [f"m{i}" for i in range(len(MMDB_ADDRESSES))], "ip_address": MMDB_ADDRESSES}
    )


def test_an_mmdb_file_becomes_the_same_range_tables(mmdb_file):
    ranges = load_ip_ranges(mmdb_file)
    assert ranges.info.name == "GeoLite2-Country"
    assert ranges.info.source.endswith("GeoLite2-Country.mmdb")
    assert ranges.ipv4.filter(~pl.col("reserved")).height == 3  # 10.1/16 gave way to 10/8
    assert ranges.ipv4.schema == load_packaged_ranges().ipv4.schema
    assert ranges.ipv6.schema == load_packaged_ranges().ipv6.schema
    with pytest.raises(FileNotFoundError, match="no MMDB file"):
        load_ip_ranges(mmdb_file + ".missing")


def test_polars_lookup_on_an_mmdb_file_agrees_with_maxminds_reader(mmdb_file):
    ranges = load_ip_ranges(mmdb_file)
    prepared = polars_engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
    result = polars_engine.enrich(_mmdb_sample().lazy(), prepared).collect()
    _check(result, _mmdb_expected(mmdb_file))


@pytest.mark.spark
def test_spark_lookup_on_an_mmdb_file_agrees_with_maxminds_reader(spark, mmdb_file):
    from etl_poc.logic import spark_engine
    from etl_poc.spark.session import spark_ip_ranges

    prepared = spark_ip_ranges(spark, load_ip_ranges(mmdb_file))
    result = spark_engine.enrich(spark_frame(spark, _mmdb_sample()), prepared)
    _check(pl.from_arrow(result.toArrow()), _mmdb_expected(mmdb_file))
