"""The business rules of logic/spec.py on PySpark: DataFrame -> DataFrame, built-in functions only.

Mirrors polars_engine.py function for function, in the same (pipeline) order, with the same
layers and pipeline() at the end. Needs a session whose
spark.sql.session.timeZone is UTC (the Spark resource sets it): naive times are UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

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
    INVALID_EVENT_ID,
    IPV4_PATTERN,
    IPV6_CHARS_PATTERN,
    LATE_EVENT,
    OTHER_DEVICE,
    PARTITION_DATE,
    REJECT_COLUMNS,
    REQUIRED_FIELDS,
    SESSION_CONTEXT_COLUMNS,
    SESSION_GAP,
    SESSION_ID_SEPARATOR,
    SOURCE_FILE,
    STREAM_DUPLICATE,
    TEXT_COLUMNS,
    TIE_BREAK,
    TIMESTAMP_PATTERN,
    UNKNOWN_EVENT_TYPE,
    UNKNOWN_USER_TIER,
    USER_TIERS,
    UUID_PATTERN,
    WHITESPACE,
    IpStatus,
    RejectReason,
)

_U64_BIAS = 1 << 63
_IPV4_BLOCK_BITS = 14  # a /18 block


def _trim(column: Column) -> Column:
    """`column` without spec.WHITESPACE at either end (btrim: no regex per row)."""
    return F.btrim(column, F.lit(WHITESPACE))


def _clean_text(name: str) -> Column:
    """Trimmed text; empty text is null."""
    trimmed = _trim(F.col(name))
    return F.when(trimmed == "", None).otherwise(trimmed).alias(name)


def parse_event_ts(frame: DataFrame) -> DataFrame:
    """Add `event_ts`: `timestamp` matching spec.TIMESTAMP_PATTERN -> a UTC timestamp in
    microseconds; null when it does not match or names no real time (February 30th, hour 25)."""
    # As in Polars: the pattern is checked once (a match test, no captures); a matching value
    # has its date and time in its first 19 characters, then an optional fraction and an
    # optional offset, read from fixed positions.
    text = F.col("timestamp")
    rest = F.col("_rest")
    offset = F.col("_offset")
    suffix = F.when(rest.endswith("Z"), 1).otherwise(F.coalesce(F.length(offset), F.lit(0)))
    digits = rest.substr(F.lit(2), F.length(rest) - 1 - suffix)  # between '.' and the suffix
    fraction = F.when(rest.startswith("."), F.substring(digits, 1, 6))
    sign = F.when(offset.startswith("-"), -1).otherwise(1)
    offset_minutes = F.coalesce(
        (F.substring(offset, 2, 2).cast("long") * 60 + F.substring(offset, 5, 2).cast("long"))
        * sign,
        F.lit(0),
    )
    local = F.try_to_timestamp(
        F.concat(
            F.substring(text, 1, 10),
            F.lit(" "),
            F.substring(text, 12, 8),
            F.lit("."),
            F.rpad(F.coalesce(fraction, F.lit("")), 6, "0"),
        ),
        F.lit("yyyy-MM-dd HH:mm:ss.SSSSSS"),
    )
    utc = F.timestamp_micros(F.unix_micros(local) - offset_minutes * 60_000_000)
    return (
        frame.withColumns(
            {
                "_valid": text.rlike(TIMESTAMP_PATTERN),
                "_rest": F.substring(text, 20, 1 << 20),
            }
        )
        .withColumn(
            "_offset",
            F.when(F.substring(rest, -6, 1).isin("+", "-"), F.substring(rest, -6, 6)),
        )
        .withColumn("event_ts", F.when(F.col("_valid"), utc))
        .drop("_valid", "_rest", "_offset")
    )


def standardize(raw: DataFrame, *, start_date: date, processed_at: datetime) -> DataFrame:
    """Trim text (empty is null), parse `timestamp` into `event_ts` and `event_date`, normalise
    device, event_type and user_tier, and give every row that cannot be used its
    `reject_reason` (the first of spec.RejectReason.ORDER that applies; null for a good row).
    A rejected row keeps its landing text, prefixed `raw_` (null on a usable row)."""
    start = datetime(start_date.year, start_date.month, start_date.day)
    latest = processed_at.replace(tzinfo=None) + FUTURE_TOLERANCE
    event_ts = F.col("event_ts")
    reason = (
        F.when(F.col("malformed"), F.lit(RejectReason.MALFORMED_LINE))
        .when(
            reduce(
                lambda a, b: a | b,
                (
                    F.coalesce(F.col(c).contains(INVALID_CHARACTER), F.lit(False))
                    for c in TEXT_COLUMNS
                ),
            ),
            F.lit(RejectReason.INVALID_ENCODING),
        )
        .when(F.col("event_id").isNull(), F.lit(RejectReason.MISSING_EVENT_ID))
        .when(F.col("user_id").isNull(), F.lit(RejectReason.MISSING_USER_ID))
        .when(F.col("timestamp").isNull(), F.lit(RejectReason.MISSING_TIMESTAMP))
        .when(event_ts.isNull(), F.lit(RejectReason.INVALID_TIMESTAMP))
        .when(event_ts < F.lit(start), F.lit(RejectReason.BEFORE_START))
        .when(event_ts > F.lit(latest), F.lit(RejectReason.IN_FUTURE))
        .when(_invalid_event_fields(), F.lit(RejectReason.INVALID_EVENT_FIELDS))
    )
    device = F.lower(F.col("device"))
    event_type = F.upper(F.col("event_type"))
    user_tier = F.lower(F.col("user_tier"))
    return (
        raw.withColumns({f"raw_{c}": F.col(c) for c in TEXT_COLUMNS})
        .withColumns({c: _clean_text(c) for c in TEXT_COLUMNS})
        .transform(parse_event_ts)
        .withColumns(
            {
                "event_date": F.to_date(event_ts),
                "device": F.when(device.isin(*DEVICES), device).otherwise(F.lit(OTHER_DEVICE)),
                "event_type": F.when(event_type.isin(*EVENT_TYPES), event_type).otherwise(
                    F.lit(UNKNOWN_EVENT_TYPE)
                ),
                "user_tier": F.when(user_tier.isin(*USER_TIERS), user_tier).otherwise(
                    F.lit(UNKNOWN_USER_TIER)
                ),
                "reject_reason": reason,
            }
        )
        .withColumns(
            {
                **{f"raw_{c}": _on_rejects_only(f"raw_{c}") for c in TEXT_COLUMNS},
                "amount": F.when(F.col("reject_reason").isNull(), F.col("amount").cast(AMOUNT)),
            }
        )
    )


AMOUNT = f"decimal({AMOUNT_PRECISION},{AMOUNT_SCALE})"


def _invalid_event_fields() -> Column:
    """spec.RejectReason.INVALID_EVENT_FIELDS, on trimmed text and the event_type as landed
    (upper-cased here, as standardize normalises it)."""
    malformed = [
        F.col(name).isNotNull() & ~F.col(name).rlike(pattern)
        for name, pattern in COMMERCE_PATTERNS.items()
        if pattern is not None
    ]
    event_type = F.upper(F.col("event_type"))
    missing = [
        (event_type == t) & reduce(lambda a, b: a | b, (F.col(f).isNull() for f in fields))
        for t, fields in REQUIRED_FIELDS.items()
        if fields
    ]
    required = F.col(COMMERCE) & F.coalesce(reduce(lambda a, b: a | b, missing), F.lit(False))
    return reduce(lambda a, b: a | b, malformed) | required


def _on_rejects_only(name: str) -> Column:
    """A raw_ column's text on a rejected row, null on a usable one (spec.TEXT_COLUMNS)."""
    return F.when(F.col("reject_reason").isNotNull(), F.col(name))


