"""What a layer's run read and wrote, and the figures every layer's materialization carries.

Rows and bytes come from file footers and sizes only (no data is read): the stored layers a
layer reads and writes are spec.LAYERS', the landing files' figures come with the raw layer's
result, and the Iceberg data files' from the commits' summaries.
"""

from __future__ import annotations

from datetime import date

from etl_poc.lakehouse import layer_store
from etl_poc.lakehouse.paths import Paths
from etl_poc.lakehouse.runner import LayerResult
from etl_poc.logic.spec import layer as layer_named

# The figures every layer's materialization carries (defs/metadata.py writes them), which the
# benchmark asset reads back and aggregates (report/graph_benchmark.py).
LAYER_FIGURES = (
    "seconds", "startup_seconds", "cpu_seconds", "cpu_utilisation", "peak_rss_bytes",
    "rows_in", "rows_out", "bytes_read", "bytes_written", "events_per_second",
)  # fmt: skip


def layer_io(
    paths: Paths, engine: str, layer: str, start: date, end: date, result: LayerResult
) -> dict[str, int]:
    """Rows in, and bytes read and written, by a layer's run over a window (an input handed
    over in memory by the layer before, in a fused chain, was not read: no bytes)."""
    described = layer_named(layer)
    rows_in = bytes_read = bytes_written = 0
    for stored in described.inputs:
        rows, size = layer_store.window_size(paths.layers, engine, stored, start, end)
        rows_in += rows
        bytes_read += 0 if stored in result.in_memory else size
    for stored in described.outputs:
        bytes_written += layer_store.window_size(paths.layers, engine, stored, start, end)[1]
    if not described.inputs:  # the landing files
        rows_in, bytes_read = result.counts["landing_rows"], result.counts["landing_bytes"]
    if not described.outputs:  # the Iceberg data files
        bytes_written = sum(
            int(commit["summary"].get("added-files-size", 0)) for commit in result.details.values()
        )
    return {"rows_in": rows_in, "bytes_read": bytes_read, "bytes_written": bytes_written}


def rows_by_day(paths: Paths, engine: str, layer: str, start: date, end: date) -> dict[date, int]:
    """Each day's own rows of what a layer's run wrote: its first stored output's days, or,
    for the Iceberg step, those of the sessionized layer it committed whole (the events
    table's window holds exactly those rows)."""
    described = layer_named(layer)
    stored = described.outputs[0] if described.outputs else described.inputs[0]
    return layer_store.day_rows(paths.layers, engine, stored, start, end)
