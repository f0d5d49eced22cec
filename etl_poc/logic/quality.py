"""Quality rules over a layer's rows, written in Polars: the graph's checks apply them to what
any engine wrote, read back from its Parquet layers as Polars frames, so one implementation
judges every engine alike. Each returns (passed, figures)."""

from __future__ import annotations

import polars as pl

from etl_poc.logic.spec import SESSION_GAP, IpStatus

KEY_COLUMNS = ("event_id", "user_id", "event_ts", "event_date", "session_id")
# Public addresses the range table does not place: a few are expected (unallocated space);
# more than this share means the lookup or the data is broken.
MIN_PUBLIC_WITH_COUNTRY = 0.99


def unique_ids_and_keys(events: pl.DataFrame) -> tuple[bool, dict]:
    """Every event_id once; no null in the key columns present (an empty window passes)."""
    if events.is_empty():
        return True, {"rows": 0, "repeated_event_ids": 0}
    keys = [c for c in KEY_COLUMNS if c in events.columns]
    nulls = events.select(pl.col(keys).null_count()).row(0, named=True)
    repeated = events.height - events["event_id"].n_unique()
    figures = {"rows": events.height, "repeated_event_ids": repeated}
    figures.update({f"null_{name}": count for name, count in nulls.items()})
    return repeated == 0 and not any(nulls.values()), figures


def unique_event_ids(events: pl.DataFrame | None) -> tuple[bool, dict]:
    """Every event_id once in a whole table (its event_id column; None: no table yet)."""
    if events is None or events.is_empty():
        return True, {"rows": 0, "repeated_event_ids": 0}
    repeated = events.height - events["event_id"].n_unique()
    return repeated == 0, {"rows": events.height, "repeated_event_ids": repeated}


def session_rule(sessions: pl.DataFrame) -> tuple[bool, dict]:
    """Inside a session no gap exceeds SESSION_GAP; a user's consecutive sessions are more than
    SESSION_GAP apart; event_seq counts 1, 2, ... within each session of the window."""
    if sessions.is_empty():
        return True, {"sessions": 0, "gaps_over_30_min_inside_a_session": 0,
                      "sessions_30_min_or_less_apart": 0}  # fmt: skip
    ordered = sessions.select("user_id", "event_ts", "event_id", "session_id").sort(
        "user_id", "event_ts", "event_id"
    )
    gap = pl.col("event_ts") - pl.col("event_ts").shift()
    same_user = pl.col("user_id") == pl.col("user_id").shift()
    same_session = pl.col("session_id") == pl.col("session_id").shift()
    marked = ordered.with_columns(
        long_gap_inside=same_user & same_session & (gap > SESSION_GAP),
        short_gap_between=same_user & ~same_session & (gap <= SESSION_GAP),
    )
    inside = int(marked["long_gap_inside"].sum())
    between = int(marked["short_gap_between"].sum())
    figures = {
        "sessions": sessions["session_id"].n_unique(),
        "gaps_over_30_min_inside_a_session": inside,
        "sessions_30_min_or_less_apart": between,
    }
    return inside == 0 and between == 0, figures


def row_conservation(raw: pl.DataFrame, cleansed: pl.DataFrame, rejects: pl.DataFrame):
    """Rows in = clean rows + rejected rows + duplicates removed, duplicates counted on the raw
    rows themselves (usable rows beyond the first of each event_id)."""
    if raw.is_empty():
        figures = {"raw_rows": 0, "clean_rows": cleansed.height, "rejected_rows": rejects.height,
                   "duplicates": 0}  # fmt: skip
        return cleansed.is_empty() and rejects.is_empty(), figures
    usable = raw.filter(pl.col("reject_reason").is_null())
    duplicates = usable.height - usable["event_id"].n_unique()
    figures = {
        "raw_rows": raw.height,
        "clean_rows": cleansed.height,
        "rejected_rows": rejects.height,
        "duplicates": duplicates,
    }
    passed = raw.height == cleansed.height + rejects.height + duplicates
    return passed and rejects.height == raw.height - usable.height, figures


def public_ips_with_country(enriched: pl.DataFrame) -> tuple[bool, dict]:
    """The share of public addresses that got a country (1 when there are none)."""
    if enriched.is_empty():
        return True, {"public_rows": 0, "with_country": 0, "share": 1.0}
    public = enriched.filter(pl.col("ip_status") == IpStatus.PUBLIC)
    placed = public["country_code"].is_not_null().sum()
    share = placed / public.height if public.height else 1.0
    figures = {"public_rows": public.height, "with_country": int(placed), "share": round(share, 5)}
    return share >= MIN_PUBLIC_WITH_COUNTRY, figures
