"""The asset graph's work without the orchestrator, and the machine's I/O floor.

`--engine polars|spark`: the same runner calls the Dagster assets make for a window (raw ->
cleansed -> enriched -> sessionized -> Iceberg), in one process, with no Dagster: the
benchmark's measure of what orchestration adds. `--engine floor`: read every landing file and
write it back as Parquet with no transform (Polars' streaming engine): the least any engine
can take to go through this data on this machine. Prints a JSON line and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

LAYERS = ("raw", "cleansed", "enriched", "sessionized")


def run_layers(
    engine: str,
    data: Path,
    start: date,
    end: date,
    start_date: date,
    processed_at: datetime,
    master: str = "local[*]",
    executor_memory: str = "4g",
) -> dict:
    began = time.perf_counter()
    from etl_poc.lakehouse import iceberg
    from etl_poc.lakehouse.runners import Paths, PolarsRunner, SparkRunner, polars_options

    paths = Paths(data)
    if engine == "polars":
        # ETL_POC_POLARS_CHUNK_ROWS and ETL_POC_POLARS_ENGINE, as the Dagster resource reads them
        runner = PolarsRunner(paths, start_date, processed_at, **polars_options())
    else:
        from etl_poc.lakehouse.spark_session import build_spark_session

        # ETL_POC_SPARK_DRIVER_MEMORY and ETL_POC_SPARK_DRIVER_HOST, as the Dagster resource
        driver_memory = os.environ.get("ETL_POC_SPARK_DRIVER_MEMORY") or "8g"
        driver_host = os.environ.get("ETL_POC_SPARK_DRIVER_HOST") or "127.0.0.1"
        session = build_spark_session(
            master, driver_memory, executor_memory=executor_memory, driver_host=driver_host
        )
        runner = SparkRunner(paths, start_date, processed_at, session)
    ready = time.perf_counter()
    seconds = {}
    for layer in LAYERS:
        step = time.perf_counter()
        getattr(runner, layer)(start, end)
        seconds[layer] = time.perf_counter() - step
    step = time.perf_counter()
    result = runner.events(start, end, "plain-run", iceberg.open_catalog(paths.warehouse))
    seconds["events"] = time.perf_counter() - step
    if engine == "spark":
        runner.spark.stop()
    return {
        "engine": engine,
        "startup_seconds": ready - began,
        "seconds": time.perf_counter() - began,
        "layer_seconds": seconds,
        "rows": result.rows,
    }


def run_floor(data: Path, out: Path) -> dict:
    began = time.perf_counter()
    import polars as pl

    from etl_poc.lakehouse.landing_zone import scan_landing_zone

    files = [data / "landing" / f.path for f in scan_landing_zone(data / "landing")]
    parquet = [f for f in files if f.suffix == ".parquet"]
    if not parquet:
        raise FileNotFoundError(f"no Parquet landing files under {data / 'landing'}")
    target = out / "floor.parquet"
    pl.scan_parquet(parquet).sink_parquet(target, compression="zstd")
    rows = pl.scan_parquet(target).select(pl.len()).collect().item()
    size = target.stat().st_size
    target.unlink()
    return {
        "engine": "floor",
        "startup_seconds": 0.0,
        "seconds": time.perf_counter() - began,
        "rows": rows,
        "bytes_read": sum(f.stat().st_size for f in parquet),
        "bytes_written": size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=["polars", "spark", "floor"], required=True)
    parser.add_argument("--data", type=Path, required=True, help="the data directory")
    parser.add_argument("--start", type=date.fromisoformat, help="first day of the window")
    parser.add_argument("--last", type=date.fromisoformat, help="last day of the window")
    parser.add_argument("--start-date", type=date.fromisoformat, default=date(2024, 1, 1))
    parser.add_argument("--processed-at", type=datetime.fromisoformat)
    parser.add_argument("--master", default="local[*]", help="Spark's master URL")
    parser.add_argument("--executor-memory", default="4g", help="per executor (spark:// only)")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.engine == "floor":
        result = run_floor(args.data, args.out)
    else:
        if args.start is None or args.last is None:
            parser.error("--start and --last are needed for an engine run")
        processed_at = args.processed_at or datetime.now(UTC)
        result = run_layers(
            args.engine, args.data, args.start, args.last + timedelta(days=1),
            args.start_date, processed_at, args.master, args.executor_memory,
        )  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
