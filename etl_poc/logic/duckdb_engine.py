"""The business rules of logic/spec.py on DuckDB, as SQL relations: the third engine of the
asset graph (lakehouse/duckdb_runner.py), function for function as polars_engine.py and
spark_engine.py, in the same order, computing exactly the same rows (the contract tests and the
`same_rows_as_polars` checks run it).

Written as a peer, the way one would write it for speed, not as a strawman: the raw rows are
parsed once; the IP addresses are parsed once per distinct address and as-of joined on their
keys alone; duplicates are ordered among the candidates only (ids seen more than once);
sessions take two window passes over one ordering. Each function takes and returns a
DuckDBPyRelation; nothing runs until the caller fetches or writes the result. Timestamps are
naive TIMESTAMP values in UTC (the runner converts at the layer files).
"""

from __future__ import annotations

import itertools
from datetime import date, datetime

import duckdb

from etl_poc.logic.spec import (
    AMOUNT_PRECISION,
    AMOUNT_SCALE,
    CLEANSED_COLUMNS,
    COMMERCE,
    COMMERCE_PATTERNS,
    DEVICES,
    EVENT_TYPES,
    FUTURE_TOLERANCE,
    INVALID_CHARACTER,
    IPV4_PATTERN,
    IPV6_CHARS_PATTERN,
    OTHER_DEVICE,
    PARTITION_DATE,
    REJECT_COLUMNS,
    REQUIRED_FIELDS,
    SESSION_CONTEXT_COLUMNS,
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
    microseconds; null when it does not match or names no real time (February 30th, hour 25).
    The pattern is matched once: its day group is never empty when it matches."""
    return _query(
        frame,
        f"""
        WITH parts AS (
            SELECT *, regexp_extract(timestamp, {_literal(TIMESTAMP_PATTERN)},
                                     ['day', 'time', 'fraction', 'offset']) AS _ts
            FROM input
        )
        SELECT * EXCLUDE (_ts),
            CASE WHEN _ts.day <> '' THEN
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
    A rejected row keeps its landing text, prefixed `raw_` (null on a usable row)."""
    space = _literal(WHITESPACE)
    raw_copies = ", ".join(f"{c} AS raw_{c}" for c in TEXT_COLUMNS)
    # trim() with a set of characters costs about 0.2 s per million values: only a value that
    # starts or ends with a character at or below ' ' (every one of spec.WHITESPACE is) can
    # lose any, so only those are trimmed (4x faster on the generator's data, the same text).
    cleaned = ", ".join(
        f"NULLIF(CASE WHEN {c}[1] <= ' ' OR {c}[-1] <= ' ' THEN trim({c}, {space}) ELSE {c} END,"
        f" '') AS {c}"
        for c in TEXT_COLUMNS
    )
    trimmed = _query(
        raw, f"SELECT * EXCLUDE ({', '.join(TEXT_COLUMNS)}), {raw_copies}, {cleaned} FROM input"
    )
    latest = processed_at.replace(tzinfo=None) + FUTURE_TOLERANCE
    on_rejects_only = ", ".join(
        f"CASE WHEN reject_reason IS NOT NULL THEN raw_{c} END AS raw_{c}" for c in TEXT_COLUMNS
    )
    judged = _query(
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
            WHEN {_invalid_event_fields()} THEN {_literal(RejectReason.INVALID_EVENT_FIELDS)}
        END AS reject_reason
        FROM input
        """,
    )
    amount = f"CASE WHEN reject_reason IS NULL THEN CAST(amount AS {AMOUNT}) END AS amount"
    return _query(judged, f"SELECT * REPLACE ({on_rejects_only}, {amount}) FROM input")


AMOUNT = f"DECIMAL({AMOUNT_PRECISION}, {AMOUNT_SCALE})"


