"""The generated landing zone: layout, schema, counts, reproducibility, manifest vs data."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from etl_poc.generate import SIZES, DefectRates, GeneratorConfig, generate
from etl_poc.generate.config import EVENT_TYPE_MIX, TIER_ACTIVITY, UPGRADE_SHARE, USER_TIER_MIX
from etl_poc.logic.spec import DEVICES, LANDING_COLUMNS, SESSION_GAP
from etl_poc_tests.conftest import SMALL_EVENTS, landing_file


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_all(result, fmt: str) -> pl.DataFrame:
    """Every file of one format, in file order (bulk, then each incremental day)."""
    frames = []
    for entry in result.manifest["files"]:
        path = landing_file(result, entry, fmt)
        if fmt == "csv":
            frames.append(pl.read_csv(path, infer_schema=False))
        else:
            frames.append(pl.read_parquet(path))
    return pl.concat(frames)


@pytest.fixture(scope="module")
def events(small_landing) -> pl.DataFrame:
    return _read_all(small_landing, "parquet")


def _parse(text: str | None) -> datetime | None:
    """The ISO-8601 forms the input contract accepts; anything else is unparseable."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if len(text) < 19:  # a date alone is not a timestamp
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- layout, schema, counts -------------------------------------------------------------------


def test_layout_follows_the_naming_scheme(small_landing):
    root = small_landing.manifest_path.parent
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    expected = ["manifest_small.json"]
    for fmt in ("csv", "parquet"):
        expected.append(f"bulk/bulk_data_small.{fmt}")
        for day in ("2024-01-31", "2024-02-01", "2024-02-02"):
            expected.append(f"incremental/incremental_{day}_small.{fmt}")
    assert names == sorted(expected)


def test_every_column_is_text_in_both_formats(small_landing):
    for entry in small_landing.manifest["files"]:
        schema = pq.read_schema(landing_file(small_landing, entry, "parquet"))
        assert schema.names == list(LANDING_COLUMNS)
        assert {str(t) for t in schema.types} == {"string"}
        header = landing_file(small_landing, entry, "csv").open().readline().strip()
        assert header.split(",") == list(LANDING_COLUMNS)


def test_row_counts_add_up_to_the_size(small_landing, events):
    manifest = small_landing.manifest
    assert manifest["events"] == SIZES["small"] == SMALL_EVENTS
    assert sum(f["rows"] for f in manifest["files"]) == SMALL_EVENTS
    assert events.height == SMALL_EVENTS
    for entry in manifest["files"]:
        assert (
            pq.read_metadata(landing_file(small_landing, entry, "parquet")).num_rows
            == entry["rows"]
        )


def test_sizes_are_the_documented_counts():
    assert SIZES == {"small": 100_000, "medium": 10_000_000, "large": 100_000_000}
    assert GeneratorConfig.for_size("large").events == 100_000_000


@pytest.mark.parametrize("events", [1, 7, 12_345])
def test_any_event_count_is_met_exactly_even_with_empty_days(tmp_path, events):
    config = GeneratorConfig(events=events, label="odd", out_dir=tmp_path, workers=1)
    result = generate(config)
    files = result.manifest["files"]
    assert sum(f["rows"] for f in files) == events
    assert len(files) == 1 + config.incremental_days  # a day without rows still gets its file
    for entry in files:
        assert pl.read_parquet(landing_file(result, entry, "parquet")).height == entry["rows"]
        assert (
            pl.read_csv(landing_file(result, entry, "csv"), infer_schema=False).height
            == entry["rows"]
        )


def test_csv_and_parquet_hold_the_same_events(small_landing, events):
    # Null and empty text stay distinct in the CSV too (empty text is written as "").
    assert _read_all(small_landing, "csv").equals(events)


# --- reproducibility --------------------------------------------------------------------------


def test_the_same_seed_gives_byte_identical_files(tmp_path):
    """The landing files and the operational tables beside them (<data>/oltp)."""
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for data, seed in ((first, 7), (second, 7), (other, 8)):
        generate(GeneratorConfig(events=20_000, label="r", out_dir=data / "landing", seed=seed,
                                 workers=1))  # fmt: skip
    assert any(k.startswith("oltp/changes/") for k in _digests(first))
    assert _digests(first) == _digests(second)
    differing = {k for k, v in _digests(other).items() if _digests(first)[k] != v}
    assert {k for k in differing if not k.endswith(".json")} == {
        k for k in _digests(first) if not k.endswith(".json")
    }


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes(tmp_path):
    """Periods rendered in two worker processes give the files one process gives."""
    one, two = tmp_path / "one", tmp_path / "two"
    for data, workers in ((one, 1), (two, 2)):
        generate(GeneratorConfig(events=60_000, label="w", out_dir=data / "landing",
                                 workers=workers, chunk_events=5000))  # fmt: skip
    assert _digests(one) == _digests(two)


# --- the manifest matches the data ------------------------------------------------------------


