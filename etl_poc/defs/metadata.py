"""Dagster metadata from frames: a markdown preview and a column schema, for every asset and
check that shows rows."""

import dagster as dg
import polars as pl

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
