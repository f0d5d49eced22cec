"""`make report`: reports/REPORT.md, with PNG charts beside it, built from the measured JSON of
the benchmark harness (reports/benchmark-<size>.json). Regenerating after new measurements
updates it; every figure names the file and the time it was measured.

What it holds: per size, each run kind's median [min-max] wall time, peak memory and cores;
how time and memory grow with data (least-squares exponent of log wall / log peak RSS over log
events, labelled as a fit); the cost of a run on the smallest single node whose memory holds
the measured peak (report/cost.py and its price table); and a decision flowchart (mermaid)
whose thresholds are taken from those figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from etl_poc.report.cost import Deployment, cost_per_million_events, load_prices, run_cost

ENGINE_RUNS = {"polars": "dagster/polars", "spark": "dagster/spark"}
MEMORY_HEADROOM = 1.25  # a node needs this much more memory than the measured peak


@dataclass(frozen=True)
class Measured:
    source: str  # the JSON file
    measured_at: str
    size: str
    label: str
    spark_master: str
    events: int
    host: dict
    by_run_kind: dict
    derived: dict


def load_measurements(reports_dir: Path) -> list[Measured]:
    """Every pipeline benchmark JSON under `reports_dir`, smallest data first."""
    found = []
    for path in sorted(reports_dir.glob("benchmark-*.json")):
        content = json.loads(path.read_text())
        if content.get("benchmark") != "pipeline":
            continue
        events = _events(content)
        found.append(
            Measured(
                source=path.name,
                measured_at=content["measured_at"],
                size=content["size"],
                label=content.get("label", content["size"]),
                spark_master=content.get("spark_master", "local[*]"),
                events=events,
                host=content["host"],
                by_run_kind=content["summary"]["by_run_kind"],
                derived=content["summary"]["derived"],
            )
        )
    return sorted(found, key=lambda m: (m.events, m.label))


def _on_cluster(m: Measured) -> bool:
    return m.spark_master.startswith("spark://")


def _events(content: dict) -> int:
    """The events of a benchmark's data: from the graph comparison's raw rows when present,
    else from the size's name."""
    graph = content.get("graph") or {}
    raw = graph.get("layers", {}).get("raw", {}).get("polars", {}).get("rows_in")
    if raw:
        return int(raw["median"])
    sizes = {"small": 100_000, "medium": 10_000_000, "large": 100_000_000}
    size = content["size"]
    return sizes.get(size) or int(size)


def fitted_exponent(points: list[tuple[float, float]]) -> float | None:
    """The slope of log(y) over log(x) by least squares: y grows like x ** slope. None with
    fewer than two distinct x."""
    usable = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len({x for x, _ in usable}) < 2:
        return None
    mean_x = sum(x for x, _ in usable) / len(usable)
    mean_y = sum(y for _, y in usable) / len(usable)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in usable)
    variance = sum((x - mean_x) ** 2 for x, _ in usable)
    return covariance / variance


def _median(measured: Measured, run: str, key: str) -> float | None:
    figures = measured.by_run_kind.get(run)
    return figures[key]["median"] if figures else None


def smallest_node(peak_bytes: float, prices: dict) -> Deployment | None:
    """The cheapest single node whose memory holds the peak with headroom."""
    needed = peak_bytes * MEMORY_HEADROOM / 2**30
    fitting = [i for i in prices.values() if i.memory_gib >= needed]
    if not fitting:
        return None
    return Deployment(min(fitting, key=lambda i: i.usd_per_hour))


