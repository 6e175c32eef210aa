"""Tests of the RIPT JSON documents (ript.protocol.descriptions) and their vectors."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ript.protocol import descriptions as d
from ript.protocol.errors import RemoteProtocolError
from ript.protocol.events import CallStatus
from ript.protocol.numbers import NumberPattern, NumberPolicy

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "documents.json"
TG = "https://p.example/tgs/7"
CALL = "https://p.example/calls/0b6f8e2a-6d4e-4c1e-9a57-2f1d3c4b5a69"
HANDLER = "https://p.example/tgs/7/handlers/5f0e9a2c"
JWS = "eyJhbGciOiJFUzI1NiJ9.eyJpYXQiOjF9.c2ln"
KEY = bytes(range(16))
SALT = bytes(range(0xA0, 0xAC))

READERS: dict[str, Any] = {
    "providertgs": d.ProviderTgs,
    "tg": d.TrunkGroup,
    "handler": d.HandlerDescription,
    "call": d.CallDescription,
    "call-list": d.CallList,
    "place-call": d.PlaceCallRequest,
    "claim-call": d.ClaimRequest,
}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text("utf-8"))["documents"]
    return [case for case in cases if case["document"] in READERS]


def body_of(case: dict[str, Any]) -> bytes:
    if "body_hex" in case:
        return bytes.fromhex(case["body_hex"])
    if "body_text" in case:
        return str(case["body_text"]).encode("utf-8")
    return json.dumps(case["body"]).encode("utf-8")


def parse(case: dict[str, Any]) -> Any:
    reader = READERS[case["document"]]
    if case["document"] == "tg":
        return reader.from_bytes(body_of(case), fetched_from=case.get("fetched_from"))
    return reader.from_bytes(body_of(case))


# --- vectors -------------------------------------------------------------------------------------


def test_vectors_cover_every_document_good_and_bad() -> None:
    cases = load_cases()
    kinds = {(case["document"], "expect" in case) for case in cases}
    assert kinds == {(kind, good) for kind in READERS for good in (True, False)}


@pytest.mark.parametrize("case", load_cases(), ids=lambda c: f"{c['document']}-{c['name']}")
def test_vector(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(d.DescriptionError) as info:
            parse(case)
        assert case["error"] in str(info.value)
        return
    document = parse(case)
    assert document.to_json() == case["expect"]
    # What we write back reads as the same document.
    reader = READERS[case["document"]]
    assert reader.from_json(case["expect"]) == document
    assert reader.from_bytes(document.to_bytes()) == document
    for selection in case.get("select", []):
        if "error" in selection:
            with pytest.raises(d.DescriptionError, match=selection["error"]):
                document.select(selection["name"])
        else:
            assert document.select(selection["name"]).uri == selection["uri"]
    if "push" in case:
        push = document.push
        assert (push.host, push.port, push.tls) == (
            case["push"]["host"],
            case["push"]["port"],
            case["push"]["tls"],
        )
    if "media_key" in case:
        key = document.media_key
        assert key.key == bytes.fromhex(case["media_key"]["key_hex"])
        assert key.salt == bytes.fromhex(case["media_key"]["salt_hex"])
        assert key.tag_length == case["media_key"]["tag_length"]


def test_vector_backoff() -> None:
    for case in json.loads(VECTORS.read_text("utf-8"))["backoff"]:
        tg = d.TrunkGroup.from_json(
            {"uri": TG, "outbound": {}, "retry-backoff": case["retry-backoff"]}
        )
        assert [tg.backoff_ms(n) for n in range(len(case["delays"]))] == case["delays"]


# --- JSON decoding -------------------------------------------------------------------------------


def test_body_limit_is_64_kib() -> None:
    doc = {"uri": TG, "outbound": {}, "pad": ""}
    room = d.MAX_BODY_BYTES - len(json.dumps(doc, separators=(",", ":")))
    doc["pad"] = "x" * room
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert len(body) == d.MAX_BODY_BYTES
    assert d.TrunkGroup.from_bytes(body).uri == TG
    with pytest.raises(d.DescriptionError, match="65537 bytes, over the limit of 65536"):
        d.TrunkGroup.from_bytes(body + b" ")


def test_deep_nesting_and_long_numbers_are_description_errors() -> None:
    with pytest.raises(d.DescriptionError, match="nests too deeply"):
        d.TrunkGroup.from_bytes(b"[" * 60000)
    with pytest.raises(d.DescriptionError, match="number too long"):
        d.TrunkGroup.from_bytes(b'{"retry-backoff": ' + b"9" * 5000 + b"}")
    with pytest.raises(d.DescriptionError, match="Infinity is not a JSON value"):
        d.TrunkGroup.from_bytes(b'{"media-timeout": -Infinity}')


def test_json_error_offset_is_in_bytes() -> None:
    with pytest.raises(d.DescriptionError, match=r"byte offset 11\)"):
        d.ClaimRequest.from_bytes('{"é": "x" "y"}'.encode())


def test_non_bytes_body_is_refused() -> None:
    with pytest.raises(d.DescriptionError, match="must be bytes, not str"):
        d.TrunkGroup.from_bytes("{}")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_read() -> None:
    body = b'{"handler": "' + HANDLER.encode() + b'"}'
    assert d.ClaimRequest.from_bytes(bytearray(body)).handler == HANDLER
    assert d.ClaimRequest.from_bytes(memoryview(body)).handler == HANDLER


def test_unpaired_surrogate_is_refused() -> None:
    with pytest.raises(d.DescriptionError, match="'name' holds an unpaired surrogate"):
        d.HandlerDescription.from_bytes(
            b'{"handler-id": "a", "advertisement": "", "name": "\\ud800"}'
        )


def test_to_bytes_is_compact_utf8() -> None:
    handler = d.HandlerDescription(handler_id="h", advertisement="1 in: opus;", name="Büro")
    assert (
        handler.to_bytes()
        == '{"handler-id":"h","name":"Büro","advertisement":"1 in: opus;"}'.encode()
    )


# --- URIs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "origin"),
    [
        ("https://p.example/tgs/7", ("https", "p.example", 443)),
        ("https://P.Example:443/x", ("https", "p.example", 443)),
        ("HTTPS://p.example:8443", ("https", "p.example", 8443)),
        ("https://[2001:DB8::1]:4433/tgs", ("https", "2001:db8::1", 4433)),
        ("https://192.0.2.7/calls/1?x=1#f", ("https", "192.0.2.7", 443)),
    ],
)
def test_origin_of(uri: str, origin: tuple[str, str, int]) -> None:
    assert d.origin_of(uri) == origin


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://p.example/", "not an absolute https:// URI"),
        ("https:p.example/x", "not an absolute https:// URI"),
        ("//p.example/x", "not an absolute https:// URI"),
        ("/calls/1", "not an absolute https:// URI"),
        ("https:///calls/1", "has no host"),
        ("https://:443/calls/1", "has no host"),
        ("https://u@p.example/", "carries user information"),
        ("https://p.example:0/", "has port 0"),
        ("https://p.example:70000/", "is not a URI"),
        ("https://p.example:x/", "is not a URI"),
        ("https://[::1/", "is not a URI"),
        ("https://p.example/a b", "printable ASCII"),
        ("https://p.example/\n", "printable ASCII"),
        ("https://bücher.example/", "printable ASCII"),
        ("", "printable ASCII"),
        (7, "must be a string, not a number"),
    ],
)
def test_origin_of_refuses(uri: Any, message: str) -> None:
    with pytest.raises(d.DescriptionError, match=message):
        d.origin_of(uri)


# --- providertgs ---------------------------------------------------------------------------------


def test_select_prefers_name_then_uri_and_lists_choices() -> None:
    tgs = d.ProviderTgs(
        (d.TgRef("https://p.example/tgs/1", "Domestic"), d.TgRef("https://p.example/tgs/2"))
    )
    assert tgs.select(None).uri == "https://p.example/tgs/1"
    assert tgs.select("Domestic").uri == "https://p.example/tgs/1"
    assert tgs.select("https://p.example/tgs/2").uri == "https://p.example/tgs/2"
    with pytest.raises(d.DescriptionError) as info:
        tgs.select("Mobile")
    assert str(info.value) == (
        "providertgs document: no TG is named 'Mobile'; the provider offers "
        "'Domestic', 'https://p.example/tgs/2'"
    )


def test_providertgs_needs_a_tg() -> None:
    with pytest.raises(d.DescriptionError, match="at least one TG"):
        d.ProviderTgs(())


# --- TG document ---------------------------------------------------------------------------------


def test_tg_defaults_and_policies() -> None:
    tg = d.TrunkGroup.from_bytes(
        b'{"outbound": {"destinations": "+1*"}, "inbound": {"destinations": "+14085551002"}}',
        fetched_from=TG,
    )
    assert tg.uri == TG
    assert tg.retry_backoff_ms == 2000
    assert tg.media_timeout_ms == 5000
    assert tg.outbound.origins is None
    assert tg.outbound.destinations.allows("+14089529999")
    assert not tg.outbound.destinations.allows("+442079460000")
    assert tg.supports_inbound
    assert tg.inbound is not None
    assert tg.inbound.origins == NumberPolicy.any()
    assert tg.inbound.destinations.allows("+14085551002")
    assert not d.TrunkGroup(TG).supports_inbound


def test_tg_error_message_names_member() -> None:
    with pytest.raises(d.DescriptionError) as info:
        d.TrunkGroup.from_json({"uri": TG, "outbound": {}, "retry-backoff": "soon"})
    assert str(info.value) == (
        "TG document: 'retry-backoff' must be an integer number of milliseconds, not a string"
    )


def test_backoff_doubles_to_64_seconds() -> None:
    tg = d.TrunkGroup(TG, retry_backoff_ms=2500)
    assert [tg.backoff_ms(n) for n in range(7)] == [2500, 5000, 10000, 20000, 40000, 64000, 64000]
    assert tg.backoff_ms(-3) == 2500
    assert tg.backoff_ms(10**6) == 64000
    delays = tg.retry_delays()
    assert [next(delays) for _ in range(7)] == [2500, 5000, 10000, 20000, 40000, 64000, 64000]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"uri": "http://p.example/"}, "'uri' is not usable"),
        ({"uri": TG, "retry_backoff_ms": 1999}, "'retry-backoff' must be at least 2000 ms"),
        ({"uri": TG, "media_timeout_ms": 0}, "'media-timeout' must be positive"),
    ],
)
def test_tg_constructor_checks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(d.DescriptionError, match=message):
        d.TrunkGroup(**kwargs)


# --- handlers ------------------------------------------------------------------------------------


def test_secrets_stay_out_of_repr() -> None:
    push = d.PushBinding("mqtts://mq.p.example", "t/1", "user", "hunter2-secret")
    handler = d.HandlerDescription("h", "1 in: opus;", uri=HANDLER, push=push)
    assert "hunter2-secret" not in repr(handler)
    assert "user" in repr(push)
    key = d.MediaKey(key=KEY, salt=SALT, tag_length=8)
    call = d.CallDescription(
        CALL, d.CallDirection.OUTBOUND, "+1", "+2", CallStatus.ANSWERED, media_key=key
    )
    for text in (repr(key), repr(call)):
        assert KEY.hex() not in text and repr(KEY) not in text and repr(SALT) not in text
        assert "tag_length=8" in text


@pytest.mark.parametrize(
    ("broker", "host", "port", "tls"),
    [
        ("mqtts://mq.p.example", "mq.p.example", 8883, True),
        ("MQTTS://MQ.P.Example:8884/", "mq.p.example", 8884, True),
        ("mqtt://127.0.0.53", "127.0.0.53", 1883, False),
        ("mqtt://localhost:1884", "localhost", 1884, False),
    ],
)
def test_push_broker(broker: str, host: str, port: int, tls: bool) -> None:
    push = d.PushBinding(broker, "ript/h/1")
    assert (push.host, push.port, push.tls) == (host, port, tls)


@pytest.mark.parametrize(
    ("broker", "topic", "message"),
    [
        ("mqtt://10.0.0.1", "t", "push binding: 'broker' uses plain mqtt:// to '10.0.0.1'"),
        ("mqtt://localhost.example", "t", "which is not loopback"),
        ("mqtts://mq.example?x=1", "t", "must hold only scheme, host and port"),
        ("mqtts://mq.example#f", "t", "must hold only scheme, host and port"),
        ("https://mq.example", "t", "not an absolute mqtts:// or mqtt:// URI"),
        ("mqtts://mq.example", "a/+/b", "'topic' must be a non-empty MQTT topic name"),
        ("mqtts://mq.example", "a\x00b", "'topic' must be a non-empty MQTT topic name"),
        ("mqtts://mq.example", "é" * 40000, "'topic' is longer than MQTT allows"),
    ],
)
def test_push_binding_checks(broker: str, topic: str, message: str) -> None:
    with pytest.raises(d.DescriptionError, match=message):
        d.PushBinding(broker, topic)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"handler_id": ""}, "'handler-id' must not be empty"),
        ({"handler_id": "x" * 257}, "longer than 256"),
        ({"handler_id": "a\tb"}, "control characters"),
        ({"handler_id": "h", "uri": "ftp://p.example/h"}, "'uri' is not usable"),
    ],
)
def test_handler_constructor_checks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(d.DescriptionError, match=message):
        d.HandlerDescription(advertisement="", **kwargs)


# --- calls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cipher": "AES_256_GCM"}, "'cipher' must be 'AES_128_GCM'"),
        ({"key": bytes(15)}, "'key' must be 16 bytes"),
        ({"salt": bytes(16)}, "'salt' must be 12 bytes"),
        ({"tag_length": 3}, "'tag-length' must be 4 to 16"),
        ({"tag_length": 17}, "'tag-length' must be 4 to 16"),
    ],
)
def test_media_key_constructor_checks(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"key": KEY, "salt": SALT, "tag_length": 8}
    values.update(kwargs)
    with pytest.raises(d.DescriptionError, match=message):
        d.MediaKey(**values)


def test_call_constructor_checks_uris() -> None:
    with pytest.raises(d.DescriptionError, match="call description: 'handler' is not usable"):
        d.CallDescription(
            CALL, d.CallDirection.INBOUND, "+1", "+2", CallStatus.ALERTING, handler="x"
        )


def test_call_list_refuses_keys_it_would_leak() -> None:
    key = d.MediaKey(key=KEY, salt=SALT, tag_length=8)
    call = d.CallDescription(
        CALL, d.CallDirection.INBOUND, "+1", "+2", CallStatus.ALERTING, media_key=key
    )
    with pytest.raises(d.DescriptionError, match="must not carry a media-key"):
        d.CallList((call,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"handler": "http://p.example/h"}, "'handler' is not usable"),
        ({"destination": "+1 408"}, "'destination' '\\+1 408' must be an E.164 number"),
        ({"destination": "a@b@c"}, "must be an E.164 number"),
        ({"destination": "@pbx.example"}, "must be an E.164 number"),
        ({"passport": "a.b"}, "'passport' must be a compact JWS"),
    ],
)
def test_place_call_constructor_checks(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"handler": HANDLER, "destination": "+14089529999", "passport": JWS}
    values.update(kwargs)
    with pytest.raises(d.DescriptionError, match=message):
        d.PlaceCallRequest(**values)


def test_claim_call_bodies() -> None:
    assert d.ClaimRequest.from_bytes(b"") == d.ClaimRequest()
    assert d.ClaimRequest.from_bytes(b" \r\n") == d.ClaimRequest()
    assert d.ClaimRequest.from_bytes(b"{}") == d.ClaimRequest()
    assert d.ClaimRequest().to_bytes() == b"{}"
    assert d.ClaimRequest(HANDLER).to_bytes() == b'{"handler":"' + HANDLER.encode() + b'"}'
    with pytest.raises(d.DescriptionError, match="call claim: 'handler' is not usable"):
        d.ClaimRequest("http://p.example/h")


def test_every_error_is_remote_protocol_error() -> None:
    assert issubclass(d.DescriptionError, RemoteProtocolError)


# --- strategies ----------------------------------------------------------------------------------

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["127.0.0.1", "[::1]", "[2001:db8::7]", "192.0.2.1"]),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
paths = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,12}){0,3}", fullmatch=True)
https_uris = st.builds(lambda h, p, path: f"https://{h}{p}{path}", hosts, ports, paths)
texts = st.text(max_size=40)
e164s = st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True)
patterns = st.one_of(
    st.just(NumberPattern("")),
    e164s.map(lambda n: NumberPattern(n, exact=True)),
    e164s.map(NumberPattern),
)
policies = st.lists(patterns, min_size=1, max_size=3).map(lambda p: NumberPolicy(tuple(p)))
ms = st.integers(1, d.MAX_JSON_INTEGER)

tg_refs = st.builds(d.TgRef, https_uris, st.none() | texts, st.none() | texts)
provider_tgs = st.lists(tg_refs, min_size=1, max_size=4).map(lambda t: d.ProviderTgs(tuple(t)))
outbound = st.builds(
    d.OutboundPolicy, st.none() | texts.filter(lambda t: bool(t.strip())), policies
)
inbound = st.builds(d.InboundPolicy, policies, policies)
trunk_groups = st.builds(
    d.TrunkGroup,
    https_uris,
    outbound,
    st.none() | inbound,
    st.integers(2000, d.MAX_JSON_INTEGER),
    ms,
)
loopback = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "127.1.2.3"])
brokers = st.one_of(
    st.builds(lambda h, p: f"mqtts://{h}{p}", hosts, ports),
    st.builds(lambda h, p: f"mqtt://{h}{p}", loopback, ports),
)
topics = st.text(st.characters(blacklist_characters="+#\x00"), min_size=1, max_size=30)
push_bindings = st.builds(d.PushBinding, brokers, topics, st.none() | texts, st.none() | texts)
handler_ids = st.one_of(
    st.uuids().map(str),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40),
)
handlers = st.builds(
    d.HandlerDescription,
    handler_ids,
    texts,
    st.none() | texts,
    st.none() | https_uris,
    st.none() | push_bindings,
)
media_keys = st.builds(
    d.MediaKey,
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=12, max_size=12),
    st.integers(4, 16),
)
parties = st.one_of(e164s, texts.filter(bool))


def calls(keys: st.SearchStrategy[d.MediaKey | None]) -> st.SearchStrategy[d.CallDescription]:
    return st.builds(
        d.CallDescription,
        https_uris,
        st.sampled_from(d.CallDirection),
        parties,
        parties,
        st.sampled_from(CallStatus),
        st.none() | https_uris,
        st.none() | texts,
        st.none() | texts,
        keys,
    )


call_descriptions = calls(st.none() | media_keys)
call_lists = st.lists(calls(st.none()), max_size=3).map(lambda c: d.CallList(tuple(c)))
destinations = st.one_of(
    e164s,
    st.builds(lambda u, h: f"{u}@{h}", st.from_regex(r"[0-9a-z.]{1,10}", fullmatch=True), hosts),
)
jws_part = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
place_calls = st.builds(
    d.PlaceCallRequest,
    https_uris,
    destinations,
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", jws_part, jws_part, jws_part),
)
claims = st.builds(d.ClaimRequest, st.none() | https_uris)

DOCUMENTS: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (d.ProviderTgs, provider_tgs),
    (d.TrunkGroup, trunk_groups),
    (d.HandlerDescription, handlers),
    (d.CallDescription, call_descriptions),
    (d.CallList, call_lists),
    (d.PlaceCallRequest, place_calls),
    (d.ClaimRequest, claims),
]
any_document = st.one_of(*(strategy for _, strategy in DOCUMENTS))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
member_names = st.sampled_from(
    [
        "uri",
        "name",
        "description",
        "tgs",
        "outbound",
        "inbound",
        "origins",
        "destinations",
        "retry-backoff",
        "media-timeout",
        "handler-id",
        "advertisement",
        "push",
        "broker",
        "topic",
        "username",
        "password",
        "handler",
        "direction",
        "from",
        "to",
        "state",
        "clientDirectives",
        "serverDirectives",
        "media-key",
        "cipher",
        "key",
        "salt",
        "tag-length",
        "calls",
        "destination",
        "passport",
    ]
)


# --- properties ----------------------------------------------------------------------------------


@PROPERTY
@given(any_document)
def test_round_trip(document: Any) -> None:
    reader = type(document)
    assert reader.from_json(document.to_json()) == document
    assert reader.from_bytes(document.to_bytes()) == document
    assert json.loads(document.to_bytes()) == document.to_json()


@PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_description_error(data: bytes) -> None:
    for reader, _ in DOCUMENTS:
        with contextlib.suppress(d.DescriptionError):
            reader.from_bytes(data)


@PROPERTY
@given(json_values)
def test_random_json_raises_only_description_error(value: Any) -> None:
    for reader, _ in DOCUMENTS:
        with contextlib.suppress(d.DescriptionError):
            reader.from_json(value)


def _mutate(doc: Any, path: list[int], name: str, value: Any) -> Any:
    """Replace (or add) member ``name`` in some nested object of ``doc``."""
    objects: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            objects.append(node)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(doc)
    if objects:
        target = objects[path[0] % len(objects)] if path else objects[0]
        target[name] = value
    return doc


@PROPERTY
@given(any_document, st.lists(st.integers(0, 20), max_size=1), member_names, json_values)
def test_damaged_documents_raise_only_description_error(
    document: Any, path: list[int], name: str, value: Any
) -> None:
    doc = _mutate(document.to_json(), path, name, value)
    try:
        type(document).from_json(doc)
    except d.DescriptionError as exc:
        assert str(exc).startswith(type(document).WHAT + ": ")


@PROPERTY
@given(https_uris)
def test_generated_uris_have_an_origin(uri: str) -> None:
    scheme, host, port = d.origin_of(uri)
    assert scheme == "https"
    assert host == host.lower()
    assert 1 <= port <= 65535