def _invalid_event_fields() -> str:
    """spec.RejectReason.INVALID_EVENT_FIELDS, on trimmed text and the event_type as landed
    (upper-cased here, as standardize normalises it)."""
    malformed = [
        f"({name} IS NOT NULL AND NOT regexp_matches({name}, {_literal(pattern)}))"
        for name, pattern in COMMERCE_PATTERNS.items()
        if pattern is not None
    ]
    missing = [
        f"(upper(event_type) = {_literal(t)} AND ({' OR '.join(f'{f} IS NULL' for f in fields)}))"
        for t, fields in REQUIRED_FIELDS.items()
        if fields
    ]
    return f"({' OR '.join(malformed)} OR ({COMMERCE} AND coalesce({' OR '.join(missing)}, false)))"


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
    """Usable rows, one per event_id: the earliest event_ts, ties broken by TIE_BREAK. Only
    the candidates (ids seen more than once, found by one hash aggregate) are ordered."""
    order = ", ".join(f"{c} ASC NULLS FIRST" for c in ("event_ts", *TIE_BREAK))
    return _query(
        standardized,
        f"""
        WITH usable AS MATERIALIZED (
            SELECT {", ".join(CLEANSED_COLUMNS)} FROM input WHERE reject_reason IS NULL
        ),
        repeated AS MATERIALIZED (
            SELECT event_id FROM usable GROUP BY event_id HAVING count(*) > 1
        ),
        chosen AS (
            SELECT * FROM usable SEMI JOIN repeated USING (event_id)
            QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY {order}) = 1
        )
        SELECT * FROM usable ANTI JOIN repeated USING (event_id)
        UNION ALL
        SELECT * FROM chosen
        """,
    )


# --- Enrichment: country from IP ---------------------------------------------------------------


def _ipv4_value(ip: str) -> str:
    return " + ".join(
        f"CAST(split_part({ip}, '.', {k}) AS BIGINT) * {1 << (8 * (4 - k))}" for k in range(1, 5)
    )


def _ipv6_keys(addresses: str) -> str:
    """SQL over `addresses` (one `_ip` column, each address once) giving (_ip, _v6): each valid
    IPv6 address as one UHUGEINT, '::' expanded to the missing zero groups. Split once, in
    steps, rather than one expression repeating string_split."""
    return f"""
        SELECT _ip, string_split(_ip, '::') AS _halves FROM {addresses}
        WHERE contains(_ip, ':') AND regexp_matches(_ip, {_literal(IPV6_CHARS_PATTERN)})
    ), _v6_parts AS (
        SELECT _ip, len(_halves) = 2 AS _compressed,
            CASE WHEN _halves[1] = '' THEN []::VARCHAR[]
                 ELSE string_split(_halves[1], ':') END AS _head,
            CASE WHEN len(_halves) < 2 OR _halves[2] = '' THEN []::VARCHAR[]
                 ELSE string_split(_halves[2], ':') END AS _tail
        FROM _v6_split WHERE len(_halves) <= 2
    ), _v6_groups AS (
        SELECT _ip, list_concat(_head, ['0' FOR _ IN range(CASE WHEN _compressed
                THEN greatest(8 - len(_head) - len(_tail), 0) ELSE 0 END)], _tail) AS _groups
        FROM _v6_parts
        WHERE CASE WHEN _compressed THEN len(_head) + len(_tail) <= 7
                   ELSE len(_head) + len(_tail) = 8 END
    ), _v6 AS (
        SELECT _ip, {
        " + ".join(
            f"(CAST(('0x' || _groups[{k + 1}]) AS UBIGINT)::UHUGEINT << {16 * (7 - k)})"
            for k in range(8)
        )
    } AS _v6
        FROM _v6_groups
        WHERE list_bool_and(list_transform(_groups, lambda g: length(g) BETWEEN 1 AND 4))
    """


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
    """Add `ip_status` and `country_code`. Each distinct address is parsed once and as-of
    joined against prepare_ranges' tables on its key alone; the rows then take their
    address's answer by an equality join."""
    ipv4, ipv6 = _view(ranges["ipv4"]), _view(ranges["ipv6"])
    space = _literal(WHITESPACE)
    ip = f"lower(trim(ip_address, {space}))"
    lookup = """
        SELECT k._ip, k.{key} <= r.range_end AS _found, r.country_code AS _country,
               r.reserved AS _reserved
        FROM {keys} k ASOF LEFT JOIN {ranges} r ON k.{key} >= r.range_start"""
    return _query(
        events,
        f"""
        WITH _addresses AS MATERIALIZED (
            SELECT DISTINCT {ip} AS _ip FROM input WHERE ip_address IS NOT NULL
        ), _v4 AS (
            SELECT _ip, {_ipv4_value("_ip")} AS _v4 FROM _addresses
            WHERE NOT contains(_ip, ':') AND regexp_matches(_ip, {_literal(IPV4_PATTERN)})
        ), _v6_split AS ({_ipv6_keys("_addresses")}
        ), _looked_up AS (
            {lookup.format(key="_v4", keys="_v4", ranges=ipv4)}
            UNION ALL
            {lookup.format(key="_v6", keys="_v6", ranges=ipv6)}
        )
        SELECT input.*,
            CASE WHEN ip_address IS NULL THEN {_literal(IpStatus.MISSING)}
                 WHEN l._ip IS NULL THEN {_literal(IpStatus.INVALID)}
                 WHEN _found AND _reserved THEN {_literal(IpStatus.PRIVATE)}
                 ELSE {_literal(IpStatus.PUBLIC)} END AS ip_status,
            CASE WHEN _found AND NOT _reserved THEN _country END AS country_code
        FROM input LEFT JOIN _looked_up l ON {ip} = l._ip
        """,
    )


