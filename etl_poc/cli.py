"""`etl-poc`: the project's command line (generate data, benchmark, report, query, the cluster
and the containers' helpers). Defaults come from settings.py."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

from etl_poc.generate.config import FORMATS, SIZES, DefectRates, GeneratorConfig
from etl_poc.logic.spec import ENGINES
from etl_poc.settings import settings


class UsageError(ValueError):
    """Arguments that parse but do not make sense together: exit 2, like argparse's errors."""


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"formats are a comma list of {', '.join(FORMATS)}")
    return chosen


def _defect_rate(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KIND=RATE, got {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="write realistic, dirty clickstream landing files and their manifest",
        description="Write bulk and incremental clickstream files (CSV and/or Parquet) and a "
        "JSON manifest that counts every injected defect. The same --seed gives identical files.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", choices=sorted(SIZES, key=SIZES.get), default=None,
                      help="small 100K, medium 10M, large 100M events (default small)")  # fmt: skip
    size.add_argument("--events", type=_positive, help="an exact number of events instead")
    p.add_argument("--label", help="name used in file names (default: the size, or N events)")
    p.add_argument("--formats", type=_formats, default=FORMATS, help="csv,parquet (default both)")
    p.add_argument("--out", type=Path, default=Path("data/landing"), help="default data/landing")
    p.add_argument("--oltp-out", type=Path,
                   help="where oltp/ (the operational tables) goes (default: beside --out)")  # fmt: skip
    p.add_argument("--start-date", type=date.fromisoformat, default=settings().start_date)
    p.add_argument("--days", type=_positive, default=30, help="days of bulk history (30)")
    p.add_argument("--incremental-days", type=int, default=3, help="one file per day after (3)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--users", type=_positive, help="number of users (default events / 40)")
    p.add_argument("--dirty-scale", type=float, default=1.0,
                   help="multiply every default defect rate (0 gives clean data)")  # fmt: skip
    p.add_argument("--defect-rate", type=_defect_rate, action="append", default=[],
                   metavar="KIND=RATE", help=f"override one rate; kinds: {', '.join(DefectRates().as_dict())}")  # fmt: skip
    p.add_argument("--workers", type=int, help="rendering processes (default: 2 from 5M events)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_generate(args) -> int:
    from etl_poc.generate.landing import foreign_files, generate

    try:
        defects = DefectRates().scaled(args.dirty_scale).with_overrides(dict(args.defect_rate))
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.events is not None:
        events, label = args.events, args.label or f"{args.events}ev"
    else:
        size = args.size or "small"
        events, label = SIZES[size], args.label or size
    config = GeneratorConfig(
        events=events,
        label=label,
        out_dir=args.out,
        formats=args.formats,
        start_date=args.start_date,
        days=args.days,
        incremental_days=args.incremental_days,
        seed=args.seed,
        users=args.users,
        defects=defects,
        workers=args.workers,
        progress=False if args.no_progress else None,
        oltp_dir=args.oltp_out,
    )
    result = generate(config)
    manifest = result.manifest
    print(
        f"Generated {events:,} events ({manifest['users']:,} users) in {result.seconds:.1f} s "
        f"({result.events_per_second / 1e6:.2f} M events/s) under {config.out_dir}/"
    )
    for entry in manifest["files"]:
        for path in entry["paths"].values():
            print(f"  {path:55s} {entry['rows']:>12,} rows")
    defects_found = {k: v for k, v in manifest["defects"].items() if v}
    print(f"  defects: {sum(defects_found.values()):,} rows: " + ", ".join(
        f"{k} {v:,}" for k, v in defects_found.items()))  # fmt: skip
    oltp = manifest["operational"]
    print(
        f"  operational tables: {config.oltp_root / oltp['directory']}/ ({oltp['orders']:,} "
        f"orders, {oltp['order_items']:,} items, ${oltp['revenue']:,.2f}; changes: "
        + ", ".join(f"{t} {sum(c.values()):,}" for t, c in oltp["changes"].items())
        + ")"
    )
    print(f"  manifest: {result.manifest_path}")
    others = foreign_files(config)
    if others:
        print(
            f"warning: {len(others)} other landing file(s) under {config.out_dir} were not written "
            f"by this run and would be ingested too, e.g. {others[0]}",
            file=sys.stderr,
        )
    return 0


def _bench_size(text: str) -> str:
    if text in SIZES or (text.isdigit() and int(text) > 0):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use {', '.join(SIZES)} or a number of events")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks, run in fresh processes and repeated")
    which = p.add_subparsers(dest="benchmark", required=True)
    g = which.add_parser("generator", help="time the clickstream generator")
    g.add_argument("--size", choices=sorted(SIZES, key=SIZES.get), default="medium")
    g.add_argument("--repeat", type=_positive, default=3)
    g.add_argument("--formats", default="parquet", help="what to write (default parquet)")
    g.add_argument("--reports", type=Path, default=settings().reports_dir)
    g.add_argument("--scratch", type=Path, help="where runs write (default: the system temp)")
    b = which.add_parser(
        "pipeline",
        help="each engine's full backfill through the asset graph, the same work without "
        "Dagster, and the I/O floor, in fresh processes",
    )
    b.add_argument(
        "--size",
        type=_bench_size,
        default="medium",
        help="small, medium, large, or a number of events (default medium)",
    )
    b.add_argument("--repeat", type=_positive, default=3)
    b.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma-separated: {', '.join(ENGINES)}"
    )
    b.add_argument(
        "--plain", default="polars", help="engines also run without Dagster (default polars)"
    )
    b.add_argument("--no-floor", action="store_true", help="skip the I/O floor runs")
    b.add_argument("--label", help="names the result files (default: the size)")
    b.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every run, recorded with the results (repeatable), "
        "e.g. ETL_POC_POLARS_ENGINE=streaming or ETL_POC_SPARK_DRIVER_MEMORY=2g",
    )
    b.add_argument(
        "--cpus", help="run every process on these CPUs only (taskset -c), e.g. 0 for one core"
    )
    b.add_argument(
        "--reports",
        type=Path,
        default=settings().measurements_dir,
        help="where the results go (default $ETL_POC_MEASUREMENTS_DIR or measurements/, kept "
        "in the repository: make report reads them)",
    )
    b.add_argument(
        "--scratch",
        type=Path,
        default=settings().bench_dir,
        help="where the data and runs go (default $ETL_POC_BENCH_DIR or bench-data); the "
        "landing data is generated there once per size",
    )
    e = which.add_parser(
        "engines", help="the whole chain on every engine (Polars, Spark, DuckDB), same files"
    )
    _add_data_option(e)
    e.add_argument("--label", default="custom", help="names the report file")
    e.add_argument("--repeat", type=_positive, default=1)
    e.add_argument("--reports", type=Path, default=settings().reports_dir)
    e.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated, from {', '.join(ENGINES)}",
    )


