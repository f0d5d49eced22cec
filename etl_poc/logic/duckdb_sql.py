"""The business rules of logic/spec.py as plain DuckDB SQL: the benchmark's baseline.

Not an engine of the asset graph: the same pipeline written the way an analyst would write it
in SQL (window functions, QUALIFY, ASOF JOIN), so the benchmark can show what a dataframe
engine gains over it. The function names mirror polars_engine.py and spark_engine.py and the
contract tests run it too, so it computes exactly the same rows. Each function takes and
returns a DuckDBPyRelation; nothing runs until the caller fetches or writes the result.
Timestamps are naive TIMESTAMP values in UTC.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime

import duckdb

from etl_poc.logic.spec import (
    CLEANSED_COLUMNS,
    DEVICES,
    EVENT_TYPES,
    FUTURE_TOLERANCE,
    INVALID_CHARACTER,
    IPV4_PATTERN,
    IPV6_CHARS_PATTERN,
    OTHER_DEVICE,
    PARTITION_DATE,
    REJECT_COLUMNS,
    SESSION_GAP,
    SESSION_ID_SEPARATOR,
    SOURCE_FILE,
    TEXT_COLUMNS,
    TIE_BREAK,
    TIMESTAMP_PATTERN,
    UNKNOWN_EVENT_TYPE,
    UNKNOWN_USER_TIER,
    USER_TIERS,
    WHITESPACE,
    IpStatus,
    RejectReason,
)

Relation = duckdb.DuckDBPyRelation
_names = itertools.count()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in_list(values) -> str:
    return ", ".join(_literal(v) for v in values)


def _query(relation: Relation, sql: str) -> Relation:
    """Run `sql` over `relation`, which it reads as `input`."""
    return relation.query("input", sql)


def _view(relation: Relation) -> str:
    """Register `relation` under a fresh name on its connection, for a query that reads two."""
    name = f"_etl_poc_{next(_names)}"
    relation.create_view(name)
    return name


def parse_event_ts(frame: Relation) -> Relation:
    """Add `event_ts`: `timestamp` matching spec.TIMESTAMP_PATTERN -> a UTC timestamp in
    microseconds; null when it does not match or names no real time (February 30th, hour 25)."""
    return _query(
        frame,
        f"""
        WITH parts AS (
            SELECT *, regexp_extract(timestamp, {_literal(TIMESTAMP_PATTERN)},
                                     ['day', 'time', 'fraction', 'offset']) AS _ts
            FROM input
        )
        SELECT * EXCLUDE (_ts),
            CASE WHEN regexp_matches(timestamp, {_literal(TIMESTAMP_PATTERN)}) THEN
                try_strptime(_ts.day || ' ' || _ts.time, '%Y-%m-%d %H:%M:%S')
                + to_microseconds(TRY_CAST(rpad(left(_ts.fraction, 6), 6, '0') AS BIGINT))
                - to_minutes(CASE WHEN _ts.offset IN ('', 'Z') THEN 0 ELSE
                    (TRY_CAST(substr(_ts.offset, 2, 2) AS BIGINT) * 60
                     + TRY_CAST(substr(_ts.offset, 5, 2) AS BIGINT))
                    * CASE WHEN left(_ts.offset, 1) = '-' THEN -1 ELSE 1 END END)
            END AS event_ts
        FROM parts
        """,
    )


def standardize(raw: Relation, *, start_date: date, processed_at: datetime) -> Relation:
    """Trim text (empty is null), parse `timestamp` into `event_ts` and `event_date`, normalise
    device, event_type and user_tier, and give every row that cannot be used its
    `reject_reason` (the first of spec.RejectReason.ORDER that applies; null for a good row).
    The raw text columns are kept, prefixed `raw_`, for the rejects."""
    space = _literal(WHITESPACE)
    raw_copies = ", ".join(f"{c} AS raw_{c}" for c in TEXT_COLUMNS)
    cleaned = ", ".join(f"NULLIF(trim({c}, {space}), '') AS {c}" for c in TEXT_COLUMNS)
    trimmed = _query(
        raw, f"SELECT * EXCLUDE ({', '.join(TEXT_COLUMNS)}), {raw_copies}, {cleaned} FROM input"
    )
    latest = processed_at.replace(tzinfo=None) + FUTURE_TOLERANCE
    return _query(
        parse_event_ts(trimmed),
        f"""
        SELECT * REPLACE (
            CASE WHEN lower(device) IN ({_in_list(DEVICES)}) THEN lower(device)
                 ELSE {_literal(OTHER_DEVICE)} END AS device,
            CASE WHEN upper(event_type) IN ({_in_list(EVENT_TYPES)}) THEN upper(event_type)
                 ELSE {_literal(UNKNOWN_EVENT_TYPE)} END AS event_type,
            CASE WHEN lower(user_tier) IN ({_in_list(USER_TIERS)}) THEN lower(user_tier)
                 ELSE {_literal(UNKNOWN_USER_TIER)} END AS user_tier
        ),
        CAST(event_ts AS DATE) AS event_date,
        CASE
            WHEN malformed THEN {_literal(RejectReason.MALFORMED_LINE)}
            WHEN {" OR ".join(f"coalesce(contains(raw_{c}, {_literal(INVALID_CHARACTER)}), false)" for c in TEXT_COLUMNS)}
                THEN {_literal(RejectReason.INVALID_ENCODING)}
            WHEN event_id IS NULL THEN {_literal(RejectReason.MISSING_EVENT_ID)}
            WHEN user_id IS NULL THEN {_literal(RejectReason.MISSING_USER_ID)}
            WHEN timestamp IS NULL THEN {_literal(RejectReason.MISSING_TIMESTAMP)}
            WHEN event_ts IS NULL THEN {_literal(RejectReason.INVALID_TIMESTAMP)}
            WHEN event_ts < DATE '{start_date.isoformat()}' THEN
                {_literal(RejectReason.BEFORE_START)}
            WHEN event_ts > TIMESTAMP '{latest.isoformat(sep=" ")}' THEN
                {_literal(RejectReason.IN_FUTURE)}
        END AS reject_reason
        FROM input
        """,
    )


def rejected(standardized: Relation) -> Relation:
    """Rows that cannot be used: their original text, where they came from, and why (and the
    day they are attributed to, once attribute_partition_date has run)."""
    columns = [*REJECT_COLUMNS]
    if PARTITION_DATE in standardized.columns:
        columns.append(PARTITION_DATE)
    return _query(
        standardized,
        f"SELECT {', '.join(columns)} FROM input WHERE reject_reason IS NOT NULL",
    )


def attribute_partition_date(
    standardized: Relation, *, start_date: date, processed_at: datetime
) -> Relation:
    """Add spec.PARTITION_DATE: event_date when the timestamp is usable, else the earliest
    usable day of the row's landing file (the start date when it has none)."""
    latest = processed_at.replace(tzinfo=None) + FUTURE_TOLERANCE
    start = f"DATE '{start_date.isoformat()}'"
    return _query(
        standardized,
        f"""
        WITH usable AS (
            SELECT *, CASE WHEN event_ts IS NOT NULL AND NOT malformed AND event_ts >= {start}
                           AND event_ts <= TIMESTAMP '{latest.isoformat(sep=" ")}'
                      THEN event_date END AS _usable_day
            FROM input
        ),
        files AS (SELECT {SOURCE_FILE}, min(_usable_day) AS _file_day FROM usable GROUP BY 1)
        SELECT usable.* EXCLUDE (_usable_day),
            coalesce(_usable_day, _file_day, {start}) AS {PARTITION_DATE}
        FROM usable JOIN files USING ({SOURCE_FILE})
        """,
    )


