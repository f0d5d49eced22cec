"""The intermediate layers on disk, for every engine: one place for their reads and writes.

Layout: <layers>/<engine>/<stored>/<key>=YYYY-MM-DD/part-*.parquet, Hive style, the day key in
the directory name only (as Spark's partitionBy writes it). A stored layer's day key is
spec.STORED_DAY_KEY's: `event_date` for the event layers, `partition_date` for raw and rejects
(a reject without a usable date is attributed to a day by its landing file). Writing a window
first removes every day directory of that window, so a re-run replaces the window exactly: no
duplicate and no stale day is left behind.

Both engines' writers refuse rows outside the window (or without a day), and both readers
return None for a window that holds no data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from etl_poc.logic.spec import STORED_DAY_KEY

# The intermediate layers are written once and read once or twice, by the next layer of the
# same run: a fast codec beats a dense one (issue 17, measured: lz4 took 15 % off the Polars
# lineage against zstd, for about 1.3x the bytes). Every engine writes its layers with it.
LAYER_CODEC = "lz4"
SPARK_LAYER_CODEC = "lz4_raw"  # Spark's "lz4" is the deprecated Hadoop framing


def days(start: date, end: date) -> list[date]:
    """The days of the window [start, end)."""
    return [start + timedelta(days=i) for i in range((end - start).days)]


def day_key(stored: str) -> str:
    return STORED_DAY_KEY[stored]


def layer_dir(root: Path, engine: str, stored: str) -> Path:
    return root / engine / stored


def _day_dir(root: Path, engine: str, stored: str, day: date) -> Path:
    return layer_dir(root, engine, stored) / f"{day_key(stored)}={day.isoformat()}"


def clear_window(root: Path, engine: str, stored: str, start: date, end: date) -> None:
    for day in days(start, end):
        shutil.rmtree(_day_dir(root, engine, stored, day), ignore_errors=True)


def window_files(root: Path, engine: str, stored: str, start: date, end: date) -> list[Path]:
    """The Parquet files of the window's days, in day order."""
    files: list[Path] = []
    for day in days(start, end):
        files.extend(sorted(_day_dir(root, engine, stored, day).glob("*.parquet")))
    return files


def window_size(root: Path, engine: str, stored: str, start: date, end: date) -> tuple[int, int]:
    """Rows and bytes of a layer's window, from the Parquet footers (no data is read)."""
    files = window_files(root, engine, stored, start, end)
    return _rows(files), sum(f.stat().st_size for f in files)


def day_rows(root: Path, engine: str, stored: str, start: date, end: date) -> dict[date, int]:
    """Each day's rows of a layer's window, from the Parquet footers (0 for an empty day)."""
    return {
        day: _rows(sorted(_day_dir(root, engine, stored, day).glob("*.parquet")))
        for day in days(start, end)
    }


