"""The Iceberg lakehouse: the catalog, the two tables' schemas, and the one way to write them.

A PyIceberg SQL catalog named `lakehouse`, by default on SQLite (<data>/warehouse/catalog.db),
warehouse <data>/warehouse: embedded, nothing to start (any SQLAlchemy URL, such as a
PostgreSQL one, can take SQLite's place). Both engines' tables have the same schema and
partition spec. A write replaces exactly its window in one atomic transaction: delete the
window, then add the new rows, either as an Arrow table PyIceberg writes (Polars) or as
Parquet data files the engine wrote itself (Spark: `spark_data_files`, since the Iceberg Spark
runtime cannot be installed here). A commit that loses a race with another writer is retried on
the re-read table, which is safe because the transaction is a replacement.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThan
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    DateType,
    DecimalType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from etl_poc.logic.spec import AMOUNT_PRECISION, AMOUNT_SCALE, COMMERCE_COLUMNS, REJECT_COLUMNS

# Progress lines (a commit each); Dagster shows them in a run's log (dagster.yaml's
# managed_python_loggers).
log = logging.getLogger("etl_poc")

CATALOG_NAME = "lakehouse"
EVENTS_TABLE = "clickstream_events"
REJECTS_TABLE = "clickstream_rejects"
COMMIT_ATTEMPTS = 8
# The snapshot property naming the run that committed it (the callers' properties carry it).
RUN_PROPERTY = "dagster.run_id"
# A table property per day, set in the window replacement's own commit: the run that last
# wrote the day (kept when old snapshots are expired, unlike the snapshots' summaries).
DAY_WRITER_PREFIX = "etl_poc.day_written_by."
CREATE_ATTEMPTS = 5

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
    # Added with the commerce columns (issue 18): last, so a table created before them gets
    # the same fields, in the same order, when it is evolved (table_for).
    ("product_id", StringType(), False),
    ("search_query", StringType(), False),
    ("transaction_id", StringType(), False),
    ("amount", DecimalType(AMOUNT_PRECISION, AMOUNT_SCALE), False),
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
_LATER_REJECT_COLUMNS = tuple(f"raw_{c}" for c in COMMERCE_COLUMNS)  # added last, as above
REJECT_FIELDS = [
    *(
        (name, StringType(), False)
        for name in REJECT_COLUMNS
        if name != "event_date" and name not in _LATER_REJECT_COLUMNS
    ),
    ("event_date", DateType(), False),
    ("partition_date", DateType(), True),
    *((name, StringType(), False) for name in _LATER_REJECT_COLUMNS),
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


def sqlite_catalog_path(warehouse: Path) -> Path:
    return warehouse / "catalog.db"


def catalog_exists(warehouse: Path, uri: str | None = None) -> bool:
    """Whether there is a catalog to read (a server-backed one is assumed to exist)."""
    return bool(uri) or sqlite_catalog_path(warehouse).exists()


class CatalogUnreachableError(RuntimeError):
    """The catalog's database does not answer (the URL in the message has no password)."""


def masked_url(uri: str) -> str:
    """A SQLAlchemy URL as it may be shown: its password replaced by ***."""
    from sqlalchemy.engine import make_url

    return make_url(uri).render_as_string(hide_password=True)


def open_catalog(warehouse: Path, uri: str | None = None) -> SqlCatalog:
    """The catalog `lakehouse` with its data files under `warehouse`. Without `uri`, the
    embedded SQLite catalog, in WAL mode with a busy timeout so that two engines' runs can
    commit at the same time; with `uri`, the SQLAlchemy database it names (for example
    postgresql+psycopg2://user@host:5432/db). Two runs opening a new catalog at once both get
    it: SqlCatalog creates its tables on first use, the loser of that race gets an error
    (a table or type that already exists), and the opening is retried."""
    warehouse.mkdir(parents=True, exist_ok=True)
    options = {"uri": uri or f"sqlite:///{sqlite_catalog_path(warehouse).resolve()}",
               "warehouse": f"file://{warehouse.resolve()}"}  # fmt: skip
    try:
        catalog = _retry_creation(lambda: SqlCatalog(CATALOG_NAME, **options))
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise CatalogUnreachableError(
            f"the Iceberg catalog at {masked_url(options['uri'])} cannot be reached: {reason}"
        ) from None  # the driver's message may repeat the URL with its password
    if uri:
        return catalog

    @event.listens_for(catalog.engine, "connect")
    def _sqlite_pragmas(connection, _record):  # pragma: no cover - run by SQLAlchemy
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    catalog.engine.dispose()  # connections opened before the listener get the pragmas too
    return catalog


