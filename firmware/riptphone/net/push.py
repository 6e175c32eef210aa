"""The phone's push channel (profile section 9): MQTT shoulder taps on paho-mqtt, into asyncio.

:class:`PushChannel` keeps one MQTT 5 connection to the broker of the
handler's :class:`~ript.protocol.descriptions.PushBinding`:

* TLS (``mqtts://``) verified against the system's trust anchors plus the
  configured CA file, host name checked; plain ``mqtt://`` only to loopback;
* client id = handler-id, ``clean_start=False`` with a session expiry of at
  least a day, so the broker keeps the subscription and queues QoS 1 taps
  while the phone is away;
* QoS 1 subscription to the binding's topic;
* reconnection with exponential backoff (1 s doubling to 60 s, each delay
  drawn from its upper half so that many phones do not return in step);
* after every (re)connection, once CONNACK and SUBACK are in,
  ``on_connected()`` runs so the phone can ``GET {tg}/calls``: a tap lost
  while it was offline still rings;
* each message goes through :class:`~ript.protocol.taps.TapFilter`
  (origin, duplicates, malformed payloads: one log line each) and the taps
  left reach ``on_tap(tap)``.

How paho meets asyncio: paho is a blocking library (its ``connect`` resolves,
connects and does the TLS handshake synchronously), so following the daemon's
rule it runs on a thread of its own and posts into the loop with
``loop.call_soon_threadsafe``.  The thread is ours rather than
``loop_start``'s so that the reconnection policy (jittered backoff,
re-subscribe, ``on_connected``) is ours too, and so that *every* call into the
paho client happens on that one thread: paho writes to the socket from
whichever thread calls it when it does not own the loop thread, and an SSL
socket must not be written by two threads at once.  Driving ``loop_read`` /
``loop_write`` from asyncio's ``add_reader`` was the alternative; it would
still block the loop in ``connect`` and must second-guess data buffered inside
the SSL object.  The thread wakes at least every :data:`LOOP_TICK` seconds to
notice :meth:`PushChannel.close`.

A refused login (CONNACK failure: a password the broker does not know) is
also told to ``on_refused()``, so that the phone can ask the provider whether
its binding changed; the channel itself keeps retrying with back-off.

Callbacks (``on_tap``, ``on_connected``, ``on_status``, ``on_refused``) run in the asyncio
loop; each may be a plain function or return an awaitable.  The password is
never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ript.backoff import Backoff, BackoffPolicy
from ript.protocol.descriptions import PushBinding, is_loopback
from ript.protocol.taps import Tap, TapFilter, TapRejection

log = logging.getLogger("riptphone.push")

MIN_SESSION_EXPIRY = 86400
"""Seconds the broker keeps the session after a disconnect: at least a day (profile 9)."""
KEEPALIVE = 30
RECONNECT = BackoffPolicy(initial=0.5, maximum=30.0, jitter=1.0)
"""1 s doubling to 60 s, each wait a random time in the upper half of that: [0.5, 1], [1, 2]..."""
LOOP_TICK = 0.25
"""Longest wait inside paho's loop before the thread checks whether it must stop."""
CLOSE_TIMEOUT = 10.0

OnTap = Callable[[Tap], Awaitable[None] | None]
OnConnected = Callable[[], Awaitable[None] | None]
OnStatus = Callable[["PushStatus"], Awaitable[None] | None]
OnRefused = Callable[[], Awaitable[None] | None]


class PushStatus(enum.StrEnum):
    """The push line of the phone's screen and of the control socket's ``status``."""

    UP = "up"  # connected and subscribed
    DOWN = "down"  # a binding, but no working connection right now
    NONE = "none"  # no push binding (or the channel is closed)


def tls_context(ca_file: str | Path | None) -> ssl.SSLContext:
    """The system's trust anchors plus ``ca_file``; certificate and host name checked."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def connect_properties(session_expiry: int) -> Properties:
    """CONNECT properties with a session expiry: MQTT 5's ``clean_start=False`` alone keeps
    nothing once the connection drops (the expiry defaults to 0)."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session_expiry
    return properties


