"""Landing files -> the raw contract, for each engine: the one place where both read them.

The raw contract: the text columns of spec.TEXT_COLUMNS, `source_file` (the path under the
landing directory), `malformed` (a CSV record whose number of fields differs from the
header's) and `commerce` (the file has the commerce columns; a file without them reads them
as null). A file lacking a column of spec.REQUIRED_COLUMNS is refused, naming the file, the
line and the columns (the landing index quarantines it). CSV is read as RFC 4180 says (quoted
fields may hold commas, doubled quotes and line breaks; CRLF or LF line ends; a UTF-8
byte-order mark and spaces around header names are ignored; blank lines hold no record);
bytes that are not UTF-8 are read as U+FFFD (spec.INVALID_CHARACTER), which standardizing
rejects as INVALID_ENCODING. CSV empty fields are null (CSV cannot tell an empty text from a
missing one reliably); Parquet keeps what it holds, and a typed Parquet timestamp becomes ISO
text in UTC (naive means UTC), which cleansing parses like any other.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from etl_poc.lakehouse.landing_zone import landing_format, open_text_file
from etl_poc.logic.spec import (
    COMMERCE,
    COMMERCE_COLUMNS,
    REQUIRED_COLUMNS,
    SOURCE_FILE,
    TEXT_COLUMNS,
)

# A quoted CSV field, with "" as an escaped quote: removed before counting separators.
_QUOTED_FIELD = r'"(?:[^"]|"")*"'
# The same, or a quoted field still open at the end of a line (continued on the next).
_OPEN_OR_QUOTED_FIELD = r'"(?:[^"]|"")*(?:"|$)'
_TS_TEXT_POLARS = "%Y-%m-%d %H:%M:%S%.6f"
_TS_TEXT_SPARK = "yyyy-MM-dd HH:mm:ss.SSSSSS"


def _relative(path: Path, landing_dir: Path) -> str:
    return path.relative_to(landing_dir).as_posix()


def _require_columns(path: Path, present, where: str = "line 1") -> bool:
    """Refuse a file lacking a column of the contract, naming the file, where (the header
    line, or a Parquet file's schema) and the columns; whether it has the commerce columns
    (all of them, or none: a file written before they existed)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise ValueError(f"{path}: {where}: lacks required column(s) {', '.join(missing)}")
    lacking = [c for c in COMMERCE_COLUMNS if c not in present]
    if lacking and len(lacking) < len(COMMERCE_COLUMNS):
        raise ValueError(
            f"{path}: {where}: has some commerce columns but lacks {', '.join(lacking)} "
            f"(a file has all of {', '.join(COMMERCE_COLUMNS)} or none)"
        )
    return not lacking


def _csv_header(path: Path) -> list[str]:
    """The header's names: BOM and the spaces around each name removed."""
    with open_text_file(path) as handle:
        first = handle.readline().decode("utf-8-sig", errors="replace").rstrip("\r\n")
    if not first.strip():
        raise ValueError(f"{path}: line 1: empty, expected a header line")
    names = [name.strip().strip('"').strip() for name in first.split(",")]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: line 1: column(s) named twice: {', '.join(repeated)}")
    return names


# --- Polars ---------------------------------------------------------------------------------


def polars_read_csv(path: Path, landing_dir: Path) -> pl.LazyFrame:
    header = _csv_header(path)
    commerce = _require_columns(path, header)
    common = {"has_header": False, "skip_lines": 1, "encoding": "utf8-lossy"}
    rows = pl.scan_csv(
        path,
        schema=dict.fromkeys(header, pl.String),
        truncate_ragged_lines=True,
        missing_columns="insert",
        **common,
    )
    # The same file as physical lines, to count each record's fields outside quotes: a line
    # continues a record when the quotes before it are unbalanced (RFC 4180), and then
    # begins inside a quoted field; the records' counts are the sums of their lines'. One
    # row per record, as the CSV reader's.
    text = pl.col("_line").str.strip_suffix("\r")
    quotes = text.str.count_matches('"', literal=True)
    inside = (quotes.cum_sum() - quotes) % 2 == 1
    outside_quotes = pl.when(inside).then(pl.lit('"') + text).otherwise(text)
    commas = outside_quotes.str.replace_all(_OPEN_OR_QUOTED_FIELD, "").str.count_matches(",")
    records = (
        pl.scan_csv(
            path,
            separator="\x1f",
            quote_char=None,
            schema={"_line": pl.String},
            truncate_ragged_lines=True,
            empty_string_is_null=False,
            **common,
        )
        .select(_starts=~inside, _commas=commas.cum_sum(), _empty=text == "")
        .filter(pl.col("_starts").shift(-1, fill_value=True))  # the last line of each record
        .select(
            _fields=pl.col("_commas") - pl.col("_commas").shift(1, fill_value=0) + 1,
            _blank=pl.col("_starts") & pl.col("_empty"),
        )
    )
    # A line break inside a quoted field reads as LF on both engines (Spark's reader turns a
    # CRLF there into LF).
    text = {
        c: pl.col(c).str.replace_all("\r\n", "\n", literal=True) if c in header
        else pl.lit(None, pl.String)
        for c in TEXT_COLUMNS
    }  # fmt: skip
    columns = [pl.when(text[c] == "").then(None).otherwise(text[c]).alias(c) for c in TEXT_COLUMNS]
    return (
        pl.concat([rows, records], how="horizontal")
        .filter(~pl.col("_blank"))
        .select(
            *columns,
            pl.lit(_relative(path, landing_dir)).alias(SOURCE_FILE),
            (pl.col("_fields") != len(header)).alias("malformed"),
            pl.lit(commerce).alias(COMMERCE),
        )
    )


def polars_read_parquet(path: Path, landing_dir: Path) -> pl.LazyFrame:
    frame = pl.scan_parquet(path)
    schema = frame.collect_schema()
    commerce = _require_columns(path, schema, "schema")
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
        pl.lit(commerce).alias(COMMERCE),
    )


