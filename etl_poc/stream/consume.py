"""Reading the events topic by offsets: what both sessionizers' micro-batches are made of.

A batch is read first and its range recorded after (each partition's next offset), never
planned from the broker's high watermarks: Tansu's memory storage reports a partition's high
watermark as the base offset of its last record batch plus one (100 messages in one batch
after 16 single ones: 16, not 116), so a range planned from it would stop short. Reading
what is there and replaying exactly a recorded range works on Tansu and on Kafka alike.
The consumer lag is measured the same way: `end_offsets` reads each partition's last batch.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from etl_poc.stream.broker import GROUP_TIMING, Broker

POLL_SECONDS = 0.2  # a replayed range is read in calls of this long
GAP_SECONDS = 0.05  # a batch ends when nothing more arrives for this long
RANGE_TIMEOUT_SECONDS = 120


def consumer(broker: Broker, name: str) -> Consumer:
    """A consumer that is assigned partitions and offsets (no group rebalancing, no commits
    to the broker: the offsets live with the data)."""
    return Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"etl-poc-{name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "log_level": 3,
            **GROUP_TIMING,
        }
    )


def _check(message, topic: str):
    if message.error() is not None:
        raise RuntimeError(f"consuming {topic}: {message.error()}")
    return message


class Reader:
    """A consumer kept assigned to every partition of a topic, read from given offsets: a
    partition is moved (seek) only when the offset asked for is not where it stands, so
    consecutive batches stream without re-assigning (which costs a fetch round, ~0.5 s)."""

    def __init__(self, client: Consumer, topic: str, partitions: list[int]):
        self.client, self.topic, self.partitions = client, topic, partitions
        self._position: dict[int, int] | None = None  # the next offset each will deliver
        self._paused: set[int] = set()

    def _place(self, starts: dict[int, int]) -> None:
        if self._position is None:
            self.client.assign([TopicPartition(self.topic, p, starts[p]) for p in self.partitions])
            self._position = dict(starts)
            return
        if self._paused:
            self.client.resume([TopicPartition(self.topic, p) for p in self._paused])
            self._paused.clear()
        for partition in self.partitions:
            if self._position[partition] != starts[partition]:
                self.client.seek(TopicPartition(self.topic, partition, starts[partition]))
                self._position[partition] = starts[partition]

    def read_available(self, starts: dict[int, int], max_messages: int, first_wait: float = 1.0):
        """The messages from `starts` on, at most `max_messages` (shared evenly by the
        partitions), until nothing more arrives; and each partition's next offset after them."""
        self._place(starts)
        share = max(max_messages // max(len(starts), 1), 1)
        ends = dict(starts)
        messages = []
        first_deadline = time.monotonic() + first_wait
        while len(self._paused) < len(starts):
            # consume() waits its whole timeout unless num_messages arrive: short calls, so a
            # batch ends GAP_SECONDS after the messages stop coming.
            arrived = self.client.consume(num_messages=10_000, timeout=GAP_SECONDS)
            if not arrived:
                if messages or time.monotonic() > first_deadline:
                    break
                continue
            for message in arrived:
                partition, offset = _check(message, self.topic).partition(), message.offset()
                self._position[partition] = offset + 1
                if partition in self._paused or offset < ends[partition]:
                    continue
                messages.append(message)
                ends[partition] = offset + 1
                if ends[partition] - starts[partition] >= share:
                    self._paused.add(partition)
                    self.client.pause([TopicPartition(self.topic, partition)])
        return messages, ends

    def read_range(self, starts: dict[int, int], ends: dict[int, int]) -> list:
        """Exactly the messages [start, end) of each partition (a recorded batch, replayed)."""
        self._place(starts)
        wanted = {p for p in ends if ends[p] > starts[p]}
        messages, done = [], set()
        deadline = time.monotonic() + RANGE_TIMEOUT_SECONDS
        while done != wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the broker did not deliver offsets up to {ends} of {self.topic}"
                )
            for message in self.client.consume(num_messages=10_000, timeout=POLL_SECONDS):
                partition, offset = _check(message, self.topic).partition(), message.offset()
                self._position[partition] = offset + 1
                if partition in wanted and starts[partition] <= offset < ends[partition]:
                    messages.append(message)
                    if offset == ends[partition] - 1:
                        done.add(partition)
        return messages


def end_offsets(client: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's next offset to be written, read from its last record batch (the
    reported high watermark is that batch's base offset + 1 on Tansu, exact on Kafka)."""
    reported = {}
    for partition in partitions:
        _low, high = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        reported[partition] = 0 if high in (OFFSET_INVALID, None) else high
    probes = {p: h - 1 for p, h in reported.items() if h > 0}
    if not probes:
        return reported
    reader = Reader(client, topic, sorted(probes))
    _messages, ends = reader.read_available(probes, max_messages=10**9)
    client.unassign()
    return {p: max(reported[p], ends.get(p, 0)) for p in partitions}
