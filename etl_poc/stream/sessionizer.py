"""What both streaming sessionizers share: a micro-batch's outcome, how it is written (the
store exactly once, the dead letters and late events to their topics, the watermarks), and
the status file Dagster observes.

An engine module (polars_stream, spark_stream) turns a micro-batch of the raw contract and
the users' watermarks into an Outcome with its own rules (logic/<engine>_engine.py); this
module does the rest, the same for both.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
import polars as pl
from confluent_kafka import Producer

from etl_poc.logic.spec import LATE_EVENT
from etl_poc.measure.usage import TreeSampler
from etl_poc.stream.broker import Broker, Topics
from etl_poc.stream.messages import OFFSET, PARTITION, PRODUCED_AT, REASON_HEADER
from etl_poc.stream.state import StreamState, _write_atomically
from etl_poc.stream.store import EVENT_COLUMNS, Store

STREAM_ENGINES = ("polars", "spark")
LATENCY_SAMPLES = 200_000  # end-to-end latencies kept for the percentiles (a uniform sample)


@dataclass
class Outcome:
    """A micro-batch worked by an engine's rules."""

    sessionized: pl.DataFrame  # store.EVENT_COLUMNS
    dead_letters: pl.DataFrame  # message_partition, message_offset, reason: rejected by the rules
    late: pl.DataFrame  # message_partition, message_offset, reason (LATE_EVENT)
    duplicates: int  # replays of an event already sessionized (dropped)
    watermarks: pl.DataFrame  # the users' watermarks after the batch


@dataclass
class Status:
    """What a sessionizer reports after every batch (status-<engine>.json)."""

    engine: str
    started_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    batches: int = 0
    messages: int = 0
    sessionized: int = 0
    stored: int = 0  # newly inserted (a replayed batch inserts nothing twice)
    dead_letters: int = 0
    late: int = 0
    duplicates: int = 0
    lag: int = 0  # messages on the topic not yet read, after the last batch
    busy_seconds: float = 0.0  # time spent working batches (not waiting for messages)
    last_batch_seconds: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # produce -> stored
    peak_rss_bytes: int = 0  # this process tree's, sampled every 50 ms (a JVM counts)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.messages / self.busy_seconds if self.busy_seconds else 0.0


def status_path(directory: Path, engine: str) -> Path:
    return directory / f"status-{engine}.json"


def read_status(directory: Path, engine: str) -> dict | None:
    path = status_path(directory, engine)
    return json.loads(path.read_text()) if path.exists() else None