def rejected(standardized: DataFrame) -> DataFrame:
    """Rows that cannot be used: their original text, where they came from, and why (and the
    day they are attributed to, once attribute_partition_date has run)."""
    columns = [*REJECT_COLUMNS]
    if PARTITION_DATE in standardized.columns:
        columns.append(PARTITION_DATE)
    return standardized.where(F.col("reject_reason").isNotNull()).select(*columns)


def _usable_day(*, start_date: date, processed_at: datetime) -> Column:
    """A row's event_date when its timestamp is usable for attribution, else null."""
    start = datetime(start_date.year, start_date.month, start_date.day)
    latest = processed_at.replace(tzinfo=None) + FUTURE_TOLERANCE
    event_ts = F.col("event_ts")
    usable_day = (
        event_ts.isNotNull()
        & ~F.col("malformed")
        & (event_ts >= F.lit(start))
        & (event_ts <= F.lit(latest))
    )
    return F.when(usable_day, F.col("event_date"))


def first_usable_days(
    standardized: DataFrame, *, start_date: date, processed_at: datetime
) -> DataFrame:
    """The earliest usable day of each landing file (SOURCE_FILE, _file_day): where its rows
    without a usable timestamp go."""
    day = _usable_day(start_date=start_date, processed_at=processed_at)
    return standardized.groupBy(SOURCE_FILE).agg(F.min(day).alias("_file_day"))


