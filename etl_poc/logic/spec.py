"""The clickstream contract, written once and shared by every engine and by the generator.

Nothing here imports an engine: these are the names, vocabularies and constants that the
business rules are stated in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

from etl_poc.schemas import commerce_patterns, required_fields

# Landing files (CSV with a header, or Parquet) carry these columns, in this order.
# session_id and country are naive values from the source system that the pipeline replaces.
LANDING_COLUMNS: Final[tuple[str, ...]] = (
    "event_id",
    "user_id",
    "session_id",
    "timestamp",
    "page_url",
    "country",
    "device",
    "ip_address",
    "event_type",
    "user_tier",
    "product_id",
    "search_query",
    "transaction_id",
    "amount",
)
# The commerce columns (issue 18): landing files written before them lack them, and still load.
COMMERCE_COLUMNS: Final[tuple[str, ...]] = (
    "product_id",
    "search_query",
    "transaction_id",
    "amount",
)

# The nine known event types, in funnel-ish order; anything else is cleansed to UNKNOWN.
EVENT_TYPES: Final[tuple[str, ...]] = (
    "PAGE_VIEW",
    "PRODUCT_VIEW",
    "SEARCH",
    "ADD_TO_CART",
    "PURCHASE",
    "REMOVE_FROM_CART",
    "CHECKOUT_START",
    "LOGIN",
    "LOGOUT",
)
REQUIRED_FIELDS: Final[Mapping[str, tuple[str, ...]]] = required_fields(EVENT_TYPES)
UNKNOWN_EVENT_TYPE: Final = "UNKNOWN"

# The operational database's tables (issue 18), in the order their rows may be inserted
# (a foreign key's target first), and each one's primary key.
OLTP_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "users": ("user_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "line_number"),
}
OLTP_TABLES: Final[tuple[str, ...]] = tuple(OLTP_KEYS)

USER_TIERS: Final[tuple[str, ...]] = ("bronze", "silver", "gold", "platinum")
UNKNOWN_USER_TIER: Final = "unknown"

DEVICES: Final[tuple[str, ...]] = ("desktop", "mobile", "tablet", "other")
OTHER_DEVICE: Final = "other"

# --- Commerce (the operational database's rules, which the events agree with) ------------

# An order's total = sum of its items (quantity * unit price) - discount + tax, in cents; tax
# is TAX_RATE_PERCENT of (items - discount), rounded half up to the cent.
TAX_RATE_PERCENT: Final = 8
# A tier's discount policy: an order's discount is at most this share of its items.
MAX_DISCOUNT_PERCENT: Final[Mapping[str, int]] = {
    "bronze": 5, "silver": 10, "gold": 15, "platinum": 20,
}  # fmt: skip
ORDER_STATUSES: Final[tuple[str, ...]] = ("placed", "shipped", "delivered", "cancelled")
# The commerce fields of an event (schemas/events): where present, each has its form
# (COMMERCE_PATTERNS: a regular expression both engines match; None: any non-empty text), and
# each event type requires some (REQUIRED_FIELDS: a product event its product_id, a SEARCH its
# search_query, a PURCHASE its transaction_id, the order's id, and its amount, the order's
# total). Read from the JSON Schemas, which the generator's tests validate its output against.
COMMERCE_PATTERNS: Final[Mapping[str, str | None]] = commerce_patterns()
# A usable row's amount: a decimal of this precision and scale (the text's dollars, exactly).
AMOUNT_PRECISION, AMOUNT_SCALE = 12, 2

# A session ends when a user's next event is strictly more than this after the previous one;
# a gap of exactly SESSION_GAP continues the session (the rule of Spark's session_window).
SESSION_GAP: Final = timedelta(minutes=30)

# The first day the pipeline accepts events of (ETL_POC_START_DATE overrides it, settings.py).
DEFAULT_START_DATE: Final = date(2024, 1, 1)

# --- Cleansing -----------------------------------------------------------------------------

# Text is trimmed of these (ASCII whitespace, as every engine's regex and trim agree on them);
# text that is empty after trimming is null.
WHITESPACE: Final = " \t\n\r\f\v"

SOURCE_FILE = "source_file"  # the landing file a row came from (attributes rejects without a date)


# Why a row was rejected, checked in this order: a row gets the first reason that applies.
class RejectReason:
    MALFORMED_LINE = "MALFORMED_LINE"  # a CSV record with the wrong number of fields
    # A field held bytes that are not UTF-8 (readers decode them as U+FFFD, INVALID_CHARACTER).
    INVALID_ENCODING = "INVALID_ENCODING"
    MISSING_EVENT_ID = "MISSING_EVENT_ID"
    MISSING_USER_ID = "MISSING_USER_ID"
    MISSING_TIMESTAMP = "MISSING_TIMESTAMP"
    # Not one of the accepted ISO-8601 forms, or no such time (February 30th, hour 25).
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    BEFORE_START = "BEFORE_START"  # before the pipeline's start date
    IN_FUTURE = "IN_FUTURE"  # more than FUTURE_TOLERANCE after the processing time
    # A commerce field not of its form (COMMERCE_PATTERNS), or, in a landing file that has
    # the commerce columns, a field the event type requires missing (REQUIRED_FIELDS). Files
    # written before those columns existed lack them, and their events are not held to them.
    INVALID_EVENT_FIELDS = "INVALID_EVENT_FIELDS"

    ORDER: Final = (
        MALFORMED_LINE,
        INVALID_ENCODING,
        MISSING_EVENT_ID,
        MISSING_USER_ID,
        MISSING_TIMESTAMP,
        INVALID_TIMESTAMP,
        BEFORE_START,
        IN_FUTURE,
        INVALID_EVENT_FIELDS,
    )


FUTURE_TOLERANCE = timedelta(days=1)

# What readers put for bytes that are not UTF-8 (Polars' utf8-lossy, Java's decoder alike).
INVALID_CHARACTER: Final = "\ufffd"

# The landing columns the rules read, as text; a reject keeps each as `raw_<name>`, the landing
# text untouched. A usable row's raw_<name> is null: only the rejects keep the text (the raw
# layer would otherwise carry eight text copies on every row for the 0.35 % rejected).
TEXT_COLUMNS: Final = (
    "event_id",
    "user_id",
    "timestamp",
    "page_url",
    "device",
    "ip_address",
    "event_type",
    "user_tier",
    *COMMERCE_COLUMNS,
)

# The landing file contract: a file lacking any of these columns is quarantined, naming them
# (a reader never fills a missing column with defaults). Header names are matched after
# stripping a UTF-8 byte-order mark and the spaces around each name. CSV follows RFC 4180: a
# quoted field may hold commas, doubled quotes and line breaks; a blank line holds no record
# and is skipped; lines may end in CRLF. The commerce columns are the exception: a file may
# lack all of them (written before they existed: they read as null, and the raw contract's
# `commerce` is false for its rows), not some.
REQUIRED_COLUMNS: Final = tuple(c for c in TEXT_COLUMNS if c not in COMMERCE_COLUMNS)
COMMERCE: Final = "commerce"  # the raw contract's flag: the row's file has the commerce columns

CLEANSED_COLUMNS: Final = (
    "event_id",
    "user_id",
    "event_ts",
    "event_date",
    "page_url",
    "device",
    "event_type",
    "user_tier",
    "ip_address",
    *COMMERCE_COLUMNS,
    SOURCE_FILE,
)
REJECT_COLUMNS: Final = (
    *(f"raw_{c}" for c in TEXT_COLUMNS),
    SOURCE_FILE,
    "event_date",
    "reject_reason",
)
# What each column holds, wherever it appears (the landing files, the layers, the Iceberg
# tables): the column descriptions of every table schema the UI shows.
COLUMN_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "event_id": "the event's id, the tables' key: one row per event_id across the lakehouse",
    "user_id": "the user who caused the event",
    "session_id": "user_id@session start (ISO-8601 UTC, microseconds); the landing "
    "file's own value is ignored",
    "timestamp": "the event time as the source wrote it (text)",
    "event_ts": "the event time, UTC, microseconds",
    "event_date": "the UTC day of event_ts",
    "page_url": "the page the event happened on",
    "country": "the source's own country guess (ignored: country_code comes from the IP)",
    "device": "desktop, mobile, tablet or other",
    "ip_address": "the client's IPv4 or IPv6 address, as text",
    "event_type": "one of the nine known event types, or UNKNOWN",
    "user_tier": "bronze, silver, gold, platinum or unknown",
    "ip_status": "public, private (special-purpose networks), invalid or missing",
    "country_code": "ISO 3166 alpha-2 country of a public address; null where the range "
    "table has none",
    "session_start": "the first event time of the session",
    "event_seq": "the event's position in its session, from 1",
    "source_file": "the landing file the row came from, relative to landing/",
    "reject_reason": "why the row is rejected (spec.RejectReason, the first that applies); "
    "null for a usable row",
    "partition_date": "the day the row is attributed to (spec.PARTITION_DATE)",
    "malformed": "the CSV record had the wrong number of fields (rejected as MALFORMED_LINE)",
    "commerce": "the row's landing file has the commerce columns (product_id, search_query, "
    "transaction_id, amount): its events are held to their type's required fields",
    "range_start": "the first IPv4 address of the range, as a number",
    "range_end": "the last IPv4 address of the range, as a number",
    "reserved": "a special-purpose network (private, loopback, ...): ip_status private",
    "product_id": "the product (sku) a PRODUCT_VIEW, ADD_TO_CART or REMOVE_FROM_CART is about",
    "search_query": "what a SEARCH searched for",
    "transaction_id": "a PURCHASE's order id (order_id in the operational database)",
    "amount": "a PURCHASE's order total, in dollars with two decimals",
}


def column_description(name: str) -> str | None:
    """What a column holds; a raw_<name> column is the landing text of <name>."""
    if name.startswith("raw_") and name[4:] in COLUMN_DESCRIPTIONS:
        return f"the landing file's text of {name[4:]}, untouched, on rejected rows (else null)"
    return COLUMN_DESCRIPTIONS.get(name)


# The day a row belongs to when the pipeline runs day by day: its event_date when its timestamp
# is usable (parsed, not before the start, not in the future, on a well-formed line); otherwise
# the earliest such day of its landing file (or the start date when the file has none), so a
# row without a usable date is rejected exactly once, not once per processed day.
PARTITION_DATE: Final = "partition_date"

# Among usable rows with the same event_id and event_ts, the one kept is the first in this order.
TIE_BREAK: Final = (
    "user_id",
    "page_url",
    "device",
    "ip_address",
    "event_type",
    "user_tier",
    "product_id",
    "search_query",
    "transaction_id",
    "amount",
    SOURCE_FILE,
)

# event_id is the tables' key: of all the usable copies of an event in the whole landing zone,
# the earliest (then TIE_BREAK) is the one kept, whichever days are processed first and in
# whatever windows. A window therefore drops its copies of an event that has a usable copy
# on an earlier day (an earlier copy: its timestamp parses, is not before the start, not in
# the future, on a well-formed line with event_id and user_id): those copies are found in the
# landing index's event ids (lakehouse.landing_zone.LandingIndex), not in what earlier runs
# wrote, so the result does not depend on the order of runs. Copies inside the window are
# deduplicated in it.
#
# A window may be worked in pieces of whole days, in day order (the Polars lineage bounds its
# memory so). A piece's rows all have earlier event times than a later piece's, so the ids
# kept by an earlier piece are earlier copies for the later ones. (An engine that works the
# window whole, as Spark does, spilling to disk, needs no such step.)

# What sessionizing a window needs to know of the events before it: per user, the last event.
SESSION_CONTEXT_COLUMNS: Final = ("user_id", "event_ts", "event_id", "session_start", "event_seq")
# session_id is user_id, '@', and the session's start as ISO-8601 UTC with microseconds:
# deterministic, identical in every engine, unique, and stable when data is re-processed.
SESSION_ID_SEPARATOR: Final = "@"

# The accepted timestamp text: date, a space or 'T', time, optional fraction (digits past the
# sixth are truncated: event_ts has microseconds), optional 'Z' or +-HH:MM offset. Without an
# offset the time is UTC. Both engines match this one pattern (Rust and Java regex alike).
TIMESTAMP_PATTERN: Final = (
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?$"
)

# --- Enrichment ------------------------------------------------------------------------------


class IpStatus:
    PUBLIC = "public"  # a global address; country_code from the range table (null if unlisted)
    PRIVATE = "private"  # private or reserved space (the dataset's reserved networks)
    INVALID = "invalid"  # neither an IPv4 nor an IPv6 address
    MISSING = "missing"  # no address


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Dotted quad, no leading zeros (as Python's ipaddress): every engine matches this pattern.
IPV4_PATTERN: Final = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"
# Characters an IPv6 address (without an embedded IPv4 part or a zone) may hold; the group
# structure is checked after splitting on '::' and ':'.
IPV6_CHARS_PATTERN: Final = r"^[0-9a-f:]{2,39}$"


# --- The graph: engines and layers ------------------------------------------------------------

# The engines that run these rules, each with a mirrored logic module (logic/<engine>_engine.py)
# and a runner (lakehouse/<engine>_runner.py); each is a lineage of the asset graph.
ENGINES: Final[tuple[str, ...]] = ("polars", "spark", "duckdb")

# What the layers store per day (lakehouse.layer_store), and the day key of each: an event's
# event_date, or the partition_date a reject is attributed to.
EVENT_DATE: Final = "event_date"
STORED_DAY_KEY: Final[Mapping[str, str]] = {
    "raw": PARTITION_DATE,
    "rejects": PARTITION_DATE,
    "cleansed": EVENT_DATE,
    "enriched": EVENT_DATE,
    "sessionized": EVENT_DATE,
}


@dataclass(frozen=True)
class Layer:
    """One step of every engine's lineage: a runner method and an asset per engine."""

    name: str  # the runner's method, and the layer's name in the metadata and benchmarks
    asset: str  # the asset's name, under the engine's key prefix
    description: str
    inputs: tuple[str, ...]  # the stored layers it reads (none: the landing files)
    outputs: tuple[str, ...]  # the stored layers it writes (none: the Iceberg tables)
    derived: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # column -> sources


