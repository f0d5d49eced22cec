"""What the visits of a period buy: products on the product events, terms on the searches, and
the orders of the visits that end in a purchase, as integer arrays (NumPy only: the worker
processes run it).

A visit of at least MIN_BUYING_VISIT events converts with its user's tier's probability (times
WEEKEND_TRANSACTIONS on a weekend day): its last events become CHECKOUT_START and PURCHASE, with
a PRODUCT_VIEW and an ADD_TO_CART before them if it had no add. A product view is of a popular
product (the catalog's heavy-tailed popularity); an add to cart is mostly of the product last
viewed in the visit (the next viewed, with none before); a removal, of the product last added. The order holds the visit's cart (adds minus
removals), priced on the day, discounted within the tier's policy, taxed (spec), and its id is
the PURCHASE event's transaction_id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl_poc.generate.config import (
    CONVERSION_BY_TIER,
    DISCOUNT_SHARE_BY_TIER,
    MAX_QUANTITY,
    MIN_BUYING_VISIT,
    VIEWED_ADD_SHARE,
    WEEKEND_TRANSACTIONS,
)
from etl_poc.generate.vocab import Catalog, PageVocabulary
from etl_poc.logic.spec import (
    EVENT_TYPES,
    MAX_DISCOUNT_PERCENT,
    TAX_RATE_PERCENT,
    USER_TIERS,
)

VIEW, SEARCH, ADD, PURCHASE, REMOVE, CHECKOUT = (
    EVENT_TYPES.index(t)
    for t in (
        "PRODUCT_VIEW",
        "SEARCH",
        "ADD_TO_CART",
        "PURCHASE",
        "REMOVE_FROM_CART",
        "CHECKOUT_START",
    )
)
_CONVERSION = np.array([CONVERSION_BY_TIER[t] for t in USER_TIERS])
_DISCOUNT_SHARE = np.array([DISCOUNT_SHARE_BY_TIER[t] for t in USER_TIERS])
_MAX_DISCOUNT = np.array([MAX_DISCOUNT_PERCENT[t] for t in USER_TIERS])
NONE = -1


@dataclass
class Orders:
    """A period's orders (one per converting visit) and their items, positionally."""

    user: np.ndarray  # int32 index into Population
    ts_ms: np.ndarray  # int64: the PURCHASE event's time
    tier: np.ndarray  # int8: the user's tier then
    id_hi: np.ndarray  # uint64 + uint64: the order's UUID, the event's transaction_id
    id_lo: np.ndarray
    discount_percent: np.ndarray  # int64
    subtotal_cents: np.ndarray  # int64: the items' quantity * unit price
    discount_cents: np.ndarray
    tax_cents: np.ndarray
    total_cents: np.ndarray
    item_order: np.ndarray  # int64 index into the orders above, one per item, in order
    item_product: np.ndarray  # int64 index into Catalog
    item_quantity: np.ndarray
    item_unit_cents: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


def _last_before(values: np.ndarray, first_of_visit: np.ndarray) -> np.ndarray:
    """For each row, the value of the closest earlier row of the same visit whose value is
    not NONE (NONE where there is none)."""
    n = len(values)
    position = np.where(values != NONE, np.arange(n), -1)
    last = np.maximum.accumulate(position) if n else position
    earlier = np.concatenate([[-1], last[:-1]]) if n else last
    found = earlier >= first_of_visit
    return np.where(found, values[np.maximum(earlier, 0)], NONE)


def _next_after(values: np.ndarray, last_of_visit: np.ndarray) -> np.ndarray:
    """For each row, the value of the closest later row of the same visit whose value is not
    NONE (NONE where there is none)."""
    n = len(values)
    if not n:
        return values.copy()
    position = np.where(values != NONE, np.arange(n), n)
    following = np.minimum.accumulate(position[::-1])[::-1]
    later = np.concatenate([following[1:], [n]])
    found = later <= last_of_visit
    return np.where(found, values[np.minimum(later, n - 1)], NONE)


def _popular(catalog: Catalog, n: int, rng: np.random.Generator) -> np.ndarray:
    pick = np.searchsorted(catalog.popularity_cdf, rng.random(n), side="right")
    return np.minimum(pick, catalog.size - 1).astype(np.int64)


def _round_half_up(numerator: np.ndarray, denominator: int) -> np.ndarray:
    return (2 * numerator + denominator) // (2 * denominator)


