"""The benchmark harness: each engine's full backfill through the asset graph, repeated in
fresh processes and alternated, next to the same work without Dagster and the machine's I/O
floor; medians with min and max.

Per attempt, engines alternate in order (polars, spark / spark, polars), each as a
`dagster job execute` of its lineage without checks (`bench_<engine>`) over the whole window
of the landing data, from empty layers and warehouse. The same work without the orchestrator
(lakehouse.plain_run, `--plain` engines) gives Dagster's overhead; reading every landing file
and writing it back as Parquet (plain_run --engine floor) gives the I/O floor. Every process
tree is sampled from outside (measure.usage), so the JVM and Dagster's own processes count.
At the end the `engine_benchmark` asset runs on the harness's Dagster instance, so the
per-layer comparison comes from the same runs.

Output: <measurements>/benchmark-<label>.json (every run, the per-layer comparison, the
settings and CPUs of a variant, a cluster's workers) and .md with a chart (.png).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from etl_poc.measure.usage import TreeSampler, cpu_speed, host_facts
from etl_poc.report.stats import spread


def _label(size: str) -> str:
    """The generator's label for a size name, or for a number of events."""
    return size if not size.isdigit() else f"{int(size)}ev"


def _landing(size: str, scratch: Path) -> Path:
    """<scratch>/<size>: its landing zone generated (Parquet) unless already there. `size`:
    small, medium, large, or a number of events."""
    data = scratch / size
    if not (data / "landing" / f"manifest_{_label(size)}.json").exists():
        amount = ["--events", size] if size.isdigit() else ["--size", size]
        subprocess.run(
            [sys.executable, "-m", "etl_poc.cli", "generate", *amount, "--formats",
             "parquet", "--out", str(data / "landing"), "--no-progress"],
            check=True,
        )  # fmt: skip
    return data


def _window(data: Path, size: str) -> tuple[str, str]:
    manifest = json.loads((data / "landing" / f"manifest_{_label(size)}.json").read_text())
    first, last = manifest["window"]
    return first, last


def _fresh(data: Path) -> None:
    """Empty layers and warehouse: every run is a full backfill from the landing files."""
    for name in ("layers", "warehouse"):
        shutil.rmtree(data / name, ignore_errors=True)


def _measured(command: list[str], env: dict, log: Path, check: bool = True) -> dict:
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(process.pid, interval=0.1) as sampler:
            code = process.wait()
    if code != 0 and check:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed ({code}); see {log}")
    return {**sampler.usage.as_dict(), "exit_code": code}


def _last_error(log: Path) -> str:
    """The last line of the log that names an error, to record why a run failed."""
    lines = log.read_text(errors="replace").splitlines()[-400:]
    named = [line.strip() for line in lines if "Error" in line or "Exception" in line]
    return (named[-1] if named else (lines[-1] if lines else ""))[:400]