# PostgreSQL's codes for an object that another session created first: duplicate_object (a new
# table's row type) and duplicate_table.
_DUPLICATE_OBJECT_CODES = {"42710", "42P07"}


def _lost_creation_race(error: DBAPIError) -> bool:
    """Whether creating a catalog table or row failed only because another process did it (or,
    on SQLite, held the lock) at the same moment."""
    if isinstance(error, IntegrityError):  # the same row (a namespace), inserted twice
        return True
    if getattr(error.orig, "pgcode", None) in _DUPLICATE_OBJECT_CODES:
        return True
    message = str(error.orig)
    return isinstance(error, OperationalError) and (
        "already exists" in message or "database is locked" in message  # SQLite's words
    )


def _retry_creation(create):
    """`create()`, again if it lost a race to create the same catalog table or row (the
    winner's is there on the next attempt)."""
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return create()
        except DBAPIError as error:
            if not _lost_creation_race(error) or attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)


def table_for(catalog: SqlCatalog, namespace: str, layout: TableLayout) -> Table:
    """The table, created with its namespace if missing (by whichever writer comes first).
    A table the catalog lists whose metadata file is gone (the warehouse removed, the catalog
    on a server kept) is a clear error, not a stack trace from the file system."""
    _retry_creation(lambda: catalog.create_namespace_if_not_exists(namespace))
    name = f"{namespace}.{layout.name}"
    try:
        table = catalog.create_table_if_not_exists(
            name, schema=layout.schema, partition_spec=layout.spec
        )
    except FileNotFoundError as error:
        raise RuntimeError(
            f"{name}: the catalog lists the table but its metadata file is gone ({error}). "
            f"The warehouse was removed while the catalog ({catalog.engine.url.database}) "
            "kept it: restore the warehouse, or use an empty catalog database "
            "(ETL_POC_CATALOG_URI; in the containers `make docker-down VOLUMES=1` removes "
            "the warehouse and the catalog together)"
        ) from error
    _refuse_another_warehouse(catalog, table, name)
    return _evolved(catalog, table, layout, name)


def _evolved(catalog: SqlCatalog, table: Table, layout: TableLayout, name: str) -> Table:
    """A table created before some of the layout's fields existed, with them added (optional,
    at the end: the fields a new table has, in its order). Writers that evolve it at once:
    the one whose commit loses reloads and finds it done."""
    for attempt in range(CREATE_ATTEMPTS):
        present = {field.name for field in table.schema().fields}
        if all(field.name in present for field in layout.schema.fields):
            return table
        try:
            with table.update_schema() as update:
                update.union_by_name(layout.schema)
            log.info(
                f"{name}: schema evolved: added {[f.name for f in layout.schema.fields if f.name not in present]}"
            )
        except CommitFailedException:
            if attempt == CREATE_ATTEMPTS - 1:
                raise
        table = catalog.load_table(name)
    return table


