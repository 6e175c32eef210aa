"""A whole call played through the protocol core in memory (``python -m riptdev selfcheck``).

Both ends speak the real wire formats to each other: the phone side uses what
the daemon will use, the provider side what ``riptprovider`` will use.  No
network, no audio: what is checked is that every format and the call state
machine fit together.  Each step prints one line; a failed check raises
:class:`SelfCheckError` naming it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from typing import TextIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ript.protocol import advertisement as adv
from ript.protocol.call import (
    Action,
    Call,
    CallState,
    FetchDescription,
    OpenMedia,
    OpenSignalling,
    SendEvent,
)
from ript.protocol.chunks import PayloadType, frame
from ript.protocol.csr import build_csr, make_key, parse_csr
from ript.protocol.descriptions import (
    CallDescription,
    CallDirection,
    HandlerDescription,
    MediaKey,
    OutboundPolicy,
    TrunkGroup,
)
from ript.protocol.events import (
    Alerting,
    Answered,
    CallStatus,
    Direction,
    Event,
    Pong,
    Proceeding,
    format_timestamp,
)
from ript.protocol.jsonstream import EventStreamReader, EventStreamWriter
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from ript.protocol.numbers import DialPlan, NumberPolicy
from ript.protocol.passport import create_passport, verify_passport
from ript.protocol.tnauth import TnOne, TnRange, encode_tn_auth_list

TNAUTH_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")
ORIGIN = "https://provider.example"
TG_URI = f"{ORIGIN}/tgs/7"
OWN_NUMBER = "+14085551002"
DIALLED = "408 952 9999"


class SelfCheckError(AssertionError):
    """One of the self-check's expectations did not hold."""


