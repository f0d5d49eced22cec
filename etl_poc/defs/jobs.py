"""Jobs that CI and the demo run with `dagster job execute`."""

import dagster as dg

from .landing import LANDING_CLICKSTREAM

CHECK_LANDING_JOB = "check_landing"

check_landing = dg.define_asset_job(
    CHECK_LANDING_JOB,
    selection=dg.AssetSelection.checks_for_assets(LANDING_CLICKSTREAM),
    description="Lists the landing zone's files and fails when it is empty.",
)