def attribute_partition_date(
    standardized: DataFrame,
    *,
    start_date: date,
    processed_at: datetime,
    days_of_files: DataFrame | None = None,
) -> DataFrame:
    """Add spec.PARTITION_DATE: event_date when the timestamp is usable, else the earliest
    usable day of the row's landing file (the start date when it has none). The files' days
    come from `standardized`, or from `days_of_files` (first_usable_days of the whole files) when
    `standardized` holds a part of a file."""
    when = {"start_date": start_date, "processed_at": processed_at}
    if days_of_files is None:
        days_of_files = first_usable_days(standardized, **when)
    # Per file, a small aggregate broadcast back: a window over the file would shuffle every
    # row into as many tasks as there are files (one task for a whole bulk file).
    return (
        standardized.join(F.broadcast(days_of_files), SOURCE_FILE, "left")
        .withColumn(
            PARTITION_DATE,
            F.coalesce(_usable_day(**when), F.col("_file_day"), F.lit(start_date)),
        )
        .drop("_file_day")
    )


def in_window(frame: DataFrame, start: date, end: date, column: str = PARTITION_DATE):
    """The rows whose day `column` lies in the window [start, end)."""
    return frame.where((F.col(column) >= F.lit(start)) & (F.col(column) < F.lit(end)))


def deduplicate(standardized: DataFrame) -> DataFrame:
    """Usable rows, one per event_id: the earliest event_ts, ties broken by TIE_BREAK."""
    usable = standardized.where(F.col("reject_reason").isNull()).select(*CLEANSED_COLUMNS)
    # Counting ids shuffles the ids alone; only the (few) repeated ones are then ordered, which
    # spares sorting every row by event_id.
    repeated = F.broadcast(
        usable.groupBy("event_id").count().where(F.col("count") > 1).select("event_id")
    )
    order = [F.col(c).asc_nulls_first() for c in ("event_ts", *TIE_BREAK)]
    first = Window.partitionBy("event_id").orderBy(*order)
    chosen = (
        usable.join(repeated, "event_id", "left_semi")
        .withColumn("_rank", F.row_number().over(first))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )
    return usable.join(repeated, "event_id", "left_anti").unionByName(chosen)


# --- Enrichment: country from IP ------------------------------------------------------------------


def _biased(groups: Column, first: int) -> Column:
    """Four 16-bit hex groups from position `first` (0-based) -> one unsigned 64-bit value,
    stored as a signed long minus 2**63 so that it fits and sorts the same way."""
    value = F.lit(0).cast("long")
    for i in range(4):
        group = F.conv(F.element_at(groups, first + i + 1), 16, 10).cast("long")
        if i == 0:
            group = group - 0x8000  # the bias, applied to the top group: no overflow
        value = value + group * F.lit(1 << (16 * (3 - i))).cast("long")
    return value


def parse_ipv4(ip: Column) -> dict[str, Column]:
    """A trimmed, lower-cased address -> `ip_version` 4 (or null) and its value as `ip_lo`."""
    # One match test; the octets are then read by a literal split (no regex per octet).
    is_v4 = ip.rlike(IPV4_PATTERN)
    value = sum(
        (
            F.split_part(ip, F.lit("."), F.lit(k)).cast("long") * F.lit(1 << (8 * (4 - k)))
            for k in range(1, 5)
        ),
        F.lit(0).cast("long"),
    )
    return {
        "ip_version": F.when(is_v4, F.lit(4).cast("tinyint")),
        "ip_hi": F.lit(None).cast("long"),
        "ip_lo": F.when(is_v4, value),
    }