def _refuse_another_warehouse(catalog: SqlCatalog, table: Table, name: str) -> None:
    """An embedded catalog lists tables of its own warehouse only: a data directory copied
    with `cp -a` keeps the original's absolute locations, and would write into it."""
    warehouse = catalog.properties.get("warehouse", "")
    if catalog.engine.url.get_backend_name() != "sqlite" or not warehouse:
        return
    if not table.location().startswith(warehouse.rstrip("/") + "/"):
        raise RuntimeError(
            f"{name}: the catalog {catalog.engine.url.database} places the table at "
            f"{table.location()}, outside this data directory's warehouse {warehouse}: the data "
            "directory is a copy, which would write into the original. Make copies with "
            "`etl-poc backup DEST` and `etl-poc restore SRC` instead"
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


def read_window(
    catalog: SqlCatalog,
    namespace: str,
    layout: TableLayout,
    start: date | None = None,
    end: date | None = None,
    limit: int | None = None,
    columns: tuple[str, ...] = ("*",),
):
    """A table's rows of the window [start, end) (no window: every row), at most `limit`,
    its `columns` (all by default), as a Polars frame; None when the table does not exist
    (nothing written yet)."""
    import polars as pl

    identifier = f"{namespace}.{layout.name}"
    if not catalog.table_exists(identifier):
        return None
    table = catalog.load_table(identifier)
    if limit is None or start is None or end is None:
        window = AlwaysTrue() if start is None or end is None else window_filter(layout, start, end)
        scan = table.scan(row_filter=window, limit=limit, selected_fields=columns)
        return pl.from_arrow(scan.to_arrow())
    # A few rows (a preview) a day at a time: PyIceberg reads every file of a scan at once, in
    # parallel and whole, before it applies the limit (ArrowScan.to_record_batches maps every
    # task on its executor): over a 100M-row window, 6 GB for 5 rows. A day is a file or two.
    frames, wanted = [], limit
    for day in range((end - start).days):
        first = start + timedelta(days=day)
        scan = table.scan(
            row_filter=window_filter(layout, first, first + timedelta(days=1)),
            limit=wanted,
            selected_fields=columns,
        )
        rows = scan.to_arrow()
        if rows.num_rows:
            frames.append(rows)
            wanted -= rows.num_rows
        if wanted <= 0:
            break
    if not frames:  # the window holds no file: its scan reads none
        window = window_filter(layout, start, end)
        return pl.from_arrow(table.scan(row_filter=window, selected_fields=columns).to_arrow())
    return pl.from_arrow(pa.concat_tables(frames))


def replace_window(
    catalog: SqlCatalog,
    namespace: str,
    layout: TableLayout,
    rows: pa.Table | Callable[[], Iterable[pa.Table]],
    start: date,
    end: date,
    properties: dict[str, str],
) -> dict:
    """Replace the window [start, end) of a table with `rows` (PyIceberg writes the data
    files) in one transaction; returns the new snapshots' ids and summary. `rows` is one
    table, or a function giving the rows in pieces, each appended in the same transaction
    (and asked again if the commit has to be retried)."""
    pieces = rows if callable(rows) else lambda: [rows]

    def add(transaction: Transaction) -> None:
        for piece in pieces():
            data = arrow_for(piece, layout)
            outside = _outside_window(data[layout.window_column], start, end)
            if outside:
                raise ValueError(
                    f"{layout.name}: {outside} rows outside the window [{start}, {end})"
                )
            if data.num_rows:
                transaction.append(data, snapshot_properties=properties)

    return _replace(catalog, namespace, layout, start, end, properties, add)


def replace_window_with_files(
    catalog: SqlCatalog,
    namespace: str,
    layout: TableLayout,
    files: Sequence[str],
    start: date,
    end: date,
    properties: dict[str, str],
) -> dict:
    """Replace the window [start, end) of a table with Parquet data files written by an
    engine (see `spark_data_files`), in one transaction. PyIceberg checks the files' schema
    against the table's and takes each file's partition from its statistics; the files must
    hold only the window's days."""
    for file in files:
        low, high = _column_range(file, layout.window_column)
        if low is None or low < start or high >= end:
            raise ValueError(
                f"{file}: {layout.window_column} {low}..{high} not in [{start}, {end})"
            )

    def add(transaction: Transaction) -> None:
        if files:
            transaction.add_files(list(files), snapshot_properties=properties)

    return _replace(catalog, namespace, layout, start, end, properties, add)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def day_writers(table: Table, start: date, end: date) -> dict[date, str | None]:
    """For each day of [start, end), the run whose window replacement last covered it (the
    table's per-day property); None for a day no recorded replacement did."""
    properties = table.properties
    return {day: properties.get(f"{DAY_WRITER_PREFIX}{day}") for day in _days(start, end)}


def tables_written_by_one_run(catalog: SqlCatalog, namespace: str, start: date, end: date):
    """Whether, for every day of the window, the events and the rejects tables were last
    replaced by the same run (a run killed between its two commits leaves them apart until
    the next run of those days): (passed, figures naming the days that disagree)."""
    writers = {}
    for layout in (EVENTS, REJECTS):
        identifier = f"{namespace}.{layout.name}"
        table = catalog.load_table(identifier) if catalog.table_exists(identifier) else None
        writers[layout.name] = day_writers(table, start, end) if table else {}
    events, rejects = writers[EVENTS_TABLE], writers[REJECTS_TABLE]
    apart = sorted(d for d in set(events) | set(rejects) if events.get(d) != rejects.get(d))
    figures = {
        "days": (end - start).days,
        "days_written_by_different_runs": len(apart),
        "disagreeing": {
            d.isoformat(): {EVENTS_TABLE: events.get(d), REJECTS_TABLE: rejects.get(d)}
            for d in apart[:10]
        },
    }
    return not apart, figures


def _replace(
    catalog: SqlCatalog,
    namespace: str,
    layout: TableLayout,
    start: date,
    end: date,
    properties: dict[str, str],
    add: Callable[[Transaction], None],
) -> dict:
    window = window_filter(layout, start, end)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = table_for(catalog, namespace, layout)
        before = table.current_snapshot()
        try:
            with table.transaction() as transaction:
                with warnings.catch_warnings():  # an empty window is not a problem
                    warnings.simplefilter("ignore", UserWarning)
                    transaction.delete(window, snapshot_properties=properties)
                add(transaction)
                if RUN_PROPERTY in properties:  # in the same commit: which run wrote each day
                    transaction.set_properties(
                        {f"{DAY_WRITER_PREFIX}{day}": properties[RUN_PROPERTY]
                         for day in _days(start, end)}
                    )  # fmt: skip
            break
        except CommitFailedException:
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(0.05 * 2**attempt)  # another writer committed first: re-read and retry
    snapshot = table.current_snapshot()  # this commit's, even if another writer came after
    log.info(
        f"committed {namespace}.{layout.name} [{start}, {end}): snapshot "
        f"{snapshot.snapshot_id if snapshot else None}"
        f" after {attempt} attempt(s)"
    )
    return {
        # As text: a 64-bit id would lose its last digits as a JavaScript number (the UI).
        "snapshot_id": str(snapshot.snapshot_id) if snapshot else None,
        "summary": _transaction_summary(table, before.snapshot_id if before else None),
        "commit_attempts": attempt,
    }


def _transaction_summary(table: Table, before: int | None) -> dict[str, str]:
    """The summary of the snapshots one transaction added after `before` (a delete, then an
    append per piece): the added and removed figures summed, the totals of the last one."""
    chain = []
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != before:
        chain.append(dict(snapshot.summary.additional_properties))
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    summary = dict(chain[0]) if chain else {}
    for key in {k for s in chain for k in s if k.startswith(("added-", "deleted-", "removed-"))}:
        summary[key] = str(sum(int(s.get(key, 0)) for s in chain))
    return summary


def _outside_window(column: pa.ChunkedArray, start: date, end: date) -> int:
    """How many values of a date column are null or outside [start, end)."""
    import pyarrow.compute as pc

    inside = pc.and_(pc.greater_equal(column, pa.scalar(start)), pc.less(column, pa.scalar(end)))
    return len(column) - pc.sum(pc.fill_null(inside, False)).as_py() if len(column) else 0


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"{uri}: only a local warehouse (file://) is supported")
    return Path(parsed.path)


