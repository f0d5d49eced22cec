"""The benchmark harness: each engine's full backfill through the asset graph, repeated in
fresh processes and alternated, next to the same work without Dagster and the machine's I/O
floor; medians with min and max.

Per attempt, engines alternate in order (polars, spark, duckdb / duckdb, spark, polars), each as a
`dagster job execute` of its lineage without checks (`bench_<engine>`) over the whole window
of the landing data, from empty layers and warehouse. The same work without the orchestrator
(bench/plain.py, `--plain` engines) gives Dagster's overhead; reading every landing file and
writing it back as Parquet (bench/plain.py --engine floor) gives the I/O floor. Every process
tree is sampled from outside (measure.run_measured), so the JVM and Dagster's own processes
count. At the end the `benchmark` job runs on the harness's Dagster instance, so the per-layer
comparison comes from the same runs. The figures are aggregated and written by
report/pipeline_runs.py.

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

from tqdm import tqdm

from etl_poc.defs.jobs import BENCHMARK_JOB
from etl_poc.defs.tags import PROCESSED_AT_TAG, range_tags
from etl_poc.logic.spec import ENGINES
from etl_poc.measure.usage import cpu_speed, host_facts, run_measured
from etl_poc.report.charts import runs_png
from etl_poc.report.pipeline_runs import markdown, summarize
from etl_poc.report.units import gib
from etl_poc.settings import env_name


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
    engines: tuple[str, ...] = ENGINES,
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
    if settings.get(env_name("catalog_uri")):
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
    env = {**os.environ, env_name("data_dir"): str(data), "DAGSTER_HOME": str(home.resolve()),
           env_name("reports_dir"): str(reports_dir.resolve()), env_name("catalog_uri"): "",
           **settings}  # fmt: skip
    tags = json.dumps({**range_tags(first, last), PROCESSED_AT_TAG: processed_at})
    dagster = str(Path(sys.executable).with_name("dagster"))
    speed_before = cpu_speed()
    runs: list[dict] = []
    per_attempt = len(engines) + len([e for e in plain if e in engines]) + bool(floor)
    # A bar over every run of the harness (on stderr; each run's figures still get a line).
    progress = tqdm(
        total=repeat * per_attempt, unit="run", desc="benchmark", file=sys.stderr, disable=None
    )  # drawn on a terminal only: a log keeps the lines
    for attempt in range(1, repeat + 1):
        order = engines if attempt % 2 else tuple(reversed(engines))
        steps = [("dagster", e) for e in order] + [("plain", e) for e in plain if e in order]
        if floor:
            steps.append(("floor", "floor"))
        for kind, engine in steps:
            progress.set_postfix_str(f"{kind} {engine}, attempt {attempt}")
            _fresh(data)
            if kind == "dagster":
                command = [dagster, "job", "execute", "-m", "etl_poc.definitions",
                           "-j", f"bench_{engine}", "--tags", tags]  # fmt: skip
            else:
                command = [sys.executable, "-m", "etl_poc.bench.plain", "--engine",
                           engine, "--data", str(data), "--start", first, "--last", last,
                           "--processed-at", processed_at, "--out", str(scratch / "plain")]  # fmt: skip
            usage = run_measured(pinned + command, env, log)
            run = {"kind": kind, "engine": engine, "attempt": attempt, **usage}
            if usage["exit_code"]:  # a finding too (e.g. out of memory): recorded, not fatal
                run.update(failed=True, error=_last_error(log))
            elif kind != "dagster":
                run["result"] = json.loads((scratch / "plain" / "result.json").read_text())
            runs.append(run)
            progress.write(
                f"{kind} {engine} run {attempt}: {usage['wall_seconds']:.1f} s, peak RSS "
                f"{gib(usage['peak_rss_bytes'])} GiB, {usage['cpu_utilisation']:.2f} cores"
                + (f", FAILED: {run['error']}" if run.get("failed") else ""),
                file=sys.stdout,
            )
            progress.update()
    progress.close()
    _fresh(data)
    graph = None
    succeeded = {r["engine"] for r in runs if r["kind"] == "dagster" and not r.get("failed")}
    if succeeded >= set(ENGINES):
        job = run_measured([dagster, "job", "execute", "-m", "etl_poc.definitions", "-j",
                            BENCHMARK_JOB], env, log)  # fmt: skip
        if job["exit_code"]:
            raise RuntimeError(f"the benchmark job failed ({job['exit_code']}); see {log}")
        graph = json.loads((reports_dir / "benchmark-graph.json").read_text())
        for name in ("json", "md", "png"):  # the comparison is kept inside this run's JSON
            (reports_dir / f"benchmark-graph.{name}").unlink(missing_ok=True)
    result = {
        "benchmark": "pipeline",
        "size": size,
        "label": label,
        "spark_master": env.get(env_name("spark_master")) or "local[*]",
        "spark_cluster": _cluster(env.get(env_name("spark_master"), "")),
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
    runs_png(result["summary"], chart)
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
    from etl_poc.spark.cluster import ClusterSpec, master_status

    status = master_status(ClusterSpec()) or {}
    alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
    return {
        "workers": len(alive),
        "cores": sum(w.get("cores", 0) for w in alive),
        "memory_mib": sum(w.get("memory", 0) for w in alive),
    }
