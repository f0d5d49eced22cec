"""The range table read from the packaged GeoLite2 data agrees with the package's own reader."""

from __future__ import annotations

import bisect
import ipaddress
import random

import polars as pl
import pytest
from geoip2fast import GeoIP2Fast

from etl_poc.reference.ip_ranges import load_packaged_ranges


@pytest.fixture(scope="module")
def ranges():
    return load_packaged_ranges()


def test_ranges_are_sorted_and_disjoint(ranges):
    v4 = ranges.ipv4
    assert (v4["range_end"] >= v4["range_start"]).all()
    assert v4["range_start"].is_sorted()
    assert (v4["range_start"].shift(-1).drop_nulls() > v4["range_end"].head(v4.height - 1)).all()
    assert v4["range_end"].max() < 2**32


def test_country_codes_are_iso_alpha2_or_null_for_reserved(ranges):
    codes = pl.concat([ranges.ipv4["country_code"], ranges.ipv6["country_code"]]).drop_nulls()
    assert codes.str.contains(r"^[A-Z]{2}$").all()
    assert (
        ranges.ipv4.filter(pl.col("reserved"))["country_code"].null_count()
        == ranges.ipv4["reserved"].sum()
    )


def test_dataset_is_named_dated_and_licensed(ranges):
    info = ranges.info.as_dict()
    assert info["name"].startswith("GeoLite2-Country")
    assert info["date"] == "2024-06-18"
    assert "GeoLite2" in info["licence"]
    assert "MaxMind" in info["licence"]


@pytest.fixture(scope="module")
def bounds(ranges) -> dict[int, tuple[list[int], list[int], list]]:
    """Per IP version: range starts, ends (Python ints, IPv6 joined from its halves), countries."""
    v4, v6 = ranges.ipv4, ranges.ipv6
    return {
        4: (v4["range_start"].to_list(), v4["range_end"].to_list(), v4["country_code"].to_list()),
        6: (
            [
                (h << 64) | lo
                for h, lo in zip(v6["range_start_hi"], v6["range_start_lo"], strict=True)
            ],
            [(h << 64) | lo for h, lo in zip(v6["range_end_hi"], v6["range_end_lo"], strict=True)],
            v6["country_code"].to_list(),
        ),
    }


def _lookup(bounds, address: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """A plain binary search over the table: the reference the engines' joins must match."""
    starts, ends, countries = bounds[address.version]
    value = int(address)
    i = bisect.bisect_right(starts, value) - 1
    return countries[i] if i >= 0 and value <= ends[i] else None


def test_range_lookup_agrees_with_the_dataset_reader(ranges, bounds):
    reader = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    rng = random.Random(11)
    checked = 0
    for _ in range(3000):
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if not address.is_global:
            continue
        expected = reader.lookup(str(address)).country_code
        expected = expected if expected and expected.isalpha() else None
        assert _lookup(bounds, address) == expected, address
        checked += 1
    # IPv6: addresses inside known networks.
    sample = ranges.ipv6.filter(~pl.col("reserved")).sample(200, seed=3)
    for row in sample.iter_rows(named=True):
        start = (row["range_start_hi"] << 64) | row["range_start_lo"]
        address = ipaddress.IPv6Address(start + rng.getrandbits(16))
        assert _lookup(bounds, address) == reader.lookup(str(address)).country_code, address
        checked += 1
    assert checked > 2000


def test_ipv6_ranges_are_sorted_and_disjoint(ranges):
    v6 = ranges.ipv6
    starts = [
        (h << 64) | lo for h, lo in zip(v6["range_start_hi"], v6["range_start_lo"], strict=True)
    ]
    ends = [(h << 64) | lo for h, lo in zip(v6["range_end_hi"], v6["range_end_lo"], strict=True)]
    assert all(e >= s for s, e in zip(starts, ends, strict=True))
    assert all(nxt > end for end, nxt in zip(ends, starts[1:], strict=False))
