"""One comparison for the outputs of two engines: same rows and values, after a canonical sort
with aligned types; on a difference, counts and a small sample of the rows that differ."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Comparison:
    equal: bool
    left_rows: int
    right_rows: int
    only_left: pl.DataFrame  # a sample of rows missing on the right
    only_right: pl.DataFrame
    different_columns: tuple[str, ...]

    def summary(self) -> str:
        if self.equal:
            return f"identical: {self.left_rows} rows"
        return (
            f"different: {self.left_rows} vs {self.right_rows} rows, "
            f"{self.only_left.height}+ only left, {self.only_right.height}+ only right, "
            f"columns {list(self.different_columns)}"
        )


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns by name, timestamps as microseconds in UTC, integers as Int64, then sorted by
    every column: two engines' outputs compare equal exactly when their rows do."""
    columns = []
    for name in sorted(frame.columns):
        dtype = frame.schema[name]
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            column = (
                column.dt.convert_time_zone("UTC")
                if dtype.time_zone
                else column.dt.replace_time_zone("UTC")
            ).dt.cast_time_unit("us")
        elif dtype.is_integer():
            column = column.cast(pl.Int64)
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            column = column.cast(pl.String)
        columns.append(column.alias(name))
    ordered = frame.select(columns)
    return ordered.sort(ordered.columns, nulls_last=False)


def compare_frames(left: pl.DataFrame, right: pl.DataFrame, sample: int = 5) -> Comparison:
    """Row-for-row equality of two frames, whatever their row order and engine types."""
    if sorted(left.columns) != sorted(right.columns):
        only = set(left.columns) ^ set(right.columns)
        empty = pl.DataFrame()
        return Comparison(False, left.height, right.height, empty, empty, tuple(sorted(only)))
    if left.is_empty() and right.is_empty():  # e.g. a window both engines hold no row of
        return Comparison(True, 0, 0, left.head(0), right.head(0), ())
    a, b = canonical(left), canonical(right)
    if a.height == b.height and a.equals(b):
        return Comparison(True, a.height, b.height, a.head(0), b.head(0), ())
    a_rows = a.with_columns(_n=pl.int_range(pl.len()).over(a.columns))
    b_rows = b.with_columns(_n=pl.int_range(pl.len()).over(b.columns))
    keys = [*a.columns, "_n"]
    only_left = a_rows.join(b_rows, on=keys, how="anti", nulls_equal=True).drop("_n")
    only_right = b_rows.join(a_rows, on=keys, how="anti", nulls_equal=True).drop("_n")
    differing = (
        tuple(c for c in a.columns if not a.get_column(c).equals(b.get_column(c)))
        if a.height == b.height
        else tuple(a.columns)
    )
    return Comparison(
        False, a.height, b.height, only_left.head(sample), only_right.head(sample), differing
    )
