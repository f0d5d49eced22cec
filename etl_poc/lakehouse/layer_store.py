"""The intermediate layers on disk, for both engines: one place for their reads and writes.

Layout: <data>/layers/<engine>/<layer>/<key>=YYYY-MM-DD/part-*.parquet, Hive style, the day key
in the directory name only (as Spark's partitionBy writes it). `key` is `event_date` for event
layers and `partition_date` for rejects (a reject without a usable date is attributed to a day
by its landing file). Writing a window first removes every day directory of that window, so a
re-run replaces the window exactly: no duplicate and no stale day is left behind.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import polars as pl

EVENT_KEY = "event_date"
REJECT_KEY = "partition_date"


def days(start: date, end: date) -> list[date]:
    """The days of the window [start, end)."""
    return [start + timedelta(days=i) for i in range((end - start).days)]


def layer_dir(root: Path, engine: str, layer: str) -> Path:
    return root / engine / layer


def _day_dir(root: Path, engine: str, layer: str, key: str, day: date) -> Path:
    return layer_dir(root, engine, layer) / f"{key}={day.isoformat()}"


def clear_window(root: Path, engine: str, layer: str, key: str, start: date, end: date) -> None:
    for day in days(start, end):
        shutil.rmtree(_day_dir(root, engine, layer, key, day), ignore_errors=True)


def window_files(
    root: Path, engine: str, layer: str, key: str, start: date, end: date
) -> list[Path]:
    """The Parquet files of the window's days, in day order."""
    files: list[Path] = []
    for day in days(start, end):
        files.extend(sorted(_day_dir(root, engine, layer, key, day).glob("*.parquet")))
    return files


def window_dirs(root: Path, engine: str, layer: str, key: str, start: date, end: date) -> list[str]:
    """The day directories of the window that hold data, for Spark's reader."""
    return [
        str(path)
        for path in (_day_dir(root, engine, layer, key, day) for day in days(start, end))
        if any(path.glob("*.parquet"))
    ]


def window_size(
    root: Path, engine: str, layer: str, key: str, start: date, end: date
) -> tuple[int, int]:
    """Rows and bytes of a layer's window, from the Parquet footers (no data is read)."""
    import pyarrow.parquet as pq

    files = window_files(root, engine, layer, key, start, end)
    return sum(pq.read_metadata(f).num_rows for f in files), sum(f.stat().st_size for f in files)


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
    root: Path, engine: str, layer: str, key: str, start: date, end: date, max_rows: int | None
) -> list[tuple[date, date]]:
    """The window [start, end) as consecutive windows of whole days holding at most
    `max_rows` rows of a layer each (from the Parquet footers)."""
    window = days(start, end)
    rows = [
        window_size(root, engine, layer, key, day, day + timedelta(days=1))[0] for day in window
    ]
    return [
        (piece[0], piece[-1] + timedelta(days=1)) for piece in in_pieces(window, rows, max_rows)
    ]


# --- Polars ---------------------------------------------------------------------------------


def polars_write(
    frame: pl.DataFrame,
    root: Path,
    engine: str,
    layer: str,
    key: str,
    start: date,
    end: date,
) -> None:
    """Replace the window [start, end) of a layer with `frame` (rows outside it are an error)."""
    _check_inside(frame, layer, key, start, end)
    clear_window(root, engine, layer, key, start, end)
    _write_days(frame, root, engine, layer, key, part=0)


def polars_add_part(
    frame: pl.DataFrame,
    root: Path,
    engine: str,
    layer: str,
    key: str,
    start: date,
    end: date,
    part: int,
) -> None:
    """Add `frame` to the window's days as their file part-<part>.parquet, next to what they
    hold: a window written piece by piece (cleared first with clear_window)."""
    _check_inside(frame, layer, key, start, end)
    _write_days(frame, root, engine, layer, key, part)


def _write_days(frame: pl.DataFrame, root: Path, engine: str, layer: str, key: str, part: int):
    for (day,), rows in frame.partition_by(key, as_dict=True, maintain_order=False).items():
        target = _day_dir(root, engine, layer, key, day)
        target.mkdir(parents=True, exist_ok=True)
        rows.drop(key).write_parquet(target / f"part-{part}.parquet")


def _check_inside(frame: pl.DataFrame, layer: str, key: str, start: date, end: date) -> None:
    outside = frame.filter((pl.col(key) < start) | (pl.col(key) >= end) | pl.col(key).is_null())
    if outside.height:
        raise ValueError(f"{layer}: {outside.height} rows outside the window [{start}, {end})")


def polars_read(
    root: Path,
    engine: str,
    layer: str,
    key: str,
    start: date,
    end: date,
    schema: dict[str, pl.DataType] | None = None,
) -> pl.LazyFrame:
    """The window of a layer, with its day key as a column. Empty (with `schema`, if given)
    when no day of the window holds data."""
    files = window_files(root, engine, layer, key, start, end)
    if not files:
        if schema is None:
            raise FileNotFoundError(
                f"{layer_dir(root, engine, layer)}: nothing for [{start}, {end})"
            )
        return pl.LazyFrame(schema=schema)
    # The day key comes from each file's directory name.
    return pl.scan_parquet(files, hive_partitioning=True, hive_schema={key: pl.Date})


# --- Spark ----------------------------------------------------------------------------------


def spark_write(frame, root: Path, engine: str, layer: str, key: str, start: date, end: date):
    """Replace the window [start, end) of a layer with a Spark DataFrame."""
    clear_window(root, engine, layer, key, start, end)
    (frame.write.mode("append").partitionBy(key).parquet(str(layer_dir(root, engine, layer))))


def spark_read(spark, root: Path, engine: str, layer: str, key: str, start: date, end: date):
    """The window of a layer, with its day key as a column; None when no day holds data."""
    dirs = window_dirs(root, engine, layer, key, start, end)
    if not dirs:
        return None
    return spark.read.option("basePath", str(layer_dir(root, engine, layer))).parquet(*dirs)
