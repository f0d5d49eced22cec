"""The Iceberg lakehouse: the catalog, the two tables' schemas, and the one way to write them.

A PyIceberg SQL catalog named `lakehouse` on SQLite (<data>/warehouse/catalog.db), warehouse
<data>/warehouse: embedded, nothing to start. Both engines' tables have the same schema and
partition spec. A write replaces exactly its window in one atomic transaction (delete the
window, append the rows); a commit that loses a race with another writer is retried on the
re-read table, which is safe because the transaction is a replacement.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    DateType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)
from sqlalchemy import event

from etl_poc.logic.spec import REJECT_COLUMNS

CATALOG_NAME = "lakehouse"
EVENTS_TABLE = "clickstream_events"
REJECTS_TABLE = "clickstream_rejects"
COMMIT_ATTEMPTS = 8

_EVENT_FIELDS = [
    ("event_id", StringType(), True),
    ("user_id", StringType(), True),
    ("event_ts", TimestamptzType(), True),
    ("event_date", DateType(), True),
    ("page_url", StringType(), False),
    ("device", StringType(), True),
    ("event_type", StringType(), True),
    ("user_tier", StringType(), True),
    ("ip_address", StringType(), False),
    ("ip_status", StringType(), True),
    ("country_code", StringType(), False),
    ("session_id", StringType(), True),
    ("session_start", TimestamptzType(), True),
    ("event_seq", LongType(), True),
    ("source_file", StringType(), True),
]
EVENT_COLUMNS = tuple(name for name, _, _ in _EVENT_FIELDS)


def _schema(fields) -> Schema:
    return Schema(
        *(
            NestedField(i, name, kind, required=required)
            for i, (name, kind, required) in enumerate(fields, start=1)
        )
    )


EVENTS_SCHEMA = _schema(_EVENT_FIELDS)
REJECT_FIELDS = [
    *((name, StringType(), False) for name in REJECT_COLUMNS if name != "event_date"),
    ("event_date", DateType(), False),
    ("partition_date", DateType(), True),
]
REJECTS_SCHEMA = _schema(REJECT_FIELDS)


@dataclass(frozen=True)
class TableLayout:
    name: str
    schema: Schema
    spec: PartitionSpec
    window_column: str  # the column a window [start, end) is selected on


def _spec(schema: Schema, column: str, transform) -> PartitionSpec:
    source = schema.find_field(column).field_id
    return PartitionSpec(
        PartitionField(source_id=source, field_id=1000, transform=transform, name=f"{column}_day")
    )


EVENTS = TableLayout(
    EVENTS_TABLE,
    EVENTS_SCHEMA,
    _spec(EVENTS_SCHEMA, "event_date", IdentityTransform()),
    "event_date",
)
REJECTS = TableLayout(
    REJECTS_TABLE,
    REJECTS_SCHEMA,
    _spec(REJECTS_SCHEMA, "partition_date", IdentityTransform()),
    "partition_date",
)


def open_catalog(warehouse: Path) -> SqlCatalog:
    """The embedded catalog; SQLite in WAL mode with a busy timeout, so two engines' runs can
    commit at the same time."""
    warehouse.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        CATALOG_NAME,
        uri=f"sqlite:///{(warehouse / 'catalog.db').resolve()}",
        warehouse=f"file://{warehouse.resolve()}",
    )

    @event.listens_for(catalog.engine, "connect")
    def _sqlite_pragmas(connection, _record):  # pragma: no cover - run by SQLAlchemy
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    catalog.engine.dispose()  # connections opened before the listener get the pragmas too
    return catalog


def table_for(catalog: SqlCatalog, namespace: str, layout: TableLayout) -> Table:
    catalog.create_namespace_if_not_exists(namespace)
    return catalog.create_table_if_not_exists(
        f"{namespace}.{layout.name}", schema=layout.schema, partition_spec=layout.spec
    )


def arrow_for(table: pa.Table, layout: TableLayout) -> pa.Table:
    """`table`'s columns in the layout's order and types (nullability as the schema says)."""
    target = layout.schema.as_arrow()
    return table.select([f.name for f in target]).cast(target)


def window_filter(layout: TableLayout, start: date, end: date):
    """The rows of the window [start, end), as an Iceberg expression."""
    return And(
        GreaterThanOrEqual(layout.window_column, start.isoformat()),
        LessThan(layout.window_column, end.isoformat()),
    )


def replace_window(
    catalog: SqlCatalog,
    namespace: str,
    layout: TableLayout,
    rows: pa.Table,
    start: date,
    end: date,
    properties: dict[str, str],
) -> dict:
    """Replace the window [start, end) of a table with `rows` in one transaction; returns the
    new snapshot's id and summary."""
    window = window_filter(layout, start, end)
    data = arrow_for(rows, layout)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = table_for(catalog, namespace, layout)
        try:
            with table.transaction() as transaction:
                with warnings.catch_warnings():  # an empty window is not a problem
                    warnings.simplefilter("ignore", UserWarning)
                    transaction.delete(window, snapshot_properties=properties)
                if data.num_rows:
                    transaction.append(data, snapshot_properties=properties)
            break
        except CommitFailedException:
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(0.05 * 2**attempt)  # another writer committed first: re-read and retry
    snapshot = catalog.load_table(f"{namespace}.{layout.name}").current_snapshot()
    return {
        "snapshot_id": snapshot.snapshot_id if snapshot else None,
        "summary": dict(snapshot.summary.additional_properties) if snapshot else {},
        "commit_attempts": attempt,
    }
