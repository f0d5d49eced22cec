"""The speed layer end to end on a real broker (Tansu, started here): a day of the generator's
events through each streaming sessionizer into ClickHouse (chdb), against the batch rules on
the same rows; dead letters, late events, and sessionizers killed and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import orjson
import polars as pl
import pytest
from confluent_kafka import Producer

from etl_poc.lakehouse.landing_readers import polars_read_landing
from etl_poc.logic import polars_engine
from etl_poc.logic.spec import FUNNEL_STEPS, INVALID_EVENT_ID, LATE_EVENT, RejectReason
from etl_poc.reference.ip_ranges import load_packaged_ranges
from etl_poc.stream import broker as brokers
from etl_poc.stream import polars_stream, reconcile, store
from etl_poc.stream.consume import consumer
from etl_poc.stream.messages import REASON_HEADER
from etl_poc.stream.service import database_of
from etl_poc.stream.sessionizer import Writer, read_status
from etl_poc.stream.state import StreamState

pytestmark = pytest.mark.chdb  # make test runs these in a process of their own

DAY = "2024-01-31"
START = date(2024, 1, 1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with brokers.started(tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture(scope="module")
def day(small_landing):
    """The day's landing file, its rows and the batch layer's events of them (the rules run
    as a batch over the same rows)."""
    root = small_landing.manifest_path.parent
    entry = next(f for f in small_landing.manifest["files"] if f["first_day"] == DAY)
    path = root / entry["paths"]["parquet"]
    landing = polars_read_landing([path], root)
    ranges = load_packaged_ranges()
    prepared = polars_engine.prepare_ranges(ranges.ipv4.lazy(), ranges.ipv6.lazy())
    sessions, _rejects = polars_engine.pipeline(
        landing, start=START, end=date(2024, 3, 1), start_date=START,
        processed_at=datetime.now(UTC), ranges=prepared,
    )  # fmt: skip
    batch = sessions.select(
        pl.col("event_id").str.to_lowercase(), "user_id", "session_id",
        pl.col("event_seq").cast(pl.Int64), "event_type", "event_date",
    ).collect()  # fmt: skip
    return {"root": root, "path": path, "rows": entry["rows"], "batch": batch}


def _topics(broker) -> brokers.Topics:
    topics = brokers.Topics(f"test.{uuid.uuid4().hex[:8]}", 4, 1.0)
    brokers.ensure_topics(broker, topics)
    return topics


def _produce_day(broker, topics, day) -> None:
    from etl_poc.stream.producer import produce

    sent = produce(broker, topics.events, [day["path"]], day["root"], progress=False)
    assert sent.events == day["rows"]


def _planted(day) -> dict[str, bytes]:
    """Messages the rules must set aside: one not JSON, one whose id is no UUID, and one two
    hours before its user's last event (sent once that event is sessionized)."""
    last = (
        day["batch"].sort("event_seq").group_by("user_id").last().sort("user_id").row(0, named=True)
    )
    base = {"user_id": last["user_id"], "page_url": "/p", "device": "mobile", "ip_address": "8.8.8.8",
            "event_type": "PAGE_VIEW", "user_tier": "gold", "product_id": None,
            "search_query": None, "transaction_id": None, "amount": None, "session_id": None,
            "country": None}  # fmt: skip
    start = datetime.fromisoformat(last["session_id"].split("@")[1].replace("Z", "+00:00"))
    late_ts = (start - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
    return {
        "malformed": b"{not json",
        INVALID_EVENT_ID: orjson.dumps({**base, "event_id": "evt-1", "timestamp": late_ts}),
        LATE_EVENT: orjson.dumps({**base, "event_id": str(uuid.uuid4()), "timestamp": late_ts}),
    }


def _send(broker, topic: str, key: str, values: list[bytes]) -> None:
    client = Producer({"bootstrap.servers": broker.bootstrap})
    for value in values:
        client.produce(topic, value, key.encode())
    assert client.flush(30) == 0


def _run_polars(broker, topics, data, *, batch_messages=500, **options) -> Writer:
    with store.opened(path=data / "clickhouse-polars", database=database_of("polars")) as opened:
        writer = Writer("polars", broker, topics, opened, data)
        try:
            polars_stream.run(
                broker, topics, writer, ip_ranges=load_packaged_ranges(), start_date=START,
                batch_messages=batch_messages, idle_seconds=options.pop("idle_seconds", 1.5),
                **options,
            )  # fmt: skip
        finally:
            writer.close()
    return writer


def _stored(data, engine: str):
    with store.opened(path=data / f"clickhouse-{engine}", database=database_of(engine)) as opened:
        events = reconcile.stream_events(opened)
        aside = reconcile.set_aside(opened)
        funnel = opened.scalar(f"SELECT sum(events) FROM ({store.LIVE_QUERIES['funnel']})")
        transactions = opened.scalar(f"SELECT count() FROM {store.TRANSACTIONS} FINAL")
    return events, aside, funnel, transactions


def _assert_exactly_once(data, engine: str, day) -> pl.DataFrame:
    """Every event once, the views counting each once, and the batch layer reconciled."""
    events, aside, funnel, transactions = _stored(data, engine)
    assert events["event_id"].n_unique() == events.height
    assert funnel == events.filter(pl.col("event_type").is_in(FUNNEL_STEPS)).height
    assert transactions == events.filter(pl.col("event_type") == "PURCHASE").height
    result = reconcile.reconcile(events, aside, day["batch"])
    assert result["agrees"].all(), result.to_dicts()
    assert result["batch_events"].sum() == day["batch"].height
    return events, aside


def test_polars_sessionizes_a_day_as_the_batch_rules_do(broker, day, tmp_path):
    topics = _topics(broker)
    _produce_day(broker, topics, day)
    writer = _run_polars(broker, topics, tmp_path)
    events, _aside = _assert_exactly_once(tmp_path, "polars", day)
    status = read_status(tmp_path, "polars")
    rejected = status["dead_letters"]
    assert status["messages"] == day["rows"]
    assert status["stored"] == events.height
    assert rejected + status["late"] + status["duplicates"] + events.height == day["rows"]
    assert writer.status.latency_ms["p50"] > 0


def test_dead_letters_and_late_events_go_to_their_topics_with_a_reason(broker, day, tmp_path):
    topics = _topics(broker)
    _produce_day(broker, topics, day)
    _run_polars(broker, topics, tmp_path)
    planted = _planted(day)
    user = orjson.loads(planted[LATE_EVENT])["user_id"]
    _send(broker, topics.events, user, list(planted.values()))  # after the day is sessionized
    _run_polars(broker, topics, tmp_path)

    _events, aside, _funnel, _transactions = _stored(tmp_path, "polars")
    late = aside.filter(pl.col("reason") == LATE_EVENT)
    assert orjson.loads(planted[LATE_EVENT])["event_id"] in late["event_id"].to_list()
    reasons = set(aside["reason"])
    assert {RejectReason.MALFORMED_LINE, INVALID_EVENT_ID, LATE_EVENT} <= reasons
    # The topics hold what the store records as set aside (over both runs), with the reason.
    late_count = aside.filter(pl.col("reason") == LATE_EVENT).height
    for topic, count in (
        (topics.dead_letter, aside.height - late_count),
        (topics.late, late_count),
    ):
        client = consumer(broker, f"check-{uuid.uuid4().hex[:6]}")
        client.subscribe([topic])
        got, deadline = [], time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            got += [m for m in client.consume(1000, 0.5) if m.error() is None]
        client.close()
        assert len(got) == count
        assert all(dict(m.headers())[REASON_HEADER] for m in got)
    malformed = [
        r for r in aside.iter_rows(named=True) if r["reason"] == RejectReason.MALFORMED_LINE
    ]
    assert len(malformed) == 1


def test_a_batch_written_but_not_committed_is_replayed_exactly_once(
    broker, day, tmp_path, monkeypatch
):
    topics = _topics(broker)
    _produce_day(broker, topics, day)
    commit = StreamState.commit
    calls = {"n": 0}

    def dies_on_the_third(self, batch, offsets):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed after writing batch 2, before its commit")
        commit(self, batch, offsets)

    monkeypatch.setattr(StreamState, "commit", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        _run_polars(broker, topics, tmp_path)
    monkeypatch.setattr(StreamState, "commit", commit)
    assert StreamState(tmp_path / "polars").committed().planned is not None
    _run_polars(broker, topics, tmp_path)
    _assert_exactly_once(tmp_path, "polars", day)


def test_a_sessionizer_killed_at_any_moment_resumes_with_nothing_lost_or_twice(
    broker, day, tmp_path
):
    topics = _topics(broker)
    _produce_day(broker, topics, day)
    env = {
        **os.environ,
        "ETL_POC_STREAM_TOPIC": topics.events,
        "ETL_POC_STREAM_BATCH_MESSAGES": "200",
    }
    command = [sys.executable, "-m", "etl_poc.cli", "stream", "run", "--engine", "polars",
               "--bootstrap", broker.bootstrap, "--data", str(tmp_path)]  # fmt: skip
    service = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while (read_status(tmp_path / "stream", "polars") or {}).get("batches", 0) < 3:
        assert service.poll() is None, service.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the service wrote no batch in 120 s"
        time.sleep(0.05)
    service.send_signal(signal.SIGKILL)  # in the middle of whatever it is doing
    service.wait()
    partial = read_status(tmp_path / "stream", "polars")["stored"]
    assert 0 < partial < day["batch"].height
    done = subprocess.run([*command, "--idle", "2"], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    _assert_exactly_once(tmp_path / "stream", "polars", day)


@pytest.mark.spark
def test_spark_streaming_sessionizes_as_polars_does_and_replays_a_failed_batch(
    broker, day, tmp_path, spark, monkeypatch
):
    from etl_poc.stream import spark_stream

    topics = _topics(broker)
    _produce_day(broker, topics, day)
    write = Writer.write
    calls = {"n": 0}

    def fails_after_the_second_write(self, batch, outcome, values):
        stored = write(self, batch, outcome, values)
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed after writing, before Spark committed the batch")
        return stored

    def run():
        with store.opened(
            path=tmp_path / "clickhouse-spark", database=database_of("spark")
        ) as opened:
            writer = Writer("spark", broker, topics, opened, tmp_path)
            try:
                spark_stream.run(
                    spark, broker, topics, writer, ip_ranges=load_packaged_ranges(),
                    start_date=START, batch_messages=1200, idle_seconds=2,
                )  # fmt: skip
            finally:
                writer.close()

    monkeypatch.setattr(Writer, "write", fails_after_the_second_write)
    with pytest.raises(RuntimeError, match="streaming query failed"):
        run()
    monkeypatch.setattr(Writer, "write", write)
    run()
    spark_events = _assert_exactly_once(tmp_path, "spark", day)
    _run_polars(broker, topics, tmp_path)
    polars_events = _assert_exactly_once(tmp_path, "polars", day)
    agreement = reconcile.engines_agree(*polars_events, *spark_events)
    assert agreement["agree"], agreement