def in_window(frame: Relation, start: date, end: date, column: str = PARTITION_DATE):
    """The rows whose day `column` lies in the window [start, end)."""
    return frame.filter(
        f"{column} >= DATE '{start.isoformat()}' AND {column} < DATE '{end.isoformat()}'"
    )


def deduplicate(standardized: Relation) -> Relation:
    """Usable rows, one per event_id: the earliest event_ts, ties broken by TIE_BREAK."""
    order = ", ".join(f"{c} ASC NULLS FIRST" for c in ("event_ts", *TIE_BREAK))
    return _query(
        standardized,
        f"""
        SELECT {", ".join(CLEANSED_COLUMNS)} FROM input
        WHERE reject_reason IS NULL
        QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY {order}) = 1
        """,
    )


# --- Enrichment: country from IP ---------------------------------------------------------------


def _ipv4_value(ip: str) -> str:
    octets = " + ".join(
        f"CAST(split_part({ip}, '.', {k}) AS BIGINT) * {1 << (8 * (4 - k))}" for k in range(1, 5)
    )
    return f"CASE WHEN regexp_matches({ip}, {_literal(IPV4_PATTERN)}) THEN {octets} END"


def _ipv6_value(ip: str) -> str:
    """'::' expanded to the missing zero groups, each group 1-4 hex -> one UHUGEINT."""
    halves = f"string_split({ip}, '::')"
    head = f"CASE WHEN {halves}[1] = '' THEN []::VARCHAR[] ELSE string_split({halves}[1], ':') END"
    tail = (
        f"CASE WHEN len({halves}) < 2 OR {halves}[2] = '' THEN []::VARCHAR[] "
        f"ELSE string_split({halves}[2], ':') END"
    )
    present = f"(len({head}) + len({tail}))"
    compressed = f"(len({halves}) = 2)"
    missing = f"CASE WHEN {compressed} THEN greatest(8 - {present}, 0) ELSE 0 END"
    groups = f"list_concat({head}, ['0' FOR _ IN range({missing})], {tail})"
    valid = (
        f"regexp_matches({ip}, {_literal(IPV6_CHARS_PATTERN)}) AND len({halves}) <= 2 "
        f"AND CASE WHEN {compressed} THEN {present} <= 7 ELSE {present} = 8 END "
        f"AND list_bool_and(list_transform({groups}, lambda g: length(g) BETWEEN 1 AND 4))"
    )
    value = " + ".join(
        f"(CAST(('0x' || {groups}[{k + 1}]) AS UBIGINT)::UHUGEINT << {16 * (7 - k)})"
        for k in range(8)
    )
    return f"CASE WHEN {valid} THEN {value} END"