def parse_ipv6(ip: Column) -> dict[str, Column]:
    """A trimmed, lower-cased address -> `ip_version` 6 (or null) and its value as `ip_hi`,
    `ip_lo`: unsigned 64-bit halves biased by -2**63 into longs ('::' expanded to the missing
    zero groups, each group 1-4 hex)."""
    halves = F.split(ip, "::")
    head = F.element_at(halves, 1)
    tail = F.try_element_at(halves, F.lit(2))
    empty = F.array().cast("array<string>")
    head_groups = F.when(head == "", empty).otherwise(F.split(head, ":"))
    tail_groups = F.when(tail.isNull() | (tail == ""), empty).otherwise(F.split(tail, ":"))
    present = F.size(head_groups) + F.size(tail_groups)
    compressed = F.size(halves) == 2
    missing = F.when(compressed, F.greatest(F.lit(8) - present, F.lit(0))).otherwise(0)
    groups = F.concat(head_groups, F.array_repeat(F.lit("0"), missing.cast("int")), tail_groups)
    v6_ok = (
        ip.rlike(IPV6_CHARS_PATTERN)
        & (F.size(halves) <= 2)
        & F.when(compressed, present <= 7).otherwise(present == 8)
        & F.forall(groups, lambda g: F.length(g).between(1, 4))
    )
    return {
        "ip_version": F.when(v6_ok, F.lit(6).cast("tinyint")),
        "ip_hi": F.when(v6_ok, _biased(groups, 0)),
        "ip_lo": F.when(v6_ok, _biased(groups, 4)),
    }


def _decimal(value: int) -> Column:
    """An integer too large for a long literal, as decimal(20,0)."""
    return F.lit(str(value)).cast("decimal(20,0)")


def _bias(unsigned: Column) -> Column:
    """A non-negative decimal(20,0) up to 2**64 - 1 -> the biased long of parse_ipv6."""
    return (unsigned - _decimal(_U64_BIAS)).cast("long")