def _engine_list(text: str, allowed: set[str]) -> tuple[str, ...]:
    engines = tuple(e.strip() for e in text.split(",") if e.strip())
    unknown = set(engines) - allowed
    if unknown:
        raise ValueError(f"unknown engine(s) {sorted(unknown)}; use {', '.join(sorted(allowed))}")
    return engines


def _settings(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set {pair!r}: expected NAME=VALUE")
        settings[name.strip()] = value
    return settings


def _run_bench(args) -> int:
    if args.benchmark == "pipeline":
        from etl_poc.bench.pipeline import run_pipeline_benchmark

        engines = _engine_list(args.engines, set(ENGINES))
        if not engines:
            raise ValueError("--engines: name at least one engine")
        result = run_pipeline_benchmark(
            args.size, args.repeat, args.reports, args.scratch, engines,
            _engine_list(args.plain, set(ENGINES)), floor=not args.no_floor,
            label=args.label, settings=_settings(args.set), cpus=args.cpus,
        )  # fmt: skip
        for name, value in result["summary"]["derived"].items():
            print(f"{name}: {value:.3f}")
        print(f"report: {args.reports / f'benchmark-{args.label or args.size}.md'}")
        return 0
    if args.benchmark == "engines":
        from etl_poc.bench.engines import run_engine_benchmark

        engines = _engine_list(args.engines, set(ENGINES))
        if not engines:
            raise ValueError("--engines: name at least one engine")
        run_engine_benchmark(args.data, args.label, args.repeat, args.reports, engines)
        return 0
    from etl_poc.bench.generator import run_generator_benchmark

    _formats(args.formats)
    result = run_generator_benchmark(
        args.size, args.repeat, args.formats, args.reports, args.scratch
    )
    rate, wall, rss = result["events_per_second"], result["wall_seconds"], result["peak_rss_bytes"]
    print(
        f"generator, {args.size} ({result['events']:,} events, {args.formats}), "
        f"median of {args.repeat}: {wall['median']:.2f} s "
        f"[{wall['min']:.2f}-{wall['max']:.2f}], {rate['median'] / 1e6:.2f} M events/s, "
        f"peak RSS {rss['median'] / 2**30:.2f} GiB (max {rss['max'] / 2**30:.2f})"
    )
    return 0


def _add_data_option(p) -> None:
    p.add_argument(
        "--data",
        type=Path,
        default=settings().data_dir,
        help="the data directory (default $ETL_POC_DATA_DIR or data)",
    )


def _add_lakehouse_options(p) -> None:
    _add_data_option(p)
    p.add_argument(
        "--catalog-uri",
        default=settings().catalog_uri,
        help="SQLAlchemy URL of the Iceberg catalog (default $ETL_POC_CATALOG_URI, or the "
        "SQLite file <data>/warehouse/catalog.db)",
    )


def _catalog(args):
    """The lakehouse's catalog, or a clear error when nothing was materialized yet."""
    from etl_poc.lakehouse import iceberg
    from etl_poc.lakehouse.paths import Paths

    warehouse = Paths(args.data).warehouse
    if not iceberg.catalog_exists(warehouse, args.catalog_uri or None):
        raise ValueError(f"no lakehouse under {warehouse}: materialize the assets first")
    return iceberg.open_catalog(warehouse, args.catalog_uri or None)


def _add_window(sub) -> None:
    p = sub.add_parser(
        "window",
        help="the partition window the landing zone holds: FIRST...LAST for "
        "`dg launch --partition-range` (one run over every day of it), or --tags",
    )
    p.add_argument("--tags", action="store_true",
                   help="as the run tags of a range run instead (JSON)")  # fmt: skip
    _add_data_option(p)


def _run_window(args) -> int:
    import json
    from datetime import UTC, datetime

    from etl_poc.defs.tags import range_tags
    from etl_poc.lakehouse.landing_zone import landing_window
    from etl_poc.lakehouse.paths import Paths

    paths = Paths(args.data)
    window = landing_window(paths.landing_index, settings().start_date, datetime.now(UTC).date())
    if window is None:
        raise ValueError(f"no landing files under {paths.landing}: generate some first")
    first, last = window[0].isoformat(), window[1].isoformat()
    print(json.dumps(range_tags(first, last)) if args.tags else f"{first}...{last}")
    return 0


def _add_health(sub) -> None:
    p = sub.add_parser(
        "health",
        help="a container's health check: the URL answers 200 (default $ETL_POC_HEALTH_URL); "
        "without one, Java and the project start",
    )
    p.add_argument("url", nargs="?", default=settings().health_url)
    p.add_argument("--timeout", type=float, default=5.0)


def _run_health(args) -> int:
    import subprocess
    import urllib.error
    import urllib.request

    if args.url:
        try:
            with urllib.request.urlopen(args.url, timeout=args.timeout) as response:
                status = response.status
        except (urllib.error.URLError, OSError) as error:
            raise RuntimeError(f"{args.url}: {error}") from error
        if status != 200:
            raise RuntimeError(f"{args.url}: HTTP {status}")
        print(f"{args.url}: HTTP 200")
        return 0
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    if java.returncode != 0:
        raise RuntimeError(f"java -version failed: {java.stderr.strip()[:200]}")
    import etl_poc.definitions  # noqa: F401  (the code location loads)

    print("java and the code location load")
    return 0


def _add_cluster(sub) -> None:
    p = sub.add_parser(
        "cluster", help="a Spark standalone master and workers on 127.0.0.1 (pyspark's launcher)"
    )
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--workers", type=_positive, default=2)
    p.add_argument("--cores", type=_positive, default=1, help="cores per worker (default 1)")
    p.add_argument("--memory", default="6g", help="memory per worker (default 6g)")
    p.add_argument(
        "--state",
        type=Path,
        default=Path("spark-cluster"),
        help="pid files, logs and work directories (default spark-cluster)",
    )


def _run_cluster(args) -> int:
    from etl_poc.spark import cluster

    spec = cluster.ClusterSpec(args.workers, args.cores, args.memory, args.state)
    if args.action == "up":
        status = cluster.start(spec)
        workers = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
        print(
            f"Spark master {spec.master_url} with {len(workers)} worker(s), "
            f"{sum(w['cores'] for w in workers)} cores; UI http://127.0.0.1:{spec.master_ui_port}"
        )
        print(f"use it: ETL_POC_SPARK_MASTER={spec.master_url}; stop it: make cluster-down")
    elif args.action == "down":
        print(f"stopped {cluster.stop(spec)} Spark daemon(s)")
    else:
        status = cluster.master_status(spec)
        if status is None:
            print("no Spark master answers on 127.0.0.1")
            return 1
        for worker in status.get("workers", []):
            print(f"worker {worker['host']} {worker['state']} {worker['cores']} cores")
    return 0


def _add_summary(sub) -> None:
    p = sub.add_parser(
        "summary", help="what the lakehouse holds: rows, sessions, rejects, engines equal, checks"
    )
    _add_lakehouse_options(p)


def _add_query(sub) -> None:
    p = sub.add_parser(
        "query",
        help="one read-only SELECT in DuckDB over the lakehouse: views <engine>_events and "
        f"<engine>_rejects for {', '.join(ENGINES)} (no file or network access)",
    )
    p.add_argument("sql", help='e.g. "SELECT device, count(*) FROM polars_events GROUP BY 1"')
    _add_lakehouse_options(p)
    p.add_argument("--rows", type=_positive, default=50, help="rows to print (default 50)")


def _run_query(args) -> int:
    import duckdb
    import polars as pl

    from etl_poc.analytics.lakehouse_sql import read_only_session, run_read_only

    connection = read_only_session(_catalog(args))
    try:
        result = run_read_only(connection, args.sql)
    except duckdb.Error as error:
        raise ValueError(str(error).splitlines()[0]) from error
    with pl.Config(tbl_rows=args.rows, tbl_cols=-1, tbl_width_chars=200):
        print(result.head(args.rows))
    return 0


def _run_summary(args) -> int:
    import os

    from etl_poc.report.lakehouse_summary import summarize

    instance = None
    if os.environ.get("DAGSTER_HOME"):  # Dagster's own variable: its instance, if any
        import dagster as dg

        instance = dg.DagsterInstance.get()
    print(summarize(args.data, _catalog(args), instance))
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="REPORT.md and its charts from the benchmark files (measurements/benchmark-*.json)",
    )
    p.add_argument("--measurements", type=Path, default=settings().measurements_dir,
                   help="the harness's JSON files (default $ETL_POC_MEASUREMENTS_DIR or measurements)")  # fmt: skip
    p.add_argument("--out", type=Path, default=settings().reports_dir,
                   help="where REPORT.md goes (default $ETL_POC_REPORTS_DIR or reports)")  # fmt: skip


