"""The IP-to-country range table, read from the GeoLite2-derived data that geoip2fast ships.

geoip2fast packages MaxMind's GeoLite2 Country CSV as a gzipped pickle of sorted network starts,
prefix lengths and country ids. We read that file directly (once, about 0.2 s) and turn it into
two range tables, one per IP version, so that engines can do the lookup as a range join instead
of calling a Python function per row. IPv6 addresses are 128-bit; no engine here has a 128-bit
integer that joins, so IPv6 bounds are split into a high and a low unsigned 64-bit half.
"""

from __future__ import annotations

import gzip
import ipaddress
import pickle
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata, resources
from itertools import chain
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

_PACKAGE = "geoip2fast"
_DATA_FILE = "geoip2fast-ipv6.dat.gz"  # IPv4 and IPv6 networks in one file
_IPV4_SPACE = 1 << 32
_MASK64 = (1 << 64) - 1
# Special-purpose IPv6 networks (IANA registry) that the packaged data leaves out: added as
# reserved, so that loopback, link-local or documentation addresses are never "public".
IPV6_SPECIAL_NETWORKS = (
    "::/127",  # unspecified and loopback
    "::ffff:0:0/96",  # IPv4-mapped
    "64:ff9b::/96",  # IPv4/IPv6 translation
    "100::/64",  # discard-only
    "2001:db8::/32",  # documentation
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
)


@dataclass(frozen=True)
class DatasetInfo:
    """Where a range table comes from: recorded next to the table wherever it is stored."""

    name: str
    date: str
    licence: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "date": self.date,
            "licence": self.licence,
            "source": self.source,
        }


@dataclass(frozen=True)
class IpRangeTable:
    """Country ranges: `ipv4` (range_start, range_end as Int64) and `ipv6` (the same bounds
    split into *_hi / *_lo UInt64 halves), both with `country_code` (ISO 3166-1 alpha-2).

    Networks the dataset marks as private or reserved are kept with a null country_code and
    `reserved = True`, so that a lookup can tell "reserved" from "not in the dataset".
    """

    ipv4: pl.DataFrame
    ipv6: pl.DataFrame
    info: DatasetInfo


def _country_code(label: str) -> str | None:
    code = label.split(":", 1)[0]
    # geoip2fast numbers its pseudo-countries ("02:Private Network Class A", "99:<not found>").
    return code if re.fullmatch(r"[A-Z]{2}", code) else None


def _with_special_networks(ipv6: pl.DataFrame) -> pl.DataFrame:
    """The IPv6 table with IPV6_SPECIAL_NETWORKS added as reserved; a listed network that
    overlaps one of them is dropped, so the table stays sorted and disjoint."""
    special = [ipaddress.IPv6Network(n) for n in IPV6_SPECIAL_NETWORKS]
    rows = pl.DataFrame(
        {
            "range_start_hi": [int(n.network_address) >> 64 for n in special],
            "range_start_lo": [int(n.network_address) & _MASK64 for n in special],
            "range_end_hi": [int(n.broadcast_address) >> 64 for n in special],
            "range_end_lo": [int(n.broadcast_address) & _MASK64 for n in special],
            "country_code": [None] * len(special),
            "reserved": [True] * len(special),
        },
        schema=ipv6.schema,
    )
    overlaps = pl.lit(False)
    for row in rows.iter_rows(named=True):
        starts_before_end = (pl.col("range_start_hi") < row["range_end_hi"]) | (
            (pl.col("range_start_hi") == row["range_end_hi"])
            & (pl.col("range_start_lo") <= row["range_end_lo"])
        )
        ends_after_start = (pl.col("range_end_hi") > row["range_start_hi"]) | (
            (pl.col("range_end_hi") == row["range_start_hi"])
            & (pl.col("range_end_lo") >= row["range_start_lo"])
        )
        overlaps = overlaps | (starts_before_end & ends_after_start)
    return pl.concat([ipv6.filter(~overlaps), rows]).sort("range_start_hi", "range_start_lo")