def _rows(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


def in_pieces(items: list, rows: list[int], max_rows: int | None) -> list[list]:
    """`items` in order, cut into consecutive pieces of at most `max_rows` rows each (an item
    larger than that is a piece of its own, items without rows join the piece before or
    after, so no piece is empty unless all are); `max_rows` 0 or None: one piece."""
    if not max_rows:
        return [list(items)] if items else []
    pieces: list[list] = []
    total = 0
    for item, count in zip(items, rows, strict=True):
        if not pieces or (count and total and total + count > max_rows):
            pieces.append([])
            total = 0
        pieces[-1].append(item)
        total += count
    return pieces


def day_chunks(
    root: Path, engine: str, stored: str, start: date, end: date, max_rows: int | None
) -> list[tuple[date, date]]:
    """The window [start, end) as consecutive windows of whole days holding at most
    `max_rows` rows of a layer each (from the Parquet footers)."""
    window = days(start, end)
    rows = [window_size(root, engine, stored, day, day + timedelta(days=1))[0] for day in window]
    return [
        (piece[0], piece[-1] + timedelta(days=1)) for piece in in_pieces(window, rows, max_rows)
    ]


def _outside(stored: str, rows: int, start: date, end: date) -> ValueError:
    return ValueError(
        f"{stored}: {rows} rows outside the window [{start}, {end}) or without a {day_key(stored)}"
    )


# --- Polars ---------------------------------------------------------------------------------


def polars_write(
    frame: pl.DataFrame, root: Path, engine: str, stored: str, start: date, end: date
) -> None:
    """Replace the window [start, end) of a layer with `frame` (rows outside it are an error)."""
    polars_add_part(frame, root, engine, stored, start, end, part=0, replace=True)


def polars_add_part(
    frame: pl.DataFrame,
    root: Path,
    engine: str,
    stored: str,
    start: date,
    end: date,
    part: int,
    replace: bool = False,
) -> None:
    """Add `frame` to the window's days as their file part-<part>.parquet, next to what they
    hold: a window written piece by piece (cleared first with clear_window). `replace`: clear
    the window first."""
    key = day_key(stored)
    outside = frame.filter(~pl.col(key).is_between(start, end, closed="left").fill_null(False))
    if outside.height:
        raise _outside(stored, outside.height, start, end)
    # Every file is written under a temporary name beside the layer's days first (readers
    # list *.parquet in the days only); only then is the window cleared, if replaced, and
    # the files renamed into place. A failure (a full or read-only disk) names the file,
    # removes what it wrote and leaves the window as it was.
    staged: list[tuple[Path, Path]] = []
    try:
        for (day,), rows in frame.partition_by(key, as_dict=True, maintain_order=False).items():
            path = _day_dir(root, engine, stored, day) / f"part-{part}.parquet"
            partial = path.parent.with_name(f".{path.parent.name}-{path.name}.{os.getpid()}.tmp")
            staged.append((partial, path))
            partial.parent.mkdir(parents=True, exist_ok=True)
            rows.drop(key).write_parquet(partial, compression=LAYER_CODEC)
    except (OSError, pl.exceptions.PolarsError) as error:
        for partial, _ in staged:
            partial.unlink(missing_ok=True)
        code = getattr(error, "errno", None)
        reason = os.strerror(code) if code else error
        raise OSError(f"cannot write the layer file {staged[-1][1]}: {reason}") from error
    if replace:
        clear_window(root, engine, stored, start, end)
    for partial, path in staged:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, path)


def polars_read(
    root: Path, engine: str, stored: str, start: date, end: date
) -> pl.LazyFrame | None:
    """The window of a layer, with its day key as a column; None when no day holds data."""
    files = window_files(root, engine, stored, start, end)
    if not files:
        return None
    # The day key comes from each file's directory name.
    return pl.scan_parquet(files, hive_partitioning=True, hive_schema={day_key(stored): pl.Date})


def as_stored(frame: pl.DataFrame, stored: str) -> pl.DataFrame:
    """A frame of a layer with its columns as polars_read gives them back (the day key
    last): what a layer handed over in memory looks like to the next, as if read."""
    key = day_key(stored)
    return frame.select([c for c in frame.columns if c != key] + [key])


def read_layer(root: Path, engine: str, stored: str, start: date, end: date) -> pl.DataFrame:
    """A layer's window as any engine wrote it, as a Polars frame (empty when there is none):
    what the checks compare and judge."""
    frame = polars_read(root, engine, stored, start, end)
    return pl.DataFrame() if frame is None else frame.collect()


# --- Spark ----------------------------------------------------------------------------------


def spark_write(frame, root: Path, engine: str, stored: str, start: date, end: date) -> None:
    """Replace the window [start, end) of a layer with a Spark DataFrame. Spark writes into a
    directory of its own first; only when every day it wrote lies in the window are those
    days moved into place (rows outside it are an error, and nothing is replaced)."""
    key = day_key(stored)
    with _staged_days(root, engine, stored, start, end) as staging:
        frame.write.option("compression", SPARK_LAYER_CODEC).partitionBy(key).parquet(str(staging))