def _run_report(args) -> int:
    from etl_poc.report.report import build_report

    try:
        print(build_report(args.measurements, args.out))
    except FileNotFoundError as error:
        raise ValueError(str(error)) from error
    return 0


def _add_backup(sub) -> None:
    p = sub.add_parser(
        "backup",
        help="a backup of the data directory into DEST: the landing zone, the layers, and "
        "every Iceberg table at its current snapshot (restore it with `etl-poc restore`)",
    )
    p.add_argument("dest", type=Path, help="a directory that does not exist yet")
    _add_lakehouse_options(p)


def _run_backup(args) -> int:
    from etl_poc.lakehouse.backup import backup
    from etl_poc.lakehouse.paths import Paths

    manifest = backup(Paths(args.data), _catalog(args), args.dest)
    for name, table in manifest["tables"].items():
        print(f"{name}: {table['rows']:,} rows at snapshot {table['snapshot_id']}")
    print(f"backup: {args.dest}")
    return 0


def _add_restore(sub) -> None:
    p = sub.add_parser(
        "restore",
        help="restore a backup (etl-poc backup) into a data directory that holds no "
        "lakehouse: the tables are created anew under its own warehouse",
    )
    p.add_argument("source", type=Path, help="the backup's directory")
    _add_lakehouse_options(p)


