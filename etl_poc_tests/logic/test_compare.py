from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from etl_poc.logic.compare import compare_frames


def test_equal_whatever_the_order_and_integer_widths():
    left = pl.DataFrame({"a": [1, 2, None], "t": [datetime(2024, 1, 1, tzinfo=UTC)] * 3})
    right = pl.DataFrame(
        {
            "t": pl.Series([datetime(2024, 1, 1)] * 3).dt.replace_time_zone("UTC"),
            "a": pl.Series([None, 2, 1], dtype=pl.Int32),
        }
    )
    assert compare_frames(left, right).equal


def test_a_difference_is_shown_with_its_rows():
    left = pl.DataFrame({"id": ["x", "y", "y"], "v": [1, 2, 2]})
    right = pl.DataFrame({"id": ["x", "y", "z"], "v": [1, 2, 3]})
    result = compare_frames(left, right)
    assert not result.equal
    assert result.only_left.to_dicts() == [{"id": "y", "v": 2}]  # a duplicate counts
    assert result.only_right.to_dicts() == [{"id": "z", "v": 3}]
    assert "different" in result.summary()


def test_different_columns_are_not_equal():
    assert not compare_frames(pl.DataFrame({"a": [1]}), pl.DataFrame({"b": [1]})).equal