class PushChannel:
    """One handler's MQTT subscription, bridged into the running asyncio loop.

    ``binding`` is the handler's push binding, ``handler_id`` its MQTT client
    id, ``tg_uri`` the TG whose origin taps must name.  Call :meth:`start`
    from the loop, ``await`` :meth:`close` to disconnect.  ``status`` is
    :class:`PushStatus`; ``on_status`` hears each change.
    """

    def __init__(
        self,
        binding: PushBinding,
        handler_id: str,
        tg_uri: str,
        on_tap: OnTap,
        *,
        on_connected: OnConnected | None = None,
        on_status: OnStatus | None = None,
        on_refused: OnRefused | None = None,
        ca_file: str | Path | None = None,
        session_expiry: int = MIN_SESSION_EXPIRY,
        keepalive: int = KEEPALIVE,
        backoff: Backoff | None = None,
    ) -> None:
        if not binding.tls and not is_loopback(binding.host):
            raise ValueError(f"push: plain mqtt:// to {binding.host!r}, which is not loopback")
        if session_expiry < MIN_SESSION_EXPIRY:
            raise ValueError(f"push: session expiry must be at least {MIN_SESSION_EXPIRY} s")
        self.binding = binding
        self.handler_id = handler_id
        self.on_tap = on_tap
        self.on_connected = on_connected
        self.on_status = on_status
        self.on_refused = on_refused
        self.status = PushStatus.DOWN
        self._filter = TapFilter(tg_uri)
        self._session_expiry = session_expiry
        self._keepalive = keepalive
        self._backoff = backoff or Backoff(RECONNECT)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscribe_mid: int | None = None
        self._subscribed = False
        self._refused = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=handler_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if binding.username is not None:
            client.username_pw_set(binding.username, binding.password)
        if binding.tls:
            client.tls_set_context(tls_context(ca_file))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client

    @property
    def where(self) -> str:
        return (
            f"{'mqtts' if self.binding.tls else 'mqtt'}://{self.binding.host}:{self.binding.port}"
        )

    # -- asyncio side ----------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (in the background); call from the running loop."""
        if self._thread is not None:
            raise RuntimeError("push channel already started")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"push-{self.handler_id[:8]}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Disconnect cleanly (the broker keeps the session) and stop the thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, CLOSE_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()
        self._set_status(PushStatus.NONE)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` in the asyncio loop (from the paho thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(fn, *args)

    def _call(self, what: str, fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        try:
            result = fn(*args)
        except Exception:
            log.exception("push: %s failed", what)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._done(what, t))

    def _done(self, what: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("push: %s failed: %r", what, task.exception())

    def _set_status(self, status: PushStatus) -> None:
        if status == self.status:
            return
        self.status = status
        if self.on_status is not None:
            self._call("on_status", self.on_status, status)

    def _connected(self) -> None:
        if self._stop.is_set():
            return
        self._set_status(PushStatus.UP)
        if self.on_connected is not None:
            self._call("on_connected", self.on_connected)

    def _login_refused(self) -> None:
        if self._stop.is_set() or self.on_refused is None:
            return
        self._call("on_refused", self.on_refused)

    def _payload(self, payload: bytes) -> None:
        if self._stop.is_set():
            return
        result = self._filter.accept(payload)
        if isinstance(result, TapRejection):
            log.warning("push: ignored a %s tap: %s", result.reason.value, result.detail)
            return
        self._call("on_tap", self.on_tap, result)

    # -- paho thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._subscribed = self._refused = False
            try:
                why = self._session()
            except Exception as exc:  # a paho surprise must not end the channel for good
                log.exception("push: unexpected failure of the MQTT client")
                why = f"failed: {exc!r}"
            if self._stop.is_set():
                break
            self._post(self._set_status, PushStatus.DOWN)
            self._retry(why)
        client = self._client
        if client.is_connected():
            client.disconnect()
            # Let the DISCONNECT go out (paho writes it from this thread).
            for _ in range(4):
                if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._post(self._set_status, PushStatus.NONE)

    def _session(self) -> str:
        """Connect and run one connection until it ends or close(); why it ended."""
        client = self._client
        try:
            client.connect(
                self.binding.host,
                self.binding.port,
                keepalive=self._keepalive,
                clean_start=False,
                properties=connect_properties(self._session_expiry),
            )
        except (OSError, ValueError) as exc:
            return f"cannot reach {self.where}: {exc}"
        while not self._stop.is_set():
            if client.loop(timeout=LOOP_TICK) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        return "refused at login" if self._refused else f"lost {self.where}"

    def _retry(self, why: str) -> None:
        delay = self._backoff.next_delay()
        log.warning("push: %s; retrying in %.1f s", why, delay)
        self._stop.wait(delay)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            # The broker closes the connection; _run logs the retry.
            self._refused = True
            log.warning("push: %s refused handler %s: %s", self.where, self.handler_id, reason)
            self._post(self._login_refused)  # the phone may ask for its binding again
            return
        result, mid = client.subscribe(self.binding.topic, options=SubscribeOptions(qos=1))
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("push: cannot subscribe: %s", mqtt.error_string(result))
            client.disconnect()
            return
        self._subscribe_mid = mid

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        if not reasons or reasons[0].is_failure or reasons[0].value != 1:
            got = reasons[0] if reasons else "nothing"
            log.warning("push: %s refused the subscription to its topic: %s", self.where, got)
            client.disconnect()
            return
        self._subscribed = True
        self._backoff.reset()
        log.info("push: subscribed at %s", self.where)
        self._post(self._connected)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.binding.topic:
            log.warning("push: ignored a message on %r, not this handler's topic", message.topic)
            return
        self._post(self._payload, bytes(message.payload))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._subscribed and not self._stop.is_set():
            log.info("push: disconnected from %s: %s", self.where, reason)
        self._subscribed = False