def _run_restore(args) -> int:
    from etl_poc.lakehouse.backup import restore
    from etl_poc.lakehouse.paths import Paths

    restored = restore(args.source, Paths(args.data), args.catalog_uri or None)
    for name, rows in restored.items():
        print(f"{name}: {rows:,} rows restored")
    print(f"restored into {args.data}")
    return 0


def _first_last(text: str) -> tuple[str, str]:
    first, sep, last = text.partition("...")
    try:
        if not sep:
            raise ValueError
        return date.fromisoformat(first).isoformat(), date.fromisoformat(last).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST...LAST (dates), got {text!r}") from None


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="launch the demo's runs through Dagster's daemon, as from the UI",
        description="Start Dagster's webserver and daemon on 127.0.0.1 over $DAGSTER_HOME, "
        "then launch: a backfill of compare_engines over --bulk, one compare_engines run per "
        "day of --days, and each --job in order; so the UI's job pages, runs timeline and "
        "backfill history show them. Stops at the first failed run, saying why.",
    )
    p.add_argument("--bulk", type=_first_last, required=True, help="FIRST...LAST partitions")
    p.add_argument("--days", default="", help="comma list of days, one run each, in order")
    p.add_argument("--job", action="append", default=[], metavar="JOB[:CONFIG.yaml]",
                   help="a job to run after them, with a run config file (repeatable)")  # fmt: skip
    p.add_argument("--log", type=Path, required=True, help="Dagster's output goes here")