def _cert(
    subject: str,
    key: ec.EllipticCurvePublicKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    tn_der: bytes,
    now: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.UnrecognizedExtension(TNAUTH_OID, tn_der), critical=False)
    )
    if ca:
        usage = dict.fromkeys(_KEY_USAGES, False) | {"key_cert_sign": True, "crl_sign": True}
        builder = builder.add_extension(x509.KeyUsage(**usage), critical=True).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def run(out: TextIO, *, verbose: bool = False) -> int:
    """Play the call; return the number of checks that held."""
    checks = 0
    wall = dt.datetime.now(dt.UTC)
    wall_s = wall.timestamp()

    def step(text: str) -> None:
        out.write(f"  {text}\n")

    def check(condition: bool, what: str) -> None:
        nonlocal checks
        if not condition:
            raise SelfCheckError(what)
        checks += 1

    out.write("ript-phone protocol self-check\n")

    # -- Provisioning: TG, handler, certificate --------------------------------------
    plan = DialPlan.nanp(area_code="408")
    destination = plan.normalise(DIALLED)
    check(destination == "+14089529999", "dial plan normalises a 10-digit number")
    step(f"dial plan: {DIALLED!r} -> {destination}")

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _cert(
        "Provider CA",
        ca_key.public_key(),
        "Provider CA",
        ca_key,
        ca=True,
        tn_der=encode_tn_auth_list([TnRange("14085551000", 1000)]),
        now=wall,
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    tg_wire = TrunkGroup(
        uri=TG_URI,
        outbound=OutboundPolicy(
            origins=ca_pem.decode(), destinations=NumberPolicy.from_json("+1*")
        ),
    ).to_bytes()
    tg = TrunkGroup.from_bytes(tg_wire, fetched_from=TG_URI)
    check(tg.outbound.destinations.allows(destination), "the TG allows the destination")
    check(not tg.outbound.destinations.allows("+442079460000"), "the TG refuses +44")
    step(f"TG {tg.uri}: outbound to {tg.outbound.destinations.to_json()}, {len(tg_wire)} bytes")

    phone_adv = adv.phone_advertisement()
    handler_id = str(uuid.uuid4())
    register = HandlerDescription(
        handler_id=handler_id, name="Desk phone", advertisement=adv.format_advertisement(phone_adv)
    ).to_bytes()
    at_provider = HandlerDescription.from_bytes(register)
    handler_uri = f"{TG_URI}/handlers/{uuid.uuid4()}"
    check(at_provider.handler_id == handler_id, "handler registration round-trips")
    step(f"handler {handler_id} registered as {handler_uri}")

    phone_key = make_key()
    csr_pem = build_csr(phone_key, OWN_NUMBER)
    csr = parse_csr(csr_pem)
    check(csr.tn_entries == (TnOne("14085551002"),), "the CSR carries TNAuthList one=14085551002")
    leaf = _cert(
        OWN_NUMBER,
        csr.public_key,
        "Provider CA",
        ca_key,
        ca=False,
        tn_der=encode_tn_auth_list(csr.tn_entries),
        now=wall,
    )
    chain_pem = leaf.public_bytes(serialization.Encoding.PEM) + ca_pem
    cert_uri = f"{TG_URI}/certs/{uuid.uuid4()}"
    step(f"CSR of {len(csr_pem)} bytes enrolled; certificate at {cert_uri}")

    # -- Placing the call -----------------------------------------------------------
    token = create_passport(phone_key, cert_uri, OWN_NUMBER, destination, int(wall_s))
    verified = verify_passport(
        token,
        chain_pem,
        now=int(wall_s),
        expected_dest=destination,
        trusted_ca_pem=ca_pem,
    )
    check(verified.orig == "14085551002", "the provider verifies the PASSporT")
    step(f"PASSporT of {len(token)} characters verified by the provider (orig {verified.orig})")

    provider_adv = adv.parse_advertisement("1 in: opus; PCMU; PCMA; telephone-event; CN;")
    provider_adv_out = adv.parse_advertisement("1 out: opus; PCMU; PCMA; telephone-event; CN;")
    client_directive = adv.negotiate(phone_adv, provider_adv)
    server_directive = adv.negotiate(provider_adv_out, phone_adv)
    check(adv.directive_within(client_directive, phone_adv, provider_adv), "directive fits")
    media_key = MediaKey(key=os.urandom(16), salt=os.urandom(12), tag_length=8)
    call_uri = f"{ORIGIN}/calls/{uuid.uuid4()}"
    description_wire = CallDescription(
        uri=call_uri,
        direction=CallDirection.OUTBOUND,
        from_=OWN_NUMBER,
        to=destination,
        state=CallStatus.PROCEEDING,
        handler=handler_uri,
        client_directives=adv.format_directive(client_directive),
        server_directives=adv.format_directive(server_directive),
        media_key=media_key,
    ).to_bytes()
    description = CallDescription.from_bytes(description_wire)
    step(f"POST /calls -> 201 {call_uri}")
    step(f"client directive: {description.client_directives!r}")

    def followable(text: str | None) -> str | None:
        if text is None:
            return "no directive"
        problems = adv.check_directive(adv.parse_directive(text), phone_adv, None)
        return "; ".join(problems) or None

    now = 0.0
    call = Call(
        description,
        own_handler=handler_uri,
        directive_check=followable,
        wall_clock=lambda: wall_s + now,
    )
    trace: list[Action] = []

    def did(actions: list[Action]) -> list[Action]:
        trace.extend(actions)
        if verbose:
            for action in actions:
                step(f"    -> {type(action).__name__}")
        return actions

    acts = did(call.start(now))
    check(any(isinstance(a, OpenSignalling) for a in acts), "the phone opens its byways")

    # -- Signalling byway: provider writer -> bytes -> phone reader, one byte at a time
    writer = EventStreamWriter()
    reader = EventStreamReader()
    wire = bytearray(writer.open())

    def provider_event(cls: type[Event]) -> None:
        wire.extend(
            writer.encode(
                cls(direction=Direction.S2C, call=call_uri, timestamp=format_timestamp(wall_s))
            )
        )

    def deliver(at: float) -> list[str]:
        seen = []
        for i in range(len(wire)):
            for item in reader.feed(bytes(wire[i : i + 1])):
                check(isinstance(item, Event), f"the phone parses {item!r}")
                assert isinstance(item, Event)
                seen.append(item.type)
                did(call.receive_event(item, at))
        wire.clear()
        return seen

    acts = did(call.signalling_up(now))
    check(any(isinstance(a, OpenMedia) for a in acts), "media opens after the PUT's headers")
    for cls, state in ((Proceeding, CallState.PROCEEDING), (Alerting, CallState.ALERTING)):
        now += 0.5
        provider_event(cls)
        seen = deliver(now)
        check(call.state is state, f"{cls.TYPE} moves the call to {state.value}")
        step(f"event {seen[0]!r} fed byte by byte -> call {call.state.value}")
    now += 2.0
    provider_event(Answered)
    deliver(now)
    check(call.state is CallState.ACTIVE, "answered -> active")
    step(f"event 'answered' -> call {call.state.value}")

    # -- Media: sealed chunks, acks, truncation once a full-value chunk is acked ---
    keys = MediaKeys.from_material(media_key.key, media_key.salt, media_key.tag_length)
    phone_tx = ChunkSender(Direction.C2S, keys)
    provider_rx = ChunkReceiver(Direction.C2S, keys)
    provider_tx = ChunkSender(Direction.S2C, keys)
    phone_rx = ChunkReceiver(Direction.S2C, keys)
    sizes: list[int] = []
    rtts: list[float] = []
    payload = bytes(range(80))  # stands in for one 20 ms Opus frame
    for i in range(50):
        now += 0.020
        chunk = phone_tx.media(
            1, 1, PayloadType.OPUS, int(wall_s * 1000) + 20 * i, payload, now=now
        )
        call.media_sent(now)
        sizes.append(len(chunk))
        got = provider_rx.receive(frame([chunk]), now + 0.005)
        check(len(got.media) == 1 and got.media[0].payload == payload, "provider opens chunk")
        acks = provider_tx.acks(provider_rx.take_pending_acks(now + 0.006))
        back = phone_rx.receive(frame(acks), now + 0.010)
        for ack in back.acks:
            rtt = phone_tx.on_ack(ack, now + 0.010)
            if rtt is not None:
                rtts.append(rtt)
            call.ack_received(now + 0.010)
        call.media_received(now + 0.010)
    check(sizes[-1] < sizes[0], "sequence numbers and timestamps are truncated once acked")
    step(
        f"50 sealed media chunks: {sizes[0]} bytes with full values, {sizes[-1]} once acked; "
        f"RTT {1000 * min(rtts):.1f} ms"
    )
    forged = bytearray(phone_tx.media(1, 1, PayloadType.OPUS, 0, payload, now=now))
    forged[-1] ^= 0x01
    got = provider_rx.receive(frame([bytes(forged)]), now)
    check(got.auth_failures == 1 and not got.media, "a forged chunk is counted, not played")
    step("a chunk with one flipped bit: counted as an authentication failure, not played")

    # -- A fault: missing pongs -> migration -> resync ---------------------------------
    silent_until = now + 15.0
    while now < silent_until:
        now += 1.0
        call.media_received(now)
        call.ack_received(now)
        did(call.handle_timer(now))
    reopened = [a for a in trace if isinstance(a, OpenSignalling) and a.migration]
    check(len(reopened) == 1, "no pong for 15 s re-establishes the byways")
    acts = did(call.signalling_up(now))
    check(any(isinstance(a, FetchDescription) for a in acts), "after migration the phone resyncs")
    check(any(isinstance(a, OpenMedia) for a in acts), "and reopens media")
    pong = Pong(direction=Direction.S2C, call=call_uri, timestamp=format_timestamp(wall_s + now))
    did(call.receive_event(pong, now))
    step(f"no pong for 15 s -> byways re-established; call still {call.state.value}")

    # -- Hang up ---------------------------------------------------------------------
    acts = did(call.hangup(now + 1.0))
    end = [a.event for a in acts if isinstance(a, SendEvent)]
    check(len(end) == 1 and end[0].type == "end", "hang-up sends end")
    step(f"hang-up sends {json.dumps(end[0].to_json())}")
    check(call.state is CallState.ENDED, "the call is over")
    out.write(f"self-check passed: {checks} checks\n")
    return checks


def main(out: TextIO, verbose: bool = False) -> int:
    """Run the self-check; 0 when every check held."""
    try:
        run(out, verbose=verbose)
    except SelfCheckError as exc:
        out.write(f"self-check FAILED: {exc}\n")
        return 1
    return 0
