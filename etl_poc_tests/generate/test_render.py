"""The hand-rolled text builders against the library functions they replace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from etl_poc.generate.render import (
    MALFORMED_IPS,
    _offset_text,
    _private_ip,
    _replace,
    _utc_text,
    _uuid_strings,
)

MS_2000 = 946_684_800_000
MS_2100 = 4_102_444_800_000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=MS_2100), min_size=1, max_size=300))
def test_utc_text_matches_the_datetime_formatter(epoch_ms):
    ts = np.array(epoch_ms, dtype=np.int64)
    expected = pl.Series(ts).cast(pl.Datetime("ms")).dt.to_string("%Y-%m-%d %H:%M:%S%.3f")
    assert _utc_text(ts).to_pylist() == expected.to_list()


def test_utc_text_at_midnight_and_leap_day():
    ts = np.array([MS_2000, 951_782_400_000, 951_868_799_999], dtype=np.int64)
    assert _utc_text(ts).to_pylist() == [
        "2000-01-01 00:00:00.000",
        "2000-02-29 00:00:00.000",
        "2000-02-29 23:59:59.999",
    ]


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=50))
def test_uuid_strings_are_canonical_version_4(halves):
    hi = np.array([h for h, _ in halves], dtype=np.uint64)
    lo = np.array([lo for _, lo in halves], dtype=np.uint64)
    for text in _uuid_strings(hi, lo).to_pylist():
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert str(parsed) == text


@settings(max_examples=80, deadline=None)
@given(
    base=st.lists(st.text(max_size=12), min_size=1, max_size=60),
    data=st.data(),
)
def test_replace_matches_a_masked_replace(base, data):
    array = pa.array(base, type=pa.string())
    offset = data.draw(st.integers(0, len(base) - 1))
    array = array.slice(offset)  # slices must work too
    positions = data.draw(st.sets(st.integers(0, len(array) - 1)))
    at = np.array(sorted(positions), dtype=np.int64)
    values = [data.draw(st.none() | st.text(max_size=8)) for _ in at]
    split = len(at) // 2  # two edit lists, given out of order
    result = _replace(array, [(at[split:], values[split:]), (at[:split], values[:split])])
    result.validate(full=True)
    expected = array.to_pylist()
    for i, value in zip(at.tolist(), values, strict=True):
        expected[i] = value
    assert result.to_pylist() == expected


@given(st.integers(MS_2000, MS_2100), st.integers(0, 2**31 - 1))
def test_offset_text_names_the_same_instant(epoch_ms, variant):
    text = _offset_text(epoch_ms, variant)
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None
    assert parsed.astimezone(UTC) == datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


@given(st.integers(0, 2**31 - 1))
def test_private_ips_are_valid_and_not_global(variant):
    import ipaddress

    address = ipaddress.ip_address(_private_ip(variant))
    assert not address.is_global


def test_malformed_ips_do_not_parse():
    import ipaddress

    for text in MALFORMED_IPS:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} parses as an IP address")