def _run_demo(args) -> int:
    import os

    import yaml

    from etl_poc.dagster_service import run_demo

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise ValueError("DAGSTER_HOME is not set: the runs need an instance to be kept in")
    jobs = []
    for item in args.job:
        name, _, config = item.partition(":")
        jobs.append((name, yaml.safe_load(Path(config).read_text()) if config else {}))
    days = [date.fromisoformat(d.strip()).isoformat() for d in args.days.split(",") if d.strip()]
    run_demo(Path(home), args.log, args.bulk, days, jobs)
    return 0


# Each command: how its arguments are declared, and what runs it.
def _add_cdc(sub) -> None:
    p = sub.add_parser(
        "cdc",
        help="the operational database into the lakehouse: load its tables and changes "
        "(from <data>/oltp), capture them with Debezium into the oltp change logs, rebuild "
        "the current state and compare it with the source",
    )
    _add_lakehouse_options(p)
    p.add_argument("--through", type=date.fromisoformat, default=None,
                   help="load the changes up to this day only (YYYY-MM-DD; default all)")  # fmt: skip
    p.add_argument("--steps", default="load,capture,rebuild,compare",
                   help="which steps, in this order (default all four)")  # fmt: skip
    p.add_argument("--batch-size", type=_positive, default=20_000,
                   help="changes per Debezium batch (each an Iceberg commit; default 20000)")  # fmt: skip
    p.add_argument("--oltp-url", default=settings().oltp_url,
                   help="the source PostgreSQL (default $ETL_POC_OLTP_URL, or an embedded "
                   "server under <data>/postgres)")  # fmt: skip


