"""The speed layer's figures (issue 19), at a size. `python -m etl_poc.bench.stream --size
small` (make bench-stream) writes measurements/stream-<size>.json and .md, which `make report`
includes.

In one fresh directory, on an embedded Tansu broker:
- the producer's sustained rate: the landing rows published again and again for
  `--load-seconds` (lz4), then once with zstd; every message read back and counted, so the
  broker is seen to hold a few minutes of load;
- each engine's throughput on a backlog: every landing row published, then the sessionizer
  (`etl-poc stream run`, a fresh process) started and run until idle: messages per second of
  work, the process tree's peak memory (Spark's JVM and Python workers counted), its wall time
  with start-up;
- each engine at a fixed rate: the sessionizer started first, then `--rate` events per second
  published for `--rate-events` events: produce-to-stored latency (p50/p95/p99; ClickHouse's
  materialized views are updated by the insert itself, so a view is fresh when the event is
  stored), the consumer lag sampled twice a second (its maximum);
- the live queries on the store that run filled (each `--repeat` times: p50/p95).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from etl_poc.generate import GeneratorConfig, generate
from etl_poc.lakehouse.paths import Paths
from etl_poc.measure.usage import cpu_speed, host_facts
from etl_poc.settings import settings
from etl_poc.stream import broker as brokers
from etl_poc.stream import store as stores
from etl_poc.stream.consume import Reader, consumer
from etl_poc.stream.producer import produce
from etl_poc.stream.service import database_of, landing_files, store_path
from etl_poc.stream.sessionizer import STREAM_ENGINES, read_status


def _topics(name: str) -> brokers.Topics:
    return brokers.Topics(name, settings().stream_partitions, 24.0)


def _read_back(broker, topic: str, partitions: int) -> int:
    """Every message of the topic read from the start (the broker kept them all?)."""
    client = consumer(broker, f"bench-{uuid.uuid4().hex[:6]}")
    reader = Reader(client, topic, list(range(partitions)))
    count, starts = 0, dict.fromkeys(range(partitions), 0)
    while True:
        messages, ends = reader.read_available(starts, 200_000, first_wait=3)
        if not messages:
            break
        count += len(messages)
        starts = ends
    client.close()
    return count


def producer_load(broker, files, landing: Path, seconds: float) -> dict:
    topics = _topics("bench.load")
    brokers.ensure_topics(broker, topics)
    rates, sent, began = [], 0, time.monotonic()
    while time.monotonic() - began < seconds:
        result = produce(broker, topics.events, files, landing, progress=False)
        rates.append(result.rate)
        sent += result.events
    zstd = _topics("bench.zstd")
    brokers.ensure_topics(broker, zstd)
    with_zstd = produce(broker, zstd.events, files, landing, compression="zstd", progress=False)
    read = _read_back(broker, topics.events, topics.partitions)
    return {
        "seconds": round(time.monotonic() - began, 1),
        "events": sent,
        "rounds": len(rates),
        "rate_median_per_second": round(statistics.median(rates)),
        "rate_min_per_second": round(min(rates)),
        "rate_max_per_second": round(max(rates)),
        "zstd_rate_per_second": round(with_zstd.rate),
        "read_back": read,
        "all_read_back": read == sent,
    }


def _service(engine: str, broker, data: Path, topic: str, idle: float) -> subprocess.Popen:
    env = {**os.environ, "ETL_POC_STREAM_TOPIC": topic}
    command = [sys.executable, "-m", "etl_poc.cli", "stream", "run", "--engine", engine,
               "--bootstrap", broker.bootstrap, "--idle", str(idle), "--data", str(data)]  # fmt: skip
    data.mkdir(parents=True, exist_ok=True)
    log = open(data / f"{engine}.log", "wb")  # noqa: SIM115 (the service's, closed by exit)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _finish(service: subprocess.Popen, data: Path, engine: str) -> dict:
    if service.wait(timeout=1800) != 0:
        raise RuntimeError(f"{engine}: {(data / f'{engine}.log').read_text()[-2000:]}")
    return read_status(Paths(data).stream, engine)


def backlog(engine: str, broker, files, landing: Path, data: Path) -> dict:
    topics = _topics(f"bench.backlog.{engine}")
    brokers.ensure_topics(broker, topics)
    produced = produce(broker, topics.events, files, landing, progress=False)
    began = time.monotonic()
    status = _finish(_service(engine, broker, data, topics.events, idle=5), data, engine)
    return {
        "events": produced.events,
        "wall_seconds_with_startup": round(time.monotonic() - began - 5, 1),
        "work_seconds": round(status["busy_seconds"], 2),
        "throughput_per_second": round(status["throughput_per_second"]),
        "batches": status["batches"],
        "stored": status["stored"],
        "peak_rss_gib": round(status["peak_rss_bytes"] / 2**30, 2),
    }


def at_rate(engine, broker, files, landing, data, rate: float, events: int) -> dict:
    topics = _topics(f"bench.rate.{engine}")
    brokers.ensure_topics(broker, topics)
    service = _service(engine, broker, data, topics.events, idle=8)
    deadline = time.monotonic() + 300
    while read_status(Paths(data).stream, engine) is None:  # wait for its start-up
        if service.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{engine} did not start: {(data / f'{engine}.log').read_text()}")
        time.sleep(0.2)
    time.sleep(3)
    lags: list[int] = []
    sampling = {"on": True}

    import threading

    def sample():
        while sampling["on"]:
            status = read_status(Paths(data).stream, engine) or {}
            lags.append(status.get("lag", 0))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    produced = produce(broker, topics.events, files, landing, rate=rate, limit=events,
                       progress=False)  # fmt: skip
    status = _finish(service, data, engine)
    sampling["on"] = False
    sampler.join()
    return {
        "rate_target": rate,
        "rate_achieved": round(produced.rate),
        "events": produced.events,
        "latency_ms": status["latency_ms"],
        "max_consumer_lag": max(lags) if lags else 0,
        "throughput_per_second": round(status["throughput_per_second"]),
        "peak_rss_gib": round(status["peak_rss_bytes"] / 2**30, 2),
        "batches": status["batches"],
    }


def live_queries(data: Path, engine: str, repeat: int) -> dict:
    timings = {}
    with stores.opened(path=store_path(data, engine), database=database_of(engine)) as store:
        for name, sql in stores.LIVE_QUERIES.items():
            store.query(sql)  # warm-up
            seconds = []
            for _ in range(repeat):
                began = time.perf_counter()
                store.query(sql)
                seconds.append((time.perf_counter() - began) * 1000)
            seconds.sort()
            timings[name] = {
                "p50_ms": round(statistics.median(seconds), 2),
                "p95_ms": round(seconds[int(0.95 * (len(seconds) - 1))], 2),
                "max_ms": round(seconds[-1], 2),
            }
    return timings


def _markdown(result: dict) -> str:
    load, lines = result["producer"], []
    lines += [
        f"# Speed-layer figures: {result['size']} ({result['landing_events']:,} landing rows)", "",
        f"`make bench-stream SIZE={result['size']}` on {result['host']['cores']} cores, "
        f"{result['measured_at']}; core speed {result['core_speed']:.0f} (SHA-256 MB/s of one core). "
        "Embedded Tansu broker "
        f"({result['tansu']}), chdb stores; one run per figure (latencies are percentiles over "
        "every event of the run).", "",
        "## The producer and the broker", "",
        f"{load['events']:,} events in {load['seconds']} s, {load['rounds']} rounds: median "
        f"{load['rate_median_per_second']:,}/s (min {load['rate_min_per_second']:,}, max "
        f"{load['rate_max_per_second']:,}) with lz4; {load['zstd_rate_per_second']:,}/s with "
        f"zstd. Read back: {load['read_back']:,} of {load['events']:,} "
        f"({'all' if load['all_read_back'] else 'NOT all'}). The platform design aims at 50K "
        "events/s.", "",
        "## Each engine on a backlog (every landing row waiting)", "",
        "| engine | events | work s | events/s of work | wall s with start-up | batches | "
        "peak GiB |", "|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for engine, row in result["backlog"].items():
        lines.append(
            f"| {engine} | {row['events']:,} | {row['work_seconds']} | "
            f"{row['throughput_per_second']:,} | {row['wall_seconds_with_startup']} | "
            f"{row['batches']} | {row['peak_rss_gib']} |"
        )
    lines += [
        "", "## Each engine at a fixed rate", "",
        "| engine | target/s | achieved/s | events | latency p50 ms | p95 ms | p99 ms | max lag "
        "| peak GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for engine, row in result["rate"].items():
        latency = row["latency_ms"]
        lines.append(
            f"| {engine} | {row['rate_target']:,.0f} | {row['rate_achieved']:,} | "
            f"{row['events']:,} | {latency['p50']:,} | {latency['p95']:,} | {latency['p99']:,} | "
            f"{row['max_consumer_lag']:,} | {row['peak_rss_gib']} |"
        )
    lines += [
        "", "Latency is produce (the message's timestamp) to stored in ClickHouse; the "
        "materialized views are updated by the same insert, so their freshness is this "
        "latency (the platform design's target: under 5 s).", "",
        "## Live queries (after the fixed-rate run)", "",
        "| engine | query | p50 ms | p95 ms | max ms |", "|---|---|---:|---:|---:|",
    ]  # fmt: skip
    for engine, queries in result["live_queries"].items():
        for name, row in queries.items():
            lines.append(
                f"| {engine} | {name} | {row['p50_ms']} | {row['p95_ms']} | {row['max_ms']} |"
            )
    lines += ["", "The platform design's target for real-time queries: p95 under 100 ms.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="small")
    parser.add_argument("--load-seconds", type=float, default=150.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rate-events", type=int, default=45_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--out", type=Path, default=settings().measurements_dir)
    args = parser.parse_args(argv)
    work = settings().bench_dir / f"stream-{args.size}"
    shutil.rmtree(work, ignore_errors=True)
    landing = work / "landing"
    generate(GeneratorConfig.for_size(args.size, out_dir=landing, formats=("parquet",),
                                      progress=False))  # fmt: skip
    files = landing_files(work, None)
    result = {
        "size": args.size,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_facts(),
        "core_speed": cpu_speed(),
        "python": platform.python_version(),
        "tansu": brokers.tansu_binary().rsplit("/", 1)[-1],
    }
    with brokers.started(work / "broker") as broker:
        result["producer"] = producer_load(broker, files, landing, args.load_seconds)
        load = result["producer"]
        result["landing_events"] = load["events"] // max(load["rounds"], 1)
        result["backlog"] = {
            e: backlog(e, broker, files, landing, work / f"backlog-{e}") for e in STREAM_ENGINES
        }
        result["rate"] = {
            e: at_rate(e, broker, files, landing, work / f"rate-{e}", args.rate, args.rate_events)
            for e in STREAM_ENGINES
        }
    result["live_queries"] = {
        e: live_queries(work / f"rate-{e}", e, args.repeat) for e in STREAM_ENGINES
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"stream-{args.size}.json").write_text(json.dumps(result, indent=1))
    markdown = _markdown(result)
    (args.out / f"stream-{args.size}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
