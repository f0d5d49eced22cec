"""Dagster metadata a person can read, from frames and measurements: markdown previews, table
schemas with the spec's column descriptions, sizes in MiB/GiB, ids as text, and per-day
figures on per-day partitions; for every asset and check that shows rows or costs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl

from etl_poc.lakehouse.runner import LayerResult
from etl_poc.logic.spec import column_description
from etl_poc.measure.layer_io import LAYER_FIGURES
from etl_poc.measure.usage import Usage, host_facts
from etl_poc.report.units import GIB, mib, size_text

PREVIEW_COLUMNS = 10
OWNERS = ["team:data-platform"]
# The entry that holds every figure of LAYER_FIGURES exactly as measured (bytes in bytes):
# what the benchmark asset reads back. The entries beside it are for people.
FIGURES_ENTRY = "figures"


def window_text(start: date, end: date) -> str:
    """A partition window [start, end) as the metadata writes it."""
    return f"[{start}, {end})"


def parse_window(text: str) -> tuple[date, date]:
    """The window that window_text wrote."""
    first, end = (date.fromisoformat(part.strip()) for part in text.strip("[)").split(","))
    return first, end


def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, first: tuple[str, ...] = ()) -> dg.MetadataValue:
    """A frame's rows as a markdown table: the `first` columns, then the rest up to
    PREVIEW_COLUMNS columns."""
    if frame.is_empty():
        return dg.MetadataValue.md("_no rows_")
    leading = [c for c in first if c in frame.columns]
    columns = [*leading, *(c for c in frame.columns if c not in leading)][:PREVIEW_COLUMNS]
    shown = frame.select(columns)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * shown.width]
    for row in shown.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def table_schema(
    schema: pl.Schema | dict, required: frozenset[str] = frozenset()
) -> dg.TableSchema:
    """A table's columns with their types, what each holds (spec.COLUMN_DESCRIPTIONS), and the
    `required` ones (the Iceberg schema's) as not nullable."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                str(dtype),
                description=column_description(name),
                constraints=dg.TableColumnConstraints(nullable=name not in required),
            )
            for name, dtype in schema.items()
        ]
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
    spark_stages: dict | None = None  # Spark's own stage times (measure.spark_stages)


def cost_figures(result: LayerResult, measured: LayerCost) -> dict:
    """Every figure of LAYER_FIGURES, as measured."""
    usage = measured.usage
    figures = {
        "seconds": round(usage.wall_seconds, 3),
        "startup_seconds": round(measured.startup_seconds, 3),
        "cpu_seconds": round(usage.cpu_seconds, 3),
        "cpu_utilisation": round(usage.cpu_utilisation, 3),
        "peak_rss_bytes": usage.peak_rss_bytes,
        "rows_in": measured.io["rows_in"],
        "rows_out": result.rows,
        "bytes_read": measured.io["bytes_read"],
        "bytes_written": measured.io["bytes_written"],
        "events_per_second": (
            round(measured.io["rows_in"] / usage.wall_seconds) if usage.wall_seconds else 0
        ),
    }
    assert set(figures) == set(LAYER_FIGURES)
    return figures


def _count_name(name: str) -> str:
    return (
        f"window_{name.removesuffix('_bytes')}_mib" if name.endswith("_bytes") else f"window_{name}"
    )


def _count_value(name: str, value) -> int | float:
    return mib(int(value)) if name.endswith("_bytes") else int(value)


def host_text() -> str:
    host = host_facts()
    return f"{host['cores']} cores, {size_text(host['memory_bytes'])}, {host['platform']}"


def layer_metadata(
    result: LayerResult, measured: LayerCost, required: frozenset[str] = frozenset()
) -> dict:
    """The one helper every layer asset of every engine uses, for the run's whole window:
    rows and preview, and what the materialization cost (time, start-up, CPU, peak memory of
    the process tree incl. a JVM, I/O), on what (engine versions, host). Window totals are
    named window_*; each day's own row count is day_metadata's."""
    usage = measured.usage
    figures = cost_figures(result, measured)
    start, end = measured.window
    metadata = {
        "engine": measured.engine,
        "window": window_text(start, end),
        "window_rows_in": figures["rows_in"],
        "window_rows_out": figures["rows_out"],
        "window_read_mib": mib(figures["bytes_read"]),
        "window_written_mib": mib(figures["bytes_written"]),
        "seconds": figures["seconds"],
        "startup_seconds": figures["startup_seconds"],
        "events_per_second": figures["events_per_second"],
        "cpu_seconds": figures["cpu_seconds"],
        "cpu_utilisation": figures["cpu_utilisation"],
        "peak_rss_gib": round(usage.peak_rss_bytes / GIB, 3),
        FIGURES_ENTRY: dg.MetadataValue.json(figures),
        "engine_versions": dg.MetadataValue.json(measured.versions),
        "host": host_text(),
        # The reason first where there is one (raw): otherwise it is past the shown columns.
        "preview": markdown_table(result.preview, first=("reject_reason",)),
        **{_count_name(name): _count_value(name, value) for name, value in result.counts.items()},
    }
    if usage.high_water_bytes is not None:
        metadata["high_water_gib"] = round(usage.high_water_bytes / GIB, 3)
    if measured.spark_session_seconds is not None:
        metadata["spark_session_seconds"] = round(measured.spark_session_seconds, 3)
    if measured.spark_stages is not None:
        metadata["spark_stages"] = dg.MetadataValue.json(measured.spark_stages)
        metadata["spark_stage_seconds"] = measured.spark_stages["stage_seconds"]
    if not result.preview.is_empty():
        metadata["dagster/column_schema"] = table_schema(result.preview.schema, required)
    for name, value in result.details.items():
        metadata[name] = dg.MetadataValue.json(value) if value is not None else "none"
    return metadata


def day_metadata(rows_by_day: dict[date, int]) -> dict[str, dict]:
    """Per partition key: the day's own row count (what the UI shows as the partition's row
    count), so a range run does not show the window's total on every day."""
    return {
        day.isoformat(): {"dagster/row_count": rows, "dagster/partition_row_count": rows}
        for day, rows in rows_by_day.items()
    }


def rejects_metadata(by_reason: dict[str, int], sample: pl.DataFrame) -> dict:
    """Rejected rows of the window per reason, and a sample with the reason first."""
    table = ["| reject_reason | rows |", "|---|---:|"]
    table += [f"| {reason} | {rows:,} |" for reason, rows in by_reason.items()]
    return {
        "window_rejects_by_reason": dg.MetadataValue.md(
            "\n".join(table) if by_reason else "_no rejected rows_"
        ),
        "rejects_sample": markdown_table(
            sample, first=("reject_reason", "source_file", "raw_event_id", "raw_timestamp")
        ),
    }
