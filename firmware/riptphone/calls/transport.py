"""How one leg's media bodies travel: WebTransport datagrams, or media byways.

A :class:`~riptphone.calls.media.MediaSession` encodes and seals; it hands
each outgoing body (framed chunks, docs/protocol.md section 7) to
``transport.send(body)`` and gets every received body through the callback
given to ``transport.start``.  Which transport a leg uses is chosen once, by
:func:`open_transport`, when its media opens (after the ``PUT {call}/events``
response headers):

* :class:`DatagramTransport` when the provider's SETTINGS offer WebTransport
  and it answers the session's CONNECT with a 2xx: each body is one HTTP/3
  datagram (split at chunk boundaries in the rare body over 1000 bytes);
* :class:`BywaysTransport` otherwise (not offered, refused, failed or too
  slow to answer): one ``PUT {call}/media`` per body, :data:`GETS` held
  ``GET {call}/media``.

A session that ends while the call goes on (the provider gave the call to
another device, or closed it) is not replaced here: what is sent is counted
as failed, no ack comes back, and the call machine's no-ack timer
re-establishes the byways, which opens the leg's media, and a new session,
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

from ript.protocol.chunks import DATAGRAM_LIMIT, ChunkError, pack_datagrams, unframe
from riptphone.net.h3 import H3Error, H3Stream, WebTransportSession
from riptphone.net.ript_client import MediaByways, RiptClient, RiptError

log = logging.getLogger(__name__)

WEBTRANSPORT: Final = "webtransport"
BYWAYS: Final = "byways"
GETS = 20
"""Reverse media GETs kept open (profile section 7)."""
MAX_PUTS = 256
"""PUTs in flight before the oldest is given up: 5 s of 20 ms chunks, so a blip of up to 5 s
loses none (QUIC retransmits what a stalled PUT holds; profile section 10)."""
GET_RETRY_S = 0.2
"""Pause before reopening a GET that failed (not one that was answered)."""
GET_REFUSED_MAX_S = 3.2
"""Longest pause before reopening a GET the provider refused (403, 404, 5xx...): the pause
doubles from :data:`GET_RETRY_S` with each refusal in a row, all slots together, and is
back at :data:`GET_RETRY_S` at the first GET answered; else the 20 slots would ask a
provider that keeps refusing 100 times a second for as long as the call lasts."""
SESSION_TIMEOUT_S = 2.0
"""How long the provider has to answer the session's CONNECT before the byways are used."""

Deliver = Callable[[bytes], None]
"""Where received bodies go (the media session's receive path), called in the loop."""


class MediaTransport(Protocol):
    """What a media session needs of its transport."""

    @property
    def name(self) -> str:
        """``webtransport`` or ``byways``: the control socket's ``call.transport``."""
        ...

    puts_dropped: int
    put_failures: int
    get_failures: int

    def start(self, deliver: Deliver) -> None: ...

    def send(self, body: bytes) -> None: ...

    def stop(self) -> None: ...


async def open_transport(
    client: RiptClient, call_uri: str, *, timeout: float = SESSION_TIMEOUT_S
) -> MediaTransport:
    """The leg's transport: a WebTransport session when the provider gives one, else byways."""
    datagrams = DatagramTransport()
    try:
        async with asyncio.timeout(timeout):
            session = await client.media_webtransport(call_uri, datagrams.receive)
    except RiptError as exc:
        log.info("event=media_transport call=%s transport=byways reason=%r", call_uri, str(exc))
    except TimeoutError:
        log.info(
            "event=media_transport call=%s transport=byways reason=%r",
            call_uri,
            f"no answer to the WebTransport CONNECT within {timeout:g} s",
        )
    else:
        if session is not None:
            datagrams.attach(session)
            log.info("event=media_transport call=%s transport=webtransport", call_uri)
            return datagrams
        log.info(
            "event=media_transport call=%s transport=byways reason=%r",
            call_uri,
            "the provider does not offer WebTransport",
        )
    return BywaysTransport(await client.media_byways(call_uri))