@cache
def load_packaged_ranges() -> IpRangeTable:
    """Load the GeoLite2 Country ranges shipped inside the geoip2fast package."""
    data_path = resources.files(_PACKAGE).joinpath(_DATA_FILE)
    with data_path.open("rb") as raw, gzip.open(raw, "rb") as unzipped:
        # A pickle from the installed, locked package: its own loader reads it the same way.
        version, source_info, _total, database = pickle.load(unzipped)
    if version not in (120, 121) or not source_info.get("country"):
        raise ValueError(f"unexpected geoip2fast data file (version {version}): {source_info}")
    _index, labels, first_ips, label_ids, prefix_lengths = database

    starts = list(chain.from_iterable(first_ips))
    ids = np.fromiter(chain.from_iterable(label_ids), dtype=np.int32, count=len(starts))
    prefixes = np.fromiter(chain.from_iterable(prefix_lengths), dtype=np.int16, count=len(starts))
    codes = pa.array([_country_code(label) for label in labels], type=pa.string())
    country = pl.Series(pa.DictionaryArray.from_arrays(ids, codes).cast(pa.string()))

    # Starts are sorted and IPv4 networks are stored as plain 32-bit integers, so they come first.
    n_v4 = next(i for i, start in enumerate(starts) if start >= _IPV4_SPACE)

    v4_start = np.array(starts[:n_v4], dtype=np.int64)
    v4_end = v4_start + (np.int64(1) << (32 - prefixes[:n_v4].astype(np.int64))) - 1
    # A few reserved networks nest inside others (255.255.255.255/32 in 240.0.0.0/4): cut each
    # range at the next start so that the table is disjoint, as a range join needs.
    v4_end[:-1] = np.minimum(v4_end[:-1], v4_start[1:] - 1)
    ipv4 = pl.DataFrame(
        {
            "range_start": v4_start,
            "range_end": v4_end,
            "country_code": country[:n_v4],
        }
    ).with_columns(reserved=pl.col("country_code").is_null())

    # IPv6: 128-bit starts as (hi, lo) halves; a network's end is its start with the host bits
    # set (networks are aligned), then cut at the next start like IPv4.
    packed = b"".join(start.to_bytes(16, "big") for start in starts[n_v4:])
    halves = np.frombuffer(packed, dtype=">u8").reshape(-1, 2).astype(np.uint64)
    start_hi, start_lo = halves[:, 0], halves[:, 1]
    host_bits = 128 - prefixes[n_v4:].astype(np.int64)
    ones = np.uint64(_MASK64)
    lo_mask = np.where(
        host_bits >= 64, ones, (np.uint64(1) << np.minimum(host_bits, 63).astype(np.uint64)) - 1
    )
    hi_mask = np.where(
        host_bits > 64,
        (np.uint64(1) << np.clip(host_bits - 64, 0, 63).astype(np.uint64)) - 1,
        np.uint64(0),
    )
    end_hi, end_lo = start_hi | hi_mask, start_lo | lo_mask
    # The next start minus one, borrowing from the high half when the low half is zero.
    next_hi, next_lo = start_hi[1:], start_lo[1:]
    before_hi = np.where(next_lo == 0, next_hi - np.uint64(1), next_hi)
    before_lo = next_lo - np.uint64(1)  # wraps to all ones when it borrows
    cut = (end_hi[:-1] > before_hi) | ((end_hi[:-1] == before_hi) & (end_lo[:-1] > before_lo))
    end_hi[:-1] = np.where(cut, before_hi, end_hi[:-1])
    end_lo[:-1] = np.where(cut, before_lo, end_lo[:-1])
    ipv6 = _with_special_networks(
        pl.DataFrame(
            {
                "range_start_hi": start_hi,
                "range_start_lo": start_lo,
                "range_end_hi": end_hi,
                "range_end_lo": end_lo,
                "country_code": country[n_v4:],
            }
        ).with_columns(reserved=pl.col("country_code").is_null())
    )

    label = source_info["info"]  # e.g. "MAXMIND:GeoLite2-Country-IPv4IPv6-en-20240618"
    stamp = re.search(r"(\d{4})(\d{2})(\d{2})$", label)
    info = DatasetInfo(
        name=label.split(":", 1)[-1],
        date="-".join(stamp.groups()) if stamp else "unknown",
        licence=(
            "GeoLite2 data by MaxMind, under the GeoLite2 End User License Agreement "
            "(attribution required); packaged by geoip2fast (MIT licence)"
        ),
        source=f"{_PACKAGE} {metadata.version(_PACKAGE)}: {_DATA_FILE}",
    )
    return IpRangeTable(ipv4=ipv4, ipv6=ipv6, info=info)


