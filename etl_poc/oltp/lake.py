"""The operational tables in the lakehouse (namespace `oltp`): per table, its change log
(`<table>_changes`, every captured change with Debezium's metadata, partitioned by the shop day
it belongs to) and its current state (`<table>`, rebuilt from the change log).

The change log is written exactly once per change, whatever the capture went through: a batch
replayed after a kill (Debezium resumes from its last stored offset, which can be before what
was already written) adds only the changes not in the table yet, keyed by (`__source_lsn`,
`__op`, the row's key); a snapshot that starts again after an interrupted one replaces the
rows of the interrupted one. Both happen in one Iceberg transaction per batch.

The current state applies the changes in LSN order: per key, the last change wins, and a key
whose last change is a delete is gone. The CDC metadata of that last change is kept on the row.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import date

import polars as pl
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    TimestamptzType,
)

from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.iceberg import TableLayout, _schema, _spec
from etl_poc.logic.spec import OLTP_KEYS, OLTP_TABLES
from etl_poc.oltp.source import COLUMNS

NAMESPACE = "oltp"
DAY = "__day"
# Debezium's change metadata, kept on every change (and on the current row, from its last).
CDC_FIELDS = [
    ("__op", StringType(), True),  # c (insert), u (update), d (delete), r (snapshot read)
    ("__ts_ms", LongType(), True),  # when Debezium processed the change
    ("__source_ts_ms", LongType(), True),  # when the source committed it
    ("__source_lsn", LongType(), True),  # its position in the source's write-ahead log
    ("__source_txid", LongType(), True),
    ("__snapshot", BooleanType(), True),  # read by the initial snapshot, not streamed
]
CDC_COLUMNS = tuple(name for name, _, _ in CDC_FIELDS)
OP_ORDER = {"r": 0, "c": 1, "u": 2, "d": 3}  # within one LSN (never more than one, in practice)


def _iceberg_type(sql: str):
    if sql.startswith("numeric(12, 2)"):
        return DecimalType(12, 2)
    kind = sql.split()[0]
    return {"text": StringType(), "uuid": StringType(), "integer": IntegerType(),
            "timestamptz": TimestamptzType()}[kind]  # fmt: skip


def _fields(table: str) -> list[tuple]:
    keys = OLTP_KEYS[table]
    return [(name, _iceberg_type(sql), name in keys) for name, sql in COLUMNS[table].items()]


def changes_layout(table: str) -> TableLayout:
    schema = _schema([*_fields(table), *CDC_FIELDS, (DAY, DateType(), True)])
    return TableLayout(f"{table}_changes", schema, _spec(schema, DAY, IdentityTransform()), DAY)


def state_layout(table: str) -> TableLayout:
    schema = _schema([*_fields(table), *CDC_FIELDS[:4]])
    return TableLayout(table, schema, PartitionSpec(), "")


def arrow_schema(table: str) -> pa.Schema:
    return changes_layout(table).schema.as_arrow()


def changes_table(catalog: SqlCatalog, table: str) -> Table:
    return iceberg.table_for(catalog, NAMESPACE, changes_layout(table))


class ChangeLogWriter:
    """Appends one capture's batches to a table's change log, each change once (see the
    module's docstring). What the log already holds is read once per capture, not per batch:
    its highest LSN (a batch entirely above it is new, as every batch of a capture that was
    not interrupted is) and its snapshots' LSNs; only a batch at or below that LSN (Debezium
    replaying what it delivered before a kill) is matched against the rows already there."""

    def __init__(self, catalog: SqlCatalog, table: str):
        self.table = table
        self.layout = changes_layout(table)
        self.log = changes_table(catalog, table)
        self.identity = ["__source_lsn", "__op", *OLTP_KEYS[table]]
        held = pl.from_arrow(
            self.log.scan(selected_fields=("__source_lsn", "__snapshot")).to_arrow()
        )
        self.max_lsn = held["__source_lsn"].max() if held.height else None
        self.snapshot_lsns = set(held.filter(pl.col("__snapshot"))["__source_lsn"].unique())
        self._present: pl.DataFrame | None = None  # identities at or below max_lsn, if read

    def _already_there(self, floor: int) -> pl.DataFrame:
        if self._present is None:
            self._present = pl.from_arrow(
                self.log.scan(row_filter=GreaterThanOrEqual("__source_lsn", floor),
                              selected_fields=tuple(self.identity)).to_arrow()
            )  # fmt: skip
        return self._present

    def append(self, batch: pa.Table) -> int:
        """Add a batch; the number of changes added."""
        if batch.num_rows == 0:
            return 0
        batch = iceberg.arrow_for(batch, self.layout)
        frame = pl.from_arrow(batch).unique(self.identity, keep="first", maintain_order=True)
        snapshot = set(frame.filter(pl.col("__snapshot"))["__source_lsn"].unique())
        stale = self.snapshot_lsns - snapshot if snapshot else set()
        if self.max_lsn is not None and frame["__source_lsn"].min() <= self.max_lsn:
            present = self._already_there(frame["__source_lsn"].min())
            frame = frame.join(present, on=self.identity, how="anti", nulls_equal=True)
        with self.log.transaction() as transaction:
            for old in sorted(stale):  # a snapshot again: an interrupted one's rows go
                transaction.delete(And(EqualTo("__source_lsn", old), EqualTo("__snapshot", True)))
            if frame.height:
                transaction.append(frame.to_arrow().cast(batch.schema))
        self.snapshot_lsns = (self.snapshot_lsns - stale) | snapshot
        if self._present is not None and stale:
            self._present = self._present.filter(~pl.col("__source_lsn").is_in(sorted(stale)))
        return frame.height


def read_changes(catalog: SqlCatalog, table: str) -> pl.DataFrame:
    return pl.from_arrow(changes_table(catalog, table).scan().to_arrow())


def current_state(changes: pl.DataFrame, table: str) -> pl.DataFrame:
    """The table as the changes leave it: per key, the last change in LSN order, unless a
    delete; sorted by the key."""
    keys = list(OLTP_KEYS[table])
    columns = [*COLUMNS[table], *CDC_COLUMNS[:4]]
    if changes.is_empty():
        return changes.select(columns)
    order = pl.col("__op").replace_strict(OP_ORDER, return_dtype=pl.Int8)
    last = (
        changes.with_columns(_op_order=order)
        .sort("__source_lsn", "_op_order", maintain_order=True)
        .unique(keys, keep="last", maintain_order=True)
    )
    return last.filter(pl.col("__op") != "d").select(columns).sort(keys)


def rebuild_state(catalog: SqlCatalog, table: str) -> dict[str, int]:
    """Overwrite `oltp.<table>` with the current state of its change log."""
    changes = read_changes(catalog, table)
    state = current_state(changes, table)
    layout = state_layout(table)
    target = iceberg.table_for(catalog, NAMESPACE, layout)
    with warnings.catch_warnings():  # PyIceberg's, on overwriting an empty table
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        target.overwrite(iceberg.arrow_for(state.to_arrow(), layout))
    return {"rows": state.height, "changes": changes.height}


def read_state(catalog: SqlCatalog, table: str) -> pl.DataFrame:
    return pl.from_arrow(iceberg.table_for(catalog, NAMESPACE, state_layout(table)).scan()
                         .to_arrow()).sort(list(OLTP_KEYS[table]))  # fmt: skip


def changes_per_day(catalog: SqlCatalog) -> Mapping[str, dict[date, dict[str, int]]]:
    """Per table, per shop day, the number of changes of each kind."""
    out = {}
    for table in OLTP_TABLES:
        counts = read_changes(catalog, table).group_by(DAY, "__op").len().sort(DAY, "__op")
        per_day: dict[date, dict[str, int]] = {}
        for day, op, n in counts.iter_rows():
            per_day.setdefault(day, {})[op] = n
        out[table] = per_day
    return out
