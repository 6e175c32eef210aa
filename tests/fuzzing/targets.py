"""One fuzz target per parser of bytes from the network or the disk (docs/fuzzing.md).

Each target names the module's documented error type(s) in ``allowed``;
everything else that escapes is a finding.  Parsers that promise never to
raise (the chunk receiver, the tap filter, the state store's loads, the admin
socket's ``answer_line``) allow nothing.  Seeds come from ``tests/vectors``
and from valid values written by the code itself.

Targets whose parser reads a file write the input to one file in a private
temporary directory and load it from there, as the daemon would.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ript.protocol import chunks as chunk_codec
from ript.protocol.advertisement import (
    GrammarError,
    check_directive,
    negotiate,
    parse_advertisement,
    parse_directive,
)
from ript.protocol.chunks import ChunkError, ChunkKind, assemble_chunk, frame, parse_envelope
from ript.protocol.csr import CsrError, key_from_pem, parse_csr
from ript.protocol.descriptions import (
    CallDescription,
    CallList,
    ClaimRequest,
    DescriptionError,
    HandlerDescription,
    PlaceCallRequest,
    ProviderTgs,
    PushBinding,
    TrunkGroup,
)
from ript.protocol.events import Direction
from ript.protocol.jsonstream import EventStreamError, EventStreamReader, EventStreamWriter
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver
from ript.protocol.numbers import DialPlan, NumberError
from ript.protocol.oauth import (
    DeviceAuthorization,
    ErrorResponse,
    OAuthError,
    ServerMetadata,
    TokenResponse,
    form_decode,
)
from ript.protocol.passport import PassportError, decode_passport_unverified, verify_passport
from ript.protocol.passport import verify_chain as verify_cert_chain
from ript.protocol.taps import TapError, TapFilter, parse_tap
from ript.protocol.tnauth import TnAuthError, decode_tn_auth_list

from .engine import Target

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ROOT = Path(__file__).resolve().parents[2]

_scratch: Path | None = None


def scratch() -> Path:
    """One private directory per process for the targets that read files."""
    global _scratch  # noqa: PLW0603 - created once, on first use
    if _scratch is None:
        shm = Path("/dev/shm")
        _scratch = Path(tempfile.mkdtemp(prefix="ript-fuzz-", dir=shm if shm.is_dir() else None))
        atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    return _scratch


def _vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def _text(data: bytes) -> str:
    """Bytes as the str a JSON member would give: UTF-8, lone surrogates kept."""
    return data.decode("utf-8", "surrogatepass") if _is_utf8ish(data) else data.decode("latin-1")


def _is_utf8ish(data: bytes) -> bool:
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


def _split(data: bytes, parts: int) -> list[bytes]:
    """``data`` cut at NUL bytes into exactly ``parts`` pieces (the last ones empty if short)."""
    pieces = data.split(b"\x00", parts - 1)
    return pieces + [b""] * (parts - len(pieces))


# ------------------------------------------------------------------ event streams


def _event_stream(data: bytes) -> None:
    # The first byte says how the stream is split across reads (QUIC frames): into
    # 1 to 16 pieces, or byte by byte for short inputs, so no input costs 4,000 feeds.
    body = data[1:]
    pieces = 1 + (data[0] % 16) if data else 1
    step = 1 if data[:1] == b"\xff" and len(body) < 256 else max(1, len(body) // pieces)
    reader = EventStreamReader()
    writer = EventStreamWriter()
    writer.open()
    for start in range(0, len(body), step):
        for event in reader.feed(body[start : start + step]):
            if hasattr(event, "to_json"):
                # What was read must be writable again (logged, relayed by the provider).
                writer.encode(event)  # type: ignore[arg-type]
    reader.eof()


def _event_seeds() -> list[bytes]:
    return [
        b"\x07" + (bytes.fromhex(c["stream_hex"]) if "stream_hex" in c else c["stream"].encode())
        for c in _vectors("event-streams.json")
    ]


EVENT_TOKENS = (
    b'"event"',
    b'"direction"',
    b'"s2c"',
    b'"c2s"',
    b'"timestamp"',
    b'"2026-11-22T10:00:00.123Z"',
    b'"call"',
    b'"https://p.example/calls/1"',
    b'"handler"',
    b'"reason"',
    b'"uri"',
    b'"proceeding"',
    b'"alerting"',
    b'"answered"',
    b'"end"',
    b'"migrate"',
    b'"handler-changed"',
    b'"ping"',
    b'"pong"',
    b'"failed"',
)


# ------------------------------------------------------------------ chunks and envelopes

_AEAD = _vectors("chunks.json")["aead"][0]
KEYS = MediaKeys.from_material(
    bytes.fromhex(_AEAD["key"]), bytes.fromhex(_AEAD["salt"]), _AEAD["tag_length"]
)


def _chunk_seeds() -> list[bytes]:
    doc = _vectors("chunks.json")
    seeds = [bytes.fromhex(c["hex"]) for key in ("chunks", "aead", "tampered") for c in doc[key]]
    seeds += [bytes.fromhex(c["hex"]) for c in doc["malformed"]]
    return seeds


def _chunk(data: bytes) -> None:
    direction = Direction.C2S if data[:1] < b"\x80" else Direction.S2C
    body = data[1:]
    # Each decoder on its own: one refusing the input must not hide another's crash.
    for decode in (
        lambda: chunk_codec.decode_chunk(body, direction, None, last_seq=0x1234),
        lambda: chunk_codec.decode_chunk(body, direction, KEYS, last_timestamp=0x5678),
        lambda: parse_envelope(body),
        lambda: chunk_codec.decode_tlvs(body),
        lambda: chunk_codec.unframe(body),
    ):
        with contextlib.suppress(ChunkError):
            decode()


def _chunk_target_seeds() -> list[bytes]:
    return [b"\x01" + s for s in _chunk_seeds()] + [b"\x81" + s for s in _chunk_seeds()]


def _bodies() -> list[bytes]:
    doc = _vectors("chunks.json")
    seeds = [bytes.fromhex(b["hex"]) for b in doc["bodies"]]
    seeds += [bytes.fromhex(b["hex"]) for b in doc["malformed_bodies"]]
    seeds += [frame([s]) for s in _chunk_seeds()]
    return seeds


def _receiver(data: bytes) -> None:
    # Datagrams cut at NUL-NUL: several bodies into one receiver exercise its stream state.
    sealed = data[:1] == b"s"
    receiver = ChunkReceiver(Direction.C2S, KEYS if sealed else None)
    now = 100.0
    for body in data[1:].split(b"\x00\x00"):
        receiver.receive(body, now)
        receiver.take_pending_acks(now + 0.01)
        receiver.stats()
        now += 0.02


def _receiver_seeds() -> list[bytes]:
    return [b"s" + b for b in _bodies()] + [b"p" + b for b in _bodies()]


def _sealed_receiver(data: bytes) -> None:
    """Sealed chunks whose package is fuzzed too: the envelope and package are sealed here.

    Mutating a sealed chunk only ever reaches the authentication failure; this
    target seals whatever envelope and package the input holds with the call's
    key, so the receiver opens them and parses the fuzzed package.
    """
    key = KEYS.for_direction(Direction.C2S)
    receiver = ChunkReceiver(Direction.C2S, KEYS)
    now = 100.0
    for piece in data.split(b"\x00\x00\x00"):
        if not piece:
            continue
        split = 1 + piece[0] % 48
        # At most 900 bytes of package: a longer chunk is this side's ChunkEncodeError.
        envelope, package = piece[1 : 1 + split], piece[1 + split : 901 + split]
        try:
            parsed = parse_envelope(envelope)
        except ChunkError:
            receiver.receive(frame([assemble_chunk(envelope, package)]), now)
            continue
        if parsed.kind is ChunkKind.MEDIA:
            nonce = key.nonce(parsed.source, parsed.sink, ChunkKind.MEDIA, parsed.seq)
        else:
            nonce = key.nonce(0, 0, ChunkKind.CONTROL, parsed.seq)
        chunk = assemble_chunk(envelope, key.seal(nonce, envelope, package))
        receiver.receive(frame([chunk]), now)
        now += 0.02
    receiver.take_pending_acks(now)
    receiver.stats()


def _sealed_seeds() -> list[bytes]:
    seeds = []
    for case in _vectors("chunks.json")["aead"]:
        envelope = bytes.fromhex(case["envelope"])
        seeds.append(bytes([len(envelope) - 1]) + envelope + bytes.fromhex(case["package"]))
    return seeds


# ------------------------------------------------------------------ advertisements


def _advertisement(data: bytes) -> None:
    sender_text, receiver_text, directive_text = (_text(p) for p in _split(data, 3))
    sender = parse_advertisement(sender_text)
    directive = parse_directive(directive_text) if directive_text else None
    receiver = parse_advertisement(receiver_text) if receiver_text else sender
    negotiate(sender, receiver)
    if directive is not None:
        check_directive(directive, sender, receiver)


def _advertisement_seeds() -> list[bytes]:
    doc = _vectors("advertisements.json")
    seeds = [c["text"].encode() for c in doc["parse"] if c["kind"] == "advertisement"]
    seeds += [
        b"1 in: opus;\x00\x00" + c["text"].encode()
        for c in doc["parse"]
        if c["kind"] != "advertisement"
    ]
    seeds += [
        f"{c['sender']}\x00{c['receiver']}\x00{c['directive']}".encode() for c in doc["checks"]
    ]
    seeds += [f"{c['sender']}\x00{c['receiver']}".encode() for c in doc["negotiations"]]
    return seeds


ADVERTISEMENT_TOKENS = (
    b" in: ",
    b" out: ",
    b" to ",
    b"opus",
    b"PCMU",
    b"PCMA",
    b"telephone-event",
    b"CN",
    b"H264",
    b"AV1",
    b",ptime=",
    b",max-width=",
    b",maxaveragebitrate=",
    b";",
    b"\n",
)


# ------------------------------------------------------------------ documents

_DOCUMENTS: dict[str, Callable[[bytes], object]] = {
    "providertgs": ProviderTgs.from_bytes,
    "tg": lambda b: TrunkGroup.from_bytes(b, fetched_from="https://p.example/tgs/7"),
    "handler": HandlerDescription.from_bytes,
    "call": CallDescription.from_bytes,
    "call-list": CallList.from_bytes,
    "place-call": PlaceCallRequest.from_bytes,
    "claim-call": ClaimRequest.from_bytes,
    "push": lambda b: PushBinding.from_json(json.loads(b)),
}
_KINDS = tuple(_DOCUMENTS)


def _document(data: bytes) -> None:
    kind = _KINDS[data[0] % len(_KINDS)] if data else _KINDS[0]
    body = data[1:]
    if kind == "push":
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return
        PushBinding.from_json(doc)
        return
    value = _DOCUMENTS[kind](body)
    # A document this side accepts it must be able to write back and read again.
    again = value.to_bytes()  # type: ignore[attr-defined]
    _DOCUMENTS[kind](again)


def _case_body(case: dict[str, Any]) -> bytes:
    if "body_hex" in case:
        return bytes.fromhex(case["body_hex"])
    if "body_text" in case:
        return str(case["body_text"]).encode("utf-8", "surrogatepass")
    return json.dumps(case["body"]).encode()


def _document_seeds() -> list[bytes]:
    seeds = []
    for case in _vectors("documents.json")["documents"]:
        if case["document"] in _KINDS:
            seeds.append(bytes([_KINDS.index(case["document"])]) + _case_body(case))
    for case in _vectors("documents.json")["documents"]:
        if case["document"] == "handler" and "body" in case and isinstance(case["body"], dict):
            push = case["body"].get("push")
            if isinstance(push, dict):
                seeds.append(bytes([_KINDS.index("push")]) + json.dumps(push).encode())
    return seeds


DOCUMENT_TOKENS = (
    b'"uri"',
    b'"name"',
    b'"tgs"',
    b'"handler-id"',
    b'"advertisement"',
    b'"push"',
    b'"broker"',
    b'"topic"',
    b'"username"',
    b'"password"',
    b'"media-key"',
    b'"key"',
    b'"salt"',
    b'"tag-length"',
    b'"destinations"',
    b'"outbound"',
    b'"inbound"',
    b'"retry-backoff"',
    b'"media-timeout"',
    b'"https://p.example/"',
    b'"mqtts://b.example:8883"',
    b'"+14085551002"',
    b'"+1408*"',
    b'"AAAAAAAAAAAAAAAAAAAAAA=="',
    b'"direction"',
    b'"passport"',
    b'"calls"',
)


# ------------------------------------------------------------------ taps


def _tap(data: bytes) -> None:
    tap_filter = TapFilter("https://p.example/tgs/7", max_remembered=4)
    for payload in data.split(b"\x00\x00"):
        tap_filter.accept(payload)
    with contextlib.suppress(TapError):
        parse_tap(data)


def _step_payload(step: dict[str, Any]) -> bytes:
    if "payload_hex" in step:
        return bytes.fromhex(step["payload_hex"])
    if "payload_text" in step:
        return str(step["payload_text"]).encode("utf-8", "surrogatepass")
    return json.dumps(step["payload"]).encode()


def _tap_seeds() -> list[bytes]:
    seeds = [
        _case_body(c) for c in _vectors("documents.json")["documents"] if c["document"] == "tap"
    ]
    for case in _vectors("documents.json")["tap_filter"]:
        payloads = [_step_payload(step) for step in case["steps"]]
        seeds.append(b"\x00\x00".join(payloads))
    return seeds


# ------------------------------------------------------------------ PASSporT and certificates

_PASSPORTS = _vectors("passport.json")
_CHAIN = _PASSPORTS["chain_pem"].encode()
_CA = _PASSPORTS["trusted_ca_pem"].encode()


def _passport(data: bytes) -> None:
    token = _text(data)
    decode_passport_unverified(token)
    # The full check with the vectors' chain: signature, age, TNAuthList coverage.
    verify_passport(
        token,
        _CHAIN,
        now=int(_PASSPORTS["iat"]),
        max_age_s=60,
        expected_dest="+14085551003",
        trusted_ca_pem=_CA,
    )


def _passport_seeds() -> list[bytes]:
    return [p["token"].encode() for p in _PASSPORTS["passports"]]


def _certificate(data: bytes) -> None:
    kind = data[:1]
    body = data[1:]
    if kind == b"c":
        verify_cert_chain(body, _CA, int(_PASSPORTS["iat"]))
    elif kind == b"r":
        parse_csr(body)
    elif kind == b"k":
        key_from_pem(body)
    else:
        decode_tn_auth_list(body)


def _certificate_seeds() -> list[bytes]:
    seeds = [b"c" + _CHAIN, b"r" + _PASSPORTS["csr_pem"].encode()]
    seeds.append(b"k" + _PASSPORTS["phone_private_key_pem"].encode())
    seeds += [b"t" + bytes.fromhex(c["der_hex"]) for c in _PASSPORTS["tn_auth_list"]]
    seeds += [
        b"t" + bytes.fromhex(c["der_hex"])
        for c in _PASSPORTS["tn_auth_list_invalid"]
        if isinstance(c, dict) and "der_hex" in c
    ]
    return seeds


# ------------------------------------------------------------------ OAuth documents and forms

_OAUTH: tuple[Callable[[bytes], object], ...] = (
    ServerMetadata.from_bytes,
    DeviceAuthorization.from_bytes,
    TokenResponse.from_bytes,
    ErrorResponse.from_bytes,
    form_decode,
)


def _oauth(data: bytes) -> None:
    parse = _OAUTH[data[0] % len(_OAUTH)] if data else _OAUTH[0]
    value = parse(data[1:])
    to_bytes = getattr(value, "to_bytes", None)
    if to_bytes is not None:
        parse(to_bytes())  # what was accepted reads back


_OAUTH_DOCS: list[dict[str, Any]] = [
    {
        "issuer": "https://p.example",
        "device_authorization_endpoint": "https://p.example/oauth/device",
        "token_endpoint": "https://p.example/oauth/token",
    },
    {
        "device_code": "dc-123",
        "user_code": "WDJB-MJHT",
        "verification_uri": "https://p.example/device",
        "verification_uri_complete": "https://p.example/device?user_code=WDJB-MJHT",
        "expires_in": 600,
        "interval": 5,
    },
    {
        "access_token": "at-1",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "rt-1",
        "scope": "ript",
    },
    {"error": "authorization_pending", "error_description": "wait"},
]


def _oauth_seeds() -> list[bytes]:
    seeds = [bytes([i]) + json.dumps(d).encode() for i, d in enumerate(_OAUTH_DOCS)]
    seeds.append(b"\x04grant_type=refresh_token&refresh_token=rt-1&client_id=ript-phone")
    return seeds


_STATUSES = (200, 200, 400, 401, 403, 500)


def _oauth_flow(data: bytes) -> None:
    """The phone's login as its network answers drive it: metadata, device code, token polls.

    Answers are cut at NUL-NUL; each one's first byte picks its HTTP status.
    ``DevicePoll.answer`` takes any answer (a bad one is a retry, never an
    exception); the tokens it ends with are stored as the phone would.
    """
    from riptphone.line.login import DevicePoll, LoggedIn, Send
    from riptphone.line.tokens import tokens_from

    poll = DevicePoll("ript-phone", "Desk phone", "https://p.example/.well-known/ript-oauth")
    now = 1000.0
    for answer in data.split(b"\x00\x00")[:8]:
        action = poll.action(now)
        if isinstance(action, LoggedIn):
            tokens_from(action.response, 1_800_000_000.0)
            return
        if isinstance(action, Send):
            status = _STATUSES[answer[0] % len(_STATUSES)] if answer else 200
            poll.answer(action.step, status, answer[1:], now)
        now += 5.0 if not poll.interval else poll.interval
    action = poll.action(now)
    if isinstance(action, LoggedIn):
        tokens_from(action.response, 1_800_000_000.0)


def _oauth_flow_seeds() -> list[bytes]:
    docs = [json.dumps(d).encode() for d in _OAUTH_DOCS[:3]]
    return [
        b"\x00" + docs[0] + b"\x00\x00\x00" + docs[1] + b"\x00\x00\x00" + docs[2],
        b"\x00" + docs[0] + b"\x00\x00\x00" + docs[1] + b"\x00\x00\x02"
        b'{"error":"authorization_pending"}\x00\x00\x02{"error":"slow_down"}'
        b"\x00\x00\x00" + docs[2],
    ]


# ------------------------------------------------------------------ dial plans


def _dial_plan(data: bytes) -> None:
    country, digit_map, dialled = (_text(p) for p in _split(data, 3))
    base = DialPlan.nanp() if country == "1" else DialPlan.generic(country)
    entries = tuple(digit_map.split(" ")) if digit_map else base.digit_map
    import dataclasses

    plan = dataclasses.replace(base, digit_map=entries)
    plan.match(dialled)
    plan.is_emergency(dialled)
    plan.normalise(dialled)


def _dial_plan_seeds() -> list[bytes]:
    return [
        b"1\x00\x00+1 (408) 555-1002",
        b"1\x00911 1[2-9]xxxxxx 011x.\x004085551002",
        b"44\x00x.\x00020 7946 0000#",
        b"49\x00[1-9]xx.\x00+4930123456",
    ]


# ------------------------------------------------------------------ registry


def _targets() -> dict[str, Target]:
    from . import disk_targets, provider_targets

    protocol = [
        Target(
            "event-stream",
            "ript.protocol.jsonstream EventStreamReader (+ events.event_from_json)",
            _event_stream,
            (EventStreamError,),
            _event_seeds,
            EVENT_TOKENS,
        ),
        Target(
            "chunk",
            "ript.protocol.chunks decode_chunk, parse_envelope, decode_tlvs, unframe",
            _chunk,
            (ChunkError,),
            _chunk_target_seeds,
            max_len=1200,
        ),
        Target(
            "chunk-receiver",
            "ript.protocol.media_streams ChunkReceiver.receive (never raises), plain and sealed",
            _receiver,
            (),
            _receiver_seeds,
            max_len=3000,
        ),
        Target(
            "chunk-sealed",
            "ChunkReceiver on chunks sealed with the call's key: the opened package parser",
            _sealed_receiver,
            (),
            _sealed_seeds,
            max_len=3000,
        ),
        Target(
            "advertisement",
            "ript.protocol.advertisement parse_advertisement/parse_directive, negotiate, checks",
            _advertisement,
            (GrammarError,),
            _advertisement_seeds,
            ADVERTISEMENT_TOKENS,
        ),
        Target(
            "documents",
            "ript.protocol.descriptions: providertgs, TG, handler, call, call list, "
            "place/claim requests, push binding (and their write-back)",
            _document,
            (DescriptionError,),
            _document_seeds,
            DOCUMENT_TOKENS,
        ),
        Target(
            "tap",
            "ript.protocol.taps parse_tap (TapError) and TapFilter.accept (never raises)",
            _tap,
            (TapError,),
            _tap_seeds,
            DOCUMENT_TOKENS,
        ),
        Target(
            "passport",
            "ript.protocol.passport decode_passport_unverified, verify_passport",
            _passport,
            (PassportError,),
            _passport_seeds,
        ),
        Target(
            "certificate",
            "passport.verify_chain, csr.parse_csr, csr.key_from_pem, tnauth.decode_tn_auth_list",
            _certificate,
            (PassportError, CsrError, TnAuthError),
            _certificate_seeds,
            max_len=8192,
        ),
        Target(
            "oauth-documents",
            "ript.protocol.oauth: metadata, device authorization, token and error "
            "responses, form_decode",
            _oauth,
            (OAuthError,),
            _oauth_seeds,
        ),
        Target(
            "oauth-flow",
            "riptphone.line.login DevicePoll.answer (never raises) and line.tokens.tokens_from",
            _oauth_flow,
            (),
            _oauth_flow_seeds,
            (b'"expires_in"', b'"interval"', b'"error"', b'"slow_down"', b'"access_token"'),
            instrument=("ript", "riptphone"),
        ),
        Target(
            "dial-plan",
            "ript.protocol.numbers DialPlan digit maps, match, normalise",
            _dial_plan,
            (NumberError,),
            _dial_plan_seeds,
            max_len=512,
        ),
    ]
    everything = protocol + disk_targets.targets() + provider_targets.targets()
    return {t.name: t for t in everything}


_cache: dict[str, Target] = {}


def all_targets() -> dict[str, Target]:
    """Every target by name, in the order of the docs' table."""
    if not _cache:
        _cache.update(_targets())
    return _cache


__all__ = [
    "KEYS",
    "all_targets",
    "scratch",
    "silence_logs",
]


def silence_logs() -> None:
    """Silence the loggers the parsers use on bad input: a million warnings is not a report.

    Called by the on-demand runner (tests/bench/fuzz.py), never at import: the suite
    imports this module while collecting, and its other tests read the log.
    """
    logging.getLogger().setLevel(logging.CRITICAL)
