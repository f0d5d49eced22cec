"""A pipeline benchmark file's figures: medians, min and max per run kind, the derived
ratios the targets are about, and its markdown (the harness, bench/pipeline.py, writes them)."""

from __future__ import annotations

from etl_poc.logic.spec import ENGINES
from etl_poc.report.stats import spread
from etl_poc.report.units import GIB, gib

# Issue 17's targets (the report's Targets section says, per file, which are met).
FLOOR_TARGET = 5.0  # Polars through Dagster, at most this many times the I/O floor
FUSED_FLOOR_TARGET = 3.0  # the Polars chain in one plan, at most this many times the floor
OVERHEAD_TARGET = 0.10  # what Dagster adds to the Polars run, under this share
STARTUP_TARGET = 1.0  # seconds of start-up per Polars step, under this
POLARS_PEAK_TARGET = 6e9  # bytes: the Polars lineage's peak on `large`, under 6 GB
GENERATOR_TARGET = 1e6  # events per second at medium, at least this


def summarize(runs: list[dict]) -> dict:
    """Medians, min and max per (kind, engine), and the figures the targets are about."""
    summary: dict = {}
    failures: dict = {}
    for run in runs:
        name = f"{run['kind']}/{run['engine']}"
        (failures if run.get("failed") else summary).setdefault(name, []).append(run)
    failed = {
        name: {
            "runs": len(mine),
            "wall_seconds": spread(r["wall_seconds"] for r in mine),
            "peak_rss_bytes": spread(r["peak_rss_bytes"] for r in mine),
            "error": mine[-1]["error"],
        }
        for name, mine in failures.items()
    }
    figures = {}
    for name, mine in summary.items():
        figures[name] = {
            key: spread(r[key] for r in mine)
            for key in ("wall_seconds", "peak_rss_bytes", "cpu_utilisation", "cpu_seconds")
        }
        figures[name]["runs"] = len(mine)
    derived = {}

    def median(name: str) -> float | None:
        return figures[name]["wall_seconds"]["median"] if name in figures else None

    floor, polars, plain = median("floor/floor"), median("dagster/polars"), median("plain/polars")
    if floor and polars:
        derived["polars_over_io_floor"] = polars / floor
    if plain and polars:
        derived["dagster_overhead_polars"] = (polars - plain) / plain
    fused = [r for r in summary.get("plain/polars", []) if r.get("result", {}).get("fused_chain")]
    if floor and fused:  # the chain computed once (lakehouse.polars_runner), no orchestrator
        derived["polars_fused_over_io_floor"] = (
            figures["plain/polars"]["wall_seconds"]["median"] / floor
        )
    for engine in ENGINES[1:]:
        other = median(f"dagster/{engine}")
        if polars and other:
            derived[f"{engine}_over_polars"] = other / polars
    return {"by_run_kind": figures, "derived": derived, "failed": failed}


def markdown(result: dict, chart: str) -> str:
    rows = result["summary"]["by_run_kind"]
    derived = result["summary"]["derived"]
    lines = [
        f"# Benchmark: {result['size']}, window {result['window'][0]} .. {result['window'][1]}",
        "",
        f"Measured {result['measured_at']} on {result['host']['cores']} cores, "
        f"{result['host']['memory_bytes'] / GIB:.0f} GiB; each run a fresh process tree "
        f"sampled from outside; {result['repeat']} attempt(s), engines alternated.",
        "",
        f"Spark master {result['spark_master']}"
        + (f" ({result['spark_cluster']})" if result.get("spark_cluster") else "")
        + (f"; CPUs {result['cpus']} only" if result.get("cpus") else "")
        + (f"; settings {result['settings']}" if result.get("settings") else "")
        + ".",
        "",
        "| run | runs | wall s median [min-max] | peak RSS GiB | cores busy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, figures in sorted(rows.items()):
        wall, rss = figures["wall_seconds"], figures["peak_rss_bytes"]
        lines.append(
            f"| {name} | {figures['runs']} | {wall['median']:.1f} "
            f"[{wall['min']:.1f}-{wall['max']:.1f}] | {gib(rss['median'])} "
            f"(max {gib(rss['max'])}) | {figures['cpu_utilisation']['median']:.2f} |"
        )
    for name, failure in sorted(result["summary"].get("failed", {}).items()):
        lines.append(
            f"| {name}: FAILED | {failure['runs']} | {failure['wall_seconds']['median']:.1f} "
            f"(when it failed) | {gib(failure['peak_rss_bytes']['median'])} | - |"
        )
    for name, failure in sorted(result["summary"].get("failed", {}).items()):
        lines += ["", f"{name} failed: `{failure['error']}`"]
    lines += ["", "Derived (medians):", ""]
    labels = {
        "polars_over_io_floor": "Polars (orchestrated) / I/O floor: {:.2f}x (target at most "
        f"{FLOOR_TARGET:.0f}x)",
        "dagster_overhead_polars": "Dagster overhead on Polars: {:.1%} (target under "
        f"{OVERHEAD_TARGET:.0%})",
        "polars_fused_over_io_floor": "Polars' fused chain without Dagster (plain/polars) / "
        "I/O floor: {:.2f}x (target at most " + f"{FUSED_FLOOR_TARGET:.0f}x)",
        "spark_over_polars": "Spark / Polars, whole backfill: {:.2f}x",
        "duckdb_over_polars": "DuckDB / Polars, whole backfill: {:.2f}x",
    }
    lines += [f"- {labels[k].format(v)}" for k, v in derived.items()]
    lines += [
        "",
        "`dagster/<engine>`: `dagster job execute -j bench_<engine>` over the window (the "
        "lineage without checks), from process start to exit. `plain/<engine>`: the same "
        "runner calls without Dagster (`python -m etl_poc.bench.plain`). "
        "`floor/floor`: read every landing file and write it back as Parquet, no transform.",
        "",
        f"![wall time and peak memory per run kind]({chart})",
    ]
    if result.get("graph"):
        lines += ["", "## Per layer (from the assets' own metadata)", ""]
        lines += [_graph_table(result["graph"])]
    return "\n".join(lines) + "\n"


def _graph_table(graph: dict) -> str:
    """Each layer's median seconds per engine and each engine over Polars (the engines the
    file holds: two in files written before DuckDB was an engine of the graph)."""
    engines = list(next(iter(graph["layers"].values())))
    others = [e for e in engines if e != "polars"]
    lines = [
        "| layer | "
        + " | ".join([*(f"{e} s" for e in engines), *(f"{e}/polars" for e in others)])
        + " |",
        "|---|" + "---:|" * (len(engines) + len(others)),
    ]
    for layer, at in graph["layers"].items():
        cells = [f"{at[e]['seconds']['median']:.2f}" for e in engines]
        for e in others:
            ratio = graph.get(f"{e}_over_polars", {}).get(layer)
            cells.append(f"{ratio:.1f}x" if ratio else "-")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
