"""The report's markdown sections, each from the benchmark files (report.models) and the
price table (report.cost)."""

from __future__ import annotations

from etl_poc.logic.spec import ENGINES
from etl_poc.report.cost import (
    MEMORY_HEADROOM,
    Deployment,
    cost_per_million_events,
    crossover,
    run_cost,
    smallest_node,
)
from etl_poc.report.models import (
    ENGINE_RUNS,
    BenchmarkFile,
    amdahl,
    at,
    fitted_exponent,
    median,
    newest,
    serial_fraction,
    speedup,
    value,
    workers_to_beat,
)
from etl_poc.report.pipeline_runs import (
    FLOOR_TARGET,
    FUSED_FLOOR_TARGET,
    GENERATOR_TARGET,
    OVERHEAD_TARGET,
    POLARS_PEAK_TARGET,
    STARTUP_TARGET,
)
from etl_poc.report.units import gib, ratio, seconds

PROJECTED_WORKERS = (1, 2, 4, 8, 16)


def results(everything: list[BenchmarkFile]) -> list[str]:
    lines = [
        "## Results by size",
        "",
        "| data (file, measured, host) | variant | run | wall s | peak RSS GiB | cores busy |",
        "|---|---|---|---:|---:|---:|",
    ]
    for m in everything:
        for run, figures in sorted(m.by_run_kind.items()):
            wall, rss = figures["wall_seconds"], figures["peak_rss_bytes"]
            lines.append(
                f"| {m.size}, {m.events:,} events ({m.source}, {m.measured_at}, "
                f"{_host(m.host)}) | {m.variant} | {run} | {wall['median']:.1f} "
                f"[{wall['min']:.1f}-{wall['max']:.1f}] | {gib(rss['median'])} | "
                f"{figures['cpu_utilisation']['median']:.2f} |"
            )
    return lines


def _host(host: dict) -> str:
    """Cores, and one core's speed before and after the runs (SHA-256 MB/s) when recorded."""
    speed = host.get("cpu_speed_mb_s")
    return f"{host['cores']} cores" + (
        f", core speed {speed[0]:.0f}/{speed[1]:.0f} MB/s" if speed else ""
    )


def growth(defaults: list[BenchmarkFile]) -> dict:
    """Per engine: the fitted exponents, the points, and where the memory fit reaches the
    host's memory (a projection)."""
    lines, growth = [], {}
    for engine, run in ENGINE_RUNS.items():
        wall = [(m.events, median(m, run, "wall_seconds")) for m in newest(defaults, run)]
        rss = [(m.events, median(m, run, "peak_rss_bytes")) for m in newest(defaults, run)]
        wall = [(x, y) for x, y in wall if y]
        rss = [(x, y) for x, y in rss if y]
        time_exp, memory_exp = fitted_exponent(wall), fitted_exponent(rss)
        growth[engine] = (time_exp, memory_exp, wall, rss)
        if time_exp is None:
            lines.append(f"- {engine}: measured at {len(wall)} size(s); no fit yet.")
            continue
        # Between the two largest sizes: fixed costs weigh less, and pieces show up there.
        last_time, last_memory = fitted_exponent(wall[-2:]), fitted_exponent(rss[-2:])
        lines.append(
            f"- {engine}: wall time grows like events^{time_exp:.2f}, peak memory like "
            f"events^{memory_exp:.2f} (least-squares fit over {len(wall)} sizes, "
            f"{wall[0][0]:,} to {wall[-1][0]:,} events: a fit, not a measurement); between the "
            f"two largest sizes, events^{last_time:.2f} and events^{last_memory:.2f}. "
            + _memory_limit(engine, rss, last_memory, defaults[-1].host["memory_bytes"])
        )
    return {"lines": lines, **growth}