def _column_range(file: str, column: str) -> tuple:
    """A Parquet file's min and max of a column, from its row-group statistics."""
    metadata = pq.read_metadata(local_path(file))
    index = metadata.schema.names.index(column)
    lows, highs = [], []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None, None
        lows.append(stats.min)
        highs.append(stats.max)
    return (min(lows), max(highs)) if lows else (None, None)


# --- Data files written by the engine, committed with add_files ------------------------------


def _data_directory(table: Table, writer: str) -> Path:
    """A directory of its own under the table's data location, for one writer's files."""
    return local_path(f"{table.location().rstrip('/')}/data/{writer}-{uuid.uuid4().hex}")


class DataFileWriter:
    """Polars frames (a window's pieces; DuckDB hands its results over as Polars frames too,
    zero-copy) written as Parquet data files for `table`, by Polars' own writer with the
    table's Arrow schema: the layout's columns in its order and types, required columns
    written as required (PyIceberg's add_files accepts no optional column for a required
    field), zstd as PyIceberg writes, one file per day and piece, under a directory of the
    writer's own. PyIceberg then only commits them (add_files) instead of encoding every row
    a second time with its own writer. A null in a required column is an error naming the
    columns, never a dropped row; `discard` removes what was written (on any error)."""

    def __init__(self, table: Table, layout: TableLayout, writer: str):
        # Without the field ids: add_files maps columns to fields by name, and refuses files
        # that carry ids of their own.
        self.target = pa.schema([field.remove_metadata() for field in layout.schema.as_arrow()])
        self.required = [f.name for f in layout.schema.fields if f.required]
        self.partition = layout.spec.fields[0].name
        self.table, self.layout = table, layout
        self.local = _data_directory(table, writer)
        self.files: list[str] = []
        self.rows = 0
        self._part = 0

    def add(self, piece) -> None:
        nulls = {c: piece[c].null_count() for c in self.required if piece[c].null_count()}
        if nulls:
            raise ValueError(f"{self.table.name()}: nulls in required columns: {nulls}")
        data = piece.select(self.target.names)
        for (day,), rows_of_day in data.partition_by(
            self.layout.window_column, as_dict=True, maintain_order=False
        ).items():
            path = self.local / f"{self.partition}={day}" / f"part-{self._part}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows_of_day.write_parquet(path, compression="zstd", arrow_schema=self.target)
            self.files.append(f"file://{path.resolve()}")
            self.rows += rows_of_day.height
        self._part += 1

    def discard(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)


