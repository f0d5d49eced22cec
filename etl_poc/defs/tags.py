"""The run tags the project reads and writes: Dagster's partition tags (a single partition, or
the range of a single-run backfill) and the processing time a run judges 'in the future' by.
Plain strings, so the command line and the harness use them without importing Dagster."""

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PROCESSED_AT_TAG = "etl_poc/processed_at"


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run over the daily partitions first..last (inclusive)."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}
