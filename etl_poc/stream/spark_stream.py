"""The Spark Structured Streaming sessionizer: the events topic read by a Python streaming
data source (pyspark 4 has no Kafka source jar here), each micro-batch worked by
logic/spark_engine.py in `foreachBatch`, written by stream.sessionizer.

The source (`etl_kafka`) is a SimpleDataSourceStreamReader: it reads what the broker has
(stream.consume.Reader, the same reader as the Polars loop's) and returns the next offsets,
which Spark records in its checkpoint's offset log before the batch runs; a batch run again
after a kill is read back by exactly those offsets (readBetweenOffsets).

State: the users' watermarks, versioned by batch id (stream.state), not Spark's state store.
`applyInPandasWithState` / `transformWithStateInPandas` would need the session rule restated
in pandas per user, and Spark's event-time watermark drops late rows before a stateful
operator without a trace, where the spec sends them to the late topic with their reason. A
micro-batch therefore runs the batch layer's own functions (standardize, deduplicate,
enrich, sessionize with the users' last events as context), and batch n reads the
watermarks batch n-1 left: a replayed batch computes what it computed the first time, and
the store skips the event_ids it holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import polars as pl
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, SimpleDataSourceStreamReader

from etl_poc.logic import spark_engine as rules
from etl_poc.logic.spec import COMMERCE, SOURCE_FILE, TEXT_COLUMNS
from etl_poc.reference.ip_ranges import IpRangeTable
from etl_poc.spark.session import spark_ip_ranges
from etl_poc.stream.broker import Broker, Topics, partitions_of
from etl_poc.stream.consume import Reader, consumer, end_offsets
from etl_poc.stream.messages import OFFSET, PARTITION, PRODUCED_AT, decode
from etl_poc.stream.sessionizer import Outcome, Writer

ENGINE = "spark"
SOURCE = "etl_kafka"
VALUE = "value"
log = logging.getLogger("etl_poc")

SCHEMA = ", ".join(
    [
        *(f"{c} string" for c in TEXT_COLUMNS),
        f"{SOURCE_FILE} string",
        "malformed boolean",
        f"{COMMERCE} boolean",
        f"{PARTITION} int",
        f"{OFFSET} bigint",
        f"{PRODUCED_AT} timestamp",
        f"{VALUE} binary",
    ]
)


class EventsSource(DataSource):
    """The events topic as a streaming source. Options: bootstrap, topic, partitions (comma
    separated), max_messages (per micro-batch)."""

    @classmethod
    def name(cls) -> str:
        return SOURCE

    def schema(self) -> str:
        return SCHEMA

    def simpleStreamReader(self, schema) -> EventsReader:  # noqa: N802 (the pyspark API)
        return EventsReader(self.options)


class EventsReader(SimpleDataSourceStreamReader):
    def __init__(self, options):
        self.bootstrap = options["bootstrap"]
        self.topic = options["topic"]
        self.partitions = [int(p) for p in options["partitions"].split(",")]
        self.max_messages = int(options.get("max_messages", 50_000))
        self._reader: Reader | None = None

    def _messages(self) -> Reader:
        if self._reader is None:
            client = consumer(Broker(self.bootstrap, embedded=False), f"{ENGINE}-source")
            self._reader = Reader(client, self.topic, self.partitions)
        return self._reader

    def initialOffset(self) -> dict:  # noqa: N802
        return {str(p): 0 for p in self.partitions}

    def _rows(self, messages) -> Iterator[tuple]:
        frame = decode(messages, self.topic).with_columns(
            pl.Series(VALUE, [m.value() for m in messages], pl.Binary)
        )
        return iter(frame.rows())

    def read(self, start: dict) -> tuple[Iterator[tuple], dict]:
        starts = {int(p): o for p, o in start.items()}
        messages, ends = self._messages().read_available(starts, self.max_messages)
        return self._rows(messages), {str(p): o for p, o in ends.items()}

    def readBetweenOffsets(self, start: dict, end: dict) -> Iterator[tuple]:  # noqa: N802
        starts = {int(p): o for p, o in start.items()}
        ends = {int(p): o for p, o in end.items()}
        return self._rows(self._messages().read_range(starts, ends))

    def commit(self, end: dict) -> None:
        """Nothing: the offsets live in Spark's checkpoint."""

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.client.close()
            self._reader = None