def _ip_kind(text: str | None) -> str:
    if text is None or text == "":
        return "missing_ip"
    if text != text.strip():
        return "padded_ip"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "malformed_ip"
    return "public" if address.is_global else "private_ip"


def test_manifest_counts_every_defect_found_in_the_data(small_landing, events):
    rows = events.to_dicts()
    found: Counter = Counter()
    for row in rows:
        for column, kind in (("event_id", "event_id"), ("user_id", "user_id")):
            value = row[column]
            if value is None:
                found[f"null_{kind}"] += 1
            elif value.strip() == "":
                found[f"empty_{kind}"] += 1
        parsed = _parse(row["timestamp"])
        if parsed is None:
            found["unparseable_timestamp"] += 1
        elif datetime.fromisoformat(row["timestamp"]).tzinfo is not None:
            found["offset_timestamp"] += 1
        if row["device"] not in DEVICES:
            found["odd_device"] += 1
        kind = _ip_kind(row["ip_address"])
        if kind != "public":
            found[kind] += 1
        product_event = row["event_type"] in ("PRODUCT_VIEW", "ADD_TO_CART", "REMOVE_FROM_CART")
        if product_event and row["product_id"] is None:
            found["missing_product_id"] += 1
        if row["event_type"] == "PURCHASE" and not re.fullmatch(r"[0-9]+\.[0-9]{2}", row["amount"]):
            found["malformed_amount"] += 1
    ids = [r["event_id"] for r in rows if r["event_id"] and r["event_id"].strip()]
    found["duplicate"] = len(ids) - len(set(ids))
    # Out of order: a row whose time is before a time already seen, in file order.
    latest = None
    for row in rows:
        parsed = _parse(row["timestamp"])
        if parsed is None:
            continue
        if latest is not None and parsed < latest:
            found["out_of_order"] += 1
        latest = parsed if latest is None else max(latest, parsed)

    manifest = small_landing.manifest
    assert {k: v for k, v in found.items()} == {k: v for k, v in manifest["defects"].items() if v}
    # Every defect kind occurs, and together they are about 1-2 % of the rows.
    assert all(manifest["defects"].values())
    assert 0.01 <= sum(manifest["defects"].values()) / SMALL_EVENTS <= 0.02
    expected = manifest["expected"]
    must_reject = sum(
        manifest["defects"][k]
        for k in (
            "null_event_id",
            "empty_event_id",
            "null_user_id",
            "empty_user_id",
            "unparseable_timestamp",
            "missing_product_id",
            "malformed_amount",
        )
    )
    assert expected["must_reject"] == must_reject
    assert expected["valid_unique_events"] == SMALL_EVENTS - must_reject - expected["duplicates"]


def test_offset_timestamps_name_the_same_instant_as_utc_ones(events):
    offsets = [t for t in events["timestamp"].to_list() if t and ("+" in t[10:] or t.endswith("Z"))]
    assert offsets
    for text in offsets:
        assert _parse(text).tzinfo is not None


def test_manifest_is_valid_json_with_the_parameters(small_landing):
    manifest = json.loads(small_landing.manifest_path.read_text())
    assert manifest["seed"] == 42
    assert manifest["window"] == ["2024-01-01", "2024-02-03"]
    assert manifest["defect_rates"] == DefectRates().as_dict()
    assert manifest["ip_dataset"]["date"] == "2024-06-18"


def test_clean_data_has_no_defects(tmp_path):
    result = generate(
        GeneratorConfig(
            events=5000, label="clean", out_dir=tmp_path, defects=DefectRates().scaled(0), workers=1
        )
    )
    assert not any(result.manifest["defects"].values())


# --- mixes and shape ---------------------------------------------------------------------------


def test_event_type_mix_matches_the_ecommerce_mix(events):
    share = events["event_type"].value_counts(normalize=True)
    observed = dict(zip(share["event_type"], share["proportion"], strict=True))
    for event_type, target in EVENT_TYPE_MIX.items():
        assert observed[event_type] == pytest.approx(target, abs=0.01), event_type


def test_tier_mix_and_activity(small_landing, events):
    users = small_landing.manifest["shape"]["users_by_tier"]
    total_users = sum(users.values())
    for tier, target in USER_TIER_MIX.items():
        assert users[tier] / total_users == pytest.approx(target, abs=0.03), tier
    # Higher tiers are more active: events per user relative to bronze, within sampling noise
    # of a heavy-tailed activity (about 2 standard errors for the 76 platinum users).
    per_user = small_landing.manifest["shape"]["events_by_tier"]
    bronze = per_user["bronze"] / users["bronze"]
    for tier, factor in TIER_ACTIVITY.items():
        assert per_user[tier] / users[tier] / bronze == pytest.approx(factor, rel=0.35), tier
    # Each user has one tier in the data, or two for the few upgraded during the window (the
    # tier of each day: test_commerce).
    clean = events.filter(pl.col("user_id").str.strip_chars() != "")
    tiers = clean.group_by("user_id").agg(pl.col("user_tier").n_unique())["user_tier"]
    assert tiers.max() == 2
    assert (tiers == 2).sum() < 2 * UPGRADE_SHARE * total_users


