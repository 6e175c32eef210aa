"""Fewer QUIC packets: ACKs that wait for a packet of ours instead of leaving alone.

aioquic acknowledges every ack-eliciting packet after 1 ms, and writes an ACK
into a packet only once it is due, so with media byways (a request and its
answer every 20 ms each way) about half of all packets were ACK-only.  Here an
ACK may wait up to :data:`ACK_DELAY`, and any packet that carries our own data
takes the ACK owed with it.  The phone does the same (riptphone/net/h3.py).
"""

from __future__ import annotations

from typing import Final

from aioquic.quic.connection import QuicConnection
from aioquic.tls import Epoch

ACK_DELAY: Final = 0.020
"""How long an ACK may wait (aioquic's own: 1 ms).

Under the 25 ms ``max_ack_delay`` aioquic announces in its transport
parameters, which the peer's loss timers allow for.
"""


def delay_acks(quic: QuicConnection) -> None:
    """Let 1-RTT ACKs wait up to :data:`ACK_DELAY` (call after the handshake, whose must not)."""
    # aioquic has no option for it: the delay is a private attribute, read per packet.
    quic._ack_delay = ACK_DELAY


def ack_now(quic: QuicConnection, now: float) -> None:
    """Make an ACK owed due now, so the packet about to be built carries it."""
    space = quic._spaces.get(Epoch.ONE_RTT)
    if space is not None and space.ack_at is not None and space.ack_at > now:
        space.ack_at = now
