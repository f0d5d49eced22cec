"""The event model: visits of users over a time window, as integer arrays.

A *period* (a day, or part of a day when a day holds more events than a chunk) is planned
at once: how many events it holds (weekly and daily rhythm), its visits (bursts of events with
short gaps; some are a return of the previous visit after a gap just under, exactly at, or just
over 30 minutes), which user, device and IP each visit has, and which rows carry a defect.
Everything stays integer here; `render` turns rows into strings only when they are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from etl_poc.generate.commerce import ADD, CHECKOUT, NONE, PURCHASE, REMOVE, VIEW, Orders, shop
from etl_poc.generate.config import EVENT_TYPE_MIX, DefectRates
from etl_poc.generate.vocab import Catalog, PageVocabulary, Population
from etl_poc.logic.spec import SESSION_GAP, USER_TIERS

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
SESSION_GAP_MS = int(SESSION_GAP.total_seconds() * 1000)

# UTC traffic of a shop selling mostly to Europe and the Americas: quiet nights, busy evenings.
HOUR_WEIGHTS = np.array(
    [1.6, 1.2, 1.0, 0.9, 0.9, 1.1, 1.6, 2.4, 3.2, 3.8, 4.2, 4.5,
     4.8, 4.7, 4.6, 4.6, 4.8, 5.2, 5.8, 6.2, 6.0, 5.2, 4.0, 2.6]
)  # fmt: skip
WEEKDAY_WEIGHTS = np.array([0.96, 0.97, 0.98, 1.0, 1.06, 1.16, 1.12])  # Monday first

BOUNCE_SHARE = 0.35  # visits of a single event
MEAN_EXTRA_EVENTS = 9.0  # events after the first in a visit that does not bounce
MAX_VISIT_EVENTS = 250
GAP_MEDIAN_MS = 20_000  # between two events of a visit
GAP_SIGMA = 1.1
GAP_MAX_MS = 15 * MINUTE_MS  # a visit never has a session-breaking gap inside
TIE_SHARE = 0.005  # double-fired events: same millisecond as the previous one
RETURN_SHARE = 0.08  # visits that come back after a gap around SESSION_GAP
LATE_MIN_MS, LATE_MAX_MS = 10 * MINUTE_MS, 3 * HOUR_MS  # how late out-of-order rows arrive


class Defect(IntEnum):
    """What is wrong with a row. CLEAN rows are fine; DUPLICATE rows are exact replays."""

    CLEAN = 0
    NULL_EVENT_ID = 1
    EMPTY_EVENT_ID = 2
    NULL_USER_ID = 3
    EMPTY_USER_ID = 4
    UNPARSEABLE_TIMESTAMP = 5
    OFFSET_TIMESTAMP = 6
    ODD_DEVICE = 7
    MALFORMED_IP = 8
    PRIVATE_IP = 9
    MISSING_IP = 10
    PADDED_IP = 11
    OUT_OF_ORDER = 12
    DUPLICATE = 13
    # On the events whose type has the field (schemas/events): drawn among those rows.
    MISSING_PRODUCT_ID = 14
    MALFORMED_AMOUNT = 15

    @property
    def key(self) -> str:
        return self.name.lower()


# Drawn on any row; the commerce defects only on rows of the event types they concern.
TYPED_DEFECTS = {
    Defect.MISSING_PRODUCT_ID: (VIEW, ADD, REMOVE),
    Defect.MALFORMED_AMOUNT: (PURCHASE,),
}
ROW_DEFECTS = tuple(
    d for d in Defect if d not in (Defect.CLEAN, Defect.DUPLICATE) and d not in TYPED_DEFECTS
)
RETURN_GAP_KINDS = ("under_30m", "exactly_30m", "over_30m", "long")


@dataclass
class Rows:
    """Events as parallel arrays, one entry per row to write."""

    user: np.ndarray  # int32 index into Population
    ts_ms: np.ndarray  # int64 epoch milliseconds, UTC: when the event happened
    arrival_ms: np.ndarray  # int64: when it reached the landing zone (orders the files)
    event_type: np.ndarray  # int8 index into spec.EVENT_TYPES
    url: np.ndarray  # int32 index into PageVocabulary.urls
    device: np.ndarray  # int8 index into spec.DEVICES
    ip: np.ndarray  # int32 index into Population.ip_addresses
    session_token: np.ndarray  # uint64: the source system's naive session id
    id_hi: np.ndarray  # uint64 + uint64: the event's UUID
    id_lo: np.ndarray
    defect: np.ndarray  # int8 Defect
    variant: np.ndarray  # uint32: picks among the ways a defect shows
    tier: np.ndarray  # int8 index into spec.USER_TIERS: the user's tier at the event
    product: np.ndarray  # int64 index into Catalog; commerce.NONE where the event has none
    term: np.ndarray  # int64 index into PageVocabulary.search_terms, or NONE
    order: np.ndarray  # int64 index into the period's Orders (a PURCHASE), or NONE

    def __len__(self) -> int:
        return len(self.ts_ms)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(**{name: values[index] for name, values in vars(self).items()})

    def slice(self, start: int, stop: int) -> Rows:
        """Rows start..stop as views, without copying."""
        return Rows(**{name: values[start:stop] for name, values in vars(self).items()})

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(
            **{name: np.concatenate([vars(p)[name] for p in parts]) for name in vars(parts[0])}
        )


@dataclass
class PeriodStats:
    visits: int = 0
    bounce_visits: int = 0
    visits_crossing_midnight: int = 0
    ipv6_events: int = 0
    return_gaps: np.ndarray | None = None  # counts per RETURN_GAP_KINDS
    events_by_tier: np.ndarray | None = None
    orders: int = 0
    buying_visits_by_tier: np.ndarray | None = None


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split `total` into integers proportional to `weights` that add up exactly."""
    share = np.asarray(weights, dtype=float) / np.sum(weights) * total
    counts = np.floor(share).astype(np.int64)
    remainder = total - int(counts.sum())
    if remainder:
        # Largest remainders first; stable, so ties go to the earlier slot.
        order = np.argsort(-(share - counts), kind="stable")
        counts[order[:remainder]] += 1
    return counts