def _clean_events(events: pl.DataFrame) -> pl.DataFrame:
    """Rows with a user and a parseable UTC timestamp (offset ones skipped), event time typed."""
    return (
        events.filter(
            pl.col("user_id").str.strip_chars().str.len_chars() > 0,
            pl.col("timestamp").str.contains(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$"),
        )
        .with_columns(
            ts=pl.col("timestamp").str.to_datetime(
                "%Y-%m-%d %H:%M:%S%.3f", time_zone="UTC", strict=False
            )
        )
        .filter(pl.col("ts").is_not_null())
    )


def test_visits_have_gaps_around_thirty_minutes_and_cross_midnight(small_landing, events):
    gaps = (
        _clean_events(events)
        .sort("user_id", "ts")
        .with_columns(
            gap=pl.col("ts").diff().over("user_id"),
            previous=pl.col("ts").shift().over("user_id"),
        )
        .filter(pl.col("gap").is_not_null())
    )
    gap = SESSION_GAP
    just_under = gaps.filter(pl.col("gap").is_between(gap * 28 / 30, gap, closed="left")).height
    exactly = gaps.filter(pl.col("gap") == gap).height
    just_over = gaps.filter(pl.col("gap").is_between(gap, gap * 32 / 30, closed="right")).height
    shape = small_landing.manifest["shape"]
    assert exactly >= shape["return_gaps"]["exactly_30m"] * 0.9 > 0
    assert just_under > 0
    assert just_over > 0
    # A visit across midnight: two events of a user at most 30 minutes apart, on two dates.
    crossing = gaps.filter(
        pl.col("gap") <= gap, pl.col("ts").dt.date() != pl.col("previous").dt.date()
    )
    assert crossing.height > 0
    assert shape["visits_crossing_midnight"] > 0


def test_daily_and_weekly_rhythm(events):
    clean = _clean_events(events)
    by_hour = clean.group_by(pl.col("ts").dt.hour().alias("h")).len().sort("h")["len"].to_list()
    assert min(by_hour[19:22]) > 3 * max(by_hour[2:5])  # busy evenings, quiet nights (UTC)
    by_weekday = (
        clean.filter(pl.col("ts") < datetime(2024, 1, 29, tzinfo=UTC))  # four whole weeks
        .group_by(pl.col("ts").dt.weekday().alias("d"))
        .len()
        .sort("d")["len"]
        .to_list()
    )
    assert min(by_weekday[5:]) > max(by_weekday[:4])  # weekends busier than Mon-Thu


def test_heavy_tailed_activity_and_sticky_devices_and_ips(events):
    clean = events.filter(
        pl.col("user_id").str.strip_chars() != "", pl.col("device").is_in(DEVICES)
    )
    per_user = clean.group_by("user_id").len()["len"]
    # Heavy tail: the most active 10 % of users make a much larger share than 10 % of events.
    top = per_user.sort(descending=True).head(max(1, per_user.len() // 10)).sum()
    assert top / per_user.sum() > 0.3
    modal_share = (
        clean.group_by("user_id", "device")
        .len()
        .group_by("user_id")
        .agg((pl.col("len").max() / pl.col("len").sum()).alias("share"))["share"]
        .mean()
    )
    assert modal_share > 0.85
    ip_share = (
        clean.filter(pl.col("ip_address").is_not_null())
        .group_by("user_id", "ip_address")
        .len()
        .group_by("user_id")
        .agg((pl.col("len").max() / pl.col("len").sum()).alias("share"))["share"]
        .mean()
    )
    assert ip_share > 0.8


def test_ips_are_allocated_public_space_with_a_share_of_ipv6(events, small_landing):
    from geoip2fast import GeoIP2Fast

    reader = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    ips = [ip for ip in events["ip_address"].unique().to_list() if _ip_kind(ip) == "public"]
    v6 = [ip for ip in ips if ":" in ip]
    assert 0.01 < small_landing.manifest["shape"]["ipv6_events"] / SMALL_EVENTS < 0.06
    assert v6
    located = [reader.lookup(ip).country_code for ip in ips[:3000] + v6[:500]]
    # The dataset's own reader finds a country for (nearly) every generated public address.
    assert sum(1 for code in located if code and code.isalpha()) / len(located) > 0.99


def test_a_failed_run_leaves_no_partial_file(tmp_path, monkeypatch):
    from etl_poc.generate import landing

    calls = []

    def failing_write(self, table):
        calls.append(table.num_rows)
        raise OSError("disk full")

    monkeypatch.setattr(landing._FormatWriters, "_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        generate(
            GeneratorConfig(events=3000, label="f", out_dir=tmp_path, workers=1, chunk_events=1000)
        )
    assert calls
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
