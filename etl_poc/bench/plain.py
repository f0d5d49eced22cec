"""The pipeline without the orchestrator, and the machine's I/O floor: what the benchmarks run
in fresh processes (`python -m etl_poc.bench.plain`).

`--engine polars|spark|duckdb` (layers): the same runner call the Dagster assets make for a
window (`Runner.run` of raw -> cleansed -> enriched -> sessionized -> Iceberg: Polars computes
that chain once), in one process, with no Dagster: the pipeline benchmark's measure of what
orchestration adds. `--chain`: the engine's whole logic `pipeline()` over the window in one plan, no layers, the results
written as Parquet: the engine benchmark. `--engine floor`: read every landing file and write
it back as Parquet with no transform (Polars' streaming engine): the least any engine can take
to go through this data on this machine. Prints a JSON line and writes it to <out>/result.json.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from etl_poc.logic.spec import ENGINES
from etl_poc.settings import settings


def run_layers(
    engine: str, data: Path, start: date, end: date, start_date: date, processed_at: datetime
) -> dict:
    """Every layer of the window through the engine's runner, as the assets call it; the
    runtime (a Spark session) from the settings, as the Dagster resources build it."""
    began = time.perf_counter()
    from etl_poc.lakehouse import iceberg
    from etl_poc.lakehouse.locks import window_lock
    from etl_poc.lakehouse.paths import Paths
    from etl_poc.lakehouse.runner import runner_module
    from etl_poc.logic.spec import LAYERS

    module, paths = runner_module(engine), Paths(data)
    runtime = module.start_runtime(settings())
    runner = module.Runner(paths, start_date, processed_at, runtime)
    ready = time.perf_counter()
    seconds: dict[str, float] = {}

    @contextmanager
    def phase(layer: str):  # a fused chain works its layers by turns: each one's sum
        began = time.perf_counter()
        yield
        seconds[layer] = seconds.get(layer, 0.0) + time.perf_counter() - began

    timeout = settings().lock_timeout_seconds
    with window_lock(paths, engine, start, end, "plain-run", timeout):
        catalog = iceberg.open_catalog(paths.warehouse)
        names = [layer.name for layer in LAYERS]
        results = dict(runner.run(names, start, end, "plain-run", catalog, phase))
    result = results["events"]
    module.stop_runtime(runtime)
    return {
        "engine": engine,
        "startup_seconds": ready - began,
        "seconds": time.perf_counter() - began,
        "layer_seconds": seconds,
        "fused_chain": runner.fuses_chain,
        "rows": result.rows,
    }


def _chain_polars(files, landing, out, window, when) -> tuple[int, int]:
    import polars as pl

    from etl_poc.lakehouse.landing_readers import polars_read_landing
    from etl_poc.logic import polars_engine
    from etl_poc.reference.ip_ranges import load_packaged_ranges

    ranges = load_packaged_ranges()
    prepared = polars_engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
    sessions, rejects = pl.collect_all(
        polars_engine.pipeline(
            polars_read_landing(files, landing), **window, **when, ranges=prepared
        )
    )
    sessions.write_parquet(out / "sessionized.parquet")
    rejects.write_parquet(out / "rejects.parquet")
    return sessions.height, rejects.height


def _chain_spark(files, landing, out, window, when) -> tuple[int, int]:
    from etl_poc.lakehouse.landing_readers import spark_read_landing
    from etl_poc.lakehouse.spark_runner import start_runtime, stop_runtime
    from etl_poc.logic import spark_engine
    from etl_poc.spark.session import spark_ip_ranges

    spark = start_runtime(settings())
    sessions, rejects = spark_engine.pipeline(
        spark_read_landing(spark, files, landing), **window, **when,
        ranges=spark_ip_ranges(spark),
    )  # fmt: skip
    # Actions: the writes are where Spark does the work, so they are inside the timing.
    sessions.write.mode("overwrite").parquet(str(out / "sessionized.parquet"))
    rejects.write.mode("overwrite").parquet(str(out / "rejects.parquet"))
    counts = tuple(
        spark.read.parquet(str(out / f"{name}.parquet")).count()
        for name in ("sessionized", "rejects")
    )
    stop_runtime(spark)
    return counts


def _chain_duckdb(files, landing, out, window, when) -> tuple[int, int]:
    """DuckDB reads the Parquet landing files itself and runs logic/duckdb_engine.py's
    statements on all cores, writing with COPY. Parquet only."""
    import duckdb

    from etl_poc.lakehouse.landing_readers import duckdb_read_landing
    from etl_poc.logic import duckdb_engine
    from etl_poc.reference.ip_ranges import load_packaged_ranges

    ranges = load_packaged_ranges()
    connection = duckdb.connect()
    prepared = duckdb_engine.prepare_ranges(
        connection.from_arrow(ranges.ipv4.to_arrow()), connection.from_arrow(ranges.ipv6.to_arrow())
    )
    sessions, rejects = duckdb_engine.pipeline(
        duckdb_read_landing(connection, files, landing), **window, **when, ranges=prepared
    )
    counts = []
    for name, relation in (("sessionized", sessions), ("rejects", rejects)):
        relation.write_parquet(str(out / f"{name}.parquet"))
        sql = f"SELECT count(*) FROM read_parquet('{out / f'{name}.parquet'}')"
        counts.append(connection.sql(sql).fetchall()[0][0])
    return counts[0], counts[1]


_CHAINS = {"polars": _chain_polars, "spark": _chain_spark, "duckdb": _chain_duckdb}


def run_chain(
    engine: str, data: Path, out: Path, start: date, end: date, start_date: date,
    processed_at: datetime, formats: tuple[str, ...] = ("parquet",),
) -> dict:  # fmt: skip
    """The engine's logic pipeline() over the landing files of these formats, in one
    process, to Parquet."""
    began = time.perf_counter()
    from etl_poc.lakehouse.paths import Paths

    landing = Paths(data).landing
    suffixes = {f".{name}" for name in formats}
    files = sorted(p for p in landing.rglob("*") if p.is_file() and p.suffix in suffixes)
    window = {"start": start, "end": end}
    when = {"start_date": start_date, "processed_at": processed_at}
    rows, rejects = _CHAINS[engine](files, landing, out, window, when)
    return {
        "engine": engine,
        "seconds": time.perf_counter() - began,
        "rows": rows,
        "rejects": rejects,
    }


def run_floor(data: Path, out: Path) -> dict:
    began = time.perf_counter()
    import polars as pl

    from etl_poc.lakehouse.landing_zone import scan_landing_zone
    from etl_poc.lakehouse.paths import Paths

    landing = Paths(data).landing
    files = [landing / f.path for f in scan_landing_zone(landing)]
    parquet = [f for f in files if f.suffix == ".parquet"]
    if not parquet:
        raise FileNotFoundError(f"no Parquet landing files under {landing}")
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


def _landing_window(data: Path, start_date: date) -> tuple[date, date]:
    from etl_poc.lakehouse.landing_zone import landing_window
    from etl_poc.lakehouse.paths import Paths

    found = landing_window(Paths(data).landing_index, start_date, datetime.now(UTC).date())
    if found is None:
        raise FileNotFoundError(f"no landing files under {Paths(data).landing}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=[*ENGINES, "floor"], required=True)
    parser.add_argument("--data", type=Path, required=True, help="the data directory")
    parser.add_argument("--chain", action="store_true", help="the logic pipeline, no layers")
    parser.add_argument(
        "--formats", default="parquet", help="the landing files --chain reads (default parquet)"
    )
    parser.add_argument("--start", type=date.fromisoformat, help="first day of the window")
    parser.add_argument("--last", type=date.fromisoformat, help="last day of the window")
    parser.add_argument("--start-date", type=date.fromisoformat, default=settings().start_date)
    parser.add_argument("--processed-at", type=datetime.fromisoformat)
    parser.add_argument("--out", type=Path, required=True, help="where the results go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    processed_at = args.processed_at or datetime.now(UTC)
    if args.engine == "floor":
        result = run_floor(args.data, args.out)
    else:
        if (args.start is None) != (args.last is None):
            parser.error("--start and --last go together")
        first, last = (
            (args.start, args.last) if args.start else _landing_window(args.data, args.start_date)
        )
        window = (first, last + timedelta(days=1))
        if args.chain:
            formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
            result = run_chain(
                args.engine, args.data, args.out, *window, args.start_date, processed_at, formats
            )
        else:
            result = run_layers(args.engine, args.data, *window, args.start_date, processed_at)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
