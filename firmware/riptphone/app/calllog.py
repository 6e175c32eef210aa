"""The call log: the last 50 calls, and its strict JSON form on disk.

The phone's state machine (:mod:`riptphone.app.machine`) adds an entry when a
call leaves its view and asks the daemon to store the whole log
(:class:`riptphone.app.outputs.SaveCallLog`).  Reading a stored log back is
strict per entry: an entry that is damaged is dropped with a reason and the
rest are kept, because one bad line must not cost the user the whole history.
Only a file that is not a call log at all (not JSON, not an object, an
unknown version) raises :class:`CallLogError`.

Sans-IO: values in, values out; the daemon reads and writes the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from ript.protocol.strictjson import JsonBodyError, json_type_name, load_json

MAX_ENTRIES = 50
VERSION = 1
MAX_FILE_BYTES = 256 * 1024
MAX_TEXT = 128  # peer and peer name: caller ids longer than this are not numbers or names
MAX_SECONDS = 10 * 24 * 3600  # a call over ten days long is a corrupt entry, not a call

Direction = Literal["in", "out"]

_MEMBERS = {"direction", "peer", "peer_name", "time", "seconds", "answered"}
_REQUIRED = _MEMBERS - {"peer_name"}


class CallLogError(ValueError):
    """One sentence saying why stored bytes are not a call log at all."""


@dataclass(frozen=True, slots=True)
class CallLogEntry:
    """One call: who, which way, when it started, how long it was talked, answered or not.

    ``answered`` is true when the call was answered anywhere (here or on
    another of the user's devices); ``seconds`` is the talk time on this
    phone, 0 when it was not answered here.
    """

    direction: Direction
    peer: str
    started: float  # wall-clock seconds since the epoch (UTC)
    seconds: int
    answered: bool
    peer_name: str | None = None

    @property
    def missed(self) -> bool:
        """An inbound call nobody answered."""
        return self.direction == "in" and not self.answered


def add(entries: tuple[CallLogEntry, ...], entry: CallLogEntry) -> tuple[CallLogEntry, ...]:
    """The log with ``entry`` first (newest first), cut to :data:`MAX_ENTRIES`."""
    return (entry, *entries)[:MAX_ENTRIES]


def _time_text(started: float) -> str:
    return datetime.fromtimestamp(int(started), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_json(entries: tuple[CallLogEntry, ...]) -> str:
    """The stored form: ``{"version": 1, "calls": [...]}``, newest call first."""
    calls = []
    for entry in entries[:MAX_ENTRIES]:
        call: dict[str, object] = {
            "direction": entry.direction,
            "peer": entry.peer,
            "time": _time_text(entry.started),
            "seconds": entry.seconds,
            "answered": entry.answered,
        }
        if entry.peer_name is not None:
            call["peer_name"] = entry.peer_name
        calls.append(call)
    return json.dumps({"version": VERSION, "calls": calls}, indent=1) + "\n"


def from_json(data: bytes | str) -> tuple[tuple[CallLogEntry, ...], list[str]]:
    """Read a stored log: the entries kept, and one sentence per entry dropped.

    Raises :class:`CallLogError` only when the data is not a call log at all.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        doc = load_json(raw, limit=MAX_FILE_BYTES, noun="call log")
    except JsonBodyError as exc:
        raise CallLogError(str(exc)) from None
    if not isinstance(doc, dict):
        raise CallLogError(f"the call log must be a JSON object, not {json_type_name(doc)}")
    extra = sorted(set(doc) - {"version", "calls"})
    if extra:
        raise CallLogError(f"the call log has an unexpected member {extra[0]!r}")
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise CallLogError(f"the call log's version must be {VERSION}, not {version!r}")
    calls = doc.get("calls")
    if not isinstance(calls, list):
        raise CallLogError(f'the call log\'s "calls" must be an array, not {json_type_name(calls)}')
    entries: list[CallLogEntry] = []
    problems: list[str] = []
    for index, item in enumerate(calls):
        if len(entries) == MAX_ENTRIES:
            problems.append(
                f"calls {index} to {len(calls) - 1} dropped: the log keeps {MAX_ENTRIES} calls"
            )
            break
        try:
            entries.append(_entry(item))
        except ValueError as exc:
            problems.append(f"call {index} dropped: {exc}")
    return tuple(entries), problems


def _text(call: dict[str, object], name: str, *, optional: bool = False) -> str | None:
    value = call.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be a string, not {json_type_name(value)}')
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        raise ValueError(f'"{name}" must be 1 to {MAX_TEXT} printable characters')
    return value


def _entry(item: object) -> CallLogEntry:
    if not isinstance(item, dict):
        raise ValueError(f"must be an object, not {json_type_name(item)}")
    extra = sorted(set(item) - _MEMBERS)
    if extra:
        raise ValueError(f"unexpected member {extra[0]!r}")
    missing = sorted(_REQUIRED - set(item))
    if missing:
        raise ValueError(f"no {missing[0]!r} member")
    direction = item["direction"]
    if direction not in ("in", "out"):
        raise ValueError(f'"direction" must be "in" or "out", not {direction!r}')
    peer = _text(item, "peer")
    peer_name = _text(item, "peer_name", optional=True)
    time_text = item["time"]
    if not isinstance(time_text, str):
        raise ValueError(f'"time" must be a string, not {json_type_name(time_text)}')
    try:
        started = datetime.strptime(time_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f'"time" {time_text!r} is not like "2026-12-06T17:26:29Z"') from None
    seconds = item["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValueError(f'"seconds" must be a whole number, not {json_type_name(seconds)}')
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f'"seconds" {seconds} is not 0 to {MAX_SECONDS}')
    answered = item["answered"]
    if not isinstance(answered, bool):
        raise ValueError(f'"answered" must be true or false, not {json_type_name(answered)}')
    assert peer is not None
    return CallLogEntry(
        direction="in" if direction == "in" else "out",
        peer=peer,
        started=started.timestamp(),
        seconds=seconds,
        answered=answered,
        peer_name=peer_name,
    )
