"""The operational database's way into the lakehouse, step by step, for the Dagster assets and
the command line alike: load (the shop's application writing), capture (Debezium into the
change logs), rebuild (the current state of each table) and compare (the current state against
a direct SELECT of the source). Each step starts the server it needs (the embedded one, or the
one ETL_POC_OLTP_URL names) and stops it after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyiceberg.catalog.sql import SqlCatalog

from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.compare import Comparison, compare_frames
from etl_poc.logic.spec import OLTP_TABLES
from etl_poc.oltp import capture, lake, source
from etl_poc.oltp.server import started


@dataclass(frozen=True)
class Database:
    """Where the operational database is: a data directory's embedded server, or a URL."""

    paths: Paths
    url: str = ""
    lock_timeout_seconds: float = 600

    def started(self):
        return started(self.paths.postgres, self.url, self.lock_timeout_seconds)


def load(database: Database, through: date | None = None) -> source.LoadResult:
    with database.started() as server:
        return source.load(server, database.paths.oltp_source, through)


def capture_changes(database: Database, catalog: SqlCatalog, **kwargs) -> capture.CaptureResult:
    with database.started() as server:
        return capture.capture(server, catalog, database.paths.cdc_state, **kwargs)


def rebuild(catalog: SqlCatalog) -> dict[str, dict[str, int]]:
    return {table: lake.rebuild_state(catalog, table) for table in OLTP_TABLES}


def compare(database: Database, catalog: SqlCatalog) -> dict[str, Comparison]:
    """Each current-state table against a SELECT of its source table: the same rows, values
    and types (a sample of the rows on one side only, when not)."""
    with database.started() as server:
        sources = {table: source.snapshot(server, table) for table in OLTP_TABLES}
    out = {}
    for table in OLTP_TABLES:
        ours = lake.read_state(catalog, table).drop(lake.CDC_COLUMNS[:4])
        theirs = sources[table]
        theirs = theirs.cast(dict(ours.schema)) if theirs.height else ours.clear()
        out[table] = compare_frames(ours, theirs)
    return out
