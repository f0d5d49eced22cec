"""Daily partitions (UTC) from ETL_POC_START_DATE: every partitioned asset imports this one."""

import dagster as dg

from .resources import START_DATE

daily = dg.DailyPartitionsDefinition(start_date=START_DATE.isoformat(), timezone="UTC")
