import sys, polars as pl
from pathlib import Path
from etl_poc.logic.spec import TEXT_COLUMNS
from etl_poc.lakehouse.landing_readers import polars_read_landing
landing = Path("bench-data/medium/landing"); f = next(landing.glob("bulk/*.parquet"))
k = sys.argv[1]
raw = polars_read_landing([f], landing)
W = " \t\n"
def clean(c):
    x = pl.col(c).str.strip_chars(W)
    if k == "replace": return x.replace("", None).alias(c)
    if k == "when": return pl.when(x.str.len_bytes() > 0).then(x).alias(c)
    return x.alias(c)
q = raw.with_columns(clean(c) for c in TEXT_COLUMNS).select(pl.col(c).null_count() for c in TEXT_COLUMNS)
print(q.collect(engine="streaming"))
