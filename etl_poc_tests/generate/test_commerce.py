"""The e-commerce model: the behaviour a period's visits show (statistics over large periods
planned in memory), and the operational tables the generator writes beside the landing zone,
consistent with the events (from the `small` landing zone)."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pytest

from etl_poc.generate import DefectRates, GeneratorConfig, generate
from etl_poc.generate.commerce import ADD, NONE, PURCHASE, VIEW
from etl_poc.generate.config import WEEKEND_TRANSACTIONS
from etl_poc.generate.events import plan_period
from etl_poc.generate.population import build_catalog, build_pages, build_population
from etl_poc.logic.spec import MAX_DISCOUNT_PERCENT, OLTP_TABLES, TAX_RATE_PERCENT, USER_TIERS
from etl_poc.reference.ip_ranges import load_packaged_ranges

MONDAY, SATURDAY = 1_704_067_200_000, 1_704_499_200_000  # 2024-01-01 and 2024-01-06, UTC


@pytest.fixture(scope="module")
def shop():
    population = build_population(20_000, load_packaged_ranges(), np.random.default_rng(5), 33)
    catalog = build_catalog(5, 33)
    return population, catalog, build_pages(catalog, 5)


def _period(shop, start_ms: int, seed: int, budget: int = 400_000, day: int = 0):
    population, catalog, pages = shop
    return plan_period(
        start_ms, range(24), budget, population, pages, DefectRates(),
        np.random.default_rng(seed), catalog, day,
    )  # fmt: skip


@pytest.fixture(scope="module")
def weekday(shop):
    return _period(shop, MONDAY, 1)


def test_every_purchase_ends_a_visit_with_a_cart_and_a_checkout(weekday):
    rows, _, orders = weekday
    purchase = np.flatnonzero(rows.event_type == PURCHASE)
    originals = purchase[rows.defect[purchase] != 13]  # replays repeat an original
    assert len(np.unique(rows.order[originals])) == len(orders) == len(originals)
    assert (rows.order[rows.event_type != PURCHASE] == NONE).all()
    # Each order's items come from its cart: a product added in the visit before the purchase.
    assert len(orders.item_order) >= len(orders)
    assert np.isin(np.arange(len(orders)), orders.item_order).all()


def test_higher_tiers_buy_more_and_discount_more_often(weekday):
    _, stats, orders = weekday
    orders_per_event = stats.buying_visits_by_tier / stats.events_by_tier
    assert (np.diff(orders_per_event) > 0).all(), orders_per_event
    discounted = np.array(
        [(orders.discount_percent[orders.tier == t] > 0).mean() for t in range(len(USER_TIERS))]
    )
    assert (np.diff(discounted) > 0).all(), discounted
    assert discounted[2:].min() > 2 * discounted[:2].max()  # gold and platinum, clearly


def test_discounts_follow_the_tier_policy_and_totals_add_up(weekday):
    _, _, orders = weekday
    limit = np.array([MAX_DISCOUNT_PERCENT[t] for t in USER_TIERS])[orders.tier]
    assert (orders.discount_percent <= limit).all()
    items = np.bincount(
        orders.item_order, weights=orders.item_quantity * orders.item_unit_cents,
        minlength=len(orders),
    )  # fmt: skip
    assert (items == orders.subtotal_cents).all()
    taxable = orders.subtotal_cents - orders.discount_cents
    assert (np.abs(orders.tax_cents * 100 - taxable * TAX_RATE_PERCENT) <= 50).all()
    assert (orders.total_cents == taxable + orders.tax_cents).all()


def test_weekends_have_more_transactions(shop):
    """The same traffic on a Saturday converts WEEKEND_TRANSACTIONS times as often (orders
    per event: the two periods have the same budget; two seeds each, against noise)."""
    weekday = sum(len(_period(shop, MONDAY, seed)[2]) for seed in (11, 12))
    weekend = sum(len(_period(shop, SATURDAY, seed)[2]) for seed in (11, 12))
    assert weekend / weekday == pytest.approx(WEEKEND_TRANSACTIONS, rel=0.1)


def test_carts_that_are_bought_hold_mostly_viewed_products(weekday):
    rows, _, orders = weekday
    visit = rows.session_token  # one per visit
    views = rows.event_type == VIEW
    viewed = set(zip(visit[views].tolist(), rows.product[views].tolist(), strict=True))
    purchase = np.flatnonzero((rows.event_type == PURCHASE) & (rows.defect != 13))
    visit_of_order = dict(zip(rows.order[purchase].tolist(), visit[purchase].tolist(), strict=True))
    bought = [(visit_of_order[o], p) for o, p in
              zip(orders.item_order.tolist(), orders.item_product.tolist(), strict=True)]  # fmt: skip
    share = np.mean([item in viewed for item in bought])
    assert share > 0.7, share
    assert (rows.product[rows.event_type == ADD] != NONE).all()


# --- the operational tables, with the events ---------------------------------------------------


@pytest.fixture(scope="module")
def oltp(small_landing):
    root = small_landing.manifest_path.parent.parent / "oltp"
    tables = {name: pl.read_parquet(root / "changes" / f"{name}.parquet") for name in OLTP_TABLES}
    initial = {name: pl.read_parquet(root / "initial" / f"{name}.parquet")
               for name in ("users", "products")}  # fmt: skip
    return initial, tables


@pytest.fixture(scope="module")
def landing_events(small_landing) -> pl.DataFrame:
    root = small_landing.manifest_path.parent
    return pl.concat(
        [pl.read_parquet(root / f["paths"]["parquet"]) for f in small_landing.manifest["files"]]
    )


def test_every_purchase_event_has_its_order_and_amount(oltp, landing_events, small_landing):
    _, changes = oltp
    placed = changes["orders"].filter(pl.col("op") == "insert")
    purchases = landing_events.filter(pl.col("event_type") == "PURCHASE")
    assert purchases.height > 300
    joined = purchases.join(placed, left_on="transaction_id", right_on="order_id", how="left")
    assert joined["total"].null_count() == 0
    well_formed = joined["amount"].str.contains(r"^[0-9]+\.[0-9]{2}$")
    assert (~well_formed).sum() == small_landing.manifest["defects"]["malformed_amount"] > 0
    assert (
        joined.filter(well_formed)["amount"] == joined.filter(well_formed)["total"].cast(pl.String)
    ).all()
    assert placed["order_id"].n_unique() == placed.height
    assert set(placed["order_id"]) == set(purchases["transaction_id"])
    # The other events carry what their type names, and nothing else.
    product = landing_events.filter(
        pl.col("event_type").is_in(["PRODUCT_VIEW", "ADD_TO_CART", "REMOVE_FROM_CART"])
    )
    missing = small_landing.manifest["defects"]["missing_product_id"]
    assert product["product_id"].null_count() == missing > 0
    named = product.filter(pl.col("product_id").is_not_null())
    assert named["page_url"].str.ends_with(named["product_id"]).all()  # sku=..., name-sku
    searches = landing_events.filter(pl.col("event_type") == "SEARCH")
    assert (searches["page_url"].str.split("q=").list.last() == searches["search_query"]).all()
    others = landing_events.filter(pl.col("event_type") != "PURCHASE")
    assert others["transaction_id"].null_count() == others.height


def test_the_orders_items_add_up_and_name_known_products_and_users(oltp):
    initial, changes = oltp
    orders = changes["orders"].filter(pl.col("op") == "insert")
    items = changes["order_items"].filter(pl.col("op") == "insert")
    sums = items.group_by("order_id").agg(pl.col("line_total").sum().alias("items"))
    checked = orders.join(sums, on="order_id", how="left")
    assert checked["items"].null_count() == 0
    assert (checked["items"] == checked["subtotal"]).all()
    assert (checked["subtotal"] - checked["discount"] + checked["tax"] == checked["total"]).all()
    assert (items["line_total"] == items["unit_price"] * items["quantity"]).all()
    assert set(items["product_id"]) <= set(initial["products"]["product_id"])
    assert set(orders["user_id"]) <= set(initial["users"]["user_id"])


def test_an_order_pays_its_products_price_on_its_day(oltp):
    initial, changes = oltp
    prices = pl.concat(
        [
            initial["products"].select("product_id", "price", pl.col("updated_at").alias("from")),
            changes["products"].select("product_id", "price", pl.col("change_ts").alias("from")),
        ]
    ).sort("from")
    items = changes["order_items"].filter(pl.col("op") == "insert").sort("created_at")
    priced = items.join_asof(
        prices,
        left_on="created_at",
        right_on="from",
        by="product_id",
        strategy="backward",
        check_sortedness=False,  # sorted by time above; Polars cannot check it per group
    )
    assert (priced["unit_price"] == priced["price"]).all()


def test_the_change_stream_is_a_valid_history(oltp):
    """Statuses move placed -> shipped -> delivered, or placed -> cancelled; only cancelled
    orders are deleted, their items first; the sequence is one order across the tables."""
    _, changes = oltp
    seqs = pl.concat([c.select("change_seq", "change_ts") for c in changes.values()])
    assert seqs["change_seq"].n_unique() == seqs.height
    ordered = seqs.sort("change_seq")
    assert ordered["change_ts"].is_sorted()
    history = (
        changes["orders"].sort("change_seq").group_by("order_id", maintain_order=True)
        .agg(pl.col("op"), pl.col("status"))
    )  # fmt: skip
    allowed = {
        ("placed",), ("placed", "shipped"), ("placed", "shipped", "delivered"),
        ("placed", "cancelled"), ("placed", "cancelled", "cancelled"),
    }  # fmt: skip
    assert {tuple(s) for s in history["status"]} <= allowed
    deleted = changes["orders"].filter(pl.col("op") == "delete")
    assert (deleted["status"] == "cancelled").all()
    gone_items = changes["order_items"].filter(pl.col("op") == "delete")
    last_item = gone_items.group_by("order_id").agg(pl.col("change_seq").max())
    check = deleted.join(last_item, on="order_id", suffix="_item")
    assert check.height == deleted.height
    assert (check["change_seq_item"] < check["change_seq"]).all()


def test_events_carry_the_users_tier_of_their_day(oltp, landing_events):
    initial, changes = oltp
    upgrades = changes["users"].filter(pl.col("op") == "update")
    assert upgrades.height > 0
    tiers = pl.concat([
        initial["users"].select("user_id", "tier", pl.col("updated_at").alias("from")),
        upgrades.select("user_id", "tier", pl.col("change_ts").alias("from")),
    ]).sort("from")  # fmt: skip
    events = (
        landing_events.filter(pl.col("user_id").is_in(upgrades["user_id"].implode()))
        .with_columns(ts=pl.col("timestamp").str.to_datetime(strict=False, time_zone="UTC"))
        .filter(pl.col("ts").is_not_null() & pl.col("timestamp").str.len_chars().eq(23))
        .with_columns(pl.col("ts").dt.cast_time_unit("ms"))
        .sort("ts")
    )
    found = events.join_asof(
        tiers,
        left_on="ts",
        right_on="from",
        by="user_id",
        strategy="backward",
        check_sortedness=False,  # sorted by time above
    )
    assert found.height > 0
    assert (found["user_tier"] == found["tier"]).all()


def test_users_have_dirty_contact_details_to_flag(oltp):
    users = oltp[0]["users"]
    valid = users["email"].str.contains(r"^[^@\s]+@[^@\s]+\.[a-z]+$")
    assert 0 < (~valid).sum() < users.height * 0.02
    assert 0 < users["full_name"].null_count() < users.height * 0.03


def test_the_same_seed_gives_the_same_operational_files(tmp_path):
    digests = []
    for name in ("a", "b"):
        generate(GeneratorConfig(events=20_000, label="o", out_dir=tmp_path / name / "landing",
                                 formats=("parquet",), workers=1))  # fmt: skip
        root = tmp_path / name / "oltp"
        digests.append({p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(root.rglob("*.parquet"))})  # fmt: skip
    assert digests[0] == digests[1]
    assert len(digests[0]) == 6