def run_pipeline_benchmark(
    size: str,
    repeat: int,
    reports_dir: Path,
    scratch: Path,
    engines: tuple[str, ...] = ("polars", "spark"),
    plain: tuple[str, ...] = ("polars",),
    floor: bool = True,
    label: str | None = None,
    settings: dict[str, str] | None = None,
    cpus: str | None = None,
) -> dict:
    """`label` names the output files (default: the size), e.g. to keep a run on a Spark
    cluster (ETL_POC_SPARK_MASTER=spark://...) or a variant apart from the default runs.
    `settings`: environment variables for every run (a variant: Polars' streaming engine,
    Spark's driver memory...); `cpus`: the CPUs every process may use (taskset -c)."""
    settings = dict(settings or {})
    if (settings or cpus) and not label:
        raise ValueError("a variant (settings or cpus) needs a label of its own")
    if settings.get("ETL_POC_CATALOG_URI"):
        raise ValueError(
            "ETL_POC_CATALOG_URI: every run starts from an empty warehouse, which a catalog on a "
            "server would outlive; the harness measures the embedded SQLite catalog"
        )
    label = label or size
    pinned = ["taskset", "-c", cpus] if cpus else []
    data = _landing(size, scratch)
    first, last = _window(data, size)
    home = scratch / f"dagster-{label}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log = scratch / f"benchmark-{label}.log"
    log.write_text("")
    processed_at = datetime.now(UTC).isoformat(timespec="seconds")
    # The runs' own instance (SQLite, under `home`) and catalog (SQLite, in the warehouse that
    # every run starts without), whatever the caller's environment names (the containers
    # name PostgreSQL for both).
    env = {**os.environ, "ETL_POC_DATA_DIR": str(data), "DAGSTER_HOME": str(home.resolve()),
           "ETL_POC_REPORTS_DIR": str(reports_dir.resolve()), "ETL_POC_CATALOG_URI": "",
           **settings}  # fmt: skip
    tags = json.dumps({
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
        "etl_poc/processed_at": processed_at,
    })  # fmt: skip
    dagster = str(Path(sys.executable).with_name("dagster"))
    speed_before = cpu_speed()
    runs: list[dict] = []
    for attempt in range(1, repeat + 1):
        order = engines if attempt % 2 else tuple(reversed(engines))
        steps = [("dagster", e) for e in order] + [("plain", e) for e in plain if e in order]
        if floor:
            steps.append(("floor", "floor"))
        for kind, engine in steps:
            _fresh(data)
            if kind == "dagster":
                command = [dagster, "job", "execute", "-m", "etl_poc.definitions",
                           "-j", f"bench_{engine}", "--tags", tags]  # fmt: skip
            else:
                command = [sys.executable, "-m", "etl_poc.lakehouse.plain_run", "--engine",
                           engine, "--data", str(data), "--start", first, "--last", last,
                           "--processed-at", processed_at, "--out", str(scratch / "plain")]  # fmt: skip
            usage = _measured(pinned + command, env, log, check=False)
            run = {"kind": kind, "engine": engine, "attempt": attempt, **usage}
            if usage["exit_code"]:  # a finding too (e.g. out of memory): recorded, not fatal
                run.update(failed=True, error=_last_error(log))
            elif kind != "dagster":
                run["result"] = json.loads((scratch / "plain" / "result.json").read_text())
            runs.append(run)
            print(
                f"{kind} {engine} run {attempt}: {usage['wall_seconds']:.1f} s, peak RSS "
                f"{usage['peak_rss_bytes'] / 2**30:.2f} GiB, {usage['cpu_utilisation']:.2f} cores"
                + (f", FAILED: {run['error']}" if run.get("failed") else ""),
                flush=True,
            )
    _fresh(data)
    graph = None
    succeeded = {r["engine"] for r in runs if r["kind"] == "dagster" and not r.get("failed")}
    if succeeded >= {"polars", "spark"}:
        _measured([dagster, "job", "execute", "-m", "etl_poc.definitions", "-j",
                   "engine_benchmark"], env, log)  # fmt: skip
        graph = json.loads((reports_dir / "benchmark-graph.json").read_text())
        for name in ("json", "md", "png"):  # the comparison is kept inside this run's JSON
            (reports_dir / f"benchmark-graph.{name}").unlink(missing_ok=True)
    result = {
        "benchmark": "pipeline",
        "size": size,
        "label": label,
        "spark_master": env.get("ETL_POC_SPARK_MASTER", "local[*]"),
        "spark_cluster": _cluster(env.get("ETL_POC_SPARK_MASTER", "")),
        "settings": settings,
        "cpus": cpus,
        "window": [first, last],
        "repeat": repeat,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {**host_facts(), "cpu_speed_mb_s": [speed_before, cpu_speed()]},
        "summary": summarize(runs),
        "graph": graph,
        "runs": runs,
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"benchmark-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    chart = reports_dir / f"benchmark-{label}.png"
    chart_png(result["summary"], chart)
    (reports_dir / f"benchmark-{label}.md").write_text(markdown(result, chart.name))
    failed = [r for r in runs if r.get("failed")]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(runs)} runs failed (recorded in "
            f"{reports_dir / f'benchmark-{label}.json'}); first: {failed[0]['error']}"
        )
    return result


