"""Shoulder taps the provider would never send, published straight to a running phone's topic.

A real ``ript-phone run`` daemon on a real provider and mosquitto
(``scenario.py``).  The test logs in to the broker as the provider's publisher
user and publishes to the phone's topic: a call URI on another origin, a tap id
already seen, garbage, a call URI that answers 404.  Each time the phone keeps
running, logs one line saying what it ignored, and does not ring; afterwards a
real inbound call still rings.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from ript.protocol.advertisement import format_advertisement, phone_advertisement
from ript.protocol.descriptions import HandlerDescription
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import RiptClient, StaticToken

from .procs import TOKEN
from .scenario import ACCOUNT, CALLER, Line, PhoneProc, is_ring, is_state, running_line

pytestmark = pytest.mark.e2e

QUIET = 1.0
"""Seconds a bad tap is given to (wrongly) make the phone ring."""


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    with running_line(tmp_path_factory.mktemp("badtaps")) as running:
        yield running


@pytest.fixture
def phone(line: Line) -> Iterator[PhoneProc]:
    running = line.phone("Desk")
    yield running
    line.hang_up_everything()
    running.hook("on")
    running.wait_state("idle")


def tap(call: str, tap_id: str | None = None, tap_type: str = "call") -> bytes:
    doc = {
        "v": 1,
        "id": tap_id or str(uuid.uuid4()),
        "type": tap_type,
        "call": call,
        "ts": int(time.time() * 1000),
    }
    return json.dumps(doc).encode()


def ignored(phone: PhoneProc, line: Line, payload: bytes, needle: str) -> list[str]:
    """Publish ``payload`` to the phone; it must not ring.  The new log lines with ``needle``."""
    before = len(phone.log_lines(needle))
    with phone.watch() as watch:
        line.publish(line.topic(phone), payload)
        watch.quiet(is_ring, QUIET)
    phone.assert_running()
    assert phone.status()["state"] == "idle"
    return phone.log_lines(needle)[before:]


def a_call_for_nobody(line: Line) -> str:
    """A live call of the line that no phone was told of: a 3PCC call for a handler
    registered over HTTP/3 that is no phone (so no daemon follows it)."""
    handlers = line.admin("handlers", account=ACCOUNT)["handlers"]
    other = next((h for h in handlers if h.get("name") == "Portal"), None)
    if other is None:
        other = register_portal(line)
    uri = line.admin("place", account=ACCOUNT, handler=other["handler-id"], to="+14089529999")
    return str(uri["call"]["uri"])


def register_portal(line: Line) -> dict[str, str]:
    """A second handler of the account, registered over HTTP/3 by no phone."""

    async def go() -> None:
        async with H3Client(ca_file=line.provider.ca_file) as http:
            client = RiptClient(http, line.provider.domain, StaticToken(TOKEN))
            tg = await client.discover()
            advertisement = format_advertisement(phone_advertisement())
            await client.register_handler(
                tg, HandlerDescription(str(uuid.uuid4()), advertisement, "Portal")
            )

    asyncio.run(go())
    handlers = line.admin("handlers", account=ACCOUNT)["handlers"]
    found: dict[str, str] = next(h for h in handlers if h.get("name") == "Portal")
    return found


def test_a_call_on_a_foreign_origin_is_ignored(line: Line, phone: PhoneProc) -> None:
    lines = ignored(
        phone,
        line,
        tap("https://evil.example:4433/calls/" + str(uuid.uuid4())),
        "ignored a foreign-origin tap",
    )
    assert len(lines) == 1, lines
    assert "https://evil.example:4433" in lines[0]
    assert not phone.log_lines("evil.example/calls")  # never fetched


def test_garbage_is_ignored_with_one_line_each(line: Line, phone: PhoneProc) -> None:
    for garbage in (b"{not json", b"[1, 2, 3]", json.dumps({"v": 1, "type": "call"}).encode()):
        lines = ignored(phone, line, garbage, "ignored a malformed tap")
        assert len(lines) == 1, (garbage, lines)


def test_a_replayed_tap_id_is_ignored(line: Line, phone: PhoneProc) -> None:
    first = a_call_for_nobody(line)
    tap_id = str(uuid.uuid4())
    with phone.watch() as watch:
        line.publish(line.topic(phone), tap(first, tap_id))
        watch.until(is_state("ringing"))  # the first time it is acted on
    line.admin("hangup", call=first)
    phone.wait_state("idle")

    # The same id again, now naming another live call: a replay, not a new tap.
    second = a_call_for_nobody(line)
    lines = ignored(phone, line, tap(second, tap_id), "ignored a duplicate tap")
    assert len(lines) == 1 and tap_id in lines[0], lines
    assert not phone.log_lines(f"call={second}")

    # The control: the same call with a fresh id does ring.
    with phone.watch() as watch:
        line.publish(line.topic(phone), tap(second))
        watch.until(is_state("ringing"))


def test_a_call_that_answers_404_does_not_ring(line: Line, phone: PhoneProc) -> None:
    origin = phone.handler.split("/tgs/", 1)[0]
    missing = f"{origin}/calls/{uuid.uuid4()}"
    lines = ignored(phone, line, tap(missing), f"call={missing}")
    assert len(lines) == 2, lines  # the tap acted on, then one line: the call is not there
    assert "event=tap type=call" in lines[0]
    assert "gone" in lines[1] or "404" in lines[1], lines


def test_after_the_bad_taps_a_real_call_still_rings(line: Line, phone: PhoneProc) -> None:
    with phone.watch() as watch:
        line.inbound(CALLER)
        ring = watch.until(lambda e: e.get("event") == "ring")[-1]
    assert ring["from"] == CALLER
    assert phone.wait_state("ringing")["call"]["peer"] == CALLER
