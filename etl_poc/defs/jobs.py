"""Jobs that CI and the demo run with `dagster job execute`; every job runs in one process,
so the Spark steps of a run share one session."""

import dagster as dg

from .checks import QUALITY_CHECKS
from .landing import LANDING_CLICKSTREAM

CHECK_LANDING_JOB = "check_landing"

check_landing = dg.define_asset_job(
    CHECK_LANDING_JOB,
    selection=dg.AssetSelection.checks_for_assets(LANDING_CLICKSTREAM),
    description="Lists the landing zone's files and fails when it is empty.",
)


def _lineage(engine: str) -> dg.AssetSelection:
    return dg.AssetSelection.groups(engine).without_checks()


def _quality_checks(engine: str) -> dg.AssetSelection:
    return dg.AssetSelection.checks(
        *(c for c in QUALITY_CHECKS if next(iter(c.check_keys)).asset_key.path[0] == engine)
    )


polars_etl = dg.define_asset_job(
    "polars_etl",
    selection=_lineage("polars") | _quality_checks("polars"),
    description="The Polars lineage and its quality checks, for a partition or a range (one "
    "run per range).",
    executor_def=dg.in_process_executor,
)
spark_etl = dg.define_asset_job(
    "spark_etl",
    selection=_lineage("spark") | _quality_checks("spark"),
    description="The Spark lineage and its quality checks, for a partition or a range (one "
    "Spark session per run). The checks against Polars run in compare_engines.",
    executor_def=dg.in_process_executor,
)
compare_engines = dg.define_asset_job(
    "compare_engines",
    selection=dg.AssetSelection.groups("polars", "spark"),
    description="Both lineages and the checks that they agree, for a partition or a range.",
    executor_def=dg.in_process_executor,
)

lakehouse_analytics = dg.define_asset_job(
    "lakehouse_analytics",
    selection=dg.AssetSelection.groups("analytics"),
    description="The analytical SQL over both engines' Iceberg tables (not partitioned).",
    executor_def=dg.in_process_executor,
)


# The layers alone, no checks: what the benchmark harness times against the same work
# without Dagster (lakehouse.plain_run).
def _bench_job(engine: str):
    return dg.define_asset_job(
        f"bench_{engine}",
        selection=_lineage(engine),
        description=f"The {engine} lineage without checks (the benchmark's orchestrated run).",
        executor_def=dg.in_process_executor,
    )


bench_polars, bench_spark = _bench_job("polars"), _bench_job("spark")

benchmark_report = dg.define_asset_job(
    "engine_benchmark",
    selection=dg.AssetSelection.groups("benchmark"),
    description="Polars vs Spark from the layers' recorded figures (not partitioned).",
    executor_def=dg.in_process_executor,
)

JOBS = [
    check_landing,
    polars_etl,
    spark_etl,
    compare_engines,
    lakehouse_analytics,
    bench_polars,
    bench_spark,
    benchmark_report,
]