def _cluster(master: str) -> dict | None:
    """The standalone cluster's workers, cores and memory as its master reports them (the
    master's UI on 127.0.0.1:8080, as `etl-poc cluster up` starts it)."""
    if not master.startswith("spark://"):
        return None
    from etl_poc.lakehouse.spark_cluster import ClusterSpec, master_status

    status = master_status(ClusterSpec()) or {}
    alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
    return {
        "workers": len(alive),
        "cores": sum(w.get("cores", 0) for w in alive),
        "memory_mib": sum(w.get("memory", 0) for w in alive),
    }


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
    spark = median("dagster/spark")
    if floor and polars:
        derived["polars_over_io_floor"] = polars / floor
    if plain and polars:
        derived["dagster_overhead_polars"] = (polars - plain) / plain
    if polars and spark:
        derived["spark_over_polars"] = spark / polars
    return {"by_run_kind": figures, "derived": derived, "failed": failed}


def markdown(result: dict, chart: str) -> str:
    rows = result["summary"]["by_run_kind"]
    derived = result["summary"]["derived"]
    lines = [
        f"# Benchmark: {result['size']}, window {result['window'][0]} .. {result['window'][1]}",
        "",
        f"Measured {result['measured_at']} on {result['host']['cores']} cores, "
        f"{result['host']['memory_bytes'] / 2**30:.0f} GiB; each run a fresh process tree "
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
            f"[{wall['min']:.1f}-{wall['max']:.1f}] | {rss['median'] / 2**30:.2f} "
            f"(max {rss['max'] / 2**30:.2f}) | {figures['cpu_utilisation']['median']:.2f} |"
        )
    for name, failure in sorted(result["summary"].get("failed", {}).items()):
        lines.append(
            f"| {name}: FAILED | {failure['runs']} | {failure['wall_seconds']['median']:.1f} "
            f"(when it failed) | {failure['peak_rss_bytes']['median'] / 2**30:.2f} | - |"
        )
    for name, failure in sorted(result["summary"].get("failed", {}).items()):
        lines += ["", f"{name} failed: `{failure['error']}`"]
    lines += ["", "Derived (medians):", ""]
    labels = {
        "polars_over_io_floor": "Polars (orchestrated) / I/O floor: {:.2f}x (target at most 4x)",
        "dagster_overhead_polars": "Dagster overhead on Polars: {:.1%} (target under 15 %)",
        "spark_over_polars": "Spark / Polars, whole backfill: {:.2f}x",
    }
    lines += [f"- {labels[k].format(v)}" for k, v in derived.items()]
    lines += [
        "",
        "`dagster/<engine>`: `dagster job execute -j bench_<engine>` over the window (the "
        "lineage without checks), from process start to exit. `plain/<engine>`: the same "
        "runner calls without Dagster (`python -m etl_poc.lakehouse.plain_run`). "
        "`floor/floor`: read every landing file and write it back as Parquet, no transform.",
        "",
        f"![wall time and peak memory per run kind]({chart})",
    ]
    if result.get("graph"):
        lines += ["", "## Per layer (from the assets' own metadata)", ""]
        lines += [_graph_table(result["graph"])]
    return "\n".join(lines) + "\n"


def _graph_table(graph: dict) -> str:
    lines = ["| layer | Polars s | Spark s | Spark/Polars |", "|---|---:|---:|---:|"]
    for layer, engines in graph["layers"].items():
        p, s = engines["polars"]["seconds"]["median"], engines["spark"]["seconds"]["median"]
        ratio = graph["spark_over_polars"].get(layer)
        lines.append(f"| {layer} | {p:.2f} | {s:.2f} | {f'{ratio:.1f}x' if ratio else '-'} |")
    return "\n".join(lines)


def chart_png(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(summary["by_run_kind"].items())
    names = [name for name, _ in rows]
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, key, scale, title in (
        (time_axis, "wall_seconds", 1, "wall seconds (median, min-max)"),
        (memory_axis, "peak_rss_bytes", 2**30, "peak RSS GiB (median, min-max)"),
    ):
        medians = [f[key]["median"] / scale for _, f in rows]
        low = [m - f[key]["min"] / scale for m, (_, f) in zip(medians, rows, strict=True)]
        high = [f[key]["max"] / scale - m for m, (_, f) in zip(medians, rows, strict=True)]
        axis.bar(names, medians, yerr=[low, high], capsize=4)
        axis.set_title(title)
        axis.tick_params(axis="x", rotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
