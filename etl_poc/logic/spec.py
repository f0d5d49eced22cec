"""The clickstream contract, written once and shared by every engine and by the generator.

Nothing here imports an engine: these are the names, vocabularies and constants that the
business rules are stated in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

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
UNKNOWN_EVENT_TYPE: Final = "UNKNOWN"

USER_TIERS: Final[tuple[str, ...]] = ("bronze", "silver", "gold", "platinum")
UNKNOWN_USER_TIER: Final = "unknown"

DEVICES: Final[tuple[str, ...]] = ("desktop", "mobile", "tablet", "other")
OTHER_DEVICE: Final = "other"

# A session ends when a user's next event is strictly more than this after the previous one;
# a gap of exactly SESSION_GAP continues the session (the rule of Spark's session_window).
SESSION_GAP: Final = timedelta(minutes=30)
