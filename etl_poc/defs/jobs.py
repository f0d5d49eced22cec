"""The jobs (the demo launches them through the daemon, `dg launch` in its own process);
every job runs in one process, so the Spark steps of a run share one session."""

import dagster as dg

from etl_poc.logic.spec import ENGINES

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


def engine_tag(engine: str) -> str:
    """The run tag of a job that writes an engine's windows: the queued run coordinator
    (dagster_home/dagster.yaml, docker/dagster.yaml) starts one such run per engine at a time, so runs wait
    in the queue rather than on the day locks (lakehouse.locks), which still guard every run."""
    return f"etl_poc/writes_{engine}"


def _job(name: str, selection: dg.AssetSelection, description: str, engines=()):
    """A job of the code location: in one process, so a run's Spark steps share a session."""
    return dg.define_asset_job(
        name,
        selection=selection,
        description=description,
        executor_def=dg.in_process_executor,
        tags={engine_tag(engine): "true" for engine in engines},
    )


def _etl_job(engine: str):
    return _job(
        f"{engine}_etl",
        _lineage(engine) | _quality_checks(engine),
        f"The {engine} lineage and its quality checks, for a partition or a range (one run per "
        "range; the checks against the reference engine run in compare_engines).",
        (engine,),
    )


# The layers alone, no checks: what the benchmark harness times against the same work
# without Dagster (bench/plain.py).
def _bench_job(engine: str):
    return _job(
        f"bench_{engine}",
        _lineage(engine),
        f"The {engine} lineage without checks (the benchmark's orchestrated run).",
        (engine,),
    )


compare_engines = _job(
    "compare_engines",
    dg.AssetSelection.groups(*ENGINES) | dg.AssetSelection.groups("reference"),
    "Every engine's lineage and the checks that they agree, for a partition or a range; the "
    "IP-to-country table they join against is recorded with each run (name, date, licence).",
    ENGINES,
)
lakehouse_analytics = _job(
    "lakehouse_analytics",
    dg.AssetSelection.groups("analytics"),
    "The analytical SQL over every engine's Iceberg tables (not partitioned).",
)
# Dagster names the asset `benchmark`'s op `benchmark`, and a job may not share a name with an op.
BENCHMARK_JOB = "benchmark_report"
benchmark_job = _job(
    BENCHMARK_JOB,
    dg.AssetSelection.groups("benchmark"),
    "The engines compared from the layers' recorded figures (not partitioned).",
)
maintain_lakehouse = _job(
    "maintain_lakehouse",
    dg.AssetSelection.groups("maintenance"),
    "Expire old Iceberg snapshots and remove the files nothing references.",
)

oltp_cdc = _job(
    "oltp_cdc",
    dg.AssetSelection.groups("oltp"),
    "The operational database loaded, its changes captured by Debezium into the Iceberg "
    "change logs, and the current state rebuilt and checked against the source.",
)

build_warehouse = _job(
    "build_warehouse",
    dg.AssetSelection.groups("warehouse"),
    "The dbt models of the warehouse and their tests, from the lakehouse's tables; the marts "
    "compared across engines.",
)

JOBS = [
    check_landing,
    *(_etl_job(engine) for engine in ENGINES),
    compare_engines,
    lakehouse_analytics,
    oltp_cdc,
    build_warehouse,
    *(_bench_job(engine) for engine in ENGINES),
    benchmark_job,
    maintain_lakehouse,
]