def data_files(
    pieces: Iterable, table: Table, layout: TableLayout, writer: str
) -> tuple[list[str], int]:
    """Every piece written by one DataFileWriter: the files' URIs and their row count (on any
    error, nothing is left behind)."""
    files = DataFileWriter(table, layout, writer)
    try:
        for piece in pieces:
            files.add(piece)
        return files.files, files.rows
    except BaseException:
        files.discard()
        raise


# --- Spark's data files ---------------------------------------------------------------------

_SPARK_TYPES = {
    StringType(): "string",
    DecimalType(AMOUNT_PRECISION, AMOUNT_SCALE): f"decimal({AMOUNT_PRECISION},{AMOUNT_SCALE})",
    DateType(): "date",
    LongType(): "bigint",
    TimestamptzType(): "timestamp",  # Spark's TIMESTAMP is UTC-adjusted, as timestamptz
}


def spark_data_files(frame, table: Table, layout: TableLayout) -> tuple[list[str], int]:
    """Write a Spark DataFrame as Parquet data files for `table`: the layout's columns in its
    order and types, microsecond timestamps, required columns written as required, and one
    day per file (Spark's partitionBy on a copy of the day column, so the day stays inside
    the files, where PyIceberg reads each file's partition from). The files go to a directory
    of their own under the table's data location; returns their URIs and row count.

    A null in a required column is an error (as the Iceberg Spark runtime makes it), never a
    dropped row; on any error the directory is removed, so nothing is left behind."""
    from pyspark.sql import functions as F

    spark = frame.sparkSession
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    fields = layout.schema.fields
    typed = _with_required(
        frame.select(*(F.col(f.name).cast(_SPARK_TYPES[f.field_type]) for f in fields)),
        {f.name for f in fields if f.required},
    )
    partition = layout.spec.fields[0].name
    local = _data_directory(table, "spark")
    try:
        try:
            (
                typed.withColumn(partition, F.col(layout.window_column))
                .write.option("compression", "zstd")
                .partitionBy(partition)
                .parquet(str(local))
            )
        except Exception as error:
            nulls = _null_counts(frame, [f.name for f in fields if f.required])
            if nulls:
                raise ValueError(f"{table.name()}: nulls in required columns: {nulls}") from error
            raise
        files = sorted(local.glob("*/*.parquet"))
        for marker in [*local.glob("_SUCCESS"), *local.glob("**/.*.crc")]:
            marker.unlink()
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        return [f"file://{f.resolve()}" for f in files], rows
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise


