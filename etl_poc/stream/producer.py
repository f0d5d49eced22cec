"""`etl-poc stream produce`: landing rows published to the events topic, in arrival order.

The generator writes each landing file in arrival order (late events where they arrived), so
the rows are sent in file order, their timestamps as the generator spaced them, keyed by
user_id (one partition per user: a user's events stay in order). At a target rate (events
per second) or as fast as the client and broker go, with compression, and a progress line.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

from etl_poc.lakehouse.landing_readers import polars_read_landing
from etl_poc.stream.broker import Broker
from etl_poc.stream.messages import encode_rows

COMPRESSIONS = ("lz4", "zstd", "gzip", "snappy", "none")
CHUNK_ROWS = 100_000  # landing rows encoded at a time


@dataclass(frozen=True)
class Produced:
    events: int
    seconds: float
    files: tuple[str, ...]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def producer_config(broker: Broker, compression: str) -> dict:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: choose one of {COMPRESSIONS}")
    return {
        "bootstrap.servers": broker.bootstrap,
        "compression.type": compression,
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "acks": "all",
        "queue.buffering.max.messages": 500_000,
    }


def produce(
    broker: Broker,
    topic: str,
    files: list[Path],
    landing_dir: Path,
    *,
    rate: float = 0.0,
    compression: str = "lz4",
    limit: int | None = None,
    progress: bool = True,
) -> Produced:
    """Publish the files' rows (at most `limit`) at `rate` events per second (0: as fast as
    possible); returns what was sent once the broker has acknowledged every message."""
    rows = polars_read_landing(files, landing_dir)
    if limit is not None:
        rows = rows.head(limit)
    rows = rows.collect()
    total = rows.height
    client = Producer(producer_config(broker, compression))
    failures: list[str] = []

    def delivered(error, message):
        if error is not None:
            failures.append(f"partition {message.partition()}: {error}")

    started = time.monotonic()
    shown = started
    sent = 0
    for offset in range(0, total, CHUNK_ROWS):
        for key, value in encode_rows(rows.slice(offset, CHUNK_ROWS)):
            while True:
                try:
                    client.produce(topic, value, key, on_delivery=delivered)
                    break
                except BufferError:  # the client's queue is full: let it drain
                    client.poll(0.05)
            sent += 1
            if rate and sent % 100 == 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if sent % 10_000 == 0:
                client.poll(0)
                now = time.monotonic()
                if progress and now - shown >= (1 if sys.stderr.isatty() else 10):
                    shown = now
                    _progress(sent, total, now - started)
    remaining = client.flush(120)
    seconds = time.monotonic() - started
    if progress:
        _progress(sent, total, seconds, end="\n")
    if remaining or failures:
        raise RuntimeError(
            f"{remaining} message(s) not acknowledged, {len(failures)} failed"
            + (f": {failures[0]}" if failures else "")
        )
    return Produced(sent, seconds, tuple(str(f.relative_to(landing_dir)) for f in files))


def _progress(sent: int, total: int, seconds: float, end: str = "") -> None:
    end = end or ("\r" if sys.stderr.isatty() else "\n")
    rate = sent / seconds if seconds else 0
    share = 100 * sent / total if total else 100
    sys.stderr.write(f"produced {sent:,}/{total:,} events ({share:.0f} %), {rate:,.0f}/s{end}")
    sys.stderr.flush()
