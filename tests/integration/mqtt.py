"""A real mosquitto for tests: the provider's own :class:`MosquittoBroker` in a temporary directory.

    with mosquitto(tmp_path) as broker:
        binding = broker.add_device("handler-1", "alice")
        with tap_publisher(broker) as publisher:
            ...

Also a plain paho client (:func:`mqtt_client`) for what a phone must not be
able to do, and :func:`wait_until` for conditions met on other threads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from ript.protocol.descriptions import PushBinding
from riptphone.net.push import connect_properties, tls_context
from riptprovider.broker import MosquittoBroker, TapPublisher
from riptprovider.tls import ProviderCa, load_or_create_ca

TIMEOUT = 10.0


@contextmanager
def mosquitto(directory: Path, ca: ProviderCa | None = None) -> Iterator[MosquittoBroker]:
    """A started broker keeping its files in ``directory/push``; stopped on exit.

    The CA (and so the broker's certificate) comes from ``directory`` unless given.
    """
    ca = ca or load_or_create_ca(directory)
    broker = MosquittoBroker(directory / "push", ca)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def tap_publisher(broker: MosquittoBroker) -> Iterator[TapPublisher]:
    """The provider's publisher, logged in to ``broker``."""
    username, password = broker.registry.publisher_credentials
    publisher = TapPublisher(broker.url, username, password, broker.ca_file)
    publisher.start()
    try:
        yield publisher
    finally:
        publisher.stop()


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


@dataclass
class RawClient:
    """A paho client on its own thread; what it hears lands in queues."""

    client: mqtt.Client
    connacks: queue.Queue[Any] = field(default_factory=queue.Queue)
    subacks: queue.Queue[Any] = field(default_factory=queue.Queue)
    pubacks: queue.Queue[Any] = field(default_factory=queue.Queue)
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, topic: str) -> Any:
        self.client.subscribe(topic, options=SubscribeOptions(qos=1))
        return self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes) -> Any:
        self.client.publish(topic, payload, qos=1)
        return self.pubacks.get(timeout=TIMEOUT)


@contextmanager
def mqtt_client(
    broker: MosquittoBroker, client_id: str, username: str, password: str
) -> Iterator[RawClient]:
    """A connected MQTT 5 client (TLS, the provider's CA); ``connacks`` holds the CONNACK."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    raw = RawClient(client)
    client.username_pw_set(username, password)
    client.tls_set_context(tls_context(broker.ca_file))
    client.on_connect = lambda c, u, flags, reason, p: raw.connacks.put(reason)
    client.on_subscribe = lambda c, u, mid, reasons, p: raw.subacks.put(reasons[0])
    client.on_publish = lambda c, u, mid, reason, p: raw.pubacks.put(reason)
    client.on_message = lambda c, u, message: raw.messages.put(message)
    client.connect(
        "127.0.0.1", broker.port, clean_start=False, properties=connect_properties(86400)
    )
    client.loop_start()
    try:
        yield raw
    finally:
        client.disconnect()
        client.loop_stop()


def device_client(broker: MosquittoBroker, binding: PushBinding) -> Any:
    """:func:`mqtt_client` logged in as the device of ``binding``."""
    assert binding.username is not None and binding.password is not None
    return mqtt_client(broker, binding.username, binding.username, binding.password)
