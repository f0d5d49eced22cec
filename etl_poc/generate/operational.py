"""The operational database the events come from: users, products, orders and order items,
as the state at the window's start and the changes after it, written beside the landing zone.

Every PURCHASE event's transaction_id is an order here, with the items of its visit's cart,
priced on its day, discounted within its tier's policy and taxed (spec); the changes are what
the shop's database saw day by day: orders placed (with their items), shipped, delivered or
cancelled, a few cancelled orders purged (their items first), tier upgrades (the events carry
the new tier from that day on) and price changes (orders from that day on pay the new price).
Changes after the window's end are not written: the database is as of then.

Files (`oltp/`): `initial/<table>.parquet` (users and products at the start; no order yet) and
`changes/<table>.parquet`: per change its `change_seq` (the order to apply them in, across the
tables), `change_ts`, `op` (insert, update, delete) and the row after the change (before it,
for a delete).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from faker import Faker

from etl_poc.generate.commerce import Orders
from etl_poc.generate.render import _uuid_strings
from etl_poc.generate.vocab import Catalog, Population
from etl_poc.logic.spec import OLTP_KEYS, OLTP_TABLES, USER_TIERS

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CANCEL_SHARE = 0.05
PURGE_SHARE = 0.2  # of cancelled orders, deleted with their items a few days later
INVALID_EMAIL_SHARE = 0.005
INCOMPLETE_USER_SHARE = 0.01  # users without a name or a country
MONEY = pl.Decimal(12, 2)
UTC_MS = pl.Datetime("ms", "UTC")


def _money(cents: pl.Expr | pl.Series) -> pl.Expr | pl.Series:
    """Cents as dollars, exactly (a decimal, never a float)."""
    return (cents.cast(pl.Int64).cast(MONEY) / 100).cast(MONEY)


def combine(parts: list[Orders]) -> Orders:
    """The periods' orders as one, item indices shifted to the combined orders."""
    parts = [p for p in parts if p is not None]
    shift = np.concatenate([[0], np.cumsum([len(p) for p in parts])[:-1]]).astype(np.int64)
    fields = {name: np.concatenate([getattr(p, name) for p in parts]) for name in vars(parts[0])}
    fields["item_order"] = np.concatenate(
        [p.item_order + offset for p, offset in zip(parts, shift, strict=True)]
    )
    return Orders(**fields)


def _users(population: Population, start_ms: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, 0)))
    fake = Faker("en_US")
    fake.seed_instance(seed)
    first = sorted({fake.first_name() for _ in range(600)})
    last = sorted({fake.last_name() for _ in range(1200)})
    n = population.size
    first_i, last_i = rng.integers(0, len(first), n), rng.integers(0, len(last), n)
    invalid = rng.random(n) < INVALID_EMAIL_SHARE
    incomplete = rng.random(n) < INCOMPLETE_USER_SHARE
    created = start_ms - rng.integers(1, 730, n) * DAY_MS - rng.integers(0, DAY_MS, n)
    user_id = pl.Series("user_id", population.user_ids)
    first_name = pl.Series(first).gather(first_i)
    last_name = pl.Series(last).gather(last_i)
    domain = pl.Series(["example.com", "mail.example.org", "shop.example.net"]).gather(
        rng.integers(0, 3, n)
    )
    return pl.DataFrame(
        {
            "user_id": user_id,
            "first": first_name,
            "last": last_name,
            "domain": domain,
            "invalid": invalid,
            "incomplete": incomplete,
            "country": pl.Series(population.declared_country),
            "tier": pl.Series(USER_TIERS).gather(population.tier),
            "created_at": pl.Series(created).cast(UTC_MS),
        }
    ).select(
        "user_id",
        pl.when("invalid")  # a typed-in address the shop never checked
        .then(pl.format("{}.{}{}", "first", "last", "domain"))
        .otherwise(pl.format("{}.{}.{}@{}", "first", "last", pl.col("user_id").str.slice(5), "domain"))
        .str.to_lowercase()
        .alias("email"),
        pl.when("incomplete").then(None).otherwise(pl.format("{} {}", "first", "last")).alias("full_name"),
        pl.when(pl.col("incomplete") & (pl.col("user_id").hash() % 2 == 0))
        .then(None)
        .otherwise("country")
        .alias("country"),
        "tier",
        "created_at",
        pl.col("created_at").alias("updated_at"),
    )  # fmt: skip