def _visit_sizes(budget: int, rng: np.random.Generator) -> np.ndarray:
    sizes: list[np.ndarray] = []
    drawn = 0
    mean = BOUNCE_SHARE + (1 - BOUNCE_SHARE) * (1 + MEAN_EXTRA_EVENTS)
    while drawn < budget:
        k = int((budget - drawn) / mean * 1.1) + 16
        extra = np.minimum(rng.geometric(1 / MEAN_EXTRA_EVENTS, size=k), MAX_VISIT_EVENTS - 1)
        batch = np.where(rng.random(k) < BOUNCE_SHARE, 1, 1 + extra)
        sizes.append(batch)
        drawn += int(batch.sum())
    all_sizes = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64)
    cut = int(np.searchsorted(np.cumsum(all_sizes), budget))  # first visit reaching the budget
    all_sizes = all_sizes[: cut + 1].copy()
    if len(all_sizes):
        all_sizes[-1] -= int(all_sizes.sum()) - budget  # trim the last visit to fit exactly
    return all_sizes.astype(np.int64)


def _return_gaps(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    kind = rng.choice(len(RETURN_GAP_KINDS), size=n, p=[0.35, 0.15, 0.35, 0.15])
    gap = np.select(
        [kind == 0, kind == 1, kind == 2],
        [
            rng.integers(SESSION_GAP_MS - 2 * MINUTE_MS, SESSION_GAP_MS, size=n),
            np.full(n, SESSION_GAP_MS),
            rng.integers(SESSION_GAP_MS + 1, SESSION_GAP_MS + 2 * MINUTE_MS, size=n),
        ],
        rng.integers(SESSION_GAP_MS + 2 * MINUTE_MS, 3 * HOUR_MS, size=n),
    )
    return gap.astype(np.int64), kind


def plan_period(
    start_ms: int,
    hours: range,
    budget: int,
    population: Population,
    pages: PageVocabulary,
    defects: DefectRates,
    rng: np.random.Generator,
    catalog: Catalog,
    day_index: int = 0,
) -> tuple[Rows, PeriodStats, Orders]:
    """Events of the visits that start in `hours` of the day beginning at `start_ms` (the
    window's day `day_index`), and the orders of those that end in a purchase.

    `budget` rows are returned exactly: original events plus duplicate replays.
    """
    # Replays never outnumber a quarter of the period, so there are always originals to replay.
    n_duplicates = min(int(rng.binomial(budget, defects.duplicate)), budget // 4) if budget else 0
    n_events = budget - n_duplicates

    sizes = _visit_sizes(n_events, rng)
    n_visits = len(sizes)
    user = np.searchsorted(population.activity_cdf, rng.random(n_visits), side="right")
    user = np.minimum(user, population.size - 1).astype(np.int32)
    hour_weights = HOUR_WEIGHTS[hours.start : hours.stop]
    hour = hours.start + np.searchsorted(
        np.cumsum(hour_weights) / hour_weights.sum(), rng.random(n_visits), side="right"
    )
    hour = np.minimum(hour, hours.stop - 1)
    visit_start = start_ms + hour * HOUR_MS + rng.integers(0, HOUR_MS, size=n_visits)
    device = population.device[user, (rng.random(n_visits) < 0.08).astype(np.int64)]
    ip = user + population.size * (rng.random(n_visits) < 0.10)
    session_token = _random_u64(n_visits, rng)

    # Events: the offset of each event from its visit's start.
    visit_of_event = np.repeat(np.arange(n_visits), sizes)
    first_event = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    gaps = np.clip(
        rng.lognormal(np.log(GAP_MEDIAN_MS), GAP_SIGMA, size=n_events), 200, GAP_MAX_MS
    ).astype(np.int64)
    gaps[rng.random(n_events) < TIE_SHARE] = 0
    gaps[first_event[sizes > 0]] = 0
    elapsed = np.cumsum(gaps)
    offset = elapsed - elapsed[first_event][visit_of_event] if n_events else elapsed
    duration = offset[first_event + sizes - 1] if n_visits else np.zeros(0, dtype=np.int64)

    # Returning visits: the same user (and device, and IP) comes back after a gap around
    # SESSION_GAP. A return never follows a return, so each is placed from a visit already placed.
    returns = np.zeros(n_visits, dtype=bool)
    if n_visits > 1:
        returns[1:] = rng.random(n_visits - 1) < RETURN_SHARE
        returns[1:] &= ~returns[:-1]
    back = np.flatnonzero(returns)
    gap, gap_kind = _return_gaps(len(back), rng)
    user[back] = user[back - 1]
    device[back] = device[back - 1]
    ip[back] = ip[back - 1]
    visit_start[back] = visit_start[back - 1] + duration[back - 1] + gap

    ts = visit_start[visit_of_event] + offset
    type_cdf = np.cumsum(list(EVENT_TYPE_MIX.values()))
    event_type = np.searchsorted(type_cdf / type_cdf[-1], rng.random(n_events), side="right")
    event_type = np.minimum(event_type, len(type_cdf) - 1).astype(np.int8)
    # Popular pages first: a skewed draw within the event type's URLs.
    url = pages.offsets[event_type] + (
        rng.random(n_events) ** 2.5 * pages.sizes[event_type]
    ).astype(np.int64)
    # What the visits buy (commerce.py), from a generator of its own: the visits are as before.
    event_day = day_index + (ts - start_ms) // DAY_MS
    tier = population.tier_on(user[visit_of_event], event_day).astype(np.int8)
    visit_tier = population.tier_on(user, np.full(n_visits, day_index))
    weekend = (start_ms // DAY_MS + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    event_type, product, term, order, orders = shop(
        event_type, ts, visit_of_event, first_event, sizes, visit_tier, user, tier, weekend,
        day_index, catalog, pages, np.random.default_rng(rng.integers(0, 1 << 62)),
    )  # fmt: skip
    event_type = event_type.astype(np.int8)
    named = product != NONE
    url[named] = pages.offsets[event_type[named]] + product[named]
    searched = term != NONE
    url[searched] = pages.offsets[event_type[searched]] + term[searched]
    fixed = np.isin(event_type, (PURCHASE, CHECKOUT)) & ~named  # the funnel's pages
    url[fixed] = pages.offsets[event_type[fixed]] + (
        rng.random(int(fixed.sum())) * pages.sizes[event_type[fixed]]
    ).astype(np.int64)

    row_rates = np.array([getattr(defects, d.key) for d in ROW_DEFECTS])
    pick = np.searchsorted(np.cumsum(row_rates), rng.random(n_events), side="right")
    defect = np.where(pick < len(ROW_DEFECTS), pick + 1, Defect.CLEAN).astype(np.int8)
    for kind, types in TYPED_DEFECTS.items():  # at their rate of all events, on their types
        eligible = np.flatnonzero((defect == Defect.CLEAN) & np.isin(event_type, types))
        count = min(int(rng.binomial(n_events, getattr(defects, kind.key))), len(eligible))
        defect[rng.choice(eligible, size=count, replace=False)] = kind
    dirty = np.flatnonzero(defect != Defect.CLEAN)
    shortfall = n_duplicates - (n_events - len(dirty))
    if shortfall > 0:  # only with extreme rates on a tiny period: keep enough clean originals
        defect[dirty[:shortfall]] = Defect.CLEAN
    late = defect == Defect.OUT_OF_ORDER
    arrival = ts + np.where(late, rng.integers(LATE_MIN_MS, LATE_MAX_MS, size=n_events), 0)

    rows = Rows(
        user=user[visit_of_event],
        ts_ms=ts,
        arrival_ms=arrival,
        event_type=event_type,
        url=url.astype(np.int32),
        device=device[visit_of_event].astype(np.int8),
        ip=ip[visit_of_event].astype(np.int32),
        session_token=session_token[visit_of_event],
        id_hi=_random_u64(n_events, rng),
        id_lo=_random_u64(n_events, rng),
        defect=defect,
        variant=rng.integers(0, 1 << 31, size=n_events).astype(np.uint32),
        tier=tier,
        product=product,
        term=term,
        order=order,
    )
    # Exact replays of clean rows, arriving right after the original.
    if n_duplicates:
        clean = np.flatnonzero(defect == Defect.CLEAN)
        replay = rows.take(np.sort(rng.choice(clean, size=n_duplicates, replace=False)))
        replay.defect[:] = Defect.DUPLICATE
        rows = Rows.concat([rows, replay])

    stats = PeriodStats(
        visits=n_visits,
        bounce_visits=int((sizes == 1).sum()),
        visits_crossing_midnight=int(
            ((visit_start // DAY_MS) != ((visit_start + duration) // DAY_MS)).sum()
        ),
        ipv6_events=int(population.ip_is_v6[rows.ip[:n_events]].sum()),
        return_gaps=np.bincount(gap_kind, minlength=len(RETURN_GAP_KINDS)),
        events_by_tier=np.bincount(rows.tier[:n_events], minlength=len(USER_TIERS)),
        orders=len(orders),
        buying_visits_by_tier=np.bincount(orders.tier, minlength=len(USER_TIERS)),
    )
    return rows, stats, orders


def _random_u64(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
