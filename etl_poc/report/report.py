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
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(lines) + "\n")
    return report
