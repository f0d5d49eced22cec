"""The Dagster code location: assembles Definitions from defs/ and nothing else."""

import dagster as dg

from etl_poc.defs.jobs import check_landing
from etl_poc.defs.landing import landing_clickstream, landing_files_present
from etl_poc.defs.resources import RESOURCES

defs = dg.Definitions(
    assets=[landing_clickstream],
    asset_checks=[landing_files_present],
    jobs=[check_landing],
    resources=RESOURCES,
)