def _run_cdc(args) -> int:
    from etl_poc.lakehouse import iceberg
    from etl_poc.lakehouse.paths import Paths
    from etl_poc.oltp import sync

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - {"load", "capture", "rebuild", "compare"}
    if unknown:
        raise UsageError(f"--steps: unknown {sorted(unknown)}")
    paths = Paths(args.data)
    database = sync.Database(paths, args.oltp_url, settings().lock_timeout_seconds)
    catalog = iceberg.open_catalog(paths.warehouse, args.catalog_uri or None)
    status = 0
    if "load" in steps:
        loaded = sync.load(database, args.through)
        print(f"load: {len(loaded.applied)} days applied ({sum(loaded.applied.values()):,} "
              f"changes), {len(loaded.already)} already in; initial rows {loaded.initial_rows}")  # fmt: skip
    if "capture" in steps:
        result = sync.capture_changes(database, catalog, batch_size=args.batch_size)
        print(f"capture: {result.received:,} changes received in {result.seconds:.1f} s, "
              f"added {result.added}")  # fmt: skip
    if "rebuild" in steps:
        print(f"rebuild: {sync.rebuild(catalog)}")
    if "compare" in steps:
        for table, comparison in sync.compare(database, catalog).items():
            print(f"compare {table}: {comparison.summary()}")
            status = status or (0 if comparison.equal else 1)
    return status


def _add_warehouse(sub) -> None:
    p = sub.add_parser(
        "warehouse",
        help="the dbt warehouse (<data>/warehouse.duckdb): business figures from its marts, "
        "the analyst queries' latency, or dbt's docs",
    )
    p.add_argument("action", choices=["figures", "latency", "docs"],
                   help="figures: conversion, revenue by tier, top products; latency: p50/p95 "
                   "of each analyst query; docs: dbt docs generate")  # fmt: skip
    _add_data_option(p)
    p.add_argument("--repeat", type=_positive, default=20, help="latency: runs per query")


def _run_warehouse(args) -> int:
    import polars as pl

    from etl_poc.lakehouse.paths import Paths
    from etl_poc.warehouse import marts, project

    database = Paths(args.data).dbt_warehouse
    if not database.exists():
        raise ValueError(f"no warehouse at {database}: materialize the warehouse assets first")
    if args.action == "docs":
        project.run(database, ["docs", "generate"])
        print(f"dbt docs: {project.work_dir(database) / 'target' / 'index.html'} "
              f"(serve: cd {project.work_dir(database) / 'target'} && python -m http.server)")  # fmt: skip
        return 0
    if args.action == "latency":
        for m in marts.latencies(database, repeat=args.repeat):
            print(f"{m.name:32} p50 {m.p50_ms:8.2f} ms  p95 {m.p95_ms:8.2f} ms  "
                  f"({m.rows} rows){'' if m.within_target else '  over the 500 ms target'}")  # fmt: skip
        return 0
    with pl.Config(tbl_rows=12, tbl_cols=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):  # fmt: skip
        print("The warehouse's marts (dbt, DuckDB):")
        for title, name in [("Conversion and revenue by tier", "conversion_by_tier"),
                            ("Top products", "top_products")]:  # fmt: skip
            answer = marts.run_query(database, name)
            if name == "top_products":
                answer = answer.select("sales_rank", "product_id", "category", "price",
                                       "views", "orders", "units_sold", "gross_sales")  # fmt: skip
            print(f"\n{title} ({name}):")
            print(answer)
    return 0


def _add_stream(sub) -> None:
    p = sub.add_parser("stream", help="the speed layer: broker, producer, sessionizers, ClickHouse")
    which = p.add_subparsers(dest="action", required=True)
    b = which.add_parser("broker", help="a Tansu broker on a free loopback port, until Ctrl-C")
    r = which.add_parser("run", help="a streaming sessionizer service (--engine spark|polars)")
    r.add_argument("--engine", choices=("polars", "spark"), required=True)
    r.add_argument("--idle", type=float, default=None,
                   help="stop once the topic has had nothing new for this many seconds")  # fmt: skip
    r.add_argument("--max-batches", type=int, default=None)
    g = which.add_parser("produce", help="publish landing rows to the events topic")
    g.add_argument("--day", default=None, help="only the landing files of this day (YYYY-MM-DD)")
    g.add_argument("--rate", type=float, default=0.0, help="events per second (0: at full speed)")
    g.add_argument("--compression", default="lz4", help="lz4 (default), zstd, gzip, snappy, none")
    g.add_argument("--limit", type=int, default=None, help="at most this many events")
    s = which.add_parser(
        "status", help="a sessionizer's last status; exit 1 when older than --max-age (health)"
    )
    s.add_argument("--engine", choices=("polars", "spark"), required=True)
    s.add_argument("--max-age", type=float, default=None, help="seconds")
    f = which.add_parser("report", help="each engine's status, live funnel and reconciliation")
    d = which.add_parser("demo", help="broker, both sessionizers, the producer, then the report")
    d.add_argument("--rate", type=float, default=0.0, help="events per second (0: at full speed)")
    for q in (r, g):
        q.add_argument("--bootstrap", default=settings().kafka_bootstrap,
                       help="the broker (default $ETL_POC_KAFKA_BOOTSTRAP)")  # fmt: skip
    for q in (b, r, g, s, f, d):
        _add_data_option(q)


