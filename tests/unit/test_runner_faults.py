"""Which byway failures wait ``retry-backoff``: those whose QUIC connection is gone."""

from __future__ import annotations

import pytest

from riptphone.calls.runner import connection_gone
from riptphone.net.h3 import ConnectionLostError, GoawayError, H3Error, StreamResetError
from riptphone.net.ript_client import RiptError


def wrapped(cause: BaseException) -> RiptError:
    try:
        try:
            raise cause
        except H3Error as exc:
            raise RiptError(f"the reverse signalling byway ended: {exc}") from exc
    except RiptError as outer:
        return outer


@pytest.mark.parametrize(
    ("cause", "gone"),
    [
        (ConnectionLostError("https://p.example", "closed by peer"), True),  # waits retry-backoff
        (GoawayError("https://p.example", "GOAWAY"), False),  # asked to move: at once
        (StreamResetError(4, 0x10C), False),  # the byway only: re-opened at once
        (H3Error("garbled"), False),
    ],
)
def test_only_a_lost_connection_waits_the_back_off(cause: H3Error, gone: bool) -> None:
    assert connection_gone(wrapped(cause)) is gone


def test_a_failure_with_no_transport_cause_is_the_byway_only() -> None:
    assert connection_gone(RiptError("the provider answered 500", 500)) is False
