"""The lakehouse's upkeep: old snapshots expired and files nothing references removed, on
every engine's Iceberg tables (lakehouse.iceberg.maintain does the work)."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from etl_poc.lakehouse import iceberg
from etl_poc.logic.spec import ENGINES
from etl_poc.report.units import mib
from etl_poc.settings import settings

from .assets import asset_key
from .metadata import OWNERS
from .resources import IcebergCatalog

LAKEHOUSE_MAINTENANCE = dg.AssetKey("lakehouse_maintenance")


class MaintenanceConfig(dg.Config):
    retention_hours: float = Field(
        default=settings().snapshot_retention_hours,
        description="Snapshots older than this are expired, and unreferenced files older than "
        "this removed (ETL_POC_SNAPSHOT_RETENTION_HOURS; 0: everything but the current "
        "snapshot, when nothing else writes).",
    )


@dg.asset(
    key=LAKEHOUSE_MAINTENANCE,
    deps=[asset_key(engine, "events") for engine in ENGINES],
    group_name="maintenance",
    owners=OWNERS,
    kinds={"iceberg"},
    description="Expires every engine's Iceberg snapshots older than the retention and removes "
    "the data and manifest files no remaining snapshot references (replaced windows, killed "
    "writers' parts), keeping anything younger than the retention.",
)
def lakehouse_maintenance(
    config: MaintenanceConfig, lakehouse: IcebergCatalog
) -> dg.MaterializeResult:
    if not lakehouse.exists():
        raise dg.Failure("no lakehouse yet: materialize the lineages first")
    catalog = lakehouse.catalog()
    older_than = datetime.now(UTC) - timedelta(hours=config.retention_hours)
    by_table = {}
    for engine in ENGINES:
        for layout in (iceberg.EVENTS, iceberg.REJECTS):
            identifier = f"{engine}.{layout.name}"
            if catalog.table_exists(identifier):
                by_table[identifier] = iceberg.maintain(catalog.load_table(identifier), older_than)
    totals = {
        key: sum(figures[key] for figures in by_table.values())
        for key in ("snapshots_before", "snapshots_after", "data_files_removed",
                    "metadata_files_removed", "bytes_removed")
    }  # fmt: skip
    removed = totals.pop("bytes_removed")
    return dg.MaterializeResult(
        metadata={
            **totals,
            "removed_mib": mib(removed),
            "older_than": older_than.isoformat(timespec="seconds"),
            "by_table": dg.MetadataValue.json(by_table),
        }
    )
