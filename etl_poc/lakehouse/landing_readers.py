"""Landing files -> the raw contract, for each engine: the one place where both read them.

The raw contract: the text columns of spec.TEXT_COLUMNS (a column a file lacks is null),
`source_file` (the path under the landing directory) and `malformed` (a CSV line whose
number of fields differs from the header's). CSV empty fields are null (CSV cannot tell an
empty text from a missing one reliably); Parquet keeps what it holds, and a typed Parquet
timestamp becomes ISO text in UTC (naive means UTC), which cleansing parses like any other.
Lines inside quoted fields spanning several lines are not supported.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from etl_poc.lakehouse.landing_zone import landing_format, open_text_file
from etl_poc.logic.spec import SOURCE_FILE, TEXT_COLUMNS

# A quoted CSV field, with "" as an escaped quote: removed before counting separators.
_QUOTED_FIELD = r'"(?:[^"]|"")*"'
_TS_TEXT_POLARS = "%Y-%m-%d %H:%M:%S%.6f"
_TS_TEXT_SPARK = "yyyy-MM-dd HH:mm:ss.SSSSSS"


def _relative(path: Path, landing_dir: Path) -> str:
    return path.relative_to(landing_dir).as_posix()


_REQUIRED = ("event_id", "user_id", "timestamp")


def _require_columns(path: Path, present) -> None:
    missing = [c for c in _REQUIRED if c not in present]
    if missing:
        raise ValueError(f"{path}: lacks required column(s) {missing}")


def _csv_first_line(path: Path) -> str:
    with open_text_file(path) as handle:
        return handle.readline().decode("utf-8").rstrip("\r\n")


def _csv_header(path: Path) -> list[str]:
    first = _csv_first_line(path)
    if not first:
        raise ValueError(f"{path}: empty CSV file, expected a header line")
    return [name.strip().strip('"') for name in first.split(",")]


# --- Polars ---------------------------------------------------------------------------------


def polars_read_csv(path: Path, landing_dir: Path) -> pl.LazyFrame:
    header = _csv_header(path)
    _require_columns(path, header)
    rows = pl.scan_csv(path, infer_schema=False, truncate_ragged_lines=True)
    # The same file as whole lines, to count each line's fields outside quotes.
    lines = pl.scan_csv(
        path,
        has_header=False,
        skip_rows=1,
        separator="\x1f",
        quote_char=None,
        schema={"_line": pl.String},
    ).select(_fields=pl.col("_line").str.replace_all(_QUOTED_FIELD, "").str.count_matches(",") + 1)
    columns = [
        (
            pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c))
            if c in header
            else pl.lit(None, pl.String)
        ).alias(c)
        for c in TEXT_COLUMNS
    ]
    return pl.concat([rows, lines], how="horizontal").select(
        *columns,
        pl.lit(_relative(path, landing_dir)).alias(SOURCE_FILE),
        (pl.col("_fields") != len(header)).alias("malformed"),
    )


def polars_read_parquet(path: Path, landing_dir: Path) -> pl.LazyFrame:
    frame = pl.scan_parquet(path)
    schema = frame.collect_schema()
    _require_columns(path, schema)
    columns = []
    for name in TEXT_COLUMNS:
        dtype = schema.get(name)
        if dtype is None:
            columns.append(pl.lit(None, pl.String).alias(name))
        elif isinstance(dtype, pl.Datetime):
            utc = pl.col(name).dt.convert_time_zone("UTC") if dtype.time_zone else pl.col(name)
            columns.append(utc.dt.strftime(_TS_TEXT_POLARS).alias(name))
        else:
            columns.append(pl.col(name).cast(pl.String))
    return frame.select(
        *columns,
        pl.lit(_relative(path, landing_dir)).alias(SOURCE_FILE),
        pl.lit(False).alias("malformed"),
    )


def polars_read_landing(paths: list[Path], landing_dir: Path) -> pl.LazyFrame:
    """Every file as the raw contract, one LazyFrame."""
    readers = {"csv": polars_read_csv, "csv.gz": polars_read_csv, "parquet": polars_read_parquet}
    frames = [readers[landing_format(p)](p, landing_dir) for p in paths]
    if not frames:
        schema = {**dict.fromkeys(TEXT_COLUMNS, pl.String), SOURCE_FILE: pl.String}
        return pl.LazyFrame(schema={**schema, "malformed": pl.Boolean})
    return pl.concat(frames, how="vertical")


# --- DuckDB (the SQL baseline of the benchmark) ---------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_read_parquet(connection, path: Path, landing_dir: Path):
    """One Parquet landing file as the raw contract, a DuckDBPyRelation."""
    source = f"read_parquet({_sql_text(path.as_posix())})"
    described = connection.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
    schema = {row[0]: row[1] for row in described}
    _require_columns(path, schema)
    columns = []
    for name in TEXT_COLUMNS:
        dtype = schema.get(name)
        if dtype is None:
            columns.append(f"NULL::VARCHAR AS {name}")
        elif dtype.startswith("TIMESTAMP"):
            utc = f"timezone('UTC', {name})" if "TIME ZONE" in dtype else name
            columns.append(f"strftime({utc}, '%Y-%m-%d %H:%M:%S.%f') AS {name}")
        else:
            columns.append(f"CAST({name} AS VARCHAR) AS {name}")
    return connection.sql(
        f"SELECT {', '.join(columns)}, {_sql_text(_relative(path, landing_dir))} AS {SOURCE_FILE},"
        f" FALSE AS malformed FROM {source}"
    )


def duckdb_read_landing(connection, paths: list[Path], landing_dir: Path):
    """Every Parquet file as the raw contract, one DuckDBPyRelation (the baseline reads no CSV)."""
    not_parquet = [p for p in paths if landing_format(p) != "parquet"]
    if not_parquet or not paths:
        raise ValueError(f"the DuckDB baseline reads Parquet landing files only: {not_parquet}")
    relations = [duckdb_read_parquet(connection, p, landing_dir) for p in paths]
    combined = relations[0]
    for relation in relations[1:]:
        combined = combined.union(relation)
    return combined


# --- Spark ----------------------------------------------------------------------------------


def spark_read_csv(spark, path: Path, landing_dir: Path):
    from pyspark.sql import functions as F

    header = _csv_header(path)
    _require_columns(path, header)
    first_line = _csv_first_line(path)
    schema = ", ".join(f"`{name}` STRING" for name in header)
    lines = spark.read.text(str(path)).where(F.col("value") != first_line)
    fields = F.size(F.split(F.regexp_replace("value", _QUOTED_FIELD, ""), ",", -1))
    parsed = lines.select(
        F.from_csv("value", schema, {"mode": "PERMISSIVE"}).alias("_row"),
        (fields != len(header)).alias("malformed"),
    )
    columns = [
        (
            F.when(F.col(f"_row.`{c}`") == "", None).otherwise(F.col(f"_row.`{c}`"))
            if c in header
            else F.lit(None).cast("string")
        ).alias(c)
        for c in TEXT_COLUMNS
    ]
    return parsed.select(
        *columns, F.lit(_relative(path, landing_dir)).alias(SOURCE_FILE), "malformed"
    )


def spark_read_parquet(spark, path: Path, landing_dir: Path):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    frame = spark.read.parquet(str(path))
    types = {f.name: f.dataType for f in frame.schema.fields}
    _require_columns(path, types)
    columns = []
    for name in TEXT_COLUMNS:
        dtype = types.get(name)
        if dtype is None:
            columns.append(F.lit(None).cast("string").alias(name))
        elif isinstance(dtype, T.TimestampType | T.TimestampNTZType):
            # The session time zone is UTC, so a zoned timestamp prints in UTC.
            columns.append(F.date_format(name, _TS_TEXT_SPARK).alias(name))
        else:
            columns.append(F.col(name).cast("string").alias(name))
    return frame.select(
        *columns,
        F.lit(_relative(path, landing_dir)).alias(SOURCE_FILE),
        F.lit(False).alias("malformed"),
    )


def spark_read_landing(spark, paths: list[Path], landing_dir: Path):
    """Every file as the raw contract, one DataFrame."""
    from functools import reduce

    readers = {"csv": spark_read_csv, "csv.gz": spark_read_csv, "parquet": spark_read_parquet}
    frames = [readers[landing_format(p)](spark, p, landing_dir) for p in paths]
    if not frames:
        raise ValueError("no landing files to read")
    return reduce(lambda a, b: a.unionByName(b), frames)