# Special-purpose IPv4 networks (IANA registry). A MaxMind MMDB simply has no record for them,
# so they are added as reserved, as the packaged data marks them.
IPV4_SPECIAL_NETWORKS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
)


def _bounds(network) -> tuple[int, int]:
    return int(network.network_address), int(network.broadcast_address)


def _halves(value: int) -> tuple[int, int]:
    return value >> 64, value & _MASK64


def _without_overlaps(ranges: list[tuple[int, int, str | None, bool]]):
    """Reserved networks win over the file's records where they overlap (a file has none for
    them normally); the rest are disjoint already (an MMDB search tree's leaves)."""
    reserved = [(s, e) for s, e, _, r in ranges if r]
    kept = []
    for start, end, code, is_reserved in ranges:
        if is_reserved or not any(s <= end and start <= e for s, e in reserved):
            kept.append((start, end, code, is_reserved))
    return sorted(kept)


@cache
def load_mmdb_ranges(path: str) -> IpRangeTable:
    """A MaxMind MMDB country database (GeoLite2-Country or GeoIP2-Country, or any MMDB whose
    records carry country.iso_code) as the same range tables: the user's own, newer data."""
    import maxminddb

    v4: list[tuple[int, int, str | None, bool]] = []
    v6: list[tuple[int, int, str | None, bool]] = []
    with maxminddb.open_database(path) as reader:
        meta = reader.metadata()
        for network, record in reader:
            record = record or {}
            country = record.get("country") or record.get("registered_country") or {}
            code = country.get("iso_code")
            (v4 if network.version == 4 else v6).append((*_bounds(network), code, False))
    v4 += [(*_bounds(ipaddress.ip_network(n)), None, True) for n in IPV4_SPECIAL_NETWORKS]
    v6 += [(*_bounds(ipaddress.ip_network(n)), None, True) for n in IPV6_SPECIAL_NETWORKS]
    v4, v6 = _without_overlaps(v4), _without_overlaps(v6)
    ipv4 = pl.DataFrame(
        v4,
        schema={
            "range_start": pl.Int64,
            "range_end": pl.Int64,
            "country_code": pl.String,
            "reserved": pl.Boolean,
        },
        orient="row",
    )
    ipv6 = pl.DataFrame(
        [(*_halves(s), *_halves(e), code, r) for s, e, code, r in v6],
        schema={
            "range_start_hi": pl.UInt64,
            "range_start_lo": pl.UInt64,
            "range_end_hi": pl.UInt64,
            "range_end_lo": pl.UInt64,
            "country_code": pl.String,
            "reserved": pl.Boolean,
        },
        orient="row",
    )
    built = datetime.fromtimestamp(meta.build_epoch, UTC).date().isoformat()
    info = DatasetInfo(
        name=meta.database_type,
        date=built,
        licence="as its provider states (GeoLite2: CC BY-SA 4.0 and the MaxMind GeoLite2 EULA)",
        source=str(path),
    )
    return IpRangeTable(ipv4=ipv4, ipv6=ipv6, info=info)


def load_ip_ranges(mmdb: str | None = None) -> IpRangeTable:
    """The range table the pipeline joins against: the given MMDB file, else the packaged
    GeoLite2 data."""
    if mmdb:
        if not Path(mmdb).is_file():
            raise FileNotFoundError(f"IP ranges: no MMDB file at {mmdb}")
        return load_mmdb_ranges(str(Path(mmdb).resolve()))
    return load_packaged_ranges()
