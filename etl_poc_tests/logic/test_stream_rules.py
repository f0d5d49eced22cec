"""The speed layer's rules (spec: stream_status, next_watermarks) on tiny frames, on every
engine that streams: ties, boundaries, a missing watermark, a replay, an id that is no UUID."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from etl_poc.logic import polars_engine
from etl_poc.logic.spec import INVALID_EVENT_ID, LATE_EVENT, STREAM_DUPLICATE

T0 = datetime(2024, 1, 31, 23, 50, tzinfo=UTC)
ID = "00000000-0000-4000-8000-{:012d}".format  # a UUID per number

# user u1's watermark: its last event at T0 with id ID(5), in a session from T0 - 10 min.
WATERMARKS = pl.DataFrame(
    {
        "user_id": ["u1"],
        "event_ts": [T0],
        "event_id": [ID(5)],
        "session_start": [T0 - timedelta(minutes=10)],
        "event_seq": [3],
    },
    schema_overrides={
        "event_ts": pl.Datetime("us", "UTC"),
        "session_start": pl.Datetime("us", "UTC"),
    },
)
CASES = [  # (event_id, user_id, event_ts, expected stream_status)
    (ID(1), "u1", T0 - timedelta(hours=2), LATE_EVENT),  # well before the watermark
    (ID(4), "u1", T0, LATE_EVENT),  # same instant, smaller id: ordered before it
    (ID(5), "u1", T0, STREAM_DUPLICATE),  # the watermark's own event again
    (ID(6), "u1", T0, None),  # same instant, larger id: after it
    (ID(7), "u1", T0 + timedelta(microseconds=1), None),
    (ID(8), "u2", T0 - timedelta(days=3), None),  # a user without a watermark
    ("not-a-uuid", "u2", T0, INVALID_EVENT_ID),
]


def _events() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [c[0] for c in CASES],
            "user_id": [c[1] for c in CASES],
            "event_ts": [c[2] for c in CASES],
        },
        schema_overrides={"event_ts": pl.Datetime("us", "UTC")},
    )


def _polars(events, watermarks):
    marked = polars_engine.stream_status(
        events.lazy(), None if watermarks is None else watermarks.lazy()
    )
    return marked.collect()


def _spark(spark):
    from etl_poc.logic import spark_engine

    def run(events, watermarks):
        frame = spark.createDataFrame(events.to_arrow())
        marks = None if watermarks is None else spark.createDataFrame(watermarks.to_arrow())
        return pl.from_arrow(spark_engine.stream_status(frame, marks).toArrow())

    return run


@pytest.fixture(params=["polars", pytest.param("spark", marks=pytest.mark.spark)])
def stream_status(request):
    if request.param == "polars":
        return _polars
    return _spark(request.getfixturevalue("spark"))


def test_each_event_gets_its_status_against_its_users_watermark(stream_status):
    marked = stream_status(_events(), WATERMARKS).sort("event_id")
    expected = sorted((c[0], c[3]) for c in CASES)
    assert list(zip(marked["event_id"], marked["stream_status"], strict=True)) == expected


def test_without_watermarks_only_the_id_is_checked(stream_status):
    marked = stream_status(_events(), None)
    flagged = marked.filter(pl.col("stream_status").is_not_null())
    assert flagged["event_id"].to_list() == ["not-a-uuid"]
    assert flagged["stream_status"].to_list() == [INVALID_EVENT_ID]


def test_the_watermarks_move_to_each_users_last_sessionized_event():
    batch = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u3"],
            "event_ts": [T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), T0],
            "event_id": [ID(9), ID(8), ID(1)],  # a tie on time: the larger id is the last
            "session_start": [T0 - timedelta(minutes=10)] * 2 + [T0],
            "event_seq": [5, 4, 1],
        },
        schema_overrides={
            "event_ts": pl.Datetime("us", "UTC"),
            "session_start": pl.Datetime("us", "UTC"),
        },
    )
    moved = polars_engine.next_watermarks(WATERMARKS.lazy(), batch.lazy()).collect()
    by_user = {row["user_id"]: row for row in moved.iter_rows(named=True)}
    assert by_user["u1"]["event_id"] == ID(9)
    assert by_user["u1"]["event_seq"] == 5
    assert by_user["u3"]["event_id"] == ID(1)
    unchanged = polars_engine.next_watermarks(WATERMARKS.lazy(), batch.head(0).lazy()).collect()
    assert unchanged.to_dicts() == WATERMARKS.to_dicts()
