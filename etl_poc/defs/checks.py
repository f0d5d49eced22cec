"""Checks in the graph: every engine's layers equal the reference engine's (the first of
spec.ENGINES) row for row, and the quality rules hold on each engine's layers, per run window.

Dagster runs asset checks per asset, not per partition, so a check takes its window from the
run's partition tags (a single partition or a range), as the assets of the same run do; run
alone (its Execute button in the UI), from the latest materialization of its asset, and it
says in its metadata which window it compared.
"""

import warnings
from datetime import date, timedelta

import dagster as dg
import polars as pl

from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.logic import quality
from etl_poc.logic.compare import Comparison, compare_frames
from etl_poc.logic.spec import ENGINES, LAYER_NAMES

from .assets import asset_key
from .metadata import markdown_table, parse_window, window_text
from .resources import DataDirectory, IcebergCatalog
from .tags import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG

REFERENCE_ENGINE = ENGINES[0]
SAME_ROWS_CHECK = f"same_rows_as_{REFERENCE_ENGINE}"
ONE_RUN_CHECK = "events_and_rejects_from_one_run"
UNIQUE_IN_TABLE_CHECK = "event_ids_unique_in_table"


def run_window(tags: dict[str, str]) -> tuple[date, date] | None:
    """The window [start, end) of a run from its partition tags (daily partition keys); None
    for a run without them."""
    if PARTITION_TAG in tags:
        first = last = date.fromisoformat(tags[PARTITION_TAG])
    elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        first = date.fromisoformat(tags[RANGE_START_TAG])
        last = date.fromisoformat(tags[RANGE_END_TAG])
    else:
        return None
    return first, last + timedelta(days=1)


def check_window(context: dg.AssetCheckExecutionContext) -> tuple[date, date, str]:
    """The window a check compares, and how it was chosen: the run's partitions, or, for a
    check run on its own, the window of its asset's latest materialization."""
    window = run_window(context.run.tags)
    if window is not None:
        return *window, "the run's partitions"
    key = context.check_specs[0].asset_key
    records = context.instance.fetch_materializations(key, limit=1).records
    recorded = records[0].asset_materialization.metadata.get("window") if records else None
    if recorded is None:
        raise dg.Failure(
            f"{key.to_user_string()} has no materialization to check yet: materialize it, "
            "or run the check with a partition"
        )
    first, end = parse_window(recorded.value)
    return (
        first,
        end,
        f"the latest materialization of {key.to_user_string()} (run {records[0].run_id[:8]})",
    )


def _window_metadata(start: date, end: date, chosen: str) -> dict:
    window = window_text(start, end)
    return {"window": window, "compared": f"{window}: {chosen}"}


def read_layer(
    data_dir: DataDirectory, lakehouse: IcebergCatalog, engine: str, layer: str, start, end
) -> pl.DataFrame:
    """A layer's window as an engine wrote it (stored layers, or the Iceberg events table)."""
    if layer == "events":
        rows = iceberg.read_window(lakehouse.catalog(), engine, iceberg.EVENTS, start, end)
        return pl.DataFrame() if rows is None else rows
    return layer_store.read_layer(data_dir.paths.layers, engine, layer, start, end)


def _result(comparison: Comparison, engine: str, window: dict) -> dg.AssetCheckResult:
    reference = REFERENCE_ENGINE
    metadata = {
        **window,
        f"{reference}_rows": comparison.left_rows,
        f"{engine}_rows": comparison.right_rows,
        "summary": comparison.summary(),
    }
    if not comparison.equal:
        metadata[f"only_{reference}_sample"] = markdown_table(comparison.only_left)
        metadata[f"only_{engine}_sample"] = markdown_table(comparison.only_right)
    return dg.AssetCheckResult(passed=comparison.equal, metadata=metadata)


def _equivalence_check(engine: str, layer: str) -> dg.AssetChecksDefinition:
    reference = REFERENCE_ENGINE

    @dg.asset_check(
        asset=asset_key(engine, layer),
        additional_deps=[asset_key(reference, layer)],
        name=SAME_ROWS_CHECK,
        blocking=True,
        description=f"{engine}'s {layer} window equals {reference}'s row for row (canonical "
        "sort, aligned types); on a difference, counts and sample rows of each side.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, data_dir: DataDirectory, lakehouse: IcebergCatalog
    ):
        start, end, chosen = check_window(context)
        expected = read_layer(data_dir, lakehouse, reference, layer, start, end)
        found = read_layer(data_dir, lakehouse, engine, layer, start, end)
        return _result(
            compare_frames(expected, found), engine, _window_metadata(start, end, chosen)
        )

    return _check


