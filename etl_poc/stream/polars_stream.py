"""The Polars streaming sessionizer: micro-batches read from the events topic by a Kafka
consumer, worked by logic/polars_engine.py, written by stream.sessionizer.

Exactly once: a batch is read, its range (each partition's next offset) recorded, then
worked, its events written to the store (which skips event_ids it holds), its
watermarks saved, and only then its offsets committed, in the state directory (not the
broker's group offsets). A process killed at any point resumes at the last committed batch
and reads the recorded range again, so it computes and writes the same events: none lost,
none twice.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime

import polars as pl

from etl_poc.logic import polars_engine as rules
from etl_poc.reference.ip_ranges import IpRangeTable
from etl_poc.stream.broker import Broker, Topics, partitions_of
from etl_poc.stream.consume import Reader, consumer, end_offsets
from etl_poc.stream.messages import OFFSET, PARTITION, PRODUCED_AT, decode
from etl_poc.stream.sessionizer import Outcome, Writer, late_rows
from etl_poc.stream.state import StreamState

ENGINE = "polars"
log = logging.getLogger("etl_poc")


def process(
    raw: pl.DataFrame,
    watermarks: pl.DataFrame | None,
    *,
    ranges: dict[str, pl.LazyFrame],
    start_date: date,
    processed_at: datetime,
) -> Outcome:
    """A micro-batch of the raw contract (stream.messages.decode) through the rules: rejects
    (dead letters), deduplication, the users' watermarks (duplicates, late events), then
    enrichment and sessions continuing each user's last one."""
    standardized = rules.standardize(raw.lazy(), start_date=start_date, processed_at=processed_at)
    rejected = standardized.filter(pl.col("reject_reason").is_not_null())
    origin = (
        standardized.filter(pl.col("reject_reason").is_null())
        .group_by("event_id")
        .agg(pl.col(PARTITION, OFFSET, PRODUCED_AT).sort_by(OFFSET).first())
    )
    marks = None if watermarks is None else watermarks.lazy()
    marked = rules.stream_status(rules.deduplicate(standardized), marks).join(
        origin, on="event_id", how="left", maintain_order="left"
    )
    dead, marked = pl.collect_all(
        [rejected.select(PARTITION, OFFSET, reason=pl.col("reject_reason")), marked]
    )
    copies = raw.height - dead.height - marked.height  # in the batch, beside the one kept
    invalid_ids = marked.filter(pl.col("stream_status") == rules.INVALID_EVENT_ID)
    dead = pl.concat([dead, invalid_ids.select(PARTITION, OFFSET, reason="stream_status")])
    accepted = marked.filter(pl.col("stream_status").is_null()).drop("stream_status")
    enriched = rules.enrich(accepted.lazy(), ranges).collect()
    sessionized = rules.sessionize(enriched.lazy(), marks).collect()
    next_marks = rules.next_watermarks(marks, sessionized.lazy()).collect()
    duplicates = copies + marked.filter(pl.col("stream_status") == rules.STREAM_DUPLICATE).height
    return Outcome(sessionized, dead, late_rows(marked), duplicates, next_marks)


def prepared_ranges(ip_ranges: IpRangeTable) -> dict[str, pl.LazyFrame]:
    prepared = rules.prepare_ranges(ip_ranges.ipv4.lazy(), ip_ranges.ipv6.lazy())
    return {name: frame.collect().lazy() for name, frame in prepared.items()}


def run(
    broker: Broker,
    topics: Topics,
    writer: Writer,
    *,
    ip_ranges: IpRangeTable,
    start_date: date,
    batch_messages: int,
    idle_seconds: float | None = None,
    max_batches: int | None = None,
) -> None:
    """Work micro-batches until the topic has had nothing new for `idle_seconds` (None: run
    until stopped), or `max_batches` are done."""
    state: StreamState = writer.state
    ranges = prepared_ranges(ip_ranges)
    partitions = partitions_of(broker, topics.events)
    client, probe = consumer(broker, f"{ENGINE}-sessionizer"), consumer(broker, f"{ENGINE}-lag")
    reader = Reader(client, topics.events, partitions)
    idle_since = time.monotonic()
    done = 0
    try:
        while max_batches is None or done < max_batches:
            committed = state.committed()
            starts = {p: committed.offsets.get(p, 0) for p in partitions}
            began = time.monotonic()
            if committed.planned is not None:  # a batch read before a kill: the same again
                ends = committed.planned
                messages = reader.read_range(starts, ends)
            else:
                messages, ends = reader.read_available(starts, batch_messages)
                if messages:
                    state.plan(ends)
            if not messages:
                if idle_seconds is not None and time.monotonic() - idle_since > idle_seconds:
                    return
                writer.report(messages=0, seconds=0.0, lag=0)
                continue
            batch = committed.batch + 1
            outcome = process(
                decode(messages, topics.events),
                state.watermarks_before(batch),
                ranges=ranges,
                start_date=start_date,
                processed_at=datetime.now(UTC),
            )
            writer.write(batch, outcome, {(m.partition(), m.offset()): m.value() for m in messages})
            state.commit(batch, ends)
            seconds = time.monotonic() - began
            highs = end_offsets(probe, topics.events, partitions)  # ~0.05 s: every batch
            lag = sum(max(highs[p] - ends[p], 0) for p in partitions)
            writer.report(messages=len(messages), seconds=seconds, lag=lag)
            log.info("polars batch %d: %d messages, lag %d", batch, len(messages), lag)
            idle_since = time.monotonic()
            done += 1
    finally:
        client.close()
        probe.close()