def build_report(reports_dir: Path, prices_path: Path | None = None) -> Path:
    measurements = load_measurements(reports_dir)
    if not measurements:
        raise FileNotFoundError(
            f"no benchmark-<size>.json under {reports_dir}: run `make bench SIZE=...` first"
        )
    prices = load_prices(prices_path)
    everything = measurements
    # Growth, cost and thresholds from local mode; cluster runs have a section of their own.
    measurements = [m for m in everything if not _on_cluster(m)] or everything
    lines = ["# Polars vs Spark: the report", ""]
    lines += [
        "Built by `make report` from the harness's JSON files; every table names the file it "
        "comes from. Figures are medians [min-max] of fresh-process runs on the host named.",
        "",
        "## Results by size",
        "",
        "| data (file, measured) | run | wall s | peak RSS GiB | cores busy |",
        "|---|---|---:|---:|---:|",
    ]
    for m in everything:
        for run, figures in sorted(m.by_run_kind.items()):
            wall, rss = figures["wall_seconds"], figures["peak_rss_bytes"]
            lines.append(
                f"| {m.size}, {m.events:,} events ({m.source}, {m.measured_at}, "
                f"{m.host['cores']} cores, Spark {m.spark_master}) | {run} | {wall['median']:.1f} "
                f"[{wall['min']:.1f}-{wall['max']:.1f}] | {rss['median'] / 2**30:.2f} | "
                f"{figures['cpu_utilisation']['median']:.2f} |"
            )
    lines += ["", "## How time and memory grow with data", ""]
    growth = {}
    for engine, run in ENGINE_RUNS.items():
        wall = [(m.events, _median(m, run, "wall_seconds")) for m in measurements]
        rss = [(m.events, _median(m, run, "peak_rss_bytes")) for m in measurements]
        wall = [(x, y) for x, y in wall if y]
        rss = [(x, y) for x, y in rss if y]
        growth[engine] = (fitted_exponent(wall), fitted_exponent(rss), wall, rss)
        time_exp, memory_exp = growth[engine][:2]
        if time_exp is None:
            lines.append(f"- {engine}: measured at one size only; no fit yet.")
        else:
            lines.append(
                f"- {engine}: wall time grows like events^{time_exp:.2f}, peak memory like "
                f"events^{memory_exp:.2f} (least-squares fit over {len(wall)} sizes: a fit, "
                "not a measurement)."
            )
    chart = reports_dir / "report-scaling.png"
    if _scaling_png(growth, chart):
        lines += ["", f"![wall time and peak memory against events, log-log]({chart.name})"]
    lines += ["", "## Cost per run on one node", ""]
    lines += [
        "The cheapest node of the price table whose memory holds the measured peak x "
        f"{MEMORY_HEADROOM}; cost = wall x nodes x hourly price (per-second billing, one-minute "
        "minimum). Wall times are as measured on the host's cores, not projected to the node's: "
        "a node with more vCPUs than the host would likely be faster.",
        "",
        "| data | engine | node | USD per run | USD per million events |",
        "|---|---|---|---:|---:|",
    ]
    for m in measurements:
        for engine, run in ENGINE_RUNS.items():
            wall, peak = _median(m, run, "wall_seconds"), _median(m, run, "peak_rss_bytes")
            if wall is None:
                continue
            node = smallest_node(peak, prices)
            if node is None:
                lines.append(f"| {m.size} | {engine} | none holds {peak / 2**30:.0f} GiB | | |")
                continue
            cost = run_cost(node, wall)
            lines.append(
                f"| {m.size} | {engine} | {node.label} ({node.instance.memory_gib:.0f} GiB, "
                f"${node.instance.usd_per_hour}/h) | {cost:.4f} | "
                f"{cost_per_million_events(cost, m.events):.4f} |"
            )
    cluster = [m for m in everything if _on_cluster(m)]
    if cluster:
        lines += ["", "## Spark on a standalone cluster (this machine)", ""]
        lines += [
            "Wall times only: the harness samples the driver's process tree, and executors run "
            "under the workers' JVMs, so a cluster run's memory and CPU figures leave them out.",
            "",
        ]
        lines += [
            "| run (file) | master | Spark s | local mode s, same size |",
            "|---|---|---:|---:|",
        ]
        for m in cluster:
            local = next((x for x in measurements if x.events == m.events), None)
            local_wall = _median(local, ENGINE_RUNS["spark"], "wall_seconds") if local else None
            wall = _median(m, ENGINE_RUNS["spark"], "wall_seconds")
            lines.append(
                f"| {m.label} ({m.source}) | {m.spark_master} | "
                f"{'-' if wall is None else f'{wall:.1f}'} | "
                f"{'-' if local_wall is None else f'{local_wall:.1f}'} |"
            )
    sources = sorted({(i.source, i.as_of) for i in prices.values()})
    lines += ["", "Prices: " + "; ".join(f"{s} ({d})" for s, d in sources) + "."]
    lines += ["", "## Decision framework", "", *_flowchart(measurements, growth)]
    report = reports_dir / "REPORT.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _scaling_png(growth: dict, path: Path) -> bool:
    """Wall time and peak memory against events, log-log, per engine; False without data."""
    if not any(wall for _, _, wall, _ in growth.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for engine, (_, _, wall, rss) in growth.items():
        if wall:
            time_axis.plot(*zip(*wall, strict=True), marker="o", label=engine)
        if rss:
            xs, ys = zip(*rss, strict=True)
            memory_axis.plot(xs, [y / 2**30 for y in ys], marker="o", label=engine)
    for axis, title in ((time_axis, "wall seconds"), (memory_axis, "peak RSS, GiB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("events")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _flowchart(measurements: list[Measured], growth: dict) -> list[str]:
    """A mermaid flowchart whose numbers come from the largest measured size."""
    largest = measurements[-1]
    polars_wall = _median(largest, ENGINE_RUNS["polars"], "wall_seconds")
    spark_wall = _median(largest, ENGINE_RUNS["spark"], "wall_seconds")
    polars_peak = _median(largest, ENGINE_RUNS["polars"], "peak_rss_bytes")
    ratio = spark_wall / polars_wall if polars_wall and spark_wall else None
    per_gib = (polars_peak / 2**30) / largest.events * 1e6 if polars_peak else None
    fits = (
        f"peak memory per million events about {per_gib:.2f} GiB (Polars, {largest.size})"
        if per_gib
        else "Polars' peak memory (not measured)"
    )
    faster = f"Spark {ratio:.1f}x slower at {largest.size}" if ratio else "ratio not measured"
    return [
        "```mermaid",
        "flowchart TD",
        f'  A["A daily batch: how many events?"] --> B{{"Does Polars\' working set fit one '
        f'node? {fits}"}}',
        f'  B -- yes --> C["Polars on one node: {faster}"]',
        '  B -- no --> D{"Can the job run per day or streaming?"}',
        "  D -- yes --> C",
        '  D -- no --> E["Spark on a cluster: measure it (make cluster-up) before deciding"]',
        "```",
        "",
        f"Thresholds from {largest.source} ({largest.measured_at}). Cluster figures and the "
        "crossover where a cluster becomes cheaper are not measured yet.",
    ]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    args = parser.parse_args()
    print(build_report(args.reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