def _range_lookup(keys: DataFrame, ranges: DataFrame, partition: list[str]) -> DataFrame:
    """An as-of range join with built-ins: keys (_row, _key, *partition) and ranges (_start,
    _end, country_code, reserved, *partition) in one frame, ordered by key within each
    partition; each key takes the last range starting at or before it, if it also ends after."""
    # Only the parts of the address space that some key falls in: often a small share of it.
    ranges = ranges.join(F.broadcast(keys.select(*partition).distinct()), partition, "left_semi")
    stacked = keys.select("_row", *partition, F.col("_key"), F.lit(1).alias("_is_key")).unionByName(
        ranges.select(
            F.lit(None).cast("string").alias("_row"),
            *partition,
            F.col("_start").alias("_key"),
            F.lit(0).alias("_is_key"),
            "_end",
            "country_code",
            "reserved",
        ),
        allowMissingColumns=True,
    )
    ordered = (
        Window.partitionBy(*partition)
        .orderBy("_key", "_is_key")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    # The last range row seen carries its end; its country may be null, so carry a struct.
    last_range = F.last(
        F.when(F.col("_is_key") == 0, F.struct("_end", "country_code", "reserved")),
        ignorenulls=True,
    ).over(ordered)
    return (
        stacked.withColumn("_range", last_range)
        .where((F.col("_is_key") == 1) & (F.col("_key") <= F.col("_range._end")))
        .select("_row", "_range.country_code", "_range.reserved")
    )


def prepare_ranges(ipv4_ranges: DataFrame, ipv6_ranges: DataFrame) -> dict[str, DataFrame]:
    """The IP-to-country tables (reference.ip_ranges; IPv6 bounds as decimal(20,0), Spark
    having no unsigned long) laid out for enrich: keyed by partition of the address space,
    bounds as longs. Built once per run; the caller caches it."""
    # IPv4: each range under every /18 block it touches (0.7M rows from 0.5M ranges), for a
    # broadcast hash join on the block plus the range condition: 3.5 candidate ranges per
    # address on the generator's data, no shuffle of the events.
    v4 = ipv4_ranges.select(
        F.explode(
            F.sequence(
                F.shiftright("range_start", _IPV4_BLOCK_BITS),
                F.shiftright("range_end", _IPV4_BLOCK_BITS),
            )
        ).alias("_block"),
        F.col("range_start").alias("_start"),
        F.col("range_end").alias("_end"),
        F.col("country_code").alias("_country"),
        F.col("reserved").alias("_reserved"),
    )
    hi_start, hi_end = _bias(F.col("range_start_hi")), _bias(F.col("range_end_hi"))
    lo_start, lo_end = _bias(F.col("range_start_lo")), _bias(F.col("range_end_lo"))
    aligned = (F.col("range_start_lo") == 0) & (F.col("range_end_lo") == _decimal((1 << 64) - 1))
    # Networks of /64 or wider: by the high half, partitioned by its top 16 bits.
    wide = (
        ipv6_ranges.where(aligned)
        .select(hi_start.alias("_s"), hi_end.alias("_end"), "country_code", "reserved")
        .select(
            F.explode(F.sequence(F.shiftright("_s", 48), F.shiftright("_end", 48))).alias("_part"),
            "_s",
            "_end",
            "country_code",
            "reserved",
        )
        .select(
            "_part",
            F.greatest("_s", F.shiftleft("_part", 48)).alias("_start"),
            "_end",
            "country_code",
            "reserved",
        )
    )
    # Narrower networks sit inside one high half: by the low half, within it.
    narrow = ipv6_ranges.where(~aligned).select(
        hi_start.alias("_part"),
        lo_start.alias("_start"),
        lo_end.alias("_end"),
        "country_code",
        "reserved",
    )
    return {"ipv4": v4, "ipv6_wide": wide, "ipv6_narrow": narrow}


def enrich(events: DataFrame, ranges: dict[str, DataFrame]) -> DataFrame:
    """Add `ip_status` and `country_code` by range joins against prepare_ranges' tables: IPv4
    by a broadcast hash join on the address's /18 block plus the range condition, IPv6 by a
    sort-based as-of join per part of the address space. event_id must be unique."""
    # IPv6 rows are joined back by event_id, unique after deduplicate (a generated id would not
    # be stable if Spark recomputed the input).
    ip = F.lower(_trim(F.col("ip_address")))
    # As in Polars: only an address with a colon can be IPv6.
    as_v4, as_v6 = parse_ipv4(ip), parse_ipv6(ip)
    colon = ip.contains(":")
    parsed = events.withColumn("_row", F.col("event_id")).withColumns(
        {name: F.when(colon, as_v6[name]).otherwise(as_v4[name]) for name in as_v4}
    )
    is_v6 = F.coalesce(F.col("ip_version") == 6, F.lit(False))
    ranges_v4 = F.broadcast(ranges["ipv4"])
    v4 = (
        parsed.join(
            ranges_v4,
            (F.col("ip_version") == 4)
            & (F.shiftright(parsed["ip_lo"], _IPV4_BLOCK_BITS) == ranges_v4["_block"])
            & parsed["ip_lo"].between(ranges_v4["_start"], ranges_v4["_end"]),
            "left",
        )
        .withColumnsRenamed({"_country": "_v4_country", "_reserved": "_v4_reserved"})
        .drop("_block", "_start", "_end")
    )
    # IPv6 (few rows): their keys are materialized once (they feed two lookups), looked up by a
    # sort-based as-of join, and the answers broadcast back by event_id, so the events are
    # read once for both families and never shuffled.
    v6_keys = parsed.where(is_v6).select("_row", "ip_hi", "ip_lo").localCheckpoint()
    wide = _range_lookup(
        v6_keys.select(
            "_row", F.col("ip_hi").alias("_key"), F.shiftright("ip_hi", 48).alias("_part")
        ),
        ranges["ipv6_wide"],
        ["_part"],
    )
    narrow = _range_lookup(
        v6_keys.select("_row", F.col("ip_lo").alias("_key"), F.col("ip_hi").alias("_part")),
        ranges["ipv6_narrow"],
        ["_part"],
    )
    v6 = F.broadcast(
        wide.unionByName(narrow).select(
            "_row",
            F.col("country_code").alias("_v6_country"),
            F.col("reserved").alias("_v6_reserved"),
        )
    )
    joined = v4.join(v6, on="_row", how="left").withColumns(
        {
            "country_code": F.when(is_v6, F.col("_v6_country")).otherwise(F.col("_v4_country")),
            "reserved": F.when(is_v6, F.col("_v6_reserved")).otherwise(F.col("_v4_reserved")),
        }
    )
    reserved = F.coalesce(F.col("reserved"), F.lit(False))
    status = (
        F.when(F.col("ip_address").isNull(), F.lit(IpStatus.MISSING))
        .when(F.col("ip_version").isNull(), F.lit(IpStatus.INVALID))
        .when(reserved, F.lit(IpStatus.PRIVATE))
        .otherwise(F.lit(IpStatus.PUBLIC))
    )
    return joined.withColumns(
        {"ip_status": status, "country_code": F.when(~reserved, F.col("country_code"))}
    ).drop(
        "_row", "ip_version", "ip_hi", "ip_lo", "reserved",
        "_v4_country", "_v4_reserved", "_v6_country", "_v6_reserved",
    )  # fmt: skip


# --- Sessionization ------------------------------------------------------------------------------


def session_context(previous_day: DataFrame) -> DataFrame:
    """What sessionize needs of the day before a window: per user, the last event (by
    event_ts, then event_id) with its session start and number (SESSION_CONTEXT_COLUMNS)."""
    last_first = Window.partitionBy("user_id").orderBy(
        F.col("event_ts").desc(), F.col("event_id").desc()
    )
    return (
        previous_day.withColumn("_n", F.row_number().over(last_first))
        .where(F.col("_n") == 1)
        .select(*SESSION_CONTEXT_COLUMNS)
    )


def sessionize(events: DataFrame, context: DataFrame | None = None) -> DataFrame:
    """30-minute sessions per user, in order of (event_ts, event_id).

    A session starts at a user's first event and after every gap strictly longer than
    spec.SESSION_GAP. `context` holds, per user, the last event already sessionized before
    this window (spec.SESSION_CONTEXT_COLUMNS): a session running into the window continues
    with its session_id, start and numbering. Adds session_id, session_start and event_seq.
    """
    window = events.withColumns(
        {"_known_start": F.lit(None).cast("timestamp"), "_known_seq": F.lit(None).cast("long")}
    )
    if context is not None:
        prior = context.select(
            "user_id",
            "event_ts",
            "event_id",
            F.col("session_start").alias("_known_start"),
            F.col("event_seq").cast("long").alias("_known_seq"),
        )
        window = window.unionByName(prior, allowMissingColumns=True)
    # One ordering per user; session values are running values along it (the last value seen
    # at a session start), so Spark sorts the rows once.
    by_user = Window.partitionBy("user_id").orderBy("event_ts", "event_id")
    so_far = by_user.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    gap_micros = F.unix_micros(F.col("event_ts")) - F.unix_micros(F.lag("event_ts").over(by_user))
    gap_limit = int(SESSION_GAP.total_seconds() * 1_000_000)
    is_new = gap_micros.isNull() | (gap_micros > gap_limit)
    position = F.row_number().over(by_user)

    def at_start(value: Column) -> Column:
        return F.last(F.when(F.col("_new"), value), ignorenulls=True).over(so_far)

    numbered = window.withColumns({"_new": is_new, "_position": position})
    start = at_start(F.coalesce(F.col("_known_start"), F.col("event_ts")))
    seq = (
        F.col("_position")
        - at_start(F.col("_position"))
        + at_start(F.coalesce(F.col("_known_seq"), F.lit(1).cast("long")))
    )
    return (
        numbered.withColumns({"session_start": start, "event_seq": seq.cast("long")})
        .withColumn(
            "session_id",
            F.concat(
                F.col("user_id"),
                F.lit(SESSION_ID_SEPARATOR),
                F.date_format("session_start", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"),
            ),
        )
        .where(F.col("_known_seq").isNull())  # context rows were only there to continue
        .drop("_known_start", "_known_seq", "_position", "_new")
    )


# --- The layers, each one call of the rules above, and the whole chain --------------------------


def raw(
    landing: DataFrame,
    *,
    start: date,
    end: date,
    start_date: date,
    processed_at: datetime,
    days_of_files: DataFrame | None = None,
) -> DataFrame:
    """The raw layer of the window [start, end): landing rows standardized, attributed to
    their partition_date, those of the window. `days_of_files`: first_usable_days of the
    whole files, when `landing` holds a part of a file."""
    when = {"start_date": start_date, "processed_at": processed_at}
    standardized = standardize(landing, **when)
    attributed = attribute_partition_date(standardized, **when, days_of_files=days_of_files)
    return in_window(attributed, start, end)


def earlier_copies(
    event_ids: DataFrame, *, before: date, start_date: date, processed_at: datetime
) -> DataFrame:
    """The event_ids with a usable copy on a day before `before` (spec: the earliest copy
    wins), from landing-index rows (event_id, event_ts) of well-formed rows with an id, a
    user and a parsed timestamp: those whose timestamp is not before the start date, not in
    the future, and before the day `before`."""
    start = datetime(start_date.year, start_date.month, start_date.day)
    latest = processed_at.replace(tzinfo=None) + FUTURE_TOLERANCE
    day = datetime(before.year, before.month, before.day)
    event_ts = F.col("event_ts")
    usable = (event_ts >= F.lit(start)) & (event_ts <= F.lit(latest)) & (event_ts < F.lit(day))
    return event_ids.where(usable).select("event_id")


def cleansed(raw_rows: DataFrame, earlier: DataFrame | None = None) -> tuple[DataFrame, DataFrame]:
    """The cleansed layer and the rejects of raw rows. `earlier`: event_ids with an earlier
    copy (earlier_copies of the landing index: spec, the earliest copy wins), whose copies
    here are dropped. Spark works a window whole (spilling to disk rather than working in
    pieces), so the pieces rule of the spec never applies."""
    clean = deduplicate(raw_rows)
    if earlier is not None:
        clean = clean.join(earlier.distinct(), on="event_id", how="left_anti")
    return clean, rejected(raw_rows)


def enriched(cleansed_rows: DataFrame, ranges: dict[str, DataFrame]) -> DataFrame:
    """The enriched layer: cleansed rows with their IP's status and country."""
    return enrich(cleansed_rows, ranges)


def sessionized(enriched_rows: DataFrame, previous_day: DataFrame | None = None) -> DataFrame:
    """The sessionized layer: sessions continuing those of the sessionized day before."""
    context = None if previous_day is None else session_context(previous_day)
    return sessionize(enriched_rows, context)


def pipeline(
    landing: DataFrame,
    *,
    start: date,
    end: date,
    start_date: date,
    processed_at: datetime,
    ranges: dict[str, DataFrame],
    previous_day: DataFrame | None = None,
) -> tuple[DataFrame, DataFrame]:
    """The whole chain over the window [start, end): (sessionized, rejects). The raw rows
    feed both, so they are cached (Spark would compute them once per output otherwise)."""
    when = {"start_date": start_date, "processed_at": processed_at}
    raw_rows = raw(landing, start=start, end=end, **when).cache()
    clean, rejects = cleansed(raw_rows)
    return sessionized(enriched(clean, ranges), previous_day), rejects


# --- The speed layer: the same rules per micro-batch ----------------------------------------------


def stream_status(events: DataFrame, watermarks: DataFrame | None = None) -> DataFrame:
    """Add `stream_status` to deduplicated events (spec, the speed layer): INVALID_EVENT_ID
    when event_id is not a UUID; DUPLICATE when the event is the one its user's watermark
    holds; LATE_EVENT when it is not after it (by event_ts, then event_id); null for an event
    to sessionize. `watermarks`: per user, the last event sessionized (session_context's
    columns), as the stream's state keeps them."""
    invalid_id = ~F.col("event_id").rlike(UUID_PATTERN)
    if watermarks is None:
        return events.withColumn("stream_status", F.when(invalid_id, F.lit(INVALID_EVENT_ID)))
    marks = F.broadcast(
        watermarks.select(
            "user_id", F.col("event_ts").alias("_mark_ts"), F.col("event_id").alias("_mark_id")
        )
    )
    ts, mark_ts = F.col("event_ts"), F.col("_mark_ts")
    not_after = (ts < mark_ts) | ((ts == mark_ts) & (F.col("event_id") <= F.col("_mark_id")))
    status = (
        F.when(invalid_id, F.lit(INVALID_EVENT_ID))
        .when(F.col("event_id") == F.col("_mark_id"), F.lit(STREAM_DUPLICATE))
        .when(F.coalesce(not_after, F.lit(False)), F.lit(LATE_EVENT))
    )
    return (
        events.join(marks, "user_id", "left")
        .withColumn("stream_status", status)
        .drop("_mark_ts", "_mark_id")
    )


def next_watermarks(watermarks: DataFrame | None, sessionized_rows: DataFrame) -> DataFrame:
    """The users' watermarks after a micro-batch: per user, the last event of those already
    sessionized and the batch's (session_context of both)."""
    latest = sessionized_rows.select(*SESSION_CONTEXT_COLUMNS)
    if watermarks is not None:
        latest = watermarks.select(*SESSION_CONTEXT_COLUMNS).unionByName(latest)
    return session_context(latest)
