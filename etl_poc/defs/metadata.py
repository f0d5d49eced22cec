"""Dagster metadata from frames: a markdown preview and a column schema, for every asset and
check that shows rows."""

from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl

from etl_poc.lakehouse.runner import LayerResult
from etl_poc.measure.usage import Usage, host_facts

PREVIEW_COLUMNS = 10


def markdown_table(frame: pl.DataFrame) -> dg.MetadataValue:
    """A frame's rows (its first columns) as a markdown table."""
    if frame.is_empty():
        return dg.MetadataValue.md("_no rows_")
    shown = frame.select(frame.columns[:PREVIEW_COLUMNS]).cast(pl.String)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * shown.width]
    for row in shown.iter_rows():
        lines.append("| " + " | ".join("" if v is None else v for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def table_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
    )


@dataclass(frozen=True)
class LayerCost:
    """What one materialization of a layer cost."""

    engine: str
    window: tuple[date, date]
    usage: Usage  # the whole step: start-up, work, I/O accounting
    startup_seconds: float  # getting the engine ready, inside usage.wall_seconds
    spark_session_seconds: float | None  # the Spark session's start, on the run's first step
    io: dict[str, int]  # rows_in, bytes_read, bytes_written
    versions: dict[str, str]


def layer_metadata(result: LayerResult, measured: LayerCost) -> dict:
    """The one helper every layer asset of both engines uses: rows and preview, and what the
    materialization cost (time, start-up, CPU, peak memory of the process tree incl. a JVM,
    I/O), on what (engine versions, window, host). Carries every figure of
    measure.layer_io.LAYER_FIGURES."""
    usage, host = measured.usage, host_facts()
    start, end = measured.window
    metadata = {
        "engine": measured.engine,
        "window": f"[{start}, {end})",
        "dagster/row_count": result.rows,
        "rows_in": measured.io["rows_in"],
        "rows_out": result.rows,
        "bytes_read": measured.io["bytes_read"],
        "bytes_written": measured.io["bytes_written"],
        "seconds": round(usage.wall_seconds, 3),
        "startup_seconds": round(measured.startup_seconds, 3),
        "events_per_second": (
            round(measured.io["rows_in"] / usage.wall_seconds) if usage.wall_seconds else 0
        ),
        "cpu_seconds": round(usage.cpu_seconds, 3),
        "cpu_utilisation": round(usage.cpu_utilisation, 3),
        "peak_rss_bytes": usage.peak_rss_bytes,
        "peak_rss_gib": round(usage.peak_rss_bytes / 2**30, 3),
        "engine_versions": dg.MetadataValue.json(measured.versions),
        "host_cores": host["cores"],
        "host_memory_bytes": host["memory_bytes"],
        "preview": markdown_table(result.preview),
        **{name: int(value) for name, value in result.counts.items()},
    }
    if usage.high_water_bytes is not None:
        metadata["high_water_bytes"] = usage.high_water_bytes
    if measured.spark_session_seconds is not None:
        metadata["spark_session_seconds"] = round(measured.spark_session_seconds, 3)
    if not result.preview.is_empty():
        metadata["dagster/column_schema"] = table_schema(result.preview)
    for name, value in result.details.items():
        metadata[name] = dg.MetadataValue.json(value) if value is not None else "none"
    return metadata
