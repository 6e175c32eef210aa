"""Shared pieces for the phone daemon's unit tests: a fake provider client and fake media.

Everything else in those tests is real (the machine, the store, the
registry); only the network client and the audio devices are stand-ins.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ript.protocol.advertisement import format_advertisement, phone_advertisement
from ript.protocol.call import Call
from ript.protocol.descriptions import CallDescription, CallDirection, PushBinding, TrunkGroup
from ript.protocol.events import CallStatus
from riptphone.calls.media import MediaInfo, MediaStats
from riptphone.config import Config, parse_config
from riptphone.net.ript_client import RiptError
from riptphone.store import Registration, StoreError

TG_URI = "https://p.example/tgs/7"
OWN = "+14085551002"
THEM = "+14085559999"
HANDLER = "https://p.example/handlers/1"
CALL_URI = "https://p.example/calls/1"
ADVERTISEMENT = format_advertisement(phone_advertisement())


def config(tmp_path: Path, **phone: Any) -> Config:
    return parse_config(
        {"provider": {"domain": "p.example"}, "phone": {"name": "desk", **phone}}, base=tmp_path
    )


def trunk_group(outbound: str = "*") -> TrunkGroup:
    return TrunkGroup.from_json(
        {
            "uri": TG_URI,
            "outbound": {"destinations": outbound},
            "inbound": {"destinations": OWN, "origins": "*"},
        }
    )


def registration(push: PushBinding | None = None) -> Registration:
    return Registration(
        handler_id="0b1f3c0e-7a51-4d8e-9a3f-2d6c1e5b7a90",
        handler_uri=HANDLER,
        tg_uri=TG_URI,
        advertisement=ADVERTISEMENT,
        push=push,
    )


def certificate_chain() -> bytes:
    """A self-signed certificate in PEM: what an enrolment gives back, as far as the store cares."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def description(
    *,
    direction: CallDirection = CallDirection.INBOUND,
    state: CallStatus = CallStatus.PROCEEDING,
    handler: str | None = None,
    uri: str = CALL_URI,
) -> CallDescription:
    inbound = direction is CallDirection.INBOUND
    return CallDescription(
        uri=uri,
        direction=direction,
        from_=THEM if inbound else OWN,
        to=OWN if inbound else THEM,
        state=state,
        handler=handler,
    )


def call(**kw: Any) -> Call:
    return Call(description(**kw), own_handler=HANDLER)


class FakeClient:
    """The provider as :class:`riptphone.net.ript_client.RiptClient` answers it; records calls."""

    def __init__(
        self, *, failures: int = 0, save_failures: int = 0, tg: TrunkGroup | None = None
    ) -> None:
        self.failures = failures
        self.save_failures = save_failures  # registrations whose saving fails (a full card)
        self.tg = tg or trunk_group()
        self.enrolled = 0
        self.new_handler_ids: list[str | None] = []
        self.advertisements: list[str] = []
        self.calls: dict[str, CallDescription] = {}
        self.place_error: RiptError | None = None
        self.placed: list[dict[str, Any]] = []
        self.forgotten: list[str] = []  # forget_call(): calls whose cookies were dropped

    def forget_call(self, *call_uris: str) -> None:
        self.forgotten.extend(call_uris)

    async def discover(self, tg_name: str | None = None) -> TrunkGroup:
        if self.failures:
            self.failures -= 1
            raise RiptError("the provider is down", 503)
        return self.tg

    async def ensure_registration(
        self,
        store: Any,
        tg: TrunkGroup,
        *,
        name: str,
        advertisement: str,
        new_handler_id: str | None = None,
    ) -> tuple[Registration, str]:
        self.new_handler_ids.append(new_handler_id)
        self.advertisements.append(advertisement)
        if self.save_failures:
            self.save_failures -= 1
            raise StoreError("state file registration.json cannot be written: File too large")
        return registration(), "registered"

    async def enroll(self, tg: TrunkGroup, csr_pem: bytes) -> tuple[bytes, str]:
        self.enrolled += 1
        return certificate_chain(), "https://p.example/certs/1"

    async def get_call(self, uri: str) -> CallDescription | None:
        return self.calls.get(uri)

    async def place_call(self, tg: TrunkGroup, **kw: Any) -> CallDescription:
        self.placed.append(kw)
        if self.place_error is not None:
            raise self.place_error
        raise AssertionError("this fake places no call")


def media_stats(**counters: Any) -> MediaStats:
    """Media counters: zero (no RTT yet) except those given."""
    values: dict[str, Any] = {name: 0 for name in MediaStats.__slots__}
    values.update(sealed=False, rtt_ms=None, jitter_ms=0.0, audio_error=None)
    values.update(counters)
    return MediaStats(**values)


class FakeMedia:
    """What the registry does to a call's media: mute, volume, DTMF; and its counters."""

    def __init__(self, codec: str = "opus") -> None:
        self.codec = codec
        self.muted = False
        self.volume: int | None = None
        self.digits: list[str] = []
        self.counters: dict[str, Any] = {}
        self.audio: str | None = None  # audio_error(): why a device is unusable

    def audio_error(self) -> str | None:
        return self.audio

    def set_muted(self, muted: bool) -> None:
        self.muted = muted

    def set_volume(self, percent: int) -> None:
        self.volume = percent

    def send_dtmf(self, key: str) -> None:
        self.digits.append(key)

    def stats(self) -> MediaStats:
        return media_stats(**self.counters)


class FakeRunner:
    """A :class:`riptphone.calls.runner.CallRunner` without the network: a call and its media."""

    def __init__(self, the_call: Call, media: FakeMedia | None = None) -> None:
        self.call = the_call
        self.media = media
        self.pulled = 0

    @property
    def codec(self) -> str | None:
        return None if self.media is None else self.media.codec

    def media_info(self) -> MediaInfo | None:
        if self.media is None:
            return None
        return MediaInfo(self.media.codec.lower(), "byways", self.media.stats())

    def pull(self) -> None:
        self.pulled += 1


class FakePlayer:
    """A tone player that only remembers what it was asked to play."""

    def __init__(self) -> None:
        self.played: list[str | None] = []
        self.closed = False

    def play(self, kind: str | None) -> None:
        self.played.append(kind)

    def close(self) -> None:
        self.closed = True
