"""Checks in the graph: both engines' layers equal row for row, per run window.

Dagster runs asset checks per asset, not per partition, so a check takes its window from the
run's partition tags (a single partition or a range), as the assets of the same run do.
"""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.runners import read_layer
from etl_poc.logic.compare import Comparison, compare_frames

from .assets import LAYERS, _markdown, asset_key
from .resources import DataDirectory

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_window(tags: dict[str, str]) -> tuple[date, date]:
    """The window [start, end) of a run from its partition tags (daily partition keys)."""
    if PARTITION_TAG in tags:
        first = last = date.fromisoformat(tags[PARTITION_TAG])
    elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        first = date.fromisoformat(tags[RANGE_START_TAG])
        last = date.fromisoformat(tags[RANGE_END_TAG])
    else:
        raise dg.Failure("this check compares a partition window: run it with a partition")
    return first, last + timedelta(days=1)


def _iceberg_window(data_dir: DataDirectory, engine: str, start: date, end: date) -> pl.DataFrame:
    catalog = iceberg.open_catalog(data_dir.paths.warehouse)
    table = iceberg.table_for(catalog, engine, iceberg.EVENTS)
    scan = table.scan(row_filter=iceberg.window_filter(iceberg.EVENTS, start, end))
    return pl.from_arrow(scan.to_arrow())


def _result(comparison: Comparison, start: date, end: date) -> dg.AssetCheckResult:
    metadata = {
        "window": f"[{start}, {end})",
        "polars_rows": comparison.left_rows,
        "spark_rows": comparison.right_rows,
        "summary": comparison.summary(),
    }
    if not comparison.equal:
        metadata["only_polars_sample"] = dg.MetadataValue.md(_markdown(comparison.only_left))
        metadata["only_spark_sample"] = dg.MetadataValue.md(_markdown(comparison.only_right))
    return dg.AssetCheckResult(passed=comparison.equal, metadata=metadata)


def _equivalence_check(layer: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key("spark", layer),
        additional_deps=[asset_key("polars", layer)],
        name="same_rows_as_polars",
        blocking=True,
        description=f"Spark's {layer} window equals Polars' row for row (canonical sort, "
        "aligned types); on a difference, counts and sample rows of each side.",
    )
    def _check(context: dg.AssetCheckExecutionContext, data_dir: DataDirectory):
        start, end = run_window(context.run.tags)
        if layer == "events":
            polars_rows = _iceberg_window(data_dir, "polars", start, end)
            spark_rows = _iceberg_window(data_dir, "spark", start, end)
        else:
            polars_rows = read_layer(data_dir.paths, "polars", layer, start, end)
            spark_rows = read_layer(data_dir.paths, "spark", layer, start, end)
        return _result(compare_frames(polars_rows, spark_rows), start, end)

    return _check


EQUIVALENCE_CHECKS = [_equivalence_check(layer) for layer, _, _ in LAYERS]