def _memory_limit(engine: str, rss: list, exponent: float, host_bytes: float) -> str:
    """Where the memory fit reaches the host's memory, from the largest measured point."""
    events, peak = rss[-1]
    if peak >= host_bytes:
        return f"At {events:,} events its peak already reaches the host's memory."
    if exponent < 0.3:
        return (
            f"Its peak barely grows ({gib(peak)} GiB at {events:,} events): memory is bounded "
            "by the work held at once, not by the data."
        )
    limit = events * (host_bytes / peak) ** (1 / exponent)
    capped = (
        " Spark's JVM heap is capped (ETL_POC_SPARK_DRIVER_MEMORY), so past the cap it spills "
        "to disk and slows down rather than fails."
        if engine == "spark"
        else ""
    )
    return (
        f"Projected from that fit, it would reach this host's {host_bytes / 2**30:.0f} GiB at "
        f"about {limit:,.0f} events (a projection).{capped}"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def targets(defaults: list[BenchmarkFile], generators: list[dict] | None = None) -> list[str]:
    """The benchmark targets (issue 17), each met or not with its figure and the file it comes
    from, per default benchmark file; a target no file measured says so."""
    lines = ["", "## Targets", ""]
    for m in defaults:
        derived = m.derived
        where = f"{m.size} ({m.source})"
        floor = derived.get("polars_over_io_floor")
        if floor is not None:
            lines.append(
                f"- {where}: Polars through Dagster {floor:.1f}x the I/O floor (target at most "
                f"{FLOOR_TARGET:.0f}x: {_verdict(floor <= FLOOR_TARGET)})."
            )
        overhead = derived.get("dagster_overhead_polars")
        if overhead is not None:
            lines.append(
                f"- {where}: Dagster adds {overhead:.0%} to the Polars run (target under "
                f"{OVERHEAD_TARGET:.0%}: {_verdict(overhead < OVERHEAD_TARGET)})."
            )
        for engine in ENGINES[1:]:
            over = derived.get(f"{engine}_over_polars")
            if over is not None:
                lines.append(
                    f"- {where}: {engine} takes {over:.2f}x Polars' time, whole backfill through "
                    f"Dagster (target: Polars ahead, above 1x: {_verdict(over > 1)})."
                )
        startup = _polars_startup_per_step(m.graph)
        if startup is not None:
            layer, worst = startup
            lines.append(
                f"- {where}: Polars start-up per step at most {worst:.2f} s ({layer}; target under "
                f"{STARTUP_TARGET:.0f} s: {_verdict(worst < STARTUP_TARGET)})."
            )
        fused = derived.get("polars_fused_over_io_floor")
        if fused is not None:
            lines.append(
                f"- {where}: the fused Polars chain (every layer computed once, written as it "
                f"passes, no orchestrator: plain/polars) {fused:.1f}x the I/O floor (target at "
                f"most {FUSED_FLOOR_TARGET:.0f}x: {_verdict(fused <= FUSED_FLOOR_TARGET)})."
            )
    if not any("polars_fused_over_io_floor" in m.derived for m in defaults):
        lines.append(
            f"- The fused Polars chain (at most {FUSED_FLOOR_TARGET:.0f}x the floor): not "
            "measured in these files (their plain/polars runs worked layer by layer)."
        )
    large = [m for m in newest(defaults, ENGINE_RUNS["polars"]) if m.events >= 100_000_000]
    peak = median(large[-1], ENGINE_RUNS["polars"], "peak_rss_bytes") if large else None
    if peak is None:
        lines.append("- Polars' peak on large (100M events) under 6 GB: not measured.")
    else:
        lines.append(
            f"- Polars' peak on large ({large[-1].events:,} events, {large[-1].source}): "
            f"{peak / 1e9:.2f} GB (target under 6 GB: {_verdict(peak < POLARS_PEAK_TARGET)})."
        )
    medium = [g for g in generators or [] if g.get("size") == "medium"]
    if not medium:
        lines.append("- The generator at medium, at least 1M events/s: not measured.")
    for g in medium:
        rate = g["events_per_second"]["median"]
        lines.append(
            f"- The generator at medium ({g['source']}, {g['measured_at']}, "
            f"{'+'.join(g['formats'])}): {rate / 1e6:.2f} M events/s, median of {g['repeat']} "
            f"(target at least 1M: {_verdict(rate >= GENERATOR_TARGET)})."
        )
    return lines


def _polars_startup_per_step(graph: dict | None) -> tuple[str, float] | None:
    """The Polars step with the longest median start-up in a file's per-layer comparison."""
    if not graph:
        return None
    per_layer = {
        layer: engines["polars"]["startup_seconds"]["median"]
        for layer, engines in graph["layers"].items()
        if "startup_seconds" in engines.get("polars", {})
    }
    if not per_layer:
        return None
    layer = max(per_layer, key=per_layer.get)
    return layer, per_layer[layer]


def layers(defaults: list[BenchmarkFile]) -> list[str]:
    """Where the time, memory and cores go, layer by layer (the assets' own metadata)."""
    with_layers = [m for m in defaults if m.graph and m.graph.get("layers")]
    if not with_layers:
        return []
    lines = [
        "",
        "## Resource patterns, layer by layer",
        "",
        "From the materializations' own metadata of the same runs (medians): each layer's "
        "seconds, peak RSS of the process tree (the JVM counted for Spark) and cores busy.",
        "",
        "| data (file) | layer | Polars s | Spark s | Spark/Polars | Polars GiB | Spark GiB "
        "| Polars cores | Spark cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in with_layers:
        for layer, engines in m.graph["layers"].items():
            p, s = engines.get("polars"), engines.get("spark")
            if not (p and s):
                continue
            seconds = p["seconds"]["median"], s["seconds"]["median"]
            lines.append(
                f"| {m.size} ({m.source}) | {layer} | {seconds[0]:.1f} | {seconds[1]:.1f} | "
                f"{ratio(seconds[1], seconds[0])} | {gib(p['peak_rss_bytes']['median'])} | "
                f"{gib(s['peak_rss_bytes']['median'])} | {p['cpu_utilisation']['median']:.2f} | "
                f"{s['cpu_utilisation']['median']:.2f} |"
            )
    return lines


def variants(everything: list[BenchmarkFile], defaults: list[BenchmarkFile]) -> list[str]:
    """Each vertical variant against the default runs of the same data."""
    variants = [m for m in everything if not m.is_default and not m.on_cluster]
    if not variants:
        return []
    lines = [
        "",
        "## One machine: variants",
        "",
        "The same data and runs as the default ones, with one thing changed; ratios are against "
        "the default runs' medians of the same size.",
        "",
        "| data | variant (file) | run | wall s | x default | peak RSS GiB | x default |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for m in variants:
        for run in sorted(m.by_run_kind):
            wall, peak = median(m, run, "wall_seconds"), median(m, run, "peak_rss_bytes")
            base_wall = value(defaults, m.events, run, "wall_seconds")
            base_peak = value(defaults, m.events, run, "peak_rss_bytes")
            lines.append(
                f"| {m.size} | {m.variant} ({m.source}) | {run} | {seconds(wall)} | "
                f"{ratio(wall, base_wall)} | {gib(peak)} | {ratio(peak, base_peak)} |"
            )
        for run, failure in sorted(m.failed.items()):
            wall, peak = failure["wall_seconds"]["median"], failure["peak_rss_bytes"]["median"]
            lines.append(
                f"| {m.size} | {m.variant} ({m.source}) | {run}: **failed** after "
                f"{wall:.1f} s: `{failure['error'][:160]}` | - | - | {gib(peak)} | - |"
            )
    return lines


def single_node_costs(defaults: list[BenchmarkFile], prices: dict) -> list[str]:
    lines = [
        "",
        "## Cost per run on one node",
        "",
        "The cheapest node of the price table whose memory holds the measured peak x "
        f"{MEMORY_HEADROOM}; cost = wall x nodes x hourly price (per-second billing, one-minute "
        "minimum). Wall times are as measured on the host's cores, not projected to the node's: "
        "a node with more vCPUs than the host would likely be faster.",
        "",
        "| data | engine | node | USD per run | USD per million events |",
        "|---|---|---|---:|---:|",
    ]
    for events in sorted({m.events for m in defaults}):
        for engine, run in ENGINE_RUNS.items():
            m = at(defaults, events, run)
            if m is None:
                continue
            wall, peak = median(m, run, "wall_seconds"), median(m, run, "peak_rss_bytes")
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
    return lines


def cluster_section(everything: list[BenchmarkFile], defaults: list[BenchmarkFile], prices) -> dict:
    """BenchmarkFile cluster runs beside local mode; per size with 1 and 2 workers measured, the
    Amdahl fit, its projection, and where a cluster would beat Polars on one node."""
    cluster = [m for m in everything if m.on_cluster]
    found: dict = {"lines": [], "fits": []}
    if not cluster:
        return found
    lines = [
        "",
        "## Spark on a standalone cluster (this machine)",
        "",
        "Wall times only: the harness samples the driver's process tree, and executors run under "
        "the workers' JVMs. The workers share this host's cores, so a worker here is one core.",
        "",
        "| run (file, measured) | workers | Spark s | local mode s, same size | Polars s, same size |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in cluster:
        lines.append(
            f"| {m.label} ({m.source}, {m.measured_at}) | {m.workers or '?'} | "
            f"{seconds(median(m, ENGINE_RUNS['spark'], 'wall_seconds'))} | "
            f"{seconds(value(defaults, m.events, ENGINE_RUNS['spark'], 'wall_seconds'))} | "
            f"{seconds(value(defaults, m.events, ENGINE_RUNS['polars'], 'wall_seconds'))} |"
        )
    worker_node = min(
        (i for i in prices.values() if i.memory_gib >= 8), key=lambda i: i.usd_per_hour
    )
    for events in sorted({m.events for m in cluster}):
        by_workers = {
            m.workers: median(m, ENGINE_RUNS["spark"], "wall_seconds")
            for m in cluster
            if m.events == events and m.workers in (1, 2)
        }
        if not (by_workers.get(1) and by_workers.get(2)):
            continue
        one, two = by_workers[1], by_workers[2]
        share = serial_fraction(one, two)
        polars = value(defaults, events, ENGINE_RUNS["polars"], "wall_seconds")
        polars_peak = value(defaults, events, ENGINE_RUNS["polars"], "peak_rss_bytes")
        fit = {"events": events, "one": one, "two": two, "share": share, "polars": polars}
        found["fits"].append(fit)
        lines += [
            "",
            f"### Projection at {events:,} events (Amdahl fit, not a measurement)",
            "",
            f"Model: T(N) = T(1) x (s + (1 - s) / N), with T(1) = {one:.1f} s and T(2) = "
            f"{two:.1f} s measured, so the serial share s = 2 T(2)/T(1) - 1 = {share:.2f}; a "
            f"cluster can never be more than {speedup(share)} faster than one worker. "
            + (
                "The second worker made the run slower: both workers, the driver and the "
                "master share this host's cores, so no parallel share is measurable here and "
                "the projection is flat; a cluster of separate hosts has to be measured. "
                if two >= one
                else ""
            )
            + "Start-up per node (the cluster's and the session's) is inside the measured times "
            "and taken as constant. Cost: N nodes of "
            f"{worker_node.name} ({worker_node.memory_gib:.0f} GiB, ${worker_node.usd_per_hour}/h"
            "), one per worker, per-second billing.",
            "",
            "| workers | projected Spark s | USD per run | Polars on one node s (measured) | USD |",
            "|---:|---:|---:|---:|---:|",
        ]
        polars_node = smallest_node(polars_peak, prices) if polars_peak else None
        polars_cost = run_cost(polars_node, polars) if polars and polars_node else None
        for n in PROJECTED_WORKERS:
            time = amdahl(one, share, n)
            cost = run_cost(Deployment(worker_node, n), time)
            lines.append(
                f"| {n} | {time:.1f} | {cost:.4f} | {seconds(polars)} | "
                f"{'-' if polars_cost is None else f'{polars_cost:.4f}'} |"
            )
        fit["faster_from"] = workers_to_beat(one, share, polars)
        fit["cheapest_cluster"] = run_cost(Deployment(worker_node, 1), one)
        fit["polars_cost"] = polars_cost
        lines += ["", _crossing_words(fit)]
    sizes = sorted(f["events"] for f in found["fits"])
    if len(sizes) >= 2:
        fits = sorted(found["fits"], key=lambda f: f["events"])
        spark2 = [f["two"] for f in fits]
        polars = [f["polars"] for f in fits]
        if all(polars):
            crossing = crossover(sizes, polars, spark2)
            lines += [
                "",
                "Across the measured sizes, Spark on 2 workers "
                + (
                    f"becomes at least as fast as Polars at about {crossing:,.0f} events "
                    "(interpolated between measured sizes)."
                    if crossing is not None
                    else "is slower than Polars on one node at every measured size; no "
                    "crossover within the measurements."
                ),
            ]
    found["lines"] = lines
    return found


def _crossing_words(fit: dict) -> str:
    if fit["polars"] is None:
        return "Polars was not measured at this size: no comparison."
    faster = fit["faster_from"]
    time = (
        f"Faster than Polars on one node ({fit['polars']:.1f} s) from {faster} workers on "
        "(projected)."
        if faster
        else f"No number of workers is projected to beat Polars on one node ({fit['polars']:.1f} "
        f"s): the serial share alone takes {fit['one'] * fit['share']:.1f} s."
    )
    cost = fit["polars_cost"]
    cheaper = (
        " Cheaper: never, since N x T(N) grows with N when s > 0, and even one worker costs "
        f"{fit['cheapest_cluster']:.4f} USD against Polars' {cost:.4f}."
        if cost is not None and fit["cheapest_cluster"] > cost
        else " The cheapest cluster (one worker) costs no more than Polars on one node."
    )
    return time + cheaper


def flowchart(defaults: list[BenchmarkFile], growth: dict, cluster: dict) -> list[str]:
    """A mermaid flowchart whose numbers come from the measurements: Polars' peak per run at
    the largest size with both engines, Spark's slowdown there and its growth, and the
    cluster's serial share."""
    polars_run, spark_run = ENGINE_RUNS["polars"], ENGINE_RUNS["spark"]
    both = sorted(
        {m.events for m in newest(defaults, polars_run)}
        & {m.events for m in newest(defaults, spark_run)}
    )
    events = both[-1] if both else defaults[-1].events
    largest = at(defaults, events, spark_run) or defaults[-1]
    polars_wall = value(defaults, events, polars_run, "wall_seconds")
    spark_wall = value(defaults, events, spark_run, "wall_seconds")
    biggest_polars = (newest(defaults, polars_run) or [None])[-1]
    peak = median(biggest_polars, polars_run, "peak_rss_bytes") if biggest_polars else None
    ratio = spark_wall / polars_wall if polars_wall and spark_wall else None
    memory = (
        f"Polars peaked at {gib(peak)} GiB for {biggest_polars.events:,} events, working "
        "pieces of whole days"
        if peak
        else "Polars' peak: not measured"
    )
    slower = f"Spark {ratio:.1f}x slower at {events:,} events" if ratio else "not measured"
    fits = sorted(cluster.get("fits", []), key=lambda f: f["events"])
    if fits:
        fit = fits[-1]
        beat = (
            f"projected to beat Polars from {fit['faster_from']} workers"
            if fit["faster_from"]
            else "never projected to beat Polars on one node"
        )
        scale_out = (
            f"Spark's serial share {fit['share']:.2f} at {fit['events']:,} events: at most "
            f"{speedup(fit['share'])} from more workers, {beat}"
        )
    else:
        scale_out = "cluster speed-up not measured yet (make cluster-up, bench --label ...)"
    points = growth.get("polars", (None, None, [], []))[2]
    time_exp = fitted_exponent(points[-2:]) if len(points) >= 2 else None
    grows = (
        f"Polars time grows like events^{time_exp:.2f} from {points[-2][0]:,} to "
        f"{points[-1][0]:,} events"
        if time_exp is not None
        else "growth not fitted"
    )
    return [
        "```mermaid",
        "flowchart TD",
        '  A["A batch: events per run, and its deadline"] --> B{"Is one day of it small '
        f'enough for one node? {memory}"}}',
        f'  B -- yes --> C{{"Does Polars finish in time? {grows}; {slower}"}}',
        '  C -- yes --> P["Polars on one node: cheapest and fastest measured here"]',
        f'  C -- no --> D{{"Would Spark on a cluster be faster? {scale_out}"}}',
        '  D -- no --> Q["Polars on a bigger node, or split the batch into runs by day"]',
        '  D -- yes --> S["Spark on a cluster: size it from the projection, then measure"]',
        '  B -- no --> E{"Can the work be cut by key (user, day) into pieces?"}',
        "  E -- yes --> P",
        "  E -- no --> S",
        "```",
        "",
        f"Thresholds from {largest.source} ({largest.measured_at})"
        + (
            f" and {biggest_polars.source}"
            if biggest_polars and biggest_polars is not largest
            else ""
        )
        + (
            f"; the cluster's from the runs at {fits[-1]['events']:,} events (a projection)."
            if fits
            else "."
        ),
    ]
