"""The warehouse's figures (issue 18), at a size: the operational database's change data
capture day by day, the time of each dbt model, and the latency of the marts' queries an
analyst runs. `python -m etl_poc.bench.warehouse --size small` (make bench-warehouse) writes
measurements/warehouse-<size>.json and .md, which `make report` includes.

The steps, in one fresh data directory: the landing zone and the operational tables generated
(the generator's seed: the same data each time); Polars' lineage over the whole window (the
pipeline as the assets run it); the embedded PostgreSQL loaded with the initial tables and the
first day, captured (Debezium's snapshot), then each further day loaded (one transaction) and
captured (streamed), each day's load and capture timed; the current state rebuilt and compared
with the source; the warehouse's raw schema loaded; `dbt build` whole (each model's time, from
dbt's run_results), then again with nothing changed; each analyst query `--repeat` times.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from etl_poc.generate import GeneratorConfig, generate
from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.spec import DEFAULT_START_DATE
from etl_poc.measure.usage import TreeSampler, cpu_speed, host_facts
from etl_poc.oltp import capture, source, sync
from etl_poc.oltp.server import started
from etl_poc.settings import settings
from etl_poc.warehouse import marts, project, raw


def _cdc_by_day(paths: Paths, catalog) -> dict:
    days = list(source.changes_by_day(paths.oltp_source))
    rows = []
    with TreeSampler() as sampler, started(paths.postgres) as server:
        for index, day in enumerate(days):
            began = time.perf_counter()
            loaded = source.load(server, paths.oltp_source, through=day)
            load_seconds = time.perf_counter() - began
            if index == 0:
                continue  # the first capture (below) snapshots the first day with the rest
            result = capture.capture(server, catalog, paths.cdc_state)
            rows.append({
                "day": day.isoformat(), "kind": "snapshot" if index == 1 else "stream",
                "changes_applied": sum(loaded.applied.values()),
                "load_seconds": round(load_seconds, 3), "capture_seconds": round(result.seconds, 3),
                "changes_captured": sum(result.added.values()), "batches": result.batches,
            })  # fmt: skip
    streamed = [r for r in rows if r["kind"] == "stream"]
    capture_times = [r["capture_seconds"] for r in streamed]
    return {
        "days": rows,
        "streamed_days": len(streamed),
        "capture_seconds_median": round(statistics.median(capture_times), 3),
        "capture_seconds_max": round(max(capture_times), 3),
        "changes_per_streamed_day_median": statistics.median(r["changes_captured"] for r in streamed),
        "snapshot_seconds": rows[0]["capture_seconds"],
        "snapshot_changes": rows[0]["changes_captured"],
        "peak_rss_bytes": sampler.usage.peak_rss_bytes,  # this process, Debezium's JVM in it
    }  # fmt: skip


def measure(size: str, work: Path, repeat: int) -> dict:
    if work.exists():
        shutil.rmtree(work)
    paths = Paths(work)
    began = time.perf_counter()
    generated = generate(GeneratorConfig.for_size(size, out_dir=paths.landing, progress=False,
                                                  formats=("parquet",)))  # fmt: skip
    figures: dict = {"generate_seconds": round(time.perf_counter() - began, 1),
                     "events": generated.manifest["expected"]["rows"]}  # fmt: skip
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "etl_poc.bench.plain", "--engine", "polars",
                    "--data", str(work), "--out", str(work / "plain"),
                    "--start-date", DEFAULT_START_DATE.isoformat()],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    figures["polars_lineage_seconds"] = round(time.perf_counter() - began, 1)
    catalog = iceberg.open_catalog(paths.warehouse)
    figures["cdc"] = _cdc_by_day(paths, catalog)
    database = sync.Database(paths)
    began = time.perf_counter()
    rebuilt = sync.rebuild(catalog)
    figures["rebuild_seconds"] = round(time.perf_counter() - began, 3)
    figures["oltp_rows"] = {t: r["rows"] for t, r in rebuilt.items()}
    figures["oltp_changes"] = {t: r["changes"] for t, r in rebuilt.items()}
    figures["state_equals_source"] = all(c.equal for c in sync.compare(database, catalog).values())
    began = time.perf_counter()
    loaded = raw.load(catalog, paths.dbt_warehouse, engines=("polars",))
    figures["raw_load_seconds"] = round(time.perf_counter() - began, 3)
    figures["raw_rows"] = loaded.rows
    full = project.run(paths.dbt_warehouse, ["build"])
    figures["dbt_build_seconds"] = round(full.seconds, 2)
    figures["dbt_model_seconds"] = {k: round(v, 3) for k, v in full.model_seconds().items()}
    figures["dbt_tests"] = sum(1 for r in full.results if r["unique_id"].startswith("test."))
    figures["dbt_warnings"] = [r["unique_id"] for r in full.results if r["status"] == "warn"]
    unchanged = project.run(paths.dbt_warehouse, ["build"], days=[])
    figures["dbt_build_unchanged_seconds"] = round(unchanged.seconds, 2)
    figures["queries"] = [vars(m) for m in marts.latencies(paths.dbt_warehouse, repeat=repeat)]
    figures["marts_rows"] = {m: marts.read_mart(paths.dbt_warehouse, m).height
                             for m in project.MARTS}  # fmt: skip
    return figures


def markdown(result: dict) -> str:
    f = result["figures"]
    cdc = f["cdc"]
    lines = [
        f"# Warehouse figures: {result['size']} ({f['events']:,} events)", "",
        f"`{result['command']}` on {result['host']['cores']} cores, {result['when']}; one "
        "run (these are not medians of repeated runs, apart from the query latencies).", "",
        "## Change data capture (Debezium, embedded PostgreSQL), per day", "",
        f"Snapshot of the initial tables and the first day: {cdc['snapshot_changes']:,} rows in "
        f"{cdc['snapshot_seconds']:.2f} s. Then {cdc['streamed_days']} days streamed, a "
        f"capture each: median {cdc['capture_seconds_median']:.2f} s (max "
        f"{cdc['capture_seconds_max']:.2f} s) for a median of "
        f"{cdc['changes_per_streamed_day_median']:,} changes; peak memory "
        f"{cdc['peak_rss_bytes'] / 2**20:,.0f} MiB (the process, Debezium's JVM included; not "
        "the PostgreSQL server). Each capture's time includes starting Debezium's connector "
        "and the end-of-capture mark (about a second).", "",
        "| day | kind | changes applied | load s | changes captured | capture s |",
        "|---|---|---:|---:|---:|---:|",
        *(f"| {r['day']} | {r['kind']} | {r['changes_applied']:,} | {r['load_seconds']:.3f} | "
          f"{r['changes_captured']:,} | {r['capture_seconds']:.3f} |" for r in cdc["days"]),
        "", f"Current state rebuilt in {f['rebuild_seconds']:.2f} s; equal to a SELECT of the "
        f"source: {f['state_equals_source']}.", "",
        "## dbt models (DuckDB)", "",
        f"Raw schema loaded from Iceberg in {f['raw_load_seconds']:.2f} s. `dbt build` "
        f"(models and {f['dbt_tests']} tests) {f['dbt_build_seconds']:.1f} s; again with no "
        f"day changed {f['dbt_build_unchanged_seconds']:.1f} s (most of either is dbt's own "
        "start-up). Warnings: " + (", ".join(f["dbt_warnings"]) or "none") + ".", "",
        "| model | seconds |", "|---|---:|",
        *(f"| {m} | {s:.3f} |" for m, s in sorted(f["dbt_model_seconds"].items(),
                                                    key=lambda kv: -kv[1])),
        "", "## Analyst queries on the marts", "",
        f"Each run {f['queries'][0]['runs']} times on one read-only connection after warm-up; "
        f"the platform's target for a complex mart query: p95 under {marts.LATENCY_TARGET_MS:.0f} ms.",
        "", "| query | p50 ms | p95 ms | max ms | rows |", "|---|---:|---:|---:|---:|",
        *(f"| {q['name']} | {q['p50_ms']:.2f} | {q['p95_ms']:.2f} | {q['max_ms']:.2f} | "
          f"{q['rows']} |" for q in f["queries"]),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--repeat", type=int, default=50, help="runs of each analyst query")
    parser.add_argument("--work", type=Path, default=None,
                        help="the data directory (default <bench dir>/warehouse-<size>)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=settings().measurements_dir)
    args = parser.parse_args(argv)
    work = args.work or settings().bench_dir / f"warehouse-{args.size}"
    speed_before = cpu_speed()
    figures = measure(args.size, work, args.repeat)
    result = {
        "size": args.size,
        "command": f"make bench-warehouse SIZE={args.size}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {**host_facts(), "python": platform.python_version(),
                 "cpu_speed_before": speed_before, "cpu_speed_after": cpu_speed()},
        "figures": figures,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"warehouse-{args.size}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / f"warehouse-{args.size}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