def _products(catalog: Catalog, start_ms: int) -> pl.DataFrame:
    created = pl.Series([start_ms - 400 * DAY_MS] * catalog.size).cast(UTC_MS)
    return pl.DataFrame(
        {
            "product_id": pl.Series(catalog.sku_text),
            "name": pl.Series(catalog.names).str.replace_all("-", " ").str.to_titlecase(),
            "category": pl.Series(catalog.categories).gather(catalog.category),
            "price": pl.Series(catalog.base_price_cents),
            "created_at": created,
            "updated_at": created,
        }
    ).with_columns(_money(pl.col("price")).alias("price"))


def _changes(table: str, frame: pl.DataFrame, op: str, ts, rank: int) -> pl.DataFrame:
    """Rows changed at `ts` (ms, or a timestamp), with what orders them: time, then `rank`
    (an order before its items, its items before a later status, a purge's items before the
    order), then the table and key."""
    key = [pl.col(k).cast(pl.String) for k in OLTP_KEYS[table]]
    return frame.with_columns(
        pl.Series(ts).cast(pl.Int64).alias("change_ts") if isinstance(ts, np.ndarray)
        else ts.cast(pl.Int64).alias("change_ts"),
        pl.lit(op).alias("op"),
        pl.lit(rank).alias("_rank"),
        pl.lit(table).alias("_table"),
        pl.concat_str(key, separator="|").alias("_key"),
    )  # fmt: skip


