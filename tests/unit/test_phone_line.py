"""The line (riptphone.line.registration): coming online with back-off, identity, policy."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from phonefakes import OWN, FakeClient, config, trunk_group
from ript.protocol.descriptions import TrunkGroup
from riptphone.app.inputs import Input, LineOffline, LineOnline
from riptphone.line.registration import Line, NotRegisteredError, own_number
from riptphone.store import StateStore


def connect(tmp_path: Path, client: FakeClient) -> tuple[Line, list[Input], list[float]]:
    fed: list[Input] = []
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)

    line = Line(config(tmp_path), StateStore(tmp_path / "state"), client, fed.append, sleep=sleep)  # type: ignore[arg-type]
    asyncio.run(line.connect())
    return line, fed, waits


def test_online_at_once(tmp_path: Path) -> None:
    line, fed, waits = connect(tmp_path, FakeClient())
    assert waits == []
    assert fed == [
        LineOffline("connecting to the provider", registering=True),
        LineOnline(OWN, "desk"),
    ]
    assert line.number == OWN and line.offline_reason is None
    assert line.handler_uri == "https://p.example/handlers/1"


def test_retries_doubling_up_to_a_minute(tmp_path: Path) -> None:
    _line, fed, waits = connect(tmp_path, FakeClient(failures=8))
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    offline = [f for f in fed if isinstance(f, LineOffline) and not f.registering]
    assert [f.retry_in_s for f in offline] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert offline[0].reason == "provider error"  # the screen's words; the log has the rest
    assert _line.offline_detail is None  # online at last
    assert fed[-1] == LineOnline(OWN, "desk")


def test_a_second_connect_starts_the_backoff_again(tmp_path: Path) -> None:
    client = FakeClient(failures=2)
    line, _fed, waits = connect(tmp_path, client)
    client.failures = 1
    asyncio.run(line.connect())
    assert waits == [1.0, 2.0, 1.0]


def test_identity_is_enrolled_once_then_kept(tmp_path: Path) -> None:
    client = FakeClient()
    connect(tmp_path, client)
    connect(tmp_path, client)
    assert client.enrolled == 1


def test_a_tg_without_a_number_keeps_the_line_offline(tmp_path: Path) -> None:
    nameless = TrunkGroup.from_json({"uri": "https://p.example/tgs/7", "outbound": {}})
    with pytest.raises(ValueError, match="the phone has no number"):
        own_number(nameless)
    assert own_number(trunk_group()) == OWN


def test_outbound_policy_and_passport(tmp_path: Path) -> None:
    line = Line(config(tmp_path), StateStore(tmp_path / "state"), FakeClient(), print)  # type: ignore[arg-type]
    assert line.check_destination("+442079460000") is None  # no TG yet: the dial plan decides
    with pytest.raises(NotRegisteredError):
        line.passport("+14085559999", 0)
    line, _fed, _waits = connect(tmp_path, FakeClient(tg=trunk_group(outbound="+1408*")))
    assert line.check_destination("+14085559999") is None
    problem = line.check_destination("+442079460000")
    assert problem is not None and "outside the numbers this line may call" in problem
    assert line.passport("+14085559999", 1_800_000_000).count(".") == 2  # a JWS


def test_every_retry_registers_with_the_same_new_handler_id(tmp_path: Path) -> None:
    """A first registration whose answer could not be saved is repeated with the same id,
    so the provider updates one handler instead of keeping a ghost per attempt."""
    client = FakeClient(save_failures=2)
    _line, fed, waits = connect(tmp_path, client)
    ids = client.new_handler_ids
    assert len(ids) == 3 and ids[0] and ids.count(ids[0]) == 3
    assert waits == [1.0, 2.0]  # retried as an unreachable provider is, the phone running
    assert [f.reason for f in fed if isinstance(f, LineOffline)][1:] == ["cannot save state"] * 2


def test_a_reloaded_codec_list_is_advertised_to_the_provider(tmp_path: Path) -> None:
    client = FakeClient()
    line, _, _ = connect(tmp_path, client)
    assert client.advertisements[-1].startswith("1 in: opus,ptime=20; PCMU,ptime=20;")
    audio = dataclasses.replace(line.config.audio, codecs=["PCMA"], ptime=60)
    asyncio.run(line.readvertise(audio))
    line_text = "PCMA,ptime=60; telephone-event; CN;"
    assert client.advertisements[-1] == f"1 in: {line_text}\n1 out: {line_text}"
    line.forget("logged out")
    asyncio.run(line.readvertise(line.config.audio))  # offline: nothing sent now
    assert len(client.advertisements) == 2