def process(
    raw: DataFrame,
    watermarks: DataFrame | None,
    *,
    messages: int,
    ranges: dict[str, DataFrame],
    start_date: date,
    processed_at: datetime,
) -> Outcome:
    """A micro-batch of the raw contract (`messages` rows) through the rules, as
    polars_stream.process: rejects (dead letters), deduplication, the users' watermarks
    (duplicates, late events), then enrichment and sessions continuing each user's last one."""
    standardized = rules.standardize(raw, start_date=start_date, processed_at=processed_at)
    standardized = standardized.localCheckpoint()  # read by every output below
    dead = standardized.where(F.col("reject_reason").isNotNull()).select(
        PARTITION, OFFSET, F.col("reject_reason").alias("reason")
    )
    first = F.min(F.struct(OFFSET, PARTITION, PRODUCED_AT))
    origin = (
        standardized.where(F.col("reject_reason").isNull())
        .groupBy("event_id")
        .agg(first.alias("_first"))
        .select("event_id", "_first.*")
    )
    marked = (
        rules.stream_status(rules.deduplicate(standardized), watermarks)
        .join(origin, "event_id", "left")
        .localCheckpoint()
    )
    accepted = marked.where(F.col("stream_status").isNull()).drop("stream_status")
    sessionized = rules.sessionize(rules.enrich(accepted, ranges), watermarks).localCheckpoint()
    statuses = _polars(marked.select(PARTITION, OFFSET, "stream_status"))
    rejected = _polars(dead)
    dead_letters = pl.concat(
        [
            rejected,
            statuses.filter(pl.col("stream_status") == rules.INVALID_EVENT_ID).select(
                PARTITION, OFFSET, reason="stream_status"
            ),
        ]
    )
    late = statuses.filter(pl.col("stream_status") == rules.LATE_EVENT).select(
        PARTITION, OFFSET, reason="stream_status"
    )
    copies = messages - rejected.height - statuses.height
    duplicates = copies + statuses.filter(pl.col("stream_status") == rules.STREAM_DUPLICATE).height
    return Outcome(
        _polars(sessionized),
        dead_letters.with_columns(pl.col(PARTITION).cast(pl.Int32)),
        late.with_columns(pl.col(PARTITION).cast(pl.Int32)),
        duplicates,
        _polars(rules.next_watermarks(watermarks, sessionized)),
    )


def _polars(frame: DataFrame) -> pl.DataFrame:
    return pl.from_arrow(frame.toArrow())


def run(
    spark: SparkSession,
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
    """Run the streaming query until the topic has had nothing new for `idle_seconds` (None:
    until stopped), or `max_batches` are done; its checkpoint is under the state directory."""
    spark.dataSource.register(EventsSource)
    ranges = spark_ip_ranges(spark, ip_ranges)
    partitions = partitions_of(broker, topics.events)
    probe = consumer(broker, f"{ENGINE}-lag")
    state = writer.state
    done = {"batches": 0, "last_data": time.monotonic()}

    def work(batch: DataFrame, batch_id: int) -> None:
        began = time.monotonic()
        raw = batch.persist()
        try:
            counted = raw.groupBy(PARTITION).agg(F.max(OFFSET), F.count(F.lit(1))).collect()
            ends = {partition: last + 1 for partition, last, _count in counted}
            messages = sum(count for _partition, _last, count in counted)
            if not ends:
                return
            previous = state.watermarks_before(batch_id)
            marks = None if previous is None else spark.createDataFrame(previous.to_arrow())
            outcome = process(
                raw.drop(VALUE),
                marks,
                messages=messages,
                ranges=ranges,
                start_date=start_date,
                processed_at=datetime.now(UTC),
            )
            wanted = pl.concat([outcome.dead_letters, outcome.late]).select(PARTITION, OFFSET)
            values = {}
            if wanted.height:
                keys = spark.createDataFrame(wanted.to_arrow())
                chosen = raw.join(keys, [PARTITION, OFFSET], "left_semi")
                values = {
                    (r[PARTITION], r[OFFSET]): bytes(r[VALUE])
                    for r in chosen.select(PARTITION, OFFSET, VALUE).collect()
                }  # fmt: skip
            writer.write(batch_id, outcome, values)
            highs = end_offsets(probe, topics.events, partitions)
            lag = sum(max(highs[p] - ends.get(p, 0), 0) for p in partitions if p in ends)
            writer.report(messages=messages, seconds=time.monotonic() - began, lag=lag)
            log.info("spark batch %d: %d messages, lag %d", batch_id, messages, lag)
            done["batches"] += 1
            done["last_data"] = time.monotonic()
        finally:
            raw.unpersist()

    query = (
        spark.readStream.format(SOURCE)
        .option("bootstrap", broker.bootstrap)
        .option("topic", topics.events)
        .option("partitions", ",".join(str(p) for p in partitions))
        .option("max_messages", str(batch_messages))
        .load()
        .writeStream.foreachBatch(work)
        .option("checkpointLocation", str(state.directory / "checkpoint"))
        .queryName(f"sessionize_{topics.events.replace('.', '_')}")
        .start()
    )
    try:
        while query.isActive:
            try:
                query.awaitTermination(0.5)
            except StreamingQueryException as error:
                raise RuntimeError(f"the Spark streaming query failed: {error}") from None
            if max_batches is not None and done["batches"] >= max_batches:
                break
            quiet = time.monotonic() - done["last_data"]
            if quiet > 5:  # a heartbeat while idle: the status says the service is alive
                writer.report(messages=0, seconds=0.0, lag=0)
            status = query.status
            idle = not status["isDataAvailable"] and not status["isTriggerActive"]
            if idle_seconds is not None and quiet > idle_seconds and idle and query.lastProgress:
                break
        if query.exception() is not None:
            raise RuntimeError(f"the Spark streaming query failed: {query.exception()}")
    finally:
        query.stop()
        probe.close()
