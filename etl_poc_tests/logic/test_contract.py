"""The business rules as one table of small explicit cases, run on every engine.

Each engine module exposes the same functions (standardize, rejected, deduplicate, enrich,
sessionize); the cases below are the contract, and every test runs once per engine (ENGINES).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial

import duckdb
import polars as pl
import pytest

from etl_poc.logic import duckdb_engine, polars_engine
from etl_poc.logic.spec import SESSION_CONTEXT_COLUMNS, RejectReason
from etl_poc.reference.ip_ranges import load_packaged_ranges
from etl_poc.spark.session import spark_frame, spark_ip_ranges

START = date(2024, 1, 1)
PROCESSED_AT = datetime(2024, 3, 1, tzinfo=UTC)


def _run_polars(raw: pl.DataFrame, context: pl.DataFrame | None = None, enrich: bool = True):
    std = polars_engine.standardize(raw.lazy(), start_date=START, processed_at=PROCESSED_AT)
    ranges = load_packaged_ranges()
    clean = polars_engine.deduplicate(std)
    if enrich:
        prepared = polars_engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
        clean = polars_engine.enrich(clean, prepared)
    sessions = polars_engine.sessionize(clean, None if context is None else context.lazy())
    rejects, sessionized = pl.collect_all([polars_engine.rejected(std), sessions])
    return rejects, sessionized


def _to_polars(frame) -> pl.DataFrame:
    return pl.from_arrow(frame.toArrow())


_PREPARED: dict = {}


def _spark_ranges(spark):
    """Prepared once per test session and cached, as a pipeline run does."""
    if "spark" not in _PREPARED:
        _PREPARED["spark"] = spark_ip_ranges(spark)
    return _PREPARED["spark"]


def _run_spark(spark, raw: pl.DataFrame, context: pl.DataFrame | None = None, enrich: bool = True):
    from etl_poc.logic import spark_engine

    std = spark_engine.standardize(
        spark_frame(spark, raw), start_date=START, processed_at=PROCESSED_AT
    ).cache()
    clean = spark_engine.deduplicate(std)
    if enrich:
        clean = spark_engine.enrich(clean, _spark_ranges(spark))
    sessions = spark_engine.sessionize(
        clean, None if context is None else spark_frame(spark, context)
    )
    result = _to_polars(spark_engine.rejected(std)), _to_polars(sessions)
    std.unpersist()
    return result


def _run_duckdb(raw: pl.DataFrame, context: pl.DataFrame | None = None, enrich: bool = True):
    """The SQL baseline of the benchmark, held to the same contract (it does not partition
    by day, so attribute_partition_date is not part of it)."""
    connection = duckdb.connect()
    std = duckdb_engine.standardize(
        connection.from_arrow(raw.to_arrow()), start_date=START, processed_at=PROCESSED_AT
    )
    clean = duckdb_engine.deduplicate(std)
    if enrich:
        ranges = load_packaged_ranges()
        prepared = duckdb_engine.prepare_ranges(
            connection.from_arrow(ranges.ipv4.to_arrow()),
            connection.from_arrow(ranges.ipv6.to_arrow()),
        )
        clean = duckdb_engine.enrich(clean, prepared)
    if context is not None:
        context = connection.from_arrow(
            context.with_columns(pl.col(pl.Datetime).dt.replace_time_zone(None)).to_arrow()
        )
    sessions = duckdb_engine.sessionize(clean, context)
    return tuple(
        pl.from_arrow(relation.to_arrow_table()).with_columns(
            pl.col(pl.Datetime).dt.replace_time_zone("UTC")
        )
        for relation in (duckdb_engine.rejected(std), sessions)
    )


ENGINES = [
    pytest.param("polars"),
    pytest.param("duckdb"),
    pytest.param("spark", marks=pytest.mark.spark),
]


@pytest.fixture(scope="module", params=ENGINES)
def run(request):
    """Runs the whole chain (standardize, rejected, deduplicate, enrich, sessionize) on one
    engine and returns (rejects, sessionized) as Polars frames."""
    if request.param == "spark":
        return partial(_run_spark, request.getfixturevalue("spark"))
    return {"polars": _run_polars, "duckdb": _run_duckdb}[request.param]


def _raw(rows: list[dict]) -> pl.DataFrame:
    defaults = {
        "event_id": None,
        "user_id": "u1",
        "timestamp": "2024-01-10 12:00:00",
        "page_url": "/",
        "device": "desktop",
        "ip_address": "8.8.8.8",
        "event_type": "PAGE_VIEW",
        "user_tier": "gold",
        "product_id": None,
        "search_query": None,
        "transaction_id": None,
        "amount": None,
        "source_file": "bulk/test.csv",
        "malformed": False,
        "commerce": True,
    }
    return pl.DataFrame(
        [{**defaults, **row} for row in rows],
        schema={
            **dict.fromkeys(list(defaults)[:-2], pl.String),
            "malformed": pl.Boolean,
            "commerce": pl.Boolean,
        },
    )


ORDER_ID = "0ce10ca5-7365-431a-a3f0-711ef8a1b2c3"


# (case, input row overrides, expected: a reject reason, or a dict of cleansed values)
CASES = [
    ("plain", {"event_id": "e01"}, {"device": "desktop", "event_ts": "2024-01-10 12:00:00"}),
    ("padded text", {"event_id": " e02 ", "user_id": " u9 "}, {"event_id": "e02", "user_id": "u9"}),
    (
        "every kind of padding, one side or both",
        {
            "event_id": "\te36\r\n",
            "user_id": "\x0bu 9",
            "page_url": "/p q\x0c",
            "device": "\ttablet",
        },
        {"event_id": "e36", "user_id": "u 9", "page_url": "/p q", "device": "tablet"},
    ),
    ("padding only", {"event_id": "e37", "page_url": "\t\n "}, {"page_url": None}),
    ("empty event_id", {"event_id": "  "}, RejectReason.MISSING_EVENT_ID),
    ("null event_id", {"event_id": None}, RejectReason.MISSING_EVENT_ID),
    ("empty user_id", {"event_id": "e03", "user_id": ""}, RejectReason.MISSING_USER_ID),
    ("null timestamp", {"event_id": "e04", "timestamp": None}, RejectReason.MISSING_TIMESTAMP),
    (
        "garbage timestamp",
        {"event_id": "e05", "timestamp": "yesterday"},
        RejectReason.INVALID_TIMESTAMP,
    ),
    (
        "no such day",
        {"event_id": "e06", "timestamp": "2024-02-30 10:00:00"},
        RejectReason.INVALID_TIMESTAMP,
    ),
    (
        "hour 25",
        {"event_id": "e07", "timestamp": "2024-01-10 25:00:00"},
        RejectReason.INVALID_TIMESTAMP,
    ),
    ("date alone", {"event_id": "e08", "timestamp": "2024-01-10"}, RejectReason.INVALID_TIMESTAMP),
    (
        "epoch number",
        {"event_id": "e09", "timestamp": "1705320000"},
        RejectReason.INVALID_TIMESTAMP,
    ),
    (
        "before start",
        {"event_id": "e10", "timestamp": "2023-12-31 23:59:59.999999"},
        RejectReason.BEFORE_START,
    ),
    ("far future", {"event_id": "e11", "timestamp": "2024-03-02 00:00:01"}, RejectReason.IN_FUTURE),
    ("ragged csv line", {"event_id": "e12", "malformed": True}, RejectReason.MALFORMED_LINE),
    (
        "T and Z",
        {"event_id": "e13", "timestamp": "2024-01-10T12:00:00Z"},
        {"event_ts": "2024-01-10 12:00:00"},
    ),
    (
        "offset",
        {"event_id": "e14", "timestamp": "2024-01-10T14:30:00+02:30"},
        {"event_ts": "2024-01-10 12:00:00"},
    ),
    (
        "negative offset over midnight",
        {"event_id": "e15", "timestamp": "2024-01-09 20:00:00-05:00"},
        {"event_ts": "2024-01-10 01:00:00", "event_date": "2024-01-10"},
    ),
    (
        "fraction",
        {"event_id": "e16", "timestamp": "2024-01-10 12:00:00.5"},
        {"event_ts": "2024-01-10 12:00:00.500000"},
    ),
    (
        "nanoseconds truncated",
        {"event_id": "e17", "timestamp": "2024-01-10 12:00:00.123456789"},
        {"event_ts": "2024-01-10 12:00:00.123456"},
    ),
    ("odd device", {"event_id": "e18", "device": "  MoBile "}, {"device": "mobile"}),
    ("unknown device", {"event_id": "e19", "device": "smart-tv"}, {"device": "other"}),
    ("null device", {"event_id": "e20", "device": None}, {"device": "other"}),
    (
        "lower event type",
        {"event_id": "e21", "event_type": "add_to_cart", "product_id": "100001"},
        {"event_type": "ADD_TO_CART"},
    ),
    ("unknown event type", {"event_id": "e22", "event_type": "CLICK"}, {"event_type": "UNKNOWN"}),
    ("tier case", {"event_id": "e23", "user_tier": "Platinum"}, {"user_tier": "platinum"}),
    ("unknown tier", {"event_id": "e24", "user_tier": None}, {"user_tier": "unknown"}),
    (
        "public ipv4",
        {"event_id": "e25", "ip_address": "8.8.8.8"},
        {"ip_status": "public", "country_code": "US"},
    ),
    (
        "padded ipv4",
        {"event_id": "e26", "ip_address": " 1.1.1.1 "},
        {"ip_status": "public", "country_code": "AU"},
    ),
    (
        "private ipv4",
        {"event_id": "e27", "ip_address": "192.168.0.7"},
        {"ip_status": "private", "country_code": None},
    ),
    (
        "cgnat ipv4",
        {"event_id": "e28", "ip_address": "100.64.1.1"},
        {"ip_status": "private", "country_code": None},
    ),
    (
        "malformed ipv4",
        {"event_id": "e29", "ip_address": "256.1.1.1"},
        {"ip_status": "invalid", "country_code": None},
    ),
    ("leading zero", {"event_id": "e30", "ip_address": "1.2.3.04"}, {"ip_status": "invalid"}),
    (
        "missing ip",
        {"event_id": "e31", "ip_address": ""},
        {"ip_status": "missing", "country_code": None},
    ),
    (
        "public ipv6",
        {"event_id": "e32", "ip_address": "2001:4860:4860::8888"},
        {"ip_status": "public", "country_code": "US"},
    ),
    (
        "ipv6 upper case",
        {"event_id": "e33", "ip_address": "2A00:1450:4001:81C::200E"},
        {"ip_status": "public", "country_code": "DE"},
    ),
    ("ipv6 loopback", {"event_id": "e34", "ip_address": "::1"}, {"ip_status": "private"}),
    ("ipv6 two ::", {"event_id": "e35", "ip_address": "1::2::3"}, {"ip_status": "invalid"}),
    # The commerce fields (schemas/events): their forms where present, and what a type needs.
    (
        "a purchase with its order",
        {
            "event_id": "e40",
            "event_type": "PURCHASE",
            "transaction_id": ORDER_ID,
            "amount": " 12.30 ",
        },
        {"transaction_id": ORDER_ID, "amount": Decimal("12.30")},
    ),
    (
        "a purchase without its order",
        {"event_id": "e41", "event_type": "purchase", "amount": "12.30"},
        RejectReason.INVALID_EVENT_FIELDS,
    ),
    (
        "an amount without its cents",
        {"event_id": "e42", "event_type": "PURCHASE", "transaction_id": ORDER_ID, "amount": "12.3"},
        RejectReason.INVALID_EVENT_FIELDS,
    ),
    (
        "a negative amount",
        {
            "event_id": "e43",
            "event_type": "PURCHASE",
            "transaction_id": ORDER_ID,
            "amount": "-1.00",
        },
        RejectReason.INVALID_EVENT_FIELDS,
    ),
    (
        "an order id that is no uuid",
        {
            "event_id": "e44",
            "event_type": "PURCHASE",
            "transaction_id": "order-7",
            "amount": "1.00",
        },
        RejectReason.INVALID_EVENT_FIELDS,
    ),
    (
        "a product view of a product",
        {"event_id": "e45", "event_type": "PRODUCT_VIEW", "product_id": "100042"},
        {"product_id": "100042", "amount": None},
    ),
    (
        "a product view without one",
        {"event_id": "e46", "event_type": "PRODUCT_VIEW", "product_id": "  "},
        RejectReason.INVALID_EVENT_FIELDS,
    ),
    (
        "a sku that is no number, on any event",
        {"event_id": "e47", "product_id": "abc"},
        RejectReason.INVALID_EVENT_FIELDS,
    ),
    (
        "a search without its query",
        {"event_id": "e48", "event_type": "Search"},
        RejectReason.INVALID_EVENT_FIELDS,
    ),
    (
        "a search",
        {"event_id": "e49", "event_type": "SEARCH", "search_query": " red shoes "},
        {"search_query": "red shoes", "event_type": "SEARCH"},
    ),
    (
        "a file from before the commerce columns: not held to them",
        {"event_id": "e50", "event_type": "ADD_TO_CART", "commerce": False},
        {"event_type": "ADD_TO_CART", "product_id": None},
    ),
]


@pytest.fixture(scope="module")
def contract_result(run):
    return run(_raw([{**overrides} for _, overrides, _ in CASES]))


@pytest.mark.parametrize(("case", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_contract_case(contract_result, case, overrides, expected):
    rejects, sessionized = contract_result
    raw_id = overrides.get("event_id")
    if isinstance(expected, str):
        match = rejects.filter(pl.col("raw_event_id").eq_missing(raw_id))
        assert match["reject_reason"].to_list() == [expected]
        return
    row = sessionized.filter(pl.col("event_id") == raw_id.strip()).to_dicts()
    assert len(row) == 1
    for column, value in expected.items():
        got = row[0][column]
        if column == "event_ts":
            got = got.strftime("%Y-%m-%d %H:%M:%S.%f" if "." in value else "%Y-%m-%d %H:%M:%S")
        if column == "event_date":
            got = got.isoformat()
        assert got == value, column


def test_every_row_is_accounted_for(contract_result):
    rejects, sessionized = contract_result
    assert rejects.height + sessionized.height == len(CASES)


def test_duplicates_keep_the_earliest_then_a_fixed_order(run):
    raw = _raw(
        [
            {"event_id": "d1", "timestamp": "2024-01-10 12:00:05", "page_url": "/late"},
            {"event_id": "d1", "timestamp": "2024-01-10 12:00:00", "page_url": "/b"},
            {"event_id": "d1", "timestamp": "2024-01-10 12:00:00", "page_url": "/a"},
            {"event_id": "d1", "timestamp": "2024-01-10 12:00:00", "page_url": "/a"},
            {"event_id": "d2"},
        ]
    )
    rejects, sessionized = run(raw, enrich=False)
    assert rejects.height == 0
    assert sessionized.height == 2  # 5 in = 2 clean + 0 rejected + 3 duplicates
    assert sessionized.filter(pl.col("event_id") == "d1")["page_url"].to_list() == ["/a"]


def _events(user_times: list[tuple[str, str, str]]) -> pl.DataFrame:
    return _raw([{"event_id": e, "user_id": u, "timestamp": t} for e, u, t in user_times])


SESSION_CASES = [
    # (event_id, user, time): gaps of exactly 30 min continue, 30 min + 1 us breaks
    ("a1", "ua", "2024-01-10 23:50:00"),
    ("a2", "ua", "2024-01-11 00:20:00"),  # exactly 30 minutes, across midnight
    ("a3", "ua", "2024-01-11 00:50:00.000001"),  # 30 min + 1 microsecond: new session
    ("a4", "ua", "2024-01-11 00:50:00.000001"),  # a tie: ordered by event_id
    ("b1", "ub", "2024-01-10 10:00:00"),
    ("b2", "ub", "2024-01-10 10:29:59"),
    ("b3", "ub", "2024-01-10 11:00:00"),  # 30:01 after b2: new session
]


def test_sessions_follow_the_30_minute_rule(run):
    _, sessionized = run(_events(SESSION_CASES), enrich=False)
    by_id = {r["event_id"]: r for r in sessionized.to_dicts()}
    assert (
        by_id["a2"]["session_id"] == by_id["a1"]["session_id"] == "ua@2024-01-10T23:50:00.000000Z"
    )
    assert by_id["a3"]["session_id"] == by_id["a4"]["session_id"] != by_id["a2"]["session_id"]
    assert [by_id[e]["event_seq"] for e in ("a1", "a2", "a3", "a4")] == [1, 2, 1, 2]
    assert by_id["b1"]["session_id"] == by_id["b2"]["session_id"] != by_id["b3"]["session_id"]
    assert by_id["b3"]["session_start"] == datetime(2024, 1, 10, 11, tzinfo=UTC)


def test_sessions_continue_across_processing_windows(run):
    """Day by day, with the previous day's last events as context, gives the same sessions
    as both days at once."""
    events = _events(SESSION_CASES)
    _, together = run(events, enrich=False)
    day1 = events.filter(pl.col("timestamp") < "2024-01-11")
    day2 = events.filter(pl.col("timestamp") >= "2024-01-11")
    _, first = run(day1, enrich=False)
    context = first.sort("event_ts", "event_id").group_by("user_id").last()
    _, second = run(day2, context.select(SESSION_CONTEXT_COLUMNS), enrich=False)
    columns = ["event_id", "session_id", "session_start", "event_seq"]
    assert (
        pl.concat([first, second])
        .select(columns)
        .sort("event_id")
        .equals(together.select(columns).sort("event_id"))
    )


def test_sessions_agree_with_an_independent_sql_reference():
    """DuckDB with LAG and a running sum: the textbook formulation of the same rule."""
    rows = [
        (f"e{i:03d}", f"u{i % 7}", f"2024-01-10 {10 + i // 20:02d}:{(i * 7) % 60:02d}:00")
        for i in range(140)
    ]
    _, sessionized = _run_polars(_events(rows))
    connection = duckdb.connect()
    connection.register("frame", sessionized.select("event_id", "user_id", "event_ts").to_arrow())
    reference = connection.sql(
        """
        WITH gaps AS (
            SELECT event_id, user_id, event_ts,
                   CASE WHEN lag(event_ts) OVER w IS NULL
                          OR event_ts - lag(event_ts) OVER w > INTERVAL 30 MINUTE
                        THEN 1 ELSE 0 END AS starts
            FROM frame WINDOW w AS (PARTITION BY user_id ORDER BY event_ts, event_id)
        ), numbered AS (
            SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY event_ts, event_id) AS n
            FROM gaps
        )
        SELECT event_id, min(event_ts) OVER (PARTITION BY user_id, n) AS session_start,
               row_number() OVER (PARTITION BY user_id, n ORDER BY event_ts, event_id) AS event_seq
        FROM numbered ORDER BY event_id
        """
    ).pl()
    ours = sessionized.select("event_id", "session_start", "event_seq").sort("event_id")
    assert ours.with_columns(pl.col("event_seq").cast(pl.Int64)).equals(
        reference.with_columns(
            pl.col("event_seq").cast(pl.Int64),
            pl.col("session_start").cast(ours.schema["session_start"]),
        )
    )


def test_a_row_gets_the_first_reason_that_applies(run):
    """Each row below fails every check from one reason of RejectReason.ORDER on."""
    failing = {
        RejectReason.MALFORMED_LINE: {"malformed": True},
        RejectReason.INVALID_ENCODING: {"page_url": "/caf\ufffd"},
        RejectReason.MISSING_EVENT_ID: {"event_id": None},
        RejectReason.MISSING_USER_ID: {"user_id": " "},
        RejectReason.MISSING_TIMESTAMP: {"timestamp": None},
        RejectReason.INVALID_TIMESTAMP: {"timestamp": "2024-13-01 00:00:00"},
        RejectReason.BEFORE_START: {"timestamp": "2020-01-01 00:00:00"},
        RejectReason.IN_FUTURE: {"timestamp": "2099-01-01 00:00:00"},
        RejectReason.INVALID_EVENT_FIELDS: {"product_id": "not-a-sku"},
    }
    rows = []
    for i in range(len(RejectReason.ORDER)):
        row = {"source_file": f"f{i}", "event_id": f"r{i}"}
        # This reason's failure, plus the failures of every later reason that can coexist.
        for later in RejectReason.ORDER[i:]:
            if "timestamp" in failing[later] and "timestamp" in row:
                continue
            row.update(failing[later])
        rows.append(row)
    rejects, sessionized = run(_raw(rows), enrich=False)
    assert sessionized.height == 0
    got = dict(rejects.select("source_file", "reject_reason").iter_rows())
    assert got == {f"f{i}": reason for i, reason in enumerate(RejectReason.ORDER)}


ATTRIBUTION_CASES = [
    # (source_file, event_id, timestamp, expected partition_date)
    ("a.csv", "p1", "2024-01-12 10:00:00", "2024-01-12"),
    ("a.csv", "p2", "2024-01-11 23:59:59", "2024-01-11"),
    ("a.csv", "p3", "not a time", "2024-01-11"),  # the file's earliest usable day
    ("a.csv", "p4", "2020-01-01 00:00:00", "2024-01-11"),  # before the start: no usable day
    ("a.csv", "p5", "2099-01-01 00:00:00", "2024-01-11"),  # in the future: neither
    ("b.csv", "p6", None, "2024-01-01"),  # a file without one usable day: the start date
]


@pytest.mark.parametrize(
    "engine", [pytest.param("polars"), pytest.param("spark", marks=pytest.mark.spark)]
)
def test_rows_without_a_usable_day_are_attributed_by_their_file(request, engine):
    raw = _raw(
        [{"source_file": f, "event_id": e, "timestamp": t} for f, e, t, _ in ATTRIBUTION_CASES]
    )
    if engine == "spark":
        from etl_poc.logic import spark_engine

        spark = request.getfixturevalue("spark")
        std = spark_engine.standardize(
            spark_frame(spark, raw), start_date=START, processed_at=PROCESSED_AT
        )
        frame = spark_engine.attribute_partition_date(
            std, start_date=START, processed_at=PROCESSED_AT
        )
        got = _to_polars(frame.select("event_id", "partition_date"))
    else:
        std = polars_engine.standardize(raw.lazy(), start_date=START, processed_at=PROCESSED_AT)
        got = polars_engine.attribute_partition_date(
            std, start_date=START, processed_at=PROCESSED_AT
        ).collect()
    days = {r["event_id"]: r["partition_date"].isoformat() for r in got.to_dicts()}
    assert days == {e: d for _, e, _, d in ATTRIBUTION_CASES}
