"""`make report`: reports/REPORT.md, with PNG charts beside it, built from the measured JSON of
the benchmark harness (measurements/benchmark-<label>.json, kept in the repository).
Regenerating after new measurements updates it; every figure names the file and the time it
was measured, and every projection says it is one and what model it comes from.

What it holds: per size, each run kind's median [min-max] wall time, peak memory and cores;
how time and memory grow with data (least-squares exponent over the default runs, labelled as
a fit) and where each engine would stop fitting the host's memory; the vertical variants (one
core, Polars' streaming engine, whole windows in memory, Spark's driver memory) against the
default runs of the same size; the cost of a run on the smallest node whose memory holds the
measured peak; Spark on a standalone cluster against local mode, an Amdahl fit of the measured
serial share with its projection and the crossover with Polars on one node; and a decision
flowchart (mermaid) whose thresholds are taken from those figures.
"""

from __future__ import annotations

from pathlib import Path

from etl_poc.report import sections
from etl_poc.report.charts import scaling_png
from etl_poc.report.cost import load_prices
from etl_poc.report.models import load_generator_runs, load_measurements


def build_report(
    measurements_dir: Path, out_dir: Path | None = None, prices_path: Path | None = None
) -> Path:
    """REPORT.md (and report-scaling.png) in `out_dir` (default: `measurements_dir`)."""
    out_dir = out_dir or measurements_dir
    everything = load_measurements(measurements_dir)
    if not everything:
        raise FileNotFoundError(
            f"no benchmark-<size>.json under {measurements_dir}: run `make bench SIZE=...` first"
        )
    prices = load_prices(prices_path)
    # Growth, cost and thresholds from the default runs; variants and clusters apart.
    defaults = [m for m in everything if m.is_default] or everything
    lines = ["# Polars vs Spark (and DuckDB): the report", ""]
    lines += [
        f"Built by `make report` from the harness's JSON files in `{measurements_dir}`; every "
        "table names the file it comes from. Figures are medians [min-max] of fresh-process "
        "runs on the host named; a projection or fit says so. The host is a shared VM whose "
        "speed changes from day to day: each file records one core's speed (SHA-256 MB/s) "
        "before and after its runs, and only figures of similar speed compare.",
        "",
        *sections.results(everything),
    ]
    growth = sections.growth(defaults)
    lines += ["", "## How time and memory grow with data", "", *growth.pop("lines")]
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = out_dir / "report-scaling.png"
    if scaling_png(growth, chart):
        lines += ["", f"![wall time and peak memory against events, log-log]({chart.name})"]
    lines += sections.targets(defaults, load_generator_runs(measurements_dir))
    lines += sections.layers(defaults)
    lines += sections.variants(everything, defaults)
    lines += sections.single_node_costs(defaults, prices)
    cluster = sections.cluster_section(everything, defaults, prices)
    lines += cluster.pop("lines")
    sources = sorted({(i.source, i.as_of) for i in prices.values()})
    lines += ["", "Prices: " + "; ".join(f"{s} ({d})" for s, d in sources) + "."]
    lines += ["", "## Decision framework", "", *sections.flowchart(defaults, growth, cluster)]
    lines += warehouse_section(measurements_dir)
    lines += stream_section(measurements_dir)
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def warehouse_section(measurements_dir: Path) -> list[str]:
    """The warehouse's figures (make bench-warehouse): CDC per day, dbt, the marts' queries."""
    import json

    files = sorted(measurements_dir.glob("warehouse-*.json"))
    if not files:
        return []
    lines = [
        "", "## The warehouse: change data capture, dbt and the marts", "",
        "From `make bench-warehouse SIZE=...` (etl_poc/bench/warehouse.py; one run each, the "
        "query latencies over repeated runs). Capture: Debezium's embedded engine on the "
        "project's PostgreSQL, a capture per day after the day's changes are loaded.", "",
        "| file | events | capture per day, median (max) | changes per day | dbt build | "
        "slowest model | worst query p95 |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]  # fmt: skip
    for path in files:
        f = json.loads(path.read_text())["figures"]
        slowest = max(f["dbt_model_seconds"].items(), key=lambda kv: kv[1])
        worst = max(f["queries"], key=lambda q: q["p95_ms"])
        cdc = f["cdc"]
        lines.append(
            f"| {path.name} | {f['events']:,} | {cdc['capture_seconds_median']:.2f} s "
            f"({cdc['capture_seconds_max']:.2f} s) | {cdc['changes_per_streamed_day_median']:,} "
            f"| {f['dbt_build_seconds']:.1f} s | {slowest[0]} {slowest[1]:.2f} s | "
            f"{worst['name']} {worst['p95_ms']:.1f} ms |"
        )
    return lines


def stream_section(measurements_dir: Path) -> list[str]:
    """The speed layer's figures (make bench-stream), beside the batch ones: the producer, each
    engine's throughput, latency at a fixed rate, lag, memory, the live queries."""
    import json

    files = sorted(measurements_dir.glob("stream-*.json"))
    if not files:
        return []
    lines = [
        "", "## The speed layer: the broker, both streaming engines, ClickHouse", "",
        "From `make bench-stream SIZE=...` (etl_poc/bench/stream.py; one run each, latencies "
        "as percentiles over every event of the run; embedded Tansu broker, chdb stores). "
        "Throughput is per second of micro-batch work on a backlog; latency is produce to "
        "stored (the materialized views are updated by the same insert) at a fixed rate.", "",
        "| file | producer/s (lz4) | engine | backlog events/s | latency p50 / p95 / p99 ms "
        "(rate/s) | max lag | peak GiB | worst live query p95 |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for path in files:
        result = json.loads(path.read_text())
        rate = result["producer"]["rate_median_per_second"]
        for engine, backlog in result["backlog"].items():
            fixed = result["rate"][engine]
            latency = fixed["latency_ms"]
            worst = max(result["live_queries"][engine].items(), key=lambda kv: kv[1]["p95_ms"])
            lines.append(
                f"| {path.name} | {rate:,} | {engine} | {backlog['throughput_per_second']:,} | "
                f"{latency['p50']:,.0f} / {latency['p95']:,.0f} / {latency['p99']:,.0f} "
                f"({fixed['rate_achieved']:,}) | {fixed['max_consumer_lag']:,} | "
                f"{max(backlog['peak_rss_gib'], fixed['peak_rss_gib'])} | "
                f"{worst[0]} {worst[1]['p95_ms']:.1f} ms |"
            )
    return lines