LAYERS: Final[tuple[Layer, ...]] = (
    Layer(
        "raw", "raw_clickstream",
        "Landing rows of the window, typed: trimmed text, event_ts (UTC), event_date, "
        "normalised device/event_type/user_tier, a rejected row's original text as raw_*, and "
        "reject_reason (null for a usable row). Per day of partition_date.",
        inputs=(), outputs=("raw",),
    ),
    Layer(
        "cleansed", "cleansed_clickstream",
        "Usable rows, one per event_id (the earliest, ties broken in a fixed order). Rejected "
        "rows go to the rejects layer with their reason.",
        inputs=("raw",), outputs=("cleansed", "rejects"),
    ),
    Layer(
        "enriched", "enriched_clickstream",
        "Cleansed rows with ip_status (public, private, invalid, missing) and country_code "
        "from a range join on the IP-to-country table.",
        inputs=("cleansed",), outputs=("enriched",),
        derived={"ip_status": ("ip_address",), "country_code": ("ip_address",)},
    ),
    Layer(
        "sessionized", "sessionized_clickstream",
        "Enriched rows with 30-minute sessions: session_id (user_id@start), session_start, "
        "event_seq; sessions continue from the day before.",
        inputs=("enriched",), outputs=("sessionized",),
        derived={
            "session_id": ("user_id", "event_ts"),
            "session_start": ("user_id", "event_ts"),
            "event_seq": ("user_id", "event_ts", "event_id"),
        },
    ),
    Layer(
        "events", "clickstream_events",
        "The Iceberg tables `ENGINE.clickstream_events` and `ENGINE.clickstream_rejects` (ENGINE: "
        "this lineage's engine): each run replaces its window in one transaction.",
        inputs=("sessionized", "rejects"), outputs=(),
    ),
)  # fmt: skip
LAYER_NAMES: Final[tuple[str, ...]] = tuple(layer.name for layer in LAYERS)


