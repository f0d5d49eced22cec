"""The quality rules on tiny frames: each passes on good rows and catches its own fault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from etl_poc.logic import quality

T0 = datetime(2024, 1, 10, 23, 50, tzinfo=UTC)


def _sessions(rows):
    return pl.DataFrame(
        [
            {"event_id": e, "user_id": u, "event_ts": T0 + timedelta(minutes=m), "session_id": s}
            for e, u, m, s in rows
        ]
    )


GOOD = [
    ("e1", "u1", 0, "u1@a"),
    ("e2", "u1", 30, "u1@a"),  # exactly 30 minutes: same session
    ("e3", "u1", 61, "u1@b"),  # 31 minutes: a new one
    ("e4", "u2", 0, "u2@a"),
]


def test_session_rule_passes_on_good_sessions_and_catches_both_faults():
    assert quality.session_rule(_sessions(GOOD))[0]
    too_long = [*GOOD[:2], ("e3", "u1", 61, "u1@a")]
    passed, figures = quality.session_rule(_sessions(too_long))
    assert not passed
    assert figures["gaps_over_30_min_inside_a_session"] == 1
    too_close = [GOOD[0], ("e2", "u1", 30, "u1@b")]
    passed, figures = quality.session_rule(_sessions(too_close))
    assert not passed
    assert figures["sessions_30_min_or_less_apart"] == 1


def test_unique_ids_and_keys():
    good = _sessions(GOOD)
    assert quality.unique_ids_and_keys(good)[0]
    repeated = pl.concat([good, good.head(1)])
    assert quality.unique_ids_and_keys(repeated) == (
        False,
        {
            "rows": 5,
            "repeated_event_ids": 1,
            "null_event_id": 0,
            "null_user_id": 0,
            "null_event_ts": 0,
            "null_session_id": 0,
        },
    )
    missing_user = good.with_columns(
        user_id=pl.when(pl.col("event_id") == "e4").then(None).otherwise(pl.col("user_id"))
    )
    passed, figures = quality.unique_ids_and_keys(missing_user)
    assert not passed
    assert figures["null_user_id"] == 1


def test_row_conservation():
    raw = pl.DataFrame(
        {"event_id": ["a", "a", "b", "c"], "reject_reason": [None, None, None, "INVALID_TIMESTAMP"]}
    )
    cleansed = pl.DataFrame({"event_id": ["a", "b"]})
    rejects = pl.DataFrame({"raw_event_id": ["c"]})
    passed, figures = quality.row_conservation(raw, cleansed, rejects)
    assert passed
    assert figures["duplicates"] == 1
    assert not quality.row_conservation(raw, cleansed.head(1), rejects)[0]  # a row lost


def test_public_ips_with_country():
    rows = pl.DataFrame(
        {"ip_status": ["public"] * 200 + ["private"], "country_code": ["DE"] * 199 + [None] * 2}
    )
    assert quality.public_ips_with_country(rows)[0]  # 199 of 200: 99.5 %
    worse = rows.with_columns(country_code=pl.lit(None, pl.String))
    passed, figures = quality.public_ips_with_country(worse)
    assert not passed
    assert figures["share"] == 0.0