def _run_stream(args) -> int:
    from etl_poc.stream import broker as brokers
    from etl_poc.stream import service

    config = settings()
    if args.action == "broker":
        from etl_poc.lakehouse.paths import Paths

        with brokers.started(Paths(args.data).stream) as broker:
            brokers.ensure_topics(broker, service.topics_of(config))
            print(f"{broker.describe()}: ETL_POC_KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
            while True:
                time.sleep(3600)
    if args.action in ("run", "produce") and not args.bootstrap:
        raise UsageError("no broker: pass --bootstrap host:port or set ETL_POC_KAFKA_BOOTSTRAP "
                         "(etl-poc stream broker starts one)")  # fmt: skip
    if args.action == "run":
        status = service.run_sessionizer(
            args.engine, config, args.data, args.bootstrap,
            idle_seconds=args.idle, max_batches=args.max_batches,
        )  # fmt: skip
        print(json.dumps(status))
        return 0
    if args.action == "produce":
        from etl_poc.lakehouse.paths import Paths
        from etl_poc.stream import producer

        files = service.landing_files(args.data, args.day)
        with brokers.started(Paths(args.data).stream, args.bootstrap) as broker:
            topics = service.topics_of(config)
            brokers.ensure_topics(broker, topics)
            sent = producer.produce(
                broker, topics.events, files, Paths(args.data).landing,
                rate=args.rate, compression=args.compression, limit=args.limit,
            )  # fmt: skip
        print(f"{sent.events:,} events in {sent.seconds:.2f} s ({sent.rate:,.0f}/s)")
        return 0
    if args.action == "status":
        from etl_poc.lakehouse.paths import Paths
        from etl_poc.stream.sessionizer import read_status

        status = read_status(Paths(args.data).stream, args.engine)
        if status is None:
            raise RuntimeError(f"no status of the {args.engine} sessionizer under {args.data}")
        print(json.dumps(status))
        age = time.time() - status["updated_at"]
        if args.max_age is not None and age > args.max_age:
            raise RuntimeError(f"the {args.engine} sessionizer last reported {age:.0f} s ago")
        return 0
    if args.action == "report":
        return service.report(config, args.data)
    return service.demo(config, args.data, rate=args.rate)


COMMANDS = {
    "stream": (_add_stream, _run_stream),
    "cdc": (_add_cdc, _run_cdc),
    "warehouse": (_add_warehouse, _run_warehouse),
    "generate": (_add_generate, _run_generate),
    "bench": (_add_bench, _run_bench),
    "report": (_add_report, _run_report),
    "summary": (_add_summary, _run_summary),
    "query": (_add_query, _run_query),
    "window": (_add_window, _run_window),
    "cluster": (_add_cluster, _run_cluster),
    "health": (_add_health, _run_health),
    "backup": (_add_backup, _run_backup),
    "restore": (_add_restore, _run_restore),
    "demo": (_add_demo, _run_demo),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("etl-poc")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 when the command fails (one line on stderr saying why; set
    ETL_POC_TRACEBACK=1 for the traceback), 2 for a usage error (argparse's)."""
    import os

    parser = argparse.ArgumentParser(prog="etl-poc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except KeyboardInterrupt:
        parser.exit(130, f"etl-poc {args.command}: interrupted\n")
    except UsageError as error:
        parser.exit(2, f"etl-poc {args.command}: error: {error}\n")
    except Exception as error:
        if os.environ.get("ETL_POC_TRACEBACK"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if not isinstance(error, ValueError | RuntimeError | OSError | TimeoutError):
            message = f"{type(error).__name__}: {message}"
        parser.exit(1, f"etl-poc {args.command}: error: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