def _with_required(frame, required: set[str]):
    """`frame` with the `required` columns non-nullable, so that Spark writes them as required
    Parquet columns (PyIceberg accepts no optional column for a required field). Spark has no
    public way to declare that; re-applying the schema to the frame's rows in the JVM does it,
    and makes a null fail the write with an encoding error."""
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructField, StructType

    spark = frame.sparkSession
    schema = StructType(
        [StructField(f.name, f.dataType, f.name not in required) for f in frame.schema.fields]
    )
    java_schema = spark._jvm.org.apache.spark.sql.types.DataType.fromJson(schema.json())
    return DataFrame(spark._jsparkSession.createDataFrame(frame._jdf.rdd(), java_schema), spark)


def _null_counts(frame, columns: list[str]) -> dict[str, int]:
    """The required columns that hold nulls, with how many (to explain a failed write)."""
    from pyspark.sql import functions as F

    counts = frame.select(*(F.count_if(F.col(c).isNull()).alias(c) for c in columns)).first()
    return {c: counts[c] for c in columns if counts[c]}


# --- Maintenance -----------------------------------------------------------------------------


def maintain(table: Table, older_than: datetime) -> dict[str, int]:
    """Expire the table's snapshots older than `older_than` (the current one is always kept),
    then delete the files under its location that no remaining snapshot references and that
    are older than that too: data files replaced by later runs, the parts a killed writer
    left (Spark's spark-<uuid>/ directories, PyIceberg's files), and manifests of expired
    snapshots. A file younger than `older_than` is kept whatever it is: it may belong to a
    commit under way. The table's metadata files are left to the catalog."""
    before = len(table.snapshots())
    table.maintenance.expire_snapshots().older_than(older_than).commit()
    table = table.refresh()
    uris = [
        *table.inspect.all_files()["file_path"].to_pylist(),
        *table.inspect.all_manifests()["path"].to_pylist(),
        *(s.manifest_list for s in table.snapshots() if s.manifest_list),
    ]
    referenced = {local_path(uri).resolve() for uri in uris}
    cutoff = older_than.timestamp()
    removed = {"data_files_removed": 0, "metadata_files_removed": 0, "bytes_removed": 0}
    root = local_path(table.location())
    for folder, kind in ((root / "data", "data_files_removed"),
                         (root / "metadata", "metadata_files_removed")):  # fmt: skip
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.name.endswith(".metadata.json") or not path.is_file():
                continue
            stat = path.stat()
            if path.resolve() in referenced or stat.st_mtime >= cutoff:
                continue
            path.unlink()
            removed[kind] += 1
            removed["bytes_removed"] += stat.st_size
        for directory in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else []:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()  # a killed writer's empty directories
    return {"snapshots_before": before, "snapshots_after": len(table.snapshots()), **removed}
