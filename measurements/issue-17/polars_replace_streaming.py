"""`python polars_replace_streaming.py replace|when|strip` (watch its peak RSS, e.g. with
`/usr/bin/time -f %M`): the eight landing columns of medium's bulk file trimmed, empty text
made null by `.replace("", None)` or by `when(len > 0)`, or only trimmed; nulls counted with
Polars' streaming engine."""

import sys
from pathlib import Path

import polars as pl

from etl_poc.lakehouse.landing_readers import polars_read_landing
from etl_poc.logic.spec import TEXT_COLUMNS

LANDING = Path("bench-data/medium/landing")
WHITESPACE = " \t\n"


def clean(column: str, how: str) -> pl.Expr:
    trimmed = pl.col(column).str.strip_chars(WHITESPACE)
    if how == "replace":
        return trimmed.replace("", None).alias(column)
    if how == "when":
        return pl.when(trimmed.str.len_bytes() > 0).then(trimmed).alias(column)
    return trimmed.alias(column)


def main() -> None:
    how = sys.argv[1]
    raw = polars_read_landing([next(LANDING.glob("bulk/*.parquet"))], LANDING)
    query = raw.with_columns(clean(c, how) for c in TEXT_COLUMNS).select(
        pl.col(c).null_count() for c in TEXT_COLUMNS
    )
    print(query.collect(engine="streaming"))


if __name__ == "__main__":
    main()
