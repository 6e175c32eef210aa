"""The line: this phone's handler at its trunk group, its number and its certificate.

:meth:`Line.connect` comes online (profile section 4): it discovers the TG,
keeps the one handler (``ensure_registration``), works out the phone's own
number and enrols a certificate for it, retrying with the shared back-off
(1, 2, 4 ... 60 s) while the provider cannot be reached.  Each attempt and
failure goes to the phone machine as :class:`~riptphone.app.inputs.LineOffline`,
success as :class:`~riptphone.app.inputs.LineOnline`.  The screen gets the
failure's short reason (:mod:`riptphone.line.reasons`), the log line the
whole sentence.  Once online the line
answers what a call needs: the handler URI, the TG, the outbound policy and
a PASSporT for a destination.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from cryptography.hazmat.primitives.asymmetric import ec

from ript.backoff import Backoff, BackoffPolicy
from ript.protocol.advertisement import format_advertisement
from ript.protocol.csr import build_csr, key_from_pem, key_to_pem, make_key
from ript.protocol.descriptions import TrunkGroup
from ript.protocol.numbers import NumberError, is_e164
from ript.protocol.passport import create_passport
from riptphone.app.inputs import Input, LineOffline, LineOnline
from riptphone.calls.codec import codec_settings, configured_advertisement
from riptphone.config import AudioConfig, Config
from riptphone.line.reasons import plain_reason
from riptphone.net.ript_client import RiptClient, RiptError
from riptphone.store import Identity, Registration, StateStore, StoreError

log = logging.getLogger("riptphone.line")

RETRY = BackoffPolicy(initial=1.0, maximum=60.0)
"""While the provider cannot be reached: 1, 2, 4 ... 60 s, no jitter (one phone, one provider)."""


class NotRegisteredError(Exception):
    """The line is not online yet: no handler, TG or certificate to call with."""


class Line:
    """This phone's registration at its provider; see the module docstring."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        client: RiptClient,
        feed: Callable[[Input], object],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self._feed = feed
        self._sleep = sleep
        self._backoff = backoff if backoff is not None else Backoff(RETRY)
        self.tg: TrunkGroup | None = None
        self.registration: Registration | None = None
        self.number: str | None = config.phone.number or None
        self.offline_reason: str | None = "not connected yet"
        self.offline_detail: str | None = None
        # The id a first registration uses, the same on every retry: a POST whose answer
        # could not be saved (a full SD card) is repeated with it, and the provider updates
        # that handler instead of keeping a ghost per attempt.
        self._new_handler_id = Registration.new_handler_id()
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._cert_uri: str | None = None

    @property
    def handler_uri(self) -> str | None:
        """The handler's URI once registered (``201 Created``), else None."""
        return None if self.registration is None else self.registration.handler_uri

    async def connect(self) -> None:
        """Come online, retrying with doubling back-off; returns once the phone is registered."""
        self._backoff.reset()
        self._feed(LineOffline("connecting to the provider", registering=True))
        while True:
            try:
                await self._connect_once()
                return
            except (RiptError, NumberError, ValueError, StoreError, OSError) as exc:
                # A state save that fails (a full or read-only SD card) is retried like an
                # unreachable provider: the phone keeps running and says why.
                delay = self._backoff.next_delay()
                reason = self.offline_reason = plain_reason(exc)
                detail = self.offline_detail = str(exc)
                log.warning("event=offline reason=%r detail=%r retry_in=%g", reason, detail, delay)
                self._feed(LineOffline(reason, retry_in_s=round(delay)))
                await self._sleep(delay)

    async def _connect_once(self) -> None:
        tg = await self.client.discover(self.config.provider.trunk_group or None)
        registration = await self._register(tg)
        number = self.config.phone.number or own_number(tg)
        await self._ensure_identity(tg, number)
        self.tg, self.registration, self.number = tg, registration, number
        self.offline_reason = self.offline_detail = None
        self._feed(LineOnline(number, self.config.phone.name))

    async def _register(self, tg: TrunkGroup) -> Registration:
        """Register, or PUT the handler when its advertisement ([audio] codecs, ptime) changed."""
        advertisement = format_advertisement(
            configured_advertisement(codec_settings(self.config.audio))
        )
        registration, done = await self.client.ensure_registration(
            self.store,
            tg,
            name=self.config.phone.name,
            advertisement=advertisement,
            new_handler_id=self._new_handler_id,
        )
        log.info("event=registration done=%s handler=%s", done, registration.handler_uri)
        return registration

    async def readvertise(self, audio: AudioConfig) -> None:
        """A reloaded ``[audio]``: the next registration, or the handler now, advertises it."""
        self.config = dataclasses.replace(self.config, audio=audio)
        tg = self.tg
        if tg is None or self.registration is None:
            return  # offline: the next connect registers with the new advertisement
        try:
            self.registration = await self._register(tg)
        except (RiptError, StoreError, OSError) as exc:
            # The old advertisement stays at the provider; the next connect retries.
            log.warning("event=readvertise_failed reason=%r", str(exc))

    async def _ensure_identity(self, tg: TrunkGroup, number: str) -> None:
        loaded = await asyncio.to_thread(self.store.load_identity)
        identity = loaded.data
        if identity is not None and identity.cert_uri and identity.cert_chain_pem:
            self._key = key_from_pem(identity.key_pem)
            self._cert_uri = identity.cert_uri
            return
        key = key_from_pem(identity.key_pem) if identity is not None else make_key()
        chain, cert_uri = await self.client.enroll(tg, build_csr(key, number))
        identity = Identity(key_pem=key_to_pem(key), cert_chain_pem=chain, cert_uri=cert_uri)
        await asyncio.to_thread(self.store.save_identity, identity)
        log.info("event=enrolled cert=%s", cert_uri)
        self._key, self._cert_uri = key, cert_uri

    def forget(self, reason: str) -> None:
        """Offline with nothing kept (logged out, factory reset); :meth:`connect` starts afresh."""
        self.tg = self.registration = None
        self.number = self.config.phone.number or None
        self._key = self._cert_uri = None
        self.offline_reason, self.offline_detail = reason, None

    def check_destination(self, e164: str) -> str | None:
        """Why the line may not call ``e164`` (the TG's outbound destinations), or None.

        None too while offline: the dial plan alone decides until the TG is known.
        """
        if self.tg is None or self.tg.outbound.destinations.allows(e164):
            return None
        return f"{e164} is outside the numbers this line may call ({self.tg.outbound.destinations})"

    def passport(self, destination: str, issued_at: int) -> str:
        """A PASSporT for a call from this line's number to ``destination``."""
        if self._key is None or self._cert_uri is None or self.number is None:
            raise NotRegisteredError("cannot dial: the phone is not registered")
        return create_passport(self._key, self._cert_uri, self.number, destination, issued_at)


def own_number(tg: TrunkGroup) -> str:
    """The first whole number among the TG's inbound destinations."""
    if tg.inbound is not None:
        for pattern in tg.inbound.destinations.patterns:
            if pattern.exact and is_e164(pattern.prefix):
                return pattern.prefix
    raise ValueError("the phone has no number: set [phone] number, the TG lists no inbound number")