class HeldTransport:
    """No path: the leg's byways are being re-established (a fade, a migration).

    The media session goes on capturing, encoding and sealing; each body handed
    here is dropped, but its chunks stay in the session's ``ChunkSender`` for
    8 s, and the first acks on the next transport have every one of them sent
    again (:meth:`~ript.protocol.media_streams.ChunkSender.resends`).  So what
    the user said during a blip of up to 5 s arrives, late but whole.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self.puts_dropped = 0
        self.put_failures = 0
        self.get_failures = 0

    @property
    def name(self) -> str:
        return self._name  # the transport the leg had, and will have again

    def start(self, deliver: Deliver) -> None:
        pass

    def send(self, body: bytes) -> None:
        pass  # kept by the ChunkSender, re-sent once acks flow again

    def stop(self) -> None:
        pass


class DatagramTransport:
    """Bodies as HTTP/3 datagrams of one WebTransport session.

    The send path is one call into the connection per body: no task, no copy
    (the connection transmits once per loop turn).  ``put_failures`` counts
    bodies that could not be sent (the session or connection gone).
    """

    def __init__(self) -> None:
        self._session: WebTransportSession | None = None
        self._send: Callable[[bytes], None] | None = None
        self._deliver: Deliver | None = None
        self._ended_noted = False
        self.puts_dropped = 0
        self.put_failures = 0
        self.get_failures = 0
        self.receive_failures = 0
        """Datagrams the session's receive path raised on (a bug: the first is logged)."""

    @property
    def name(self) -> str:
        return WEBTRANSPORT

    @property
    def ended(self) -> bool:
        """The session is over (either side ended it, or the connection went)."""
        return self._session is None or self._session.ended

    def attach(self, session: WebTransportSession) -> None:
        self._session = session
        self._send = session.send_datagram

    def receive(self, data: bytes) -> None:
        """A datagram of the session (called by the connection as it arrives)."""
        deliver = self._deliver
        if deliver is None:
            return  # before start() or after stop(): dropped, as a lost datagram would be
        try:
            deliver(data)
        except Exception:
            # Called inside aioquic's handling of a packet: raised out of it, the packet's
            # other events and its transmit would wait for the next one.  A bug further
            # in: logged once, not at every datagram (20 ms path).
            self.receive_failures += 1
            if self.receive_failures == 1:
                log.exception("event=media_receive_failed")

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def send(self, body: bytes) -> None:
        session, send = self._session, self._send
        if session is None or send is None or session.ended:
            self._failed("the WebTransport session ended")
            return
        try:
            if len(body) <= DATAGRAM_LIMIT:
                send(body)
            else:
                # Many acks owed at once (after a fade): split between chunks.
                for datagram in pack_datagrams(unframe(body)):
                    send(datagram)
        except H3Error as exc:
            self._failed(str(exc))
        except ChunkError as exc:  # pragma: no cover - the session frames what it sends
            self._failed(f"unframable body: {exc}")

    def _failed(self, why: str) -> None:
        self.put_failures += 1
        if not self._ended_noted:
            self._ended_noted = True
            url = "" if self._session is None else self._session.url
            log.info("event=media_session_ended url=%s reason=%r", url, why)

    def stop(self) -> None:
        self._deliver = None
        if self._session is not None:
            with contextlib.suppress(H3Error):
                self._session.close()