def layer(name: str) -> Layer:
    """The layer of that name."""
    return next(candidate for candidate in LAYERS if candidate.name == name)


# --- The speed layer (issue 19): the same rules on events as they arrive ----------------------

# A message on the events topic is one landing row as a JSON object of the landing columns'
# text (null for an empty field), keyed by user_id so that a user's events stay in order on
# one partition. A message that is not such an object is a malformed line (MALFORMED_LINE);
# every other reason is standardize's. Rejected messages go to the dead-letter topic with
# their reason, the original bytes untouched.
#
# A micro-batch's usable events are deduplicated as in the batch layer (deduplicate: the
# earliest copy, then TIE_BREAK), then checked against each user's watermark: the last event
# already sessionized for that user (by event_ts, then event_id), kept in the stream's state.
# An event that is not after its user's watermark either is that event again (a replay: it
# is dropped, counted as a duplicate) or is LATE_EVENT: published, it would change sessions
# already written. It goes to the late topic with the reason and is not sessionized; the
# batch layer, which sees the whole day, still counts it (reconciliation accounts for it).
# Events within one micro-batch may arrive in any order: they are sessionized in order.
LATE_EVENT: Final = "LATE_EVENT"
STREAM_DUPLICATE: Final = "DUPLICATE"  # a copy of the event its user's watermark holds
# The real-time store's keys are UUIDs: an event_id that is not one cannot be stored there
# and goes to the dead-letter topic (the generator's ids always are).
INVALID_EVENT_ID: Final = "INVALID_EVENT_ID"
UUID_PATTERN: Final = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# The live funnel's steps, in order (ClickHouse's conversion_funnel_mv counts users per step).
FUNNEL_STEPS: Final[tuple[str, ...]] = (
    "PAGE_VIEW",
    "PRODUCT_VIEW",
    "ADD_TO_CART",
    "CHECKOUT_START",
    "PURCHASE",
)