def write_operational(
    out: Path,
    population: Population,
    catalog: Catalog,
    parts: list[Orders],
    start_ms: int,
    end_ms: int,
    seed: int,
) -> dict:
    """Write oltp/ under `out`; what it holds, for the manifest."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, 1)))
    users, products = _users(population, start_ms, seed), _products(catalog, start_ms)
    orders = combine(parts) if any(p is not None and len(p) for p in parts) else None
    n = len(orders) if orders is not None else 0

    changes: dict[str, list[pl.DataFrame]] = {t: [] for t in OLTP_TABLES}
    # Tier upgrades and price changes, at the start of their day (the events and the orders
    # follow them from then on).
    upgraded = np.flatnonzero(population.upgrade_day < (end_ms - start_ms) // DAY_MS)
    if len(upgraded):
        at = start_ms + population.upgrade_day[upgraded].astype(np.int64) * DAY_MS
        rows = users[upgraded].with_columns(
            pl.Series("tier", np.array(USER_TIERS)[population.upgraded_tier[upgraded]]),
            pl.Series("updated_at", at).cast(UTC_MS),
        )
        changes["users"].append(_changes("users", rows, "update", pl.col("updated_at"), 0))
    repriced = np.flatnonzero(catalog.price_change_day < (end_ms - start_ms) // DAY_MS)
    if len(repriced):
        at = start_ms + catalog.price_change_day[repriced].astype(np.int64) * DAY_MS
        rows = products[repriced].with_columns(
            _money(pl.Series(catalog.changed_price_cents[repriced])).alias("price"),
            pl.Series("updated_at", at).cast(UTC_MS),
        )
        changes["products"].append(_changes("products", rows, "update", pl.col("updated_at"), 0))

    summary = {"orders": n, "order_items": 0, "status": {}, "purged_orders": 0}
    if n:
        ids = pl.Series("order_id", _uuid_strings(orders.id_hi, orders.id_lo))
        placed = orders.ts_ms
        shipped = placed + rng.integers(12 * HOUR_MS, 72 * HOUR_MS, n)
        delivered = shipped + rng.integers(24 * HOUR_MS, 120 * HOUR_MS, n)
        cancelled = rng.random(n) < CANCEL_SHARE
        cancelled_at = placed + rng.integers(HOUR_MS, 48 * HOUR_MS, n)
        purged = cancelled & (rng.random(n) < PURGE_SHARE)
        purged_at = cancelled_at + rng.integers(DAY_MS, 3 * DAY_MS, n)
        base = pl.DataFrame(
            {
                "order_id": ids,
                "user_id": pl.Series(population.user_ids).gather(orders.user),
                "status": "placed",
                "subtotal": orders.subtotal_cents,
                "discount": orders.discount_cents,
                "discount_percent": orders.discount_percent.astype(np.int32),
                "tax": orders.tax_cents,
                "total": orders.total_cents,
                "currency": "USD",
                "created_at": pl.Series(placed).cast(UTC_MS),
            }
        ).with_columns(
            *(_money(pl.col(c)).alias(c) for c in ("subtotal", "discount", "tax", "total")),
            pl.col("created_at").alias("updated_at"),
        )
        items = pl.DataFrame(
            {
                "order_id": ids.gather(orders.item_order),
                "product_id": pl.Series(catalog.sku_text).gather(orders.item_product),
                "quantity": orders.item_quantity.astype(np.int32),
                "unit_price": orders.item_unit_cents,
                "created_at": pl.Series(placed[orders.item_order]).cast(UTC_MS),
            }
        ).with_columns(
            pl.int_range(1, pl.len() + 1).over("order_id").cast(pl.Int32).alias("line_number"),
            _money(pl.col("unit_price") * pl.col("quantity")).alias("line_total"),
            _money(pl.col("unit_price")).alias("unit_price"),
        ).select(
            "order_id", "line_number", "product_id", "quantity", "unit_price", "line_total",
            "created_at",
        )  # fmt: skip
        changes["orders"].append(_changes("orders", base, "insert", pl.col("created_at"), 1))
        changes["order_items"].append(
            _changes("order_items", items, "insert", pl.col("created_at"), 2)
        )

        def status(mask: np.ndarray, name: str, when: np.ndarray, rank: int) -> None:
            keep = mask & (when < end_ms)
            rows = base.filter(pl.Series(keep)).with_columns(
                pl.lit(name).alias("status"), pl.Series(when[keep]).cast(UTC_MS).alias("updated_at")
            )
            changes["orders"].append(_changes("orders", rows, "update", pl.col("updated_at"), rank))
            summary["status"][name] = int(keep.sum())

        status(cancelled, "cancelled", cancelled_at, 3)
        status(~cancelled, "shipped", shipped, 3)
        status(~cancelled & (delivered < end_ms), "delivered", delivered, 4)
        gone = purged & (purged_at < end_ms)
        gone_ids = ids.filter(pl.Series(gone))
        at = pl.DataFrame({"order_id": gone_ids, "_at": purged_at[gone]})
        gone_items = items.join(at, on="order_id")
        changes["order_items"].append(
            _changes("order_items", gone_items, "delete", pl.col("_at"), 5).drop("_at")
        )
        gone_orders = base.filter(pl.Series(gone)).with_columns(
            pl.lit("cancelled").alias("status"),
            pl.Series(cancelled_at[gone]).cast(UTC_MS).alias("updated_at"),
        )
        changes["orders"].append(_changes("orders", gone_orders, "delete", purged_at[gone], 6))
        summary["order_items"] = items.height
        summary["purged_orders"] = int(gone.sum())

    root = out / "oltp"
    (root / "initial").mkdir(parents=True, exist_ok=True)
    (root / "changes").mkdir(parents=True, exist_ok=True)
    initial = {"users": users, "products": products}
    for table in ("users", "products"):
        initial[table].write_parquet(root / "initial" / f"{table}.parquet")
    # One order to apply the changes in, across the tables.
    per_table = {t: pl.concat(f, how="vertical_relaxed") for t, f in changes.items() if f}
    order = (
        pl.concat([f.select("change_ts", "_rank", "_table", "_key") for f in per_table.values()])
        .sort("change_ts", "_rank", "_table", "_key")
        .with_row_index("change_seq")
    )
    counts = {}
    for table, frame in per_table.items():
        columns = initial[table].columns if table in initial else [
            c for c in frame.columns if not c.startswith("_") and c not in ("change_ts", "op")
        ]  # fmt: skip
        frame = frame.join(order, on=["change_ts", "_rank", "_table", "_key"], how="left")
        frame.select(
            pl.col("change_seq").cast(pl.Int64),
            pl.col("change_ts").cast(UTC_MS),
            "op",
            *columns,
        ).sort("change_seq").write_parquet(root / "changes" / f"{table}.parquet")
        counts[table] = dict(frame.group_by("op").len().sort("op").iter_rows())
    return {
        "directory": "oltp",
        "initial": {t: initial[t].height for t in initial},
        "changes": counts,
        **summary,
        "revenue": float(orders.total_cents.sum() / 100) if n else 0.0,
        "as_of": datetime.fromtimestamp(end_ms / 1000, UTC).isoformat(),
    }
