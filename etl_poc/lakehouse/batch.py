"""The whole chain on one engine, from landing files to Parquet, outside Dagster.

Used by the engine benchmark (each run in a fresh process) and as the plain baseline the
orchestrated runs are compared with. Writes <out>/sessionized.parquet, <out>/rejects.parquet
and <out>/timings.json (start-up and total seconds, rows).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

from etl_poc.reference.ip_ranges import load_packaged_ranges


def run_polars(
    files: list[Path], landing_dir: Path, out: Path, start_date: date, processed_at: datetime
) -> dict:
    started = time.perf_counter()
    import polars as pl

    from etl_poc.lakehouse.landing_readers import polars_read_landing
    from etl_poc.logic import polars_engine as engine

    ranges = load_packaged_ranges()
    ready = time.perf_counter()
    raw = polars_read_landing(files, landing_dir)
    std = engine.standardize(raw, start_date=start_date, processed_at=processed_at)
    prepared = engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
    # Each layer is materialized, as the asset graph persists it: branching plans (rejects and
    # clean rows from one standardized frame) would otherwise be computed more than once.
    rejects, clean = pl.collect_all([engine.rejected(std), engine.deduplicate(std)])
    enriched = engine.enrich(clean.lazy(), prepared).collect()
    sessionized = engine.sessionize(enriched.lazy()).collect()
    sessionized.write_parquet(out / "sessionized.parquet")
    rejects.write_parquet(out / "rejects.parquet")
    return {
        "engine": "polars",
        "startup_seconds": ready - started,
        "seconds": time.perf_counter() - started,
        "rows": sessionized.height,
        "rejects": rejects.height,
    }


def run_duckdb(
    files: list[Path], landing_dir: Path, out: Path, start_date: date, processed_at: datetime
) -> dict:
    """The plain SQL baseline: DuckDB reads the Parquet landing files itself, runs
    logic/duckdb_sql.py's statements on all cores and writes with COPY. Parquet only."""
    started = time.perf_counter()
    import duckdb

    from etl_poc.lakehouse.landing_readers import duckdb_read_landing
    from etl_poc.logic import duckdb_sql as engine

    ranges = load_packaged_ranges()
    connection = duckdb.connect()
    prepared = engine.prepare_ranges(
        connection.from_arrow(ranges.ipv4.to_arrow()), connection.from_arrow(ranges.ipv6.to_arrow())
    )
    ready = time.perf_counter()
    raw = duckdb_read_landing(connection, files, landing_dir)
    std = engine.standardize(raw, start_date=start_date, processed_at=processed_at)
    # Materialized once, as the Polars run materializes each layer.
    std.create("standardized")
    std = connection.table("standardized")
    sessions = engine.sessionize(engine.enrich(engine.deduplicate(std), prepared))
    sessions.write_parquet(str(out / "sessionized.parquet"))
    engine.rejected(std).write_parquet(str(out / "rejects.parquet"))
    count = "SELECT count(*) FROM read_parquet('{}')"
    rows = connection.sql(count.format(out / "sessionized.parquet")).fetchall()[0][0]
    rejects = connection.sql(count.format(out / "rejects.parquet")).fetchall()[0][0]
    return {
        "engine": "duckdb",
        "startup_seconds": ready - started,
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "rejects": rejects,
    }


def run_spark(
    files: list[Path],
    landing_dir: Path,
    out: Path,
    start_date: date,
    processed_at: datetime,
    master: str,
) -> dict:
    started = time.perf_counter()

    from etl_poc.lakehouse.landing_readers import spark_read_landing
    from etl_poc.lakehouse.spark_session import build_spark_session, spark_ip_ranges
    from etl_poc.logic import spark_engine as engine

    spark = build_spark_session(master)

    prepared = spark_ip_ranges(spark)
    ready = time.perf_counter()
    raw = spark_read_landing(spark, files, landing_dir)
    std = engine.standardize(raw, start_date=start_date, processed_at=processed_at).cache()
    sessions = engine.sessionize(engine.enrich(engine.deduplicate(std), prepared))
    # Actions: the writes are where Spark does the work, so they are inside the timing.
    sessions.write.mode("overwrite").parquet(str(out / "sessionized.parquet"))
    engine.rejected(std).write.mode("overwrite").parquet(str(out / "rejects.parquet"))
    rows = spark.read.parquet(str(out / "sessionized.parquet")).count()
    rejects = spark.read.parquet(str(out / "rejects.parquet")).count()
    seconds = time.perf_counter() - started
    spark.stop()
    return {
        "engine": "spark",
        "startup_seconds": ready - started,
        "seconds": seconds,
        "rows": rows,
        "rejects": rejects,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=["polars", "spark", "duckdb"], required=True)
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--formats", default="parquet")
    parser.add_argument("--start-date", type=date.fromisoformat, default=date(2024, 1, 1))
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args(argv)
    suffixes = {f".{f.strip()}" for f in args.formats.split(",")}
    files = sorted(p for p in args.landing.rglob("*") if p.suffix in suffixes and p.is_file())
    args.out.mkdir(parents=True, exist_ok=True)
    processed_at = datetime.now(UTC)
    if args.engine in ("polars", "duckdb"):
        run = run_polars if args.engine == "polars" else run_duckdb
        result = run(files, args.landing, args.out, args.start_date, processed_at)
    else:
        result = run_spark(
            files, args.landing, args.out, args.start_date, processed_at, args.master
        )
    (args.out / "timings.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