# --- Sessionization ------------------------------------------------------------------------------


def session_context(previous_day: Relation) -> Relation:
    """What sessionize needs of the day before a window: per user, the last event (by
    event_ts, then event_id) with its session start and number (SESSION_CONTEXT_COLUMNS)."""
    return _query(
        previous_day,
        f"""
        SELECT {", ".join(SESSION_CONTEXT_COLUMNS)} FROM input
        QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY event_ts DESC, event_id DESC) = 1
        """,
    )


def sessionize(events: Relation, context: Relation | None = None) -> Relation:
    """30-minute sessions per user, in order of (event_ts, event_id): a new session at a user's
    first event and after every gap strictly longer than spec.SESSION_GAP. `context` holds,
    per user, the last event already sessionized (session_start, event_seq), which a session
    running into this window continues. Adds session_id, session_start and event_seq.

    Two window passes over one ordering: the first marks each session's first row and numbers
    the rows; the second carries the session's start and first position forward (a running
    max: both only grow along a user's rows)."""
    window = "SELECT *, NULL::TIMESTAMP AS _known_start, NULL::BIGINT AS _known_seq FROM input"
    if context is not None:
        window += f"""
        UNION ALL BY NAME
        SELECT user_id, event_ts, event_id, session_start AS _known_start,
               CAST(event_seq AS BIGINT) AS _known_seq
        FROM {_view(context)}"""
    gap_seconds = int(SESSION_GAP.total_seconds())
    by_user = "PARTITION BY user_id ORDER BY event_ts, event_id"
    return _query(
        events,
        f"""
        WITH windowed AS ({window}),
        marked AS (
            SELECT *,
                row_number() OVER by_user AS _position,
                coalesce(event_ts - lag(event_ts) OVER by_user > INTERVAL {gap_seconds} SECOND,
                         TRUE) AS _new,
                first_value(_known_seq) OVER by_user AS _context_seq
            FROM windowed
            WINDOW by_user AS ({by_user})
        ),
        sessions AS (
            SELECT *,
                max(CASE WHEN _new THEN coalesce(_known_start, event_ts) END)
                    OVER so_far AS session_start,
                max(CASE WHEN _new THEN _position END) OVER so_far AS _first_position
            FROM marked
            WINDOW so_far AS ({by_user} ROWS UNBOUNDED PRECEDING)
        )
        SELECT * EXCLUDE (_known_start, _known_seq, _position, _new, _context_seq,
                          _first_position),
            _position - _first_position + CASE WHEN _first_position = 1
                THEN coalesce(_context_seq, 1) ELSE 1 END AS event_seq,
            user_id || {_literal(SESSION_ID_SEPARATOR)}
                || strftime(session_start, '%Y-%m-%dT%H:%M:%S.%fZ') AS session_id
        FROM sessions
        WHERE _known_seq IS NULL
        """,
    )


