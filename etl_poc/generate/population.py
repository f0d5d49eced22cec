"""The users and the shop they click through: built once per run, then indexed per event.

Faker only builds vocabularies (page URLs); every per-event value is an integer index into
them, drawn with NumPy, so generating a row never calls Python.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import polars as pl
import pyarrow as pa
from faker import Faker

from etl_poc.generate.config import (
    PRICE_CHANGE_SHARE,
    PRODUCTS,
    TIER_ACTIVITY,
    UPGRADE_SHARE,
    USER_TIER_MIX,
)
from etl_poc.generate.vocab import Catalog, PageVocabulary, Population
from etl_poc.logic.spec import DEVICES, EVENT_TYPES, USER_TIERS
from etl_poc.reference.ip_ranges import IpRangeTable

SHOP = "https://shop.example.com"

# Where a global shop's traffic comes from; the rest of the world shares REST_OF_WORLD
# in proportion to the address space the dataset gives each country.
COUNTRY_TRAFFIC = {
    "US": 0.28, "GB": 0.07, "DE": 0.07, "FR": 0.05, "IN": 0.05, "BR": 0.04, "CA": 0.04,
    "JP": 0.03, "ES": 0.03, "IT": 0.03, "NL": 0.025, "AU": 0.025, "MX": 0.02, "PL": 0.02,
    "SE": 0.015, "KR": 0.015, "TR": 0.01, "ZA": 0.01, "SG": 0.01, "AR": 0.01,
}  # fmt: skip
REST_OF_WORLD = 0.18
IPV6_USER_SHARE = 0.03
DEVICE_MIX = (0.46, 0.44, 0.08, 0.02)  # desktop, mobile, tablet, other
DECLARED_COUNTRY_MATCH = 0.9  # how often the naive country column agrees with the IP


def _words(seed: int) -> list[str]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return sorted({w.lower() for w in fake.words(nb=3000)})


def build_catalog(seed: int, days: int, products: int = PRODUCTS) -> Catalog:
    """The products: 60 categories, each with its own price level (log-normal prices around
    it), Zipf-like popularity (a few products draw most views), and a price change for
    PRICE_CHANGE_SHARE of them on a day of the window (up or down by 5-30 %)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    words = _words(seed)
    categories = tuple(sorted({w for w in words if len(w) > 4})[:60])
    category = rng.integers(0, len(categories), size=products)
    level = rng.lognormal(np.log(35.0), 0.8, size=len(categories))  # dollars
    price = np.round(level[category] * rng.lognormal(0.0, 0.35, size=products), 2)
    base_cents = np.maximum(99, np.round(price * 100)).astype(np.int64)
    popularity = 1.0 / np.arange(1, products + 1) ** 1.1
    popularity = popularity[rng.permutation(products)]
    changes = rng.random(products) < PRICE_CHANGE_SHARE
    change_day = np.where(changes, rng.integers(1, max(2, days), size=products), 1 << 30)
    factor = 1 + rng.choice([-1, 1], size=products) * rng.uniform(0.05, 0.30, size=products)
    changed_cents = np.maximum(99, np.round(base_cents * factor)).astype(np.int64)
    name_words = np.random.default_rng(seed).integers(0, len(words), size=(products, 2))
    product_ids = np.arange(100_000, 100_000 + products, dtype=np.int64)
    names = [f"{words[a]}-{words[b]}-{pid}" for (a, b), pid in
             zip(name_words, product_ids, strict=True)]  # fmt: skip
    return Catalog(
        product_ids=product_ids,
        sku_text=pa.array([str(p) for p in product_ids.tolist()], type=pa.string()),
        category=category,
        categories=categories,
        names=pa.array(names, type=pa.string()),
        base_price_cents=base_cents,
        popularity_cdf=np.cumsum(popularity) / popularity.sum(),
        price_change_day=change_day.astype(np.int32),
        changed_price_cents=changed_cents,
    )


