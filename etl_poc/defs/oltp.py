"""The operational database in the graph: the source tables (the shop's PostgreSQL, loaded
from the generator's files), their change logs captured by Debezium into Iceberg, and the
current state of each table rebuilt from its change log, with a check that it equals a SELECT
of the source. The work is etl_poc/oltp's; this only wires it and records what it cost."""

from datetime import date

import dagster as dg
import polars as pl

from etl_poc.logic.spec import OLTP_TABLES
from etl_poc.measure.usage import TreeSampler, Usage
from etl_poc.oltp import lake, sync

from .metadata import OWNERS, markdown_table
from .resources import IcebergCatalog, OperationalDatabase

GROUP = "oltp"
SOURCE = dg.AssetKey([GROUP, "source_database"])
EQUALS_SOURCE_CHECK = "equals_source"


def changes_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, f"{table}_changes"])


def state_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table])


def _usage_metadata(usage: Usage) -> dict:
    return {
        "seconds": round(usage.wall_seconds, 3),
        "cpu_seconds": round(usage.cpu_seconds, 3),
        "peak_rss_mib": round(usage.peak_rss_bytes / 2**20, 1),
    }


class LoadConfig(dg.Config):
    through: str = ""  # YYYY-MM-DD: load the changes up to this day only; empty: all


@dg.asset(
    key=SOURCE,
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
    description="The shop's operational PostgreSQL (users, products, orders, order_items): "
    "the generator's initial tables and its changes (DATA/oltp), a day per transaction and "
    "each day once (a load killed and run again applies nothing twice).",
)
def oltp_source_database(config: LoadConfig, oltp: OperationalDatabase) -> dg.MaterializeResult:
    through = date.fromisoformat(config.through) if config.through else None
    with TreeSampler() as sampler:
        result = sync.load(oltp.database, through)
    applied = pl.DataFrame(
        {"day": list(result.applied), "changes": list(result.applied.values())},
        schema={"day": pl.Date, "changes": pl.Int64},
    )
    return dg.MaterializeResult(
        metadata={
            "days_applied": len(result.applied),
            "changes_applied": int(applied["changes"].sum()),
            "days_already_in": len(result.already),
            "initial_rows": dg.MetadataValue.json(result.initial_rows),
            "applied_per_day": markdown_table(applied),
            "server": "embedded" if not oltp.url else "ETL_POC_OLTP_URL",
            **_usage_metadata(sampler.usage),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            changes_key(table),
            deps=[SOURCE],
            group_name=GROUP,
            kinds={"debezium", "iceberg"},
            owners=OWNERS,
            description=f"Every change of {table} captured by Debezium (pgoutput), with __op, "
            "__ts_ms, __source_ts_ms, __source_lsn, __source_txid, __snapshot; partitioned "
            "by __day, the shop day of the change. Each change once, whatever was killed.",
        )
        for table in OLTP_TABLES
    ],
    can_subset=False,
)
def oltp_change_logs(oltp: OperationalDatabase, lakehouse: IcebergCatalog):
    """One capture for the four tables: everything committed before it started."""
    catalog = lakehouse.catalog()
    with TreeSampler() as sampler:
        result = sync.capture_changes(oltp.database, catalog)
    usage = _usage_metadata(sampler.usage)
    per_day = lake.changes_per_day(catalog)
    for table in OLTP_TABLES:
        days = pl.DataFrame(
            [{"day": d, **ops} for d, ops in sorted(per_day[table].items())],
            schema={"day": pl.Date, "r": pl.Int64, "c": pl.Int64, "u": pl.Int64, "d": pl.Int64},
        )
        yield dg.MaterializeResult(
            asset_key=changes_key(table),
            metadata={
                "changes_added": result.added[table],
                "changes_in_log": int(days.select(pl.sum_horizontal(pl.exclude("day")).sum()).item())
                if days.height else 0,
                "changes_per_day": markdown_table(days.tail(40)),
                "capture_seconds": round(result.seconds, 3),
                "received": result.received,
                "batches": result.batches,
                "last_lsn": result.last_lsn or 0,
                **usage,
            },
        )  # fmt: skip


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            state_key(table),
            deps=[changes_key(table)],
            group_name=GROUP,
            kinds={"iceberg", "polars"},
            owners=OWNERS,
            description=f"{table} as it is now, rebuilt from its change log in LSN order (per "
            "key the last change, unless a delete), with that change's CDC metadata.",
        )
        for table in OLTP_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec(
            EQUALS_SOURCE_CHECK,
            asset=state_key(table),
            description=f"oltp.{table} equals a SELECT of the source table: same rows, values "
            "and types.",
        )
        for table in OLTP_TABLES
    ],
    can_subset=False,
)
def oltp_tables(oltp: OperationalDatabase, lakehouse: IcebergCatalog):
    catalog = lakehouse.catalog()
    with TreeSampler() as sampler:
        rebuilt = sync.rebuild(catalog)
    usage = _usage_metadata(sampler.usage)
    comparisons = sync.compare(oltp.database, catalog)
    for table in OLTP_TABLES:
        yield dg.MaterializeResult(
            asset_key=state_key(table),
            metadata={"rows": rebuilt[table]["rows"], "changes": rebuilt[table]["changes"],
                      **usage},
        )  # fmt: skip
    for table, comparison in comparisons.items():
        yield dg.AssetCheckResult(
            asset_key=state_key(table),
            check_name=EQUALS_SOURCE_CHECK,
            passed=comparison.equal,
            metadata={
                "result": comparison.summary(),
                "only_in_lakehouse": markdown_table(comparison.only_left),
                "only_in_source": markdown_table(comparison.only_right),
            },
        )


OLTP_ASSETS = [oltp_source_database, oltp_change_logs, oltp_tables]
