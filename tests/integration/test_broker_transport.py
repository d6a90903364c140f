"""The broker transport (`shared/adapters/broker.py`) against a real Valkey that is
SIGKILLed: what Celery's consumer does when the connection is lost (`collect()`, then
`close()`) while the task channel holds an unacknowledged message and has a BRPOP in
flight. kombu's own transport raises AttributeError there (the worker exits); ours closes,
and the message comes back through the visibility timeout once the broker is back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from devtools.embedded import EmbeddedValkey
from devtools.processes import port_is_open
from shared.adapters import broker

PORTS = range(26401, 26409)
KOMBU_TRANSPORT = "kombu.transport.redis:Transport"
OPTIONS = {"visibility_timeout": 1, "unacked_restore_throttle": 1}


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    port = next((p for p in PORTS if not port_is_open(p)), None)
    if port is None:
        pytest.fail(f"no free port for Valkey in {PORTS}")
    server = EmbeddedValkey(tmp_path / "valkey", port=port)
    server.start()
    yield server
    server.stop()


class Worker:
    """A consumer in the state Celery's is in under load: one message delivered and not
    acknowledged (a task running, acks_late), a BRPOP for the next one in flight, and a
    second channel with an auto-deleted fanout queue (Celery's remote control, whose close
    fails when the broker is gone)."""

    def __init__(self, url: str, transport: str) -> None:
        self.connection = Connection(url, transport=transport, transport_options=OPTIONS)
        self.queue = Queue("broker-transport-test")
        self.delivered: list[Message] = []
        with Producer(self.connection) as producer:
            producer.publish({"n": 0}, routing_key=self.queue.name, declare=[self.queue])
        self.consumer = Consumer(
            self.connection, [self.queue], callbacks=[self._take], accept=["json"]
        )
        self.consumer.qos(prefetch_count=2)
        self.consumer.consume()
        self.connection.drain_events(timeout=5)
        control = Exchange("broker-transport-test.pidbox", type="fanout")
        self.control = Consumer(
            self.connection.channel(),
            [Queue("broker-transport-test.pidbox", control, auto_delete=True)],
            no_ack=True,
            accept=["json"],
        )
        channel: Any = self.connection.default_channel
        # On the empty queue, as the event loop does while a pool process is free:
        channel._brpop_start()
        self.channel = channel

    def _take(self, body: Any, message: Message) -> None:
        self.delivered.append(message)

    def lose_connection(self) -> None:
        """Celery's Consumer.on_connection_error_after_connected, the part that closes."""
        self.connection.collect(socket_timeout=1)
        self.connection.close()


def test_kombu_own_transport_still_needs_the_repair(valkey: EmbeddedValkey) -> None:
    """A canary: the day kombu closes such a channel by itself, this fails and
    shared/adapters/broker.py can go (with this test)."""
    worker = Worker(valkey.url, KOMBU_TRANSPORT)
    assert len(worker.delivered) == 1
    valkey.kill()
    with pytest.raises(AttributeError, match="hostname"):
        worker.lose_connection()


def test_the_repaired_transport_closes_and_the_message_comes_back(
    valkey: EmbeddedValkey,
) -> None:
    worker = Worker(valkey.url, broker.TRANSPORT)
    [unacked] = worker.delivered
    valkey.kill()
    worker.lose_connection()  # no AttributeError: Celery reconnects instead of exiting
    assert worker.channel.closed

    valkey.start()
    bodies: list[Any] = []

    def take(body: Any, message: Message) -> None:
        bodies.append(body)
        message.ack()

    with Connection(valkey.url, transport=broker.TRANSPORT, transport_options=OPTIONS) as again:
        consumer = Consumer(
            again,
            [worker.queue],
            callbacks=[take],
            accept=["json"],
        )
        consumer.consume()
        # Unacknowledged when the broker died: restored once its visibility timeout passed.
        deadline = time.monotonic() + 15
        while not bodies and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                again.drain_events(timeout=0.5)
    assert bodies == [unacked.payload]