def build_pages(catalog: Catalog, seed: int) -> PageVocabulary:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    words = _words(seed)
    fake.words(nb=3000)  # the same Faker state as before the catalog: the same blog slugs
    skus = catalog.product_ids.tolist()
    names = catalog.names.to_pylist()
    by_type: dict[str, list[str]] = {
        "PAGE_VIEW": [f"{SHOP}/"]
        + [f"{SHOP}/c/{c}" for c in catalog.categories]
        + [f"{SHOP}/blog/{fake.slug()}" for _ in range(300)]
        + [f"{SHOP}/help/{p}" for p in ("shipping", "returns", "contact", "faq", "privacy")],
        "PRODUCT_VIEW": [f"{SHOP}/p/{p}" for p in names],
        "SEARCH": [f"{SHOP}/search?q={w}" for w in words],
        "ADD_TO_CART": [f"{SHOP}/cart/add?sku={pid}" for pid in skus],
        "PURCHASE": [f"{SHOP}/checkout/confirmation"],
        "REMOVE_FROM_CART": [f"{SHOP}/cart/remove?sku={pid}" for pid in skus],
        "CHECKOUT_START": [f"{SHOP}/checkout", f"{SHOP}/checkout/shipping"],
        "LOGIN": [f"{SHOP}/account/login"],
        "LOGOUT": [f"{SHOP}/account/logout"],
    }
    # Distinct URLs: they become a Parquet dictionary, and repeated values there are re-encoded
    # in an order that varies from run to run. (Product and search URLs are distinct by
    # construction: an event's URL is found from its product or term by position.)
    seen: set[str] = set()
    for event_type in EVENT_TYPES:
        by_type[event_type] = [u for u in dict.fromkeys(by_type[event_type]) if u not in seen]
        seen.update(by_type[event_type])
    for event_type, count in (("PRODUCT_VIEW", catalog.size), ("SEARCH", len(words))):
        assert len(by_type[event_type]) == count, f"{event_type} URLs are not one per item"
    sizes = np.array([len(by_type[t]) for t in EVENT_TYPES], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    urls = pa.array([u for t in EVENT_TYPES for u in by_type[t]], type=pa.string())
    return PageVocabulary(
        urls=urls, offsets=offsets, sizes=sizes, search_terms=pa.array(words, type=pa.string())
    )


def _format_ipv4(addresses: np.ndarray) -> pl.Series:
    octets = [pl.Series((addresses >> shift) & 255).cast(pl.String) for shift in (24, 16, 8, 0)]
    return pl.select(pl.concat_str(octets, separator=".")).to_series()


def _public_ipv4(ranges: IpRangeTable, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Addresses from allocated public IPv4 networks, countries weighted by COUNTRY_TRAFFIC."""
    table = ranges.ipv4.filter(~pl.col("reserved")).with_columns(
        size=pl.col("range_end") - pl.col("range_start") + 1
    )
    space = table.group_by("country_code").agg(pl.col("size").sum().alias("space"))
    rest_space = space.filter(~pl.col("country_code").is_in(list(COUNTRY_TRAFFIC)))["space"].sum()
    weights = table.join(space, on="country_code").with_columns(
        weight=pl.col("size")
        / pl.col("space")
        * pl.col("country_code")
        .replace_strict(COUNTRY_TRAFFIC, default=None, return_dtype=pl.Float64)
        .fill_null(REST_OF_WORLD * pl.col("space") / rest_space)
    )
    weights = weights.sort("range_start")
    cdf = np.cumsum(weights["weight"].to_numpy())
    pick = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    pick = np.minimum(pick, len(cdf) - 1)
    start = weights["range_start"].to_numpy()[pick]
    size = weights["size"].to_numpy()[pick]
    address = start + (rng.random(n) * size).astype(np.int64)
    # Keep clear of .0 and .255 where the network is large enough to have hosts around them.
    last = address & 255
    wide = size >= 256
    address = address + (wide & (last == 0)) - (wide & (last == 255))
    return address, weights["country_code"].to_numpy()[pick].tolist()


def _public_ipv6(ranges: IpRangeTable, n: int, rng: np.random.Generator) -> tuple[list, list]:
    table = ranges.ipv6.filter(
        ~pl.col("reserved") & pl.col("country_code").is_in(list(COUNTRY_TRAFFIC))
    )
    # Countries by traffic share, then uniformly over that country's networks.
    weight = table.select(
        pl.col("country_code").replace_strict(COUNTRY_TRAFFIC, return_dtype=pl.Float64)
        / pl.len().over("country_code")
    ).to_series()
    weight = weight.to_numpy()
    pick = rng.choice(len(table), size=n, p=weight / weight.sum())
    rows = table[pick]
    lows = rng.integers(0, 1 << 63, size=(n, 2), dtype=np.int64)
    addresses = []
    for row, (lo_a, lo_b) in zip(rows.iter_rows(named=True), lows, strict=True):
        start = (row["range_start_hi"] << 64) | row["range_start_lo"]
        end = (row["range_end_hi"] << 64) | row["range_end_lo"]
        offset = ((int(lo_a) << 63) | int(lo_b)) % (end - start + 1)
        addresses.append(str(ipaddress.IPv6Address(start + offset)))
    return addresses, rows["country_code"].to_list()


def _text(series: pl.Series) -> pa.Array:
    return series.to_arrow().cast(pa.string())


def build_population(
    n_users: int, ranges: IpRangeTable, rng: np.random.Generator, days: int = 33
) -> Population:
    tier = rng.choice(len(USER_TIERS), size=n_users, p=list(USER_TIER_MIX.values()))
    tier_activity = np.array(list(TIER_ACTIVITY.values()))[tier]
    # Log-normal activity: most users visit a few times, a few users very often.
    activity = rng.lognormal(mean=0.0, sigma=1.1, size=n_users) * tier_activity
    activity_cdf = np.cumsum(activity) / activity.sum()

    primary_device = rng.choice(len(DEVICES), size=n_users, p=DEVICE_MIX)
    secondary_device = (primary_device + rng.integers(1, len(DEVICES), size=n_users)) % len(DEVICES)

    # Primary IP per user (a small share IPv6), secondary (e.g. a mobile network) always IPv4.
    n_ips = 2 * n_users
    is_v6 = np.zeros(n_ips, dtype=bool)
    is_v6[:n_users] = rng.random(n_users) < IPV6_USER_SHARE
    v4_address, v4_country = _public_ipv4(ranges, n_ips, rng)
    ip_strings = _format_ipv4(v4_address)
    ip_country = pl.Series(v4_country, dtype=pl.String)
    v6_index = np.flatnonzero(is_v6)
    if len(v6_index):
        v6_address, v6_country = _public_ipv6(ranges, len(v6_index), rng)
        ip_strings = ip_strings.scatter(v6_index, v6_address)
        ip_country = ip_country.scatter(v6_index, v6_country)

    traffic_countries = pl.Series(sorted(COUNTRY_TRAFFIC), dtype=pl.String)
    wrong = rng.random(n_users) >= DECLARED_COUNTRY_MATCH
    declared = ip_country[:n_users].scatter(
        np.flatnonzero(wrong),
        traffic_countries.gather(rng.integers(0, len(traffic_countries), size=int(wrong.sum()))),
    )

    width = max(7, len(str(n_users - 1)))
    user_ids = pl.select(
        pl.format("user_{}", pl.int_range(n_users).cast(pl.String).str.zfill(width))
    ).to_series()
    return Population(
        user_ids=_text(user_ids),
        tier=tier,
        activity_cdf=activity_cdf,
        device=np.stack([primary_device, secondary_device], axis=1),
        ip_addresses=_text(ip_strings),
        ip_is_v6=is_v6,
        declared_country=_text(declared),
        **_upgrades(tier, days, np.random.default_rng(rng.integers(0, 1 << 62))),
    )


def _upgrades(tier: np.ndarray, days: int, rng: np.random.Generator) -> dict:
    """UPGRADE_SHARE of the users below the top tier move up one tier on a day of the window
    (drawn from a generator of its own: the rest of the population is as before)."""
    n = len(tier)
    upgraded = (rng.random(n) < UPGRADE_SHARE) & (tier < len(USER_TIERS) - 1)
    day = np.where(upgraded, rng.integers(1, max(2, days), size=n), 1 << 30)
    return {
        "upgrade_day": day.astype(np.int32),
        "upgraded_tier": np.where(upgraded, tier + 1, tier),
    }