class Writer:
    """Writes outcomes: the store, the dead-letter and late topics, the watermarks, the
    status. One per running sessionizer."""

    def __init__(self, engine: str, broker: Broker, topics: Topics, store: Store, state_dir: Path):
        self.engine = engine
        self.topics = topics
        self.store = store
        self.state = StreamState(state_dir / engine)
        self.status_dir = state_dir
        self.status = Status(engine)
        self._latencies = np.empty(0)
        self._seen_latencies = 0
        self._rng = np.random.default_rng(0)
        # The process tree's memory sampled every 50 ms (Spark's JVM and Python workers
        # counted), as every materialization's is: the status gives its peak.
        self._sampler = TreeSampler().__enter__()
        self._producer = Producer(
            {"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "acks": "all"}
        )

    def close(self) -> None:
        """Release the producer (a client left alive keeps reconnecting to a stopped broker)."""
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
            self._sampler.__exit__(None, None, None)

    def write(self, batch: int, outcome: Outcome, values: dict[tuple[int, int], bytes]) -> int:
        """Write a batch's outcome (values: each message's bytes by partition and offset, for
        the dead letters); the number of events newly stored."""
        events = outcome.sessionized.select(list(EVENT_COLUMNS))
        stored = self.store.write_events(events.to_arrow())
        stored_at = time.time()
        self.store.write_set_aside(self._set_aside(outcome, values).to_arrow())
        for topic, rows in ((self.topics.dead_letter, outcome.dead_letters),
                            (self.topics.late, outcome.late)):  # fmt: skip
            for partition, offset, reason in rows.select(PARTITION, OFFSET, "reason").iter_rows():
                self._producer.produce(
                    topic,
                    values[(partition, offset)],
                    f"{self.topics.events}/{partition}/{offset}".encode(),
                    headers={REASON_HEADER: reason, "engine": self.engine},
                )
        if self._producer.flush(60):
            raise RuntimeError(f"dead letters of batch {batch} not acknowledged by the broker")
        self.state.save_watermarks(batch, outcome.watermarks)
        self._count(outcome, stored, stored_at)
        return stored

    @staticmethod
    def _set_aside(outcome: Outcome, values: dict[tuple[int, int], bytes]) -> pl.DataFrame:
        rows = pl.concat([outcome.dead_letters, outcome.late]).select(PARTITION, OFFSET, "reason")
        texts = [
            values[key].decode("utf-8", "replace")
            for key in rows.select(PARTITION, OFFSET).iter_rows()
        ]
        fields = [_fields(text) for text in texts]
        return rows.with_columns(
            event_id=pl.Series([f.get("event_id") for f in fields], dtype=pl.String),
            event_date=pl.Series([f.get("timestamp") for f in fields], dtype=pl.String)
            .str.slice(0, 10)
            .str.to_date("%Y-%m-%d", strict=False),
            value=pl.Series(texts, dtype=pl.String),
        )

    def _count(self, outcome: Outcome, stored: int, stored_at: float) -> None:
        status = self.status
        status.batches += 1
        status.sessionized += outcome.sessionized.height
        status.stored += stored
        status.dead_letters += outcome.dead_letters.height
        status.late += outcome.late.height
        status.duplicates += outcome.duplicates
        for reason, count in (
            pl.concat([outcome.dead_letters.select("reason"), outcome.late.select("reason")])
            .group_by("reason")
            .len()
            .iter_rows()
        ):
            status.reasons[reason] = status.reasons.get(reason, 0) + count
        if outcome.sessionized.height:
            produced = outcome.sessionized[PRODUCED_AT].dt.epoch("ms").to_numpy() / 1000
            self._sample(np.maximum(stored_at - produced, 0) * 1000)

    def _sample(self, latencies: np.ndarray) -> None:
        """Keep a uniform sample of every latency seen (reservoir by random keys)."""
        self._seen_latencies += len(latencies)
        kept = np.concatenate([self._latencies, latencies])
        if len(kept) > LATENCY_SAMPLES:
            kept = self._rng.choice(kept, LATENCY_SAMPLES, replace=False)
        self._latencies = kept
        self.status.latency_ms = {
            name: round(float(np.percentile(kept, q)), 1)
            for name, q in (("p50", 50), ("p95", 95), ("p99", 99))
        }
        self.status.latency_ms["max"] = round(float(latencies.max()), 1)

    def report(self, *, messages: int, seconds: float, lag: int) -> None:
        status = self.status
        status.messages += messages
        status.busy_seconds += seconds
        if messages:
            status.last_batch_seconds = round(seconds, 3)
            status.lag = lag
        status.updated_at = time.time()
        status.peak_rss_bytes = max(status.peak_rss_bytes, self._sampler.peak_rss)
        payload = {**asdict(status), "throughput_per_second": round(status.throughput, 1)}
        _write_atomically(status_path(self.status_dir, self.engine), json.dumps(payload).encode())


def _fields(text: str) -> dict:
    """A dead letter's fields, as far as it has any (a malformed one: none)."""
    try:
        fields = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(fields, dict):
        return {}
    return {k: v for k, v in fields.items() if isinstance(v, str)}


def late_rows(marked: pl.DataFrame) -> pl.DataFrame:
    return marked.filter(pl.col("stream_status") == LATE_EVENT).select(
        PARTITION, OFFSET, reason=pl.col("stream_status")
    )