class BywaysTransport:
    """Bodies over the media byways: one ``PUT`` each, :data:`GETS` held ``GET``.

    At most :data:`MAX_PUTS` PUTs (5 s of audio) are in flight; beyond that the
    oldest is cancelled (``puts_dropped``).  Within that bound a stalled path
    keeps its backlog: QUIC delivers it when the path returns, and the
    receiver's jitter buffer drops what is too late to play.  What a cancelled
    or reset PUT carried comes back by the session's ack-driven re-send.  Each
    PUT's reply (the provider's acks) and each GET's answer is delivered as a
    received body; an answered GET is reopened at once.

    The 20 ms path runs without tasks: each PUT and each reopened GET is
    started from the caller's callback (:meth:`MediaByways.put_nowait`) and
    ends in a callback.  A coroutine (a task) is used only where something
    must be awaited: the first requests, a connection to open, a token to
    refresh (then about once a second, to pick up a new one), a ``401``.
    """

    def __init__(self, byways: MediaByways) -> None:
        self._byways = byways
        self._deliver: Deliver | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._puts: deque[asyncio.Task[None] | H3Stream] = deque()
        self._gets: set[H3Stream] = set()
        self.puts_dropped = 0
        self.put_failures = 0
        self.get_failures = 0
        self.receive_failures = 0
        """Bodies the session's receive path raised on (a bug: the first is logged)."""
        self._refused_pause = GET_RETRY_S

    @property
    def name(self) -> str:
        return BYWAYS

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        for _ in range(GETS):
            self._spawn(self._get_slow())

    def stop(self) -> None:
        self._deliver = None
        for task in list(self._tasks):
            task.cancel()
        puts, gets = list(self._puts), list(self._gets)
        self._puts.clear()
        self._gets.clear()
        for put in puts:
            self._cancel(put)
        for get in gets:
            self._cancel(get)
        self._byways.close()

    @staticmethod
    def _cancel(request: asyncio.Task[None] | H3Stream) -> None:
        if isinstance(request, asyncio.Task):
            request.cancel()
        else:
            with contextlib.suppress(H3Error):
                request.reset()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, body: bytes) -> None:
        puts = self._puts
        if len(puts) >= MAX_PUTS:
            self._cancel(puts.popleft())  # out of the deque first: its end is not a failure
            self.puts_dropped += 1
        put: asyncio.Task[None] | H3Stream | None = self._byways.put_nowait(
            body,
            lambda stream, status, answer, error: self._put_done(
                stream, status, answer, error, body
            ),
        )
        if put is None:
            task = asyncio.get_running_loop().create_task(self._send_put(body))
            task.add_done_callback(self._put_task_done)
            put = task
        puts.append(put)

    def _forget_put(self, put: asyncio.Task[None] | H3Stream) -> bool:
        """Take ``put`` out of the in-flight deque; False if it was not there (cancelled)."""
        puts = self._puts
        if puts and puts[0] is put:  # the usual case: PUTs end in order
            puts.popleft()
            return True
        try:
            puts.remove(put)
        except ValueError:
            return False
        return True

    def _put_task_done(self, task: asyncio.Task[None]) -> None:
        self._forget_put(task)

    def _put_done(
        self, stream: H3Stream, status: int, answer: bytes, error: H3Error | None, body: bytes
    ) -> None:
        if not self._forget_put(stream) or self._deliver is None:
            return  # dropped (the oldest beyond MAX_PUTS) or stopped
        if error is not None:
            self.put_failures += 1
        elif 200 <= status < 300:
            self._take(answer)
        elif status == 401:
            # The token was refused: the coroutine refreshes it and sends the body again.
            self._byways.refused()
            task = asyncio.get_running_loop().create_task(self._send_put(body))
            task.add_done_callback(self._put_task_done)
            self._puts.append(task)
        else:
            self.put_failures += 1

    def _take(self, body: bytes) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        try:
            deliver(body)
        except Exception:
            # A bug further in must not cost the GET slot (reopened after this) or the
            # PUT's task: the call goes on.  Logged once, not at every body (20 ms path).
            self.receive_failures += 1
            if self.receive_failures == 1:
                log.exception("event=media_receive_failed")

    async def _send_put(self, body: bytes) -> None:
        try:
            status, answer = await self._byways.put(body)
        except RiptError:
            self.put_failures += 1
            return
        if 200 <= status < 300:
            self._take(answer)
        else:
            self.put_failures += 1

    # GETs: each slot reopens its GET when the last one is answered.

    def _open_get(self) -> None:
        if self._deliver is None:
            return
        stream = self._byways.get_nowait(self._get_done)
        if stream is None:
            self._spawn(self._get_slow())
        else:
            self._gets.add(stream)

    def _get_done(self, stream: H3Stream, status: int, body: bytes, error: H3Error | None) -> None:
        if stream not in self._gets:
            return  # reset by stop()
        self._gets.discard(stream)
        if error is not None:
            self.get_failures += 1
            self._retry_get()
        elif status == 401:
            self._byways.refused()
            self._spawn(self._get_slow())  # refreshes the token, then asks again
        else:
            self._got(status, body)

    def _got(self, status: int, body: bytes) -> None:
        if 200 <= status < 300:
            self._refused_pause = GET_RETRY_S
            self._take(body)
            self._open_get()
        elif status == 409:
            # The call moved to another of the user's devices (protocol.md, inbound):
            # this leg's media is over; the signalling byway says where it went.
            self.get_failures += 1
        else:
            # A 404 means the call is over: the signalling byways will say so.
            self.get_failures += 1
            pause = self._refused_pause
            self._refused_pause = min(GET_REFUSED_MAX_S, 2 * pause)
            self._retry_get(pause)

    def _retry_get(self, pause: float = GET_RETRY_S) -> None:
        if self._deliver is not None:
            asyncio.get_running_loop().call_later(pause, self._open_get)

    async def _get_slow(self) -> None:
        # A GET through the coroutine: connects, refreshes the token, prepares the headers.
        try:
            status, body = await self._byways.get()
        except RiptError:
            self.get_failures += 1
            self._retry_get()
            return
        self._got(status, body)