@contextlib.contextmanager
def _staged_days(root: Path, engine: str, stored: str, start: date, end: date):
    """A directory for an engine to write the window into, partitioned by the day key (Hive
    style); when the writer is done, and only if every day it wrote lies in the window, the
    window is cleared and those days moved into place. The directory is removed in any case."""
    key = day_key(stored)
    staging = layer_dir(root, engine, stored).with_name(f".{stored}-{uuid.uuid4().hex}")
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
        written = {}
        for directory in staging.glob(f"{key}=*"):
            try:
                written[date.fromisoformat(directory.name.split("=", 1)[1])] = directory
            except ValueError:  # Spark's __HIVE_DEFAULT_PARTITION__, DuckDB's NULL: no day
                rows = _rows(list(directory.glob("*.parquet")))
                raise _outside(stored, rows, start, end) from None
        outside = [d for day, d in written.items() if not start <= day < end]
        if outside:
            rows = _rows([f for d in outside for f in d.glob("*.parquet")])
            raise _outside(stored, rows, start, end)
        clear_window(root, engine, stored, start, end)
        for day, directory in written.items():
            target = _day_dir(root, engine, stored, day)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(directory, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def spark_read(spark, root: Path, engine: str, stored: str, start: date, end: date):
    """The window of a layer, with its day key as a column; None when no day holds data."""
    dirs = [
        str(path)
        for path in (_day_dir(root, engine, stored, day) for day in days(start, end))
        if any(path.glob("*.parquet"))
    ]
    if not dirs:
        return None
    return spark.read.option("basePath", str(layer_dir(root, engine, stored))).parquet(*dirs)


# --- DuckDB ---------------------------------------------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_write(relation, root: Path, engine: str, stored: str, start: date, end: date) -> None:
    """Replace the window [start, end) of a layer with a DuckDB relation, written by DuckDB's
    own partitioned COPY (rows outside the window are an error, and nothing is replaced).
    The rules' naive UTC timestamps are stored as UTC instants, as the other engines store
    them (DuckDB casts at UTC: duckdb_runner)."""
    key = day_key(stored)
    zoned = [
        f"CAST({name} AS TIMESTAMPTZ) AS {name}"
        for name, dtype in zip(relation.columns, relation.types, strict=True)
        if str(dtype) == "TIMESTAMP"
    ]
    columns = f"* REPLACE ({', '.join(zoned)})" if zoned else "*"
    with _staged_days(root, engine, stored, start, end) as staging:
        relation.query("_layer", f"SELECT {columns} FROM _layer").to_parquet(
            str(staging), compression=LAYER_CODEC, partition_by=[key]
        )


def duckdb_scan(connection, files: list[Path], day_column: str | None = None):
    """Parquet files as a DuckDB relation, with UTC instants as the rules' naive UTC
    timestamps; `day_column`: the day key taken from the files' directory names."""
    listed = ", ".join(_sql_text(str(f)) for f in files)
    hive = (
        f", hive_partitioning = true, hive_types = {{'{day_column}': DATE}}" if day_column else ""
    )
    relation = connection.sql(f"SELECT * FROM read_parquet([{listed}]{hive})")
    naive = [
        f"CAST({name} AS TIMESTAMP) AS {name}"
        for name, dtype in zip(relation.columns, relation.types, strict=True)
        if str(dtype) == "TIMESTAMP WITH TIME ZONE"
    ]
    if not naive:
        return relation
    return relation.query("_files", f"SELECT * REPLACE ({', '.join(naive)}) FROM _files")


def duckdb_read(connection, root: Path, engine: str, stored: str, start: date, end: date):
    """The window of a layer, with its day key as a column; None when no day holds data."""
    files = window_files(root, engine, stored, start, end)
    return duckdb_scan(connection, files, day_key(stored)) if files else None
