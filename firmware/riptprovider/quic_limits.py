"""A bound on the provider's QUIC connections, and QUIC Retry under load (issue #14 row 13).

A QUIC connection is made before any request, so before any bearer token is
seen: anyone who can send UDP can make one, and aioquic holds each (about
45 KB) until its 60 s idle timeout.  :class:`BoundedQuicServer` is aioquic's
``QuicServer`` with three rules for an Initial packet that would make a new
connection:

* at most :attr:`QuicLimits.max_connections` connections at once: past it the
  oldest connection that has not authenticated a request and is older than
  :attr:`QuicLimits.unauthenticated_grace` is closed to make room, and when
  there is none the Initial is answered with ``CONNECTION_CLOSE``
  ``CONNECTION_REFUSED`` (RFC 9000 section 20.1), so a phone learns at once
  instead of timing out;
* with :attr:`QuicLimits.retry_above` connections or more open, the client
  must first prove its address with a Retry round trip (RFC 9000 section
  8.1.2): a spoofed source address cannot make connections then;
* a connection that authenticated a request (``trusted``) is never closed
  for room.

Every other datagram goes straight to aioquic: packets with a short header
(all of a call's traffic) are not even looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioquic._buffer import Buffer  # aioquic.buffer re-exports it without __all__
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import TRANSPORT_CLOSE_FRAME_CAPACITY, NetworkAddress
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 1000
"""Default ``[server] max_connections``: about 45 MB of connection state at most."""
RETRY_ABOVE = 100
"""Default ``[server] retry_above``: open connections from which a new one needs a Retry."""
UNAUTHENTICATED_GRACE = 10.0
"""Seconds a connection may go without an authenticated request before it can be closed
to make room (a phone's first request follows its handshake within a round trip)."""
_LONG_HEADER = 0x80


@dataclass(frozen=True, slots=True)
class QuicLimits:
    """The bounds of :class:`BoundedQuicServer` (``[server]`` keys of the same names)."""

    max_connections: int = MAX_CONNECTIONS
    retry_above: int = RETRY_ABOVE
    unauthenticated_grace: float = UNAUTHENTICATED_GRACE


def _refusal(version: int, source_cid: bytes, destination_cid: bytes) -> bytes:
    """A server Initial closing the connection with ``CONNECTION_REFUSED``.

    The Initial keys derive from ``source_cid``, the Destination Connection ID the
    client chose, so the client can read it before any handshake.
    """
    crypto = CryptoPair()
    crypto.setup_initial(cid=source_cid, is_client=False, version=version)
    builder = QuicPacketBuilder(
        host_cid=source_cid,
        is_client=False,
        max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE,
        peer_cid=destination_cid,
        version=version,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(
        QuicFrameType.TRANSPORT_CLOSE, capacity=TRANSPORT_CLOSE_FRAME_CAPACITY
    )
    buf.push_uint_var(QuicErrorCode.CONNECTION_REFUSED)
    buf.push_uint_var(QuicFrameType.PADDING)
    buf.push_uint_var(0)
    datagrams, _ = builder.flush()
    return datagrams[0]


class BoundedQuicServer(QuicServer):
    """aioquic's server with the limits of the module docstring.

    ``trusted(protocol)`` says whether a connection has authenticated a
    request.  :attr:`retries`, :attr:`refused` and :attr:`evicted` count what
    the limits did (tests, logs).
    """

    def __init__(
        self,
        *,
        limits: QuicLimits,
        trusted: Callable[[QuicConnectionProtocol], bool],
        **kwargs: Any,
    ) -> None:
        super().__init__(retry=False, **kwargs)
        self.limits = limits
        self._trusted = trusted
        self._retry_tokens = QuicRetryTokenHandler()
        self._born: dict[QuicConnectionProtocol, float] = {}
        """Open connections -> when each was made (loop time), oldest first."""
        self.retries = 0
        self.refused = 0
        self.evicted = 0

    @property
    def connection_count(self) -> int:
        return len(self._born)

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        if not isinstance(data, bytes) or not data or not data[0] & _LONG_HEADER:
            super().datagram_received(data, addr)
            return
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self._configuration.connection_id_length
            )
        except ValueError:
            return
        if (
            header.packet_type != QuicPacketType.INITIAL
            or header.version is None
            or header.version not in self._configuration.supported_versions
            or len(data) < SMALLEST_MAX_DATAGRAM_SIZE
            or header.destination_cid in self._protocols
        ):
            super().datagram_received(data, addr)
            return
        # An Initial that would make a new connection.
        if len(self._born) >= self.limits.max_connections and not self._make_room():
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning(
                    "QUIC: %d connections open, the most allowed: refused a new one from %s "
                    "(%d refused so far)",
                    len(self._born),
                    addr[0],
                    self.refused,
                )
            assert self._transport is not None
            self._transport.sendto(
                _refusal(header.version, header.destination_cid, header.source_cid), addr
            )
            return
        # A token is only ever one of our Retry tokens (no NEW_TOKEN is sent): check it
        # whatever the load, else a client retried a moment ago would be refused.
        busy = len(self._born) >= self.limits.retry_above
        retry = self._retry_tokens if busy or header.token else None
        if retry is not None and not header.token:
            self.retries += 1
        # aioquic's server reads self._retry (None: no Retry) for this one packet.
        self._retry = retry  # type: ignore[assignment]
        try:
            super().datagram_received(data, addr)
        finally:
            self._retry = None  # type: ignore[assignment]
        protocol = self._protocols.get(header.destination_cid)
        if protocol is not None and protocol not in self._born:
            self._born[protocol] = self._loop.time()

    def _make_room(self) -> bool:
        """Close the oldest connection that never authenticated and is past its grace."""
        oldest_allowed = self._loop.time() - self.limits.unauthenticated_grace
        for protocol, born in self._born.items():
            if born > oldest_allowed:
                return False  # oldest first: the rest are younger still
            if not self._trusted(protocol):
                del self._born[protocol]
                self.evicted += 1
                log.info("QUIC: closed a connection that never authenticated, to make room")
                protocol.close()
                return True
        return False

    def _connection_terminated(self, protocol: QuicConnectionProtocol) -> None:
        super()._connection_terminated(protocol)
        self._born.pop(protocol, None)
