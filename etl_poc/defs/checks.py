"""Checks in the graph: both engines' layers equal row for row, per run window.

Dagster runs asset checks per asset, not per partition, so a check takes its window from the
run's partition tags (a single partition or a range), as the assets of the same run do.
"""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.runners import read_layer
from etl_poc.logic import quality
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


def _figures(figures: dict, start: date, end: date) -> dict:
    return {"window": f"[{start}, {end})", **figures}


def _quality_checks(engine: str) -> list[dg.AssetChecksDefinition]:
    """Per engine: the rules of logic/quality.py on the layers it wrote; the ones that guard
    correctness block the layers downstream."""

    @dg.asset_check(
        asset=asset_key(engine, "cleansed"),
        name="rows_conserved",
        blocking=True,
        description="Raw rows = clean rows + rejected rows + duplicates removed.",
    )
    def rows_conserved(context: dg.AssetCheckExecutionContext, data_dir: DataDirectory):
        start, end = run_window(context.run.tags)
        layers = {
            layer: read_layer(data_dir.paths, engine, layer, start, end)
            for layer in ("raw", "cleansed", "rejects")
        }
        passed, figures = quality.row_conservation(
            layers["raw"], layers["cleansed"], layers["rejects"]
        )
        return dg.AssetCheckResult(passed=passed, metadata=_figures(figures, start, end))

    @dg.asset_check(
        asset=asset_key(engine, "enriched"),
        name="public_ips_have_a_country",
        description=f"At least {quality.MIN_PUBLIC_WITH_COUNTRY:.0%} of public addresses get a "
        "country (the rest are in space the range table leaves unallocated).",
    )
    def public_ips_have_a_country(context: dg.AssetCheckExecutionContext, data_dir: DataDirectory):
        start, end = run_window(context.run.tags)
        enriched = read_layer(data_dir.paths, engine, "enriched", start, end)
        passed, figures = quality.public_ips_with_country(enriched)
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=_figures(figures, start, end),
        )

    @dg.asset_check(
        asset=asset_key(engine, "sessionized"),
        name="unique_ids_and_keys",
        blocking=True,
        description="Every event_id once; no null event_id, user_id, event_ts, event_date, "
        "session_id.",
    )
    def unique_ids_and_keys(context: dg.AssetCheckExecutionContext, data_dir: DataDirectory):
        start, end = run_window(context.run.tags)
        sessionized = read_layer(data_dir.paths, engine, "sessionized", start, end)
        passed, figures = quality.unique_ids_and_keys(sessionized)
        return dg.AssetCheckResult(passed=passed, metadata=_figures(figures, start, end))

    @dg.asset_check(
        asset=asset_key(engine, "sessionized"),
        name="session_rule_holds",
        blocking=True,
        description="No gap over 30 minutes inside a session; a user's consecutive sessions "
        "more than 30 minutes apart.",
    )
    def session_rule_holds(context: dg.AssetCheckExecutionContext, data_dir: DataDirectory):
        start, end = run_window(context.run.tags)
        sessionized = read_layer(data_dir.paths, engine, "sessionized", start, end)
        passed, figures = quality.session_rule(sessionized)
        return dg.AssetCheckResult(passed=passed, metadata=_figures(figures, start, end))

    return [rows_conserved, public_ips_have_a_country, unique_ids_and_keys, session_rule_holds]


QUALITY_CHECKS = [check for engine in ("polars", "spark") for check in _quality_checks(engine)]
