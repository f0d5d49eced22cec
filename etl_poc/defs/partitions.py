"""Daily partitions (UTC) from ETL_POC_START_DATE to ETL_POC_END_DATE (open-ended when it is
empty): every partitioned asset imports this one."""

from datetime import timedelta

import dagster as dg

from .resources import LAST_PARTITION, START_DATE

daily = dg.DailyPartitionsDefinition(
    start_date=START_DATE.isoformat(),
    # Dagster's end date is exclusive; the setting names the last day.
    end_date=(LAST_PARTITION + timedelta(days=1)).isoformat() if LAST_PARTITION else None,
    timezone="UTC",
)
