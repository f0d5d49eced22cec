"""The Dagster code location: assembles Definitions from defs/ and nothing else."""

import warnings

import dagster as dg

from etl_poc.defs.analytics import clickstream_analytics
from etl_poc.defs.assets import ENGINE_ASSETS, ip_country_ranges
from etl_poc.defs.automation import (
    compare_engines_daily,
    declarative_automation,
    landing_files_changed,
)
from etl_poc.defs.benchmark import benchmark
from etl_poc.defs.checks import EQUIVALENCE_CHECKS, QUALITY_CHECKS, SCHEMA_CHANGE_CHECKS
from etl_poc.defs.jobs import JOBS
from etl_poc.defs.landing import (
    every_landing_file_ingested,
    landing_clickstream,
    landing_files_present,
)
from etl_poc.defs.maintenance import lakehouse_maintenance
from etl_poc.defs.monitoring import killed_runs_fail
from etl_poc.defs.oltp import OLTP_ASSETS
from etl_poc.defs.resources import RESOURCES
from etl_poc.defs.stream import STREAM_ASSETS, STREAM_JOBS, STREAM_SCHEDULES
from etl_poc.defs.warehouse import WAREHOUSE_ASSETS, WAREHOUSE_CHECKS

with warnings.catch_warnings():  # source code references are beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)
    # Each asset links to the lines of code that define it.
    ASSETS = dg.with_source_code_references(
        [
            landing_clickstream,
            ip_country_ranges,
            *ENGINE_ASSETS,
            clickstream_analytics,
            *OLTP_ASSETS,
            *WAREHOUSE_ASSETS,
            *STREAM_ASSETS,
            benchmark,
            lakehouse_maintenance,
        ]
    )

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[
        landing_files_present,
        every_landing_file_ingested,
        *EQUIVALENCE_CHECKS,
        *QUALITY_CHECKS,
        *SCHEMA_CHANGE_CHECKS,
        *WAREHOUSE_CHECKS,
    ],
    jobs=[*JOBS, *STREAM_JOBS],
    schedules=[compare_engines_daily, *STREAM_SCHEDULES],
    sensors=[landing_files_changed, declarative_automation, killed_runs_fail],
    resources=RESOURCES,
    executor=dg.in_process_executor,
)