def shop(
    event_type: np.ndarray,
    ts_ms: np.ndarray,
    visit_of_event: np.ndarray,
    first_event: np.ndarray,
    sizes: np.ndarray,
    visit_tier: np.ndarray,
    visit_user: np.ndarray,
    event_tier: np.ndarray,
    weekend: bool,
    day_index: int,
    catalog: Catalog,
    pages: PageVocabulary,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Orders]:
    """(event_type, product, search term, order, orders): `event_type` with the converting
    visits' funnel written in; per event, its product's and term's index (NONE where the
    event has none) and its order's (a PURCHASE's; NONE otherwise)."""
    event_type = event_type.copy()  # no PURCHASE drawn (config.EVENT_TYPE_MIX)
    n_events = len(event_type)
    rate = _CONVERSION[visit_tier] * (WEEKEND_TRANSACTIONS if weekend else 1.0)
    buying = (sizes >= MIN_BUYING_VISIT) & (rng.random(len(sizes)) < rate)
    buyers = np.flatnonzero(buying)
    last = first_event[buyers] + sizes[buyers] - 1
    event_type[last] = PURCHASE
    event_type[last - 1] = CHECKOUT
    first_of_event = first_event[visit_of_event]

    # A converting visit with no add before its checkout gets a product view and an add.
    adds = event_type == ADD
    added_before = np.zeros(len(sizes), dtype=bool)
    added_before[visit_of_event[adds]] = True
    lacking = buyers[~added_before[buyers]]
    event_type[first_event[lacking] + sizes[lacking] - 4] = VIEW
    event_type[first_event[lacking] + sizes[lacking] - 3] = ADD
    # Products: views of popular products; adds mostly of the product last viewed in the visit
    # (or, with no view before, the next one viewed).
    product = np.full(n_events, NONE, dtype=np.int64)
    views = event_type == VIEW
    product[views] = _popular(catalog, int(views.sum()), rng)
    adds = event_type == ADD
    viewed = _last_before(product, first_of_event)
    last_of_event = first_of_event + sizes[visit_of_event] - 1
    viewed_next = _next_after(product, last_of_event)
    viewed = np.where(viewed != NONE, viewed, viewed_next)
    take_viewed = adds & (viewed != NONE) & (rng.random(n_events) < VIEWED_ADD_SHARE)
    product[take_viewed] = viewed[take_viewed]
    other = adds & ~take_viewed
    product[other] = _popular(catalog, int(other.sum()), rng)
    removes = event_type == REMOVE
    in_cart = np.where(adds, product, NONE)
    added = _last_before(in_cart, first_of_event)
    product[removes] = np.where(
        added[removes] != NONE, added[removes], _popular(catalog, int(removes.sum()), rng)
    )
    term = np.full(n_events, NONE, dtype=np.int64)
    searches = event_type == SEARCH
    term[searches] = (rng.random(int(searches.sum())) ** 2 * len(pages.search_terms)).astype(
        np.int64
    )

    orders = _orders(
        event_type, product, _last_before(np.where(event_type == ADD, product, NONE),
        first_of_event), visit_of_event, buying, ts_ms, event_tier, visit_user, day_index,
        catalog, rng,
    )  # fmt: skip
    order = np.full(n_events, NONE, dtype=np.int64)
    order[event_type == PURCHASE] = np.arange(len(orders))
    return event_type, product, term, order, orders


def _orders(event_type, product, last_added, visit_of_event, buying, ts_ms, event_tier,
            visit_user, day_index, catalog, rng) -> Orders:  # fmt: skip
    """The converting visits' orders, in event order (the PURCHASE events' order).
    `last_added`: per event, the product last added to the cart before it in the visit."""
    purchase_at = np.flatnonzero(event_type == PURCHASE)
    order_visit = visit_of_event[purchase_at]
    order_of_visit = np.full(len(buying), NONE, dtype=np.int64)
    order_of_visit[order_visit] = np.arange(len(order_visit))
    # The cart: per (order, product), adds minus removals, at most MAX_QUANTITY.
    carted = np.isin(event_type, (ADD, REMOVE)) & (order_of_visit[visit_of_event] != NONE)
    at = np.flatnonzero(carted)
    key = order_of_visit[visit_of_event[at]] * catalog.size + product[at]
    keys, inverse = np.unique(key, return_inverse=True)
    net = np.bincount(inverse, weights=np.where(event_type[at] == ADD, 1, -1), minlength=len(keys))
    keep = net > 0
    item_order, item_product = keys[keep] // catalog.size, keys[keep] % catalog.size
    quantity = np.minimum(net[keep], MAX_QUANTITY).astype(np.int64)
    # A cart emptied by its removals: the product last added, once.
    empty = np.setdiff1d(np.arange(len(order_visit)), item_order)
    if len(empty):
        last_add = last_added[purchase_at[empty]]
        item_order = np.concatenate([item_order, empty])
        item_product = np.concatenate([item_product, last_add])
        quantity = np.concatenate([quantity, np.ones(len(empty), dtype=np.int64)])
        order_by = np.lexsort((item_product, item_order))
        item_order, item_product, quantity = (
            item_order[order_by],
            item_product[order_by],
            quantity[order_by],
        )
    unit = catalog.price_cents(item_product, day_index)
    subtotal = np.bincount(item_order, weights=quantity * unit, minlength=len(order_visit))
    subtotal = subtotal.astype(np.int64)
    tier = event_tier[purchase_at]  # the tier the PURCHASE event carries
    discounted = rng.random(len(order_visit)) < _DISCOUNT_SHARE[tier]
    # A discount of 5 % steps up to the tier's maximum.
    steps = _MAX_DISCOUNT[tier] // 5
    percent = np.where(discounted, 5 * (1 + (rng.random(len(tier)) * steps).astype(np.int64)), 0)
    discount = _round_half_up(subtotal * percent, 100)
    tax = _round_half_up((subtotal - discount) * TAX_RATE_PERCENT, 100)
    return Orders(
        user=visit_user[order_visit].astype(np.int32),
        ts_ms=ts_ms[purchase_at],
        tier=tier.astype(np.int8),
        id_hi=rng.integers(0, np.iinfo(np.uint64).max, size=len(tier), dtype=np.uint64),
        id_lo=rng.integers(0, np.iinfo(np.uint64).max, size=len(tier), dtype=np.uint64),
        discount_percent=percent.astype(np.int64),
        subtotal_cents=subtotal,
        discount_cents=discount,
        tax_cents=tax,
        total_cents=subtotal - discount + tax,
        item_order=item_order.astype(np.int64),
        item_product=item_product.astype(np.int64),
        item_quantity=quantity,
        item_unit_cents=unit.astype(np.int64),
    )