def prepare_ranges(ipv4_ranges: Relation, ipv6_ranges: Relation) -> dict[str, Relation]:
    """The IP-to-country tables (reference.ip_ranges) with one key each: IPv4 as BIGINT, IPv6
    as UHUGEINT (DuckDB has 128-bit integers), sorted for the as-of join."""
    v6_bound = "(CAST({0}_hi AS UHUGEINT) << 64) + {0}_lo"
    return {
        "ipv4": _query(
            ipv4_ranges,
            "SELECT range_start, range_end, country_code, reserved FROM input ORDER BY range_start",
        ),
        "ipv6": _query(
            ipv6_ranges,
            f"SELECT {v6_bound.format('range_start')} AS range_start, "
            f"{v6_bound.format('range_end')} AS range_end, country_code, reserved "
            "FROM input ORDER BY range_start",
        ),
    }


def enrich(events: Relation, ranges: dict[str, Relation]) -> Relation:
    """Add `ip_status` and `country_code` by ASOF joins against prepare_ranges' tables."""
    ipv4, ipv6 = _view(ranges["ipv4"]), _view(ranges["ipv6"])
    space = _literal(WHITESPACE)
    ip = f"lower(trim(ip_address, {space}))"
    lookup = """
            SELECT p.* EXCLUDE (_v4, _v6), TRUE AS _parsed, p.{key} <= r.range_end AS _found,
                   r.country_code AS _country, r.reserved AS _reserved
            FROM (SELECT * FROM parsed WHERE {key} IS NOT NULL) p
            ASOF LEFT JOIN {ranges} r ON p.{key} >= r.range_start"""
    return _query(
        events,
        f"""
        WITH parsed AS (
            SELECT *,
                CASE WHEN contains({ip}, ':') THEN NULL ELSE {_ipv4_value(ip)} END AS _v4,
                CASE WHEN contains({ip}, ':') THEN {_ipv6_value(ip)} END AS _v6
            FROM input
        ),
        looked_up AS (
            {lookup.format(key="_v4", ranges=ipv4)}
            UNION ALL BY NAME
            {lookup.format(key="_v6", ranges=ipv6)}
            UNION ALL BY NAME
            SELECT * EXCLUDE (_v4, _v6) FROM parsed WHERE _v4 IS NULL AND _v6 IS NULL
        )
        SELECT * EXCLUDE (_parsed, _found, _country, _reserved),
            CASE WHEN ip_address IS NULL THEN {_literal(IpStatus.MISSING)}
                 WHEN _parsed IS NULL THEN {_literal(IpStatus.INVALID)}
                 WHEN _found AND _reserved THEN {_literal(IpStatus.PRIVATE)}
                 ELSE {_literal(IpStatus.PUBLIC)} END AS ip_status,
            CASE WHEN _found AND NOT _reserved THEN _country END AS country_code
        FROM looked_up
        """,
    )