EQUIVALENCE_CHECKS = [
    _equivalence_check(engine, layer) for engine in ENGINES[1:] for layer in LAYER_NAMES
]


def _rule_check(
    engine: str,
    layer: str,
    name: str,
    rule,
    reads: tuple[str, ...],
    description: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetChecksDefinition:
    """A check on one engine's layer: a rule of logic/quality.py applied to the windows of the
    layers it `reads`. An ERROR check blocks the layers downstream when it fails."""

    @dg.asset_check(
        asset=asset_key(engine, layer),
        name=name,
        blocking=severity == dg.AssetCheckSeverity.ERROR,
        description=description,
    )
    def _check(
        context: dg.AssetCheckExecutionContext, data_dir: DataDirectory, lakehouse: IcebergCatalog
    ):
        start, end, chosen = check_window(context)
        frames = [read_layer(data_dir, lakehouse, engine, read, start, end) for read in reads]
        passed, figures = rule(*frames)
        return dg.AssetCheckResult(
            passed=passed,
            severity=severity,
            metadata={**_window_metadata(start, end, chosen), **figures},
        )

    return _check


def _one_run_check(engine: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key(engine, "events"),
        name=ONE_RUN_CHECK,
        blocking=True,
        description="Every day of the window was last written by the same run in both Iceberg "
        "tables (events and rejects): a run killed between its two commits is found, naming "
        "the days; the next run of those days repairs it.",
    )
    def _check(context: dg.AssetCheckExecutionContext, lakehouse: IcebergCatalog):
        start, end, chosen = check_window(context)
        passed, figures = iceberg.tables_written_by_one_run(lakehouse.catalog(), engine, start, end)
        disagreeing = figures.pop("disagreeing")
        metadata = {**_window_metadata(start, end, chosen), **figures}
        if disagreeing:
            metadata["disagreeing_days"] = dg.MetadataValue.json(disagreeing)
        return dg.AssetCheckResult(passed=passed, metadata=metadata)

    return _check


def _table_check(engine: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key(engine, "events"),
        name=UNIQUE_IN_TABLE_CHECK,
        blocking=True,
        description="Every event_id once in the whole events table, not only in the run's "
        "window: an event replayed on another day is stored once (its earliest copy).",
    )
    def _check(lakehouse: IcebergCatalog):
        ids = iceberg.read_window(
            lakehouse.catalog(), engine, iceberg.EVENTS, columns=("event_id",)
        )
        passed, figures = quality.unique_event_ids(ids)
        return dg.AssetCheckResult(
            passed=passed, metadata={"compared": "the whole table", **figures}
        )

    return _check


def _quality_checks(engine: str) -> list[dg.AssetChecksDefinition]:
    """Per engine: the rules of logic/quality.py on the layers it wrote."""
    return [
        _rule_check(
            engine, "cleansed", "rows_conserved", quality.row_conservation,
            ("raw", "cleansed", "rejects"),
            "Raw rows = clean rows + rejected rows + duplicates removed.",
        ),
        _rule_check(
            engine, "enriched", "public_ips_have_a_country", quality.public_ips_with_country,
            ("enriched",),
            f"At least {quality.MIN_PUBLIC_WITH_COUNTRY:.0%} of public addresses get a country "
            "(the rest are in space the range table leaves unallocated).",
            severity=dg.AssetCheckSeverity.WARN,
        ),
        _rule_check(
            engine, "sessionized", "unique_ids_and_keys", quality.unique_ids_and_keys,
            ("sessionized",),
            "Every event_id once in the window; no null event_id, user_id, event_ts, "
            "event_date, session_id (event_ids_unique_in_table checks the whole table).",
        ),
        _rule_check(
            engine, "sessionized", "session_rule_holds", quality.session_rule,
            ("sessionized",),
            "No gap over 30 minutes inside a session; a user's consecutive sessions more than "
            "30 minutes apart.",
        ),
        _one_run_check(engine),
        _table_check(engine),
    ]  # fmt: skip


QUALITY_CHECKS = [check for engine in ENGINES for check in _quality_checks(engine)]


# Dagster's own: a layer's columns (names and types) unchanged since its previous
# materialization (WARN: a change is worth a look, not a stop).
with warnings.catch_warnings():  # beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)
    SCHEMA_CHANGE_CHECKS = dg.build_column_schema_change_checks(
        assets=[asset_key(engine, layer) for engine in ENGINES for layer in LAYER_NAMES]
    )
