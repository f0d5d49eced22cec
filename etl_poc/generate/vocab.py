"""What every period indexes into: the users and the shop's pages, built once per run.

Kept apart from how they are built (population.py, which needs Faker and Polars) so that the
worker processes that render periods import only NumPy and Arrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class PageVocabulary:
    """Page URLs grouped by event type: `urls[offsets[t] : offsets[t] + sizes[t]]`. A product
    event's URL is its product's (PRODUCT_VIEW, ADD_TO_CART and REMOVE_FROM_CART list one URL
    per product, in the catalog's order); a SEARCH's is its term's, in `search_terms` order."""

    urls: pa.Array
    offsets: np.ndarray
    sizes: np.ndarray
    search_terms: pa.Array


@dataclass(frozen=True)
class Catalog:
    """The shop's products, positionally: sku, category, name, price, popularity, and one
    price change each may have during the window (from `price_change_day`, a day index; the
    window's length or more: never)."""

    product_ids: np.ndarray  # int64 sku
    sku_text: pa.Array  # the same as the product_id column's text
    category: np.ndarray  # index into categories
    categories: tuple[str, ...]
    names: pa.Array
    base_price_cents: np.ndarray  # int64
    popularity_cdf: np.ndarray  # cumulative, normalised: heavy-tailed
    price_change_day: np.ndarray  # int32
    changed_price_cents: np.ndarray  # int64

    @property
    def size(self) -> int:
        return len(self.product_ids)

    def price_cents(self, product: np.ndarray, day_index: int) -> np.ndarray:
        """The unit price of each product on that day of the window."""
        changed = self.price_change_day[product] <= day_index
        return np.where(changed, self.changed_price_cents[product], self.base_price_cents[product])


@dataclass(frozen=True)
class Population:
    """One row per user, positionally: ids, tier, activity and the devices and IPs they use."""

    user_ids: pa.Array
    tier: np.ndarray  # index into spec.USER_TIERS
    activity_cdf: np.ndarray  # cumulative, normalised activity: heavy-tailed, tier-weighted
    device: np.ndarray  # (n_users, 2): primary and secondary device index
    ip_addresses: pa.Array  # 2 * n_users: primary IPs, then secondary IPs
    ip_is_v6: np.ndarray  # per entry of ip_addresses
    declared_country: pa.Array  # the naive country column's per-user value
    # One tier upgrade a user may get during the window: from that day index on (the window's
    # length or more: never) the user has upgraded_tier.
    upgrade_day: np.ndarray  # int32
    upgraded_tier: np.ndarray

    @property
    def size(self) -> int:
        return len(self.user_ids)

    def tier_on(self, user: np.ndarray, day_index: np.ndarray) -> np.ndarray:
        """Each user's tier on that day of the window."""
        upgraded = self.upgrade_day[user] <= day_index
        return np.where(upgraded, self.upgraded_tier[user], self.tier[user])