# --- Sessionization ------------------------------------------------------------------------------


def sessionize(events: Relation, context: Relation | None = None) -> Relation:
    """30-minute sessions per user, in order of (event_ts, event_id): a new session at a user's
    first event and after every gap strictly longer than spec.SESSION_GAP. `context` holds,
    per user, the last event already sessionized (session_start, event_seq), which a session
    running into this window continues. Adds session_id, session_start and event_seq."""
    window = "SELECT *, NULL::TIMESTAMP AS _known_start, NULL::BIGINT AS _known_seq FROM input"
    if context is not None:
        window += f"""
        UNION ALL BY NAME
        SELECT user_id, event_ts, event_id, session_start AS _known_start,
               CAST(event_seq AS BIGINT) AS _known_seq
        FROM {_view(context)}"""
    gap_seconds = int(SESSION_GAP.total_seconds())
    return _query(
        events,
        f"""
        WITH windowed AS ({window}),
        marked AS (
            SELECT *,
                CASE WHEN lag(event_ts) OVER by_user IS NULL
                       OR event_ts - lag(event_ts) OVER by_user > INTERVAL {gap_seconds} SECOND
                     THEN 1 ELSE 0 END AS _new
            FROM windowed
            WINDOW by_user AS (PARTITION BY user_id ORDER BY event_ts, event_id)
        ),
        numbered AS (
            SELECT *, sum(_new) OVER (PARTITION BY user_id ORDER BY event_ts, event_id
                                      ROWS UNBOUNDED PRECEDING) AS _session
            FROM marked
        ),
        sessions AS (
            SELECT *,
                first_value(coalesce(_known_start, event_ts)) OVER by_session AS session_start,
                coalesce(first_value(_known_seq) OVER by_session, 1)
                    + row_number() OVER by_session - 1 AS event_seq
            FROM numbered
            WINDOW by_session AS (PARTITION BY user_id, _session ORDER BY event_ts, event_id)
        )
        SELECT * EXCLUDE (_known_start, _known_seq, _new, _session),
            user_id || {_literal(SESSION_ID_SEPARATOR)}
                || strftime(session_start, '%Y-%m-%dT%H:%M:%S.%fZ') AS session_id
        FROM sessions
        WHERE _known_seq IS NULL
        """,
    )


# --- The whole chain ---------------------------------------------------------------------------


def pipeline(
    landing: Relation,
    *,
    start: date,
    end: date,
    start_date: date,
    processed_at: datetime,
    ranges: dict[str, Relation],
) -> tuple[Relation, Relation]:
    """The whole chain over the window [start, end): (sessionized, rejects). The raw rows
    feed both, so they are materialized once as a temporary table."""
    when = {"start_date": start_date, "processed_at": processed_at}
    attributed = attribute_partition_date(standardize(landing, **when), **when)
    name = f"_etl_poc_raw_{next(_names)}"
    in_window(attributed, start, end).create(name)
    raw_rows = landing.query(f"_etl_poc_{next(_names)}", f"SELECT * FROM {name}")
    sessions = sessionize(enrich(deduplicate(raw_rows), ranges))
    return sessions, rejected(raw_rows)