# --- The layers, each one call of the rules above, and the whole chain --------------------------


def raw(
    landing: Relation, *, start: date, end: date, start_date: date, processed_at: datetime
) -> Relation:
    """The raw layer of the window [start, end): landing rows standardized, attributed to
    their partition_date, those of the window (DuckDB works whole files: no part of a file
    is ever read alone, so no file's days come from elsewhere)."""
    when = {"start_date": start_date, "processed_at": processed_at}
    return in_window(attribute_partition_date(standardize(landing, **when), **when), start, end)


def earlier_copies(
    event_ids: Relation, *, before: date, start_date: date, processed_at: datetime
) -> Relation:
    """The event_ids with a usable copy on a day before `before` (spec: the earliest copy
    wins), from landing-index rows (event_id, event_ts) of well-formed rows with an id, a
    user and a parsed timestamp: those whose timestamp is not before the start date, not in
    the future, and before the day `before`."""
    latest = processed_at.replace(tzinfo=None) + FUTURE_TOLERANCE
    return _query(
        event_ids,
        f"""
        SELECT event_id FROM input
        WHERE event_ts >= DATE '{start_date.isoformat()}'
          AND event_ts <= TIMESTAMP '{latest.isoformat(sep=" ")}'
          AND event_ts < DATE '{before.isoformat()}'
        """,
    )


def cleansed(raw_rows: Relation, earlier: Relation | None = None) -> tuple[Relation, Relation]:
    """The cleansed layer and the rejects of raw rows. `earlier`: event_ids with an earlier
    copy (earlier_copies of the landing index), whose copies here are dropped."""
    clean = deduplicate(raw_rows)
    if earlier is not None:
        clean = _query(clean, f"SELECT * FROM input ANTI JOIN {_view(earlier)} USING (event_id)")
    return clean, rejected(raw_rows)


def enriched(cleansed_rows: Relation, ranges: dict[str, Relation]) -> Relation:
    """The enriched layer: cleansed rows with their IP's status and country."""
    return enrich(cleansed_rows, ranges)


def sessionized(enriched_rows: Relation, previous_day: Relation | None = None) -> Relation:
    """The sessionized layer: sessions continuing those of the sessionized day before."""
    context = None if previous_day is None else session_context(previous_day)
    return sessionize(enriched_rows, context)


def pipeline(
    landing: Relation,
    *,
    start: date,
    end: date,
    start_date: date,
    processed_at: datetime,
    ranges: dict[str, Relation],
    previous_day: Relation | None = None,
) -> tuple[Relation, Relation]:
    """The whole chain over the window [start, end): (sessionized, rejects). The raw rows
    feed both, so they are materialized once as a temporary table."""
    when = {"start_date": start_date, "processed_at": processed_at}
    name = f"_etl_poc_raw_{next(_names)}"
    raw(landing, start=start, end=end, **when).create(name)
    raw_rows = landing.query(f"_etl_poc_{next(_names)}", f"SELECT * FROM {name}")
    clean, rejects = cleansed(raw_rows)
    return sessionized(enriched(clean, ranges), previous_day), rejects
