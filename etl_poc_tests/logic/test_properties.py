"""Property-based: random, dirty event sets give identical rows on both engines, and sessions
that obey the 30-minute rule."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl_poc.logic.compare import compare_frames
from etl_poc.logic.spec import COMMERCE, SESSION_GAP, TEXT_COLUMNS
from etl_poc.spark.session import spark_frame
from etl_poc_tests.logic.test_contract import PROCESSED_AT, START, _run_polars

BASE = datetime(2024, 1, 10, 23, 0)
_texts = st.sampled_from(
    ["", " ", "\t", "x", " Mobile ", "DESKTOP", "tablet", "PAGE_VIEW", "purchase", "Gold", "zz"]
)

_commerce_types = st.sampled_from(["PRODUCT_VIEW", "SEARCH", " add_to_cart", "PURCHASE"])
_UUID = "123e4567-e89b-42d3-a456-426614174000"


@st.composite
def timestamps(draw) -> str | None:
    kind = draw(st.sampled_from(["utc", "utc", "utc", "offset", "garbage", "none", "edge"]))
    if kind == "none":
        return None
    if kind == "garbage":
        return draw(
            st.sampled_from(
                ["", "nope", "2024-02-30 10:00:00", "2024-01-10", "2024-01-10 24:00:00"]
            )
        )
    moment = BASE + timedelta(
        seconds=draw(st.integers(0, 3 * 3600)), microseconds=draw(st.sampled_from([0, 1, 500_000]))
    )
    if kind == "edge":  # around the 30-minute boundary from BASE
        moment = BASE + SESSION_GAP + timedelta(microseconds=draw(st.sampled_from([-1, 0, 1])))
    if kind == "offset":
        minutes = draw(st.sampled_from([-300, 60, 330]))
        local = moment + timedelta(minutes=minutes)
        sign = "+" if minutes >= 0 else "-"
        return (
            local.strftime("%Y-%m-%dT%H:%M:%S.%f")
            + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        )
    return moment.strftime(
        draw(
            st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%fZ"])
        )
    )


@st.composite
def raw_events(draw) -> pl.DataFrame:
    n = draw(st.integers(1, 40))
    commerce = draw(st.booleans())  # one flag per set, as per file in a real run
    rows = []
    for _ in range(n):
        rows.append(
            {
                "event_id": draw(
                    st.one_of(
                        st.none(),
                        st.sampled_from(["", " "]),
                        st.sampled_from([f"e{i}" for i in range(25)]),
                    )
                ),
                "user_id": draw(st.one_of(st.none(), st.sampled_from(["u1", "u2", " u3 ", ""]))),
                "timestamp": draw(timestamps()),
                "page_url": draw(st.one_of(st.none(), st.sampled_from(["/a", "/b", " /c "]))),
                "device": draw(st.one_of(st.none(), _texts)),
                "ip_address": draw(
                    st.one_of(
                        st.none(),
                        st.sampled_from(
                            [
                                "8.8.8.8",
                                "10.1.2.3",
                                " 1.1.1.1",
                                "x",
                                "::1",
                                "2001:4860:4860::8888",
                                "",
                            ]
                        ),
                    )
                ),
                "event_type": draw(st.one_of(st.none(), _texts, _commerce_types)),
                "user_tier": draw(st.one_of(st.none(), _texts)),
                "product_id": draw(st.one_of(st.none(), st.sampled_from(["7", " 42", "x7", ""]))),
                "search_query": draw(st.one_of(st.none(), st.sampled_from(["shoes", " ", "a b"]))),
                "transaction_id": draw(st.one_of(st.none(), st.sampled_from([_UUID, "t-1"]))),
                "amount": draw(
                    st.one_of(st.none(), st.sampled_from(["12.50", "0.99 ", "1e3", "-1.00", "3.5"]))
                ),
                "source_file": draw(st.sampled_from(["a.csv", "b.parquet"])),
                "malformed": draw(st.booleans().filter(lambda b: True))
                and draw(st.integers(0, 9)) == 0,
                COMMERCE: commerce,
            }
        )
    schema = {
        **dict.fromkeys(TEXT_COLUMNS, pl.String),
        "source_file": pl.String,
        "malformed": pl.Boolean,
        COMMERCE: pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema)


@settings(max_examples=60, deadline=None)
@given(raw_events())
def test_sessions_obey_the_rule_and_rows_are_conserved(raw):
    rejects, sessionized = _run_polars(raw, enrich=False)
    usable = raw.height - rejects.height
    assert sessionized.height <= usable
    assert sessionized["event_id"].n_unique() == sessionized.height
    ordered = sessionized.sort("user_id", "event_ts", "event_id")
    for _, user in ordered.group_by("user_id", maintain_order=True):
        gaps = user["event_ts"].diff().drop_nulls().to_list()
        ids = user["session_id"].to_list()
        for gap, (previous, current) in zip(gaps, itertools.pairwise(ids), strict=True):
            assert (gap > SESSION_GAP) == (previous != current)
        assert user["event_seq"].to_list()[0] == 1


@pytest.mark.spark
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=raw_events())
def test_both_engines_return_identical_rows(spark, raw):
    from etl_poc.logic import spark_engine

    polars_rejects, polars_sessions = _run_polars(raw, enrich=False)
    std = spark_engine.standardize(
        spark_frame(spark, raw), start_date=START, processed_at=PROCESSED_AT
    )
    spark_sessions = pl.from_arrow(spark_engine.sessionize(spark_engine.deduplicate(std)).toArrow())
    spark_rejects = pl.from_arrow(spark_engine.rejected(std).toArrow())
    for ours, theirs in ((polars_rejects, spark_rejects), (polars_sessions, spark_sessions)):
        result = compare_frames(ours, theirs)
        assert result.equal, (result.summary(), result.only_left, result.only_right)