def polars_read_landing(paths: list[Path], landing_dir: Path) -> pl.LazyFrame:
    """Every file as the raw contract, one LazyFrame."""
    readers = {"csv": polars_read_csv, "csv.gz": polars_read_csv, "parquet": polars_read_parquet}
    frames = [readers[landing_format(p)](p, landing_dir) for p in paths]
    if not frames:
        schema = {**dict.fromkeys(TEXT_COLUMNS, pl.String), SOURCE_FILE: pl.String}
        return pl.LazyFrame(schema={**schema, "malformed": pl.Boolean, COMMERCE: pl.Boolean})
    return pl.concat(frames, how="vertical")


# --- DuckDB ---------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_read_parquet(connection, path: Path, landing_dir: Path):
    """One Parquet landing file as the raw contract, a DuckDBPyRelation."""
    source = f"read_parquet({_sql_text(path.as_posix())})"
    described = connection.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
    schema = {row[0]: row[1] for row in described}
    commerce = _require_columns(path, schema, "schema")
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
        f" FALSE AS malformed, {str(commerce).upper()} AS {COMMERCE} FROM {source}"
    )


def duckdb_read_landing(connection, paths: list[Path], landing_dir: Path):
    """Every file as the raw contract, one DuckDBPyRelation: Parquet read by DuckDB itself;
    CSV by the Polars reader above (RFC 4180 as this module states it, field counts and
    encoding included, which DuckDB's sniffing CSV reader does not judge alike), handed over
    as Arrow."""
    if not paths:
        raise ValueError("no landing files to read")
    parquet = [p for p in paths if landing_format(p) == "parquet"]
    text = [p for p in paths if landing_format(p) != "parquet"]
    relations = [duckdb_read_parquet(connection, p, landing_dir) for p in parquet]
    if text:
        contract = [
            *TEXT_COLUMNS,
            SOURCE_FILE,
            "malformed",
            COMMERCE,
        ]  # duckdb_read_parquet's order
        rows = polars_read_landing(text, landing_dir).select(contract).collect().to_arrow()
        relations.append(connection.from_arrow(rows))
    combined = relations[0]
    for relation in relations[1:]:
        combined = combined.union(relation)
    return combined


# --- Spark ----------------------------------------------------------------------------------


def spark_read_csv(spark, path: Path, landing_dir: Path):
    """Spark's own CSV reader, RFC 4180 (multiLine, "" as the escaped quote), a record with
    the wrong number of fields marked by its corrupt-record column."""
    from pyspark.sql import functions as F

    header = _csv_header(path)
    commerce = _require_columns(path, header)
    schema = ", ".join(f"_c{i} STRING" for i in range(len(header))) + ", _corrupt STRING"
    frame = spark.read.csv(
        str(path),
        schema=schema,
        header=True,
        enforceSchema=True,
        multiLine=True,
        escape='"',
        mode="PERMISSIVE",
        columnNameOfCorruptRecord="_corrupt",
        encoding="UTF-8",
    )
    last = len(header) - 1

    def column(name: str):
        if name not in header:  # a file from before the commerce columns
            return F.lit(None).cast("string").alias(name)
        index = header.index(name)
        value = F.col(f"_c{index}")
        if index == last:  # a CRLF line end: Spark's multi-line reader keeps the CR
            value = F.regexp_replace(value, "\r$", "")
        return F.when(value == "", None).otherwise(value).alias(name)

    return frame.select(
        *(column(c) for c in TEXT_COLUMNS),
        F.lit(_relative(path, landing_dir)).alias(SOURCE_FILE),
        F.col("_corrupt").isNotNull().alias("malformed"),
        F.lit(commerce).alias(COMMERCE),
    )


def spark_read_parquet(spark, path: Path, landing_dir: Path):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    frame = spark.read.parquet(str(path))
    types = {f.name: f.dataType for f in frame.schema.fields}
    commerce = _require_columns(path, types, "schema")
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
        F.lit(commerce).alias(COMMERCE),
    )


def spark_read_landing(spark, paths: list[Path], landing_dir: Path):
    """Every file as the raw contract, one DataFrame."""
    from functools import reduce

    readers = {"csv": spark_read_csv, "csv.gz": spark_read_csv, "parquet": spark_read_parquet}
    frames = [readers[landing_format(p)](spark, p, landing_dir) for p in paths]
    if not frames:
        raise ValueError("no landing files to read")
    return reduce(lambda a, b: a.unionByName(b), frames)
