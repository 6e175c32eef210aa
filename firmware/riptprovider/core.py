"""The reference provider's authoritative core: all RIPT state and rules, no HTTP.

The HTTP/3 layer is thin: each request handler calls one method of
:class:`ProviderCore` and turns its result into a response.  Every method is
synchronous and fast (a dictionary look-up and at most one SQLite
transaction), so the asyncio loop calls it directly.  Refusals raise
:class:`RiptHttpError` carrying the HTTP status and a one-sentence message.

What the core holds:

* handlers, per account, registered idempotently by ``handler-id``;
* calls: their description, their state machine (draft section 9.10 and the
  inbound draft's section 5), the reverse-byway subscribers every event is
  fanned out to (draft 9.9), and the 30 s timer that ends a call nobody
  holds a signalling byway for (draft 9.12);
* the simulated far end of outbound calls, a timer-driven state machine the
  HTTP layer advances with :meth:`ProviderCore.tick` at
  :meth:`ProviderCore.next_deadline`;
* the inbound draft's single-user features: forking a new inbound call to
  every handler of the account, first claim wins, call pull, and the admin
  operations (3PCC place, move, answer, decline, hang-up, events on demand)
  that reach a phone through a shoulder tap (``push_hook``); a call placed
  on one handler is tapped to the account's others (remote in use, pull).

Handlers and calls are written through to :class:`~riptprovider.db.ProviderDb`
so a new core on the same file carries on where the old one stopped.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ript.protocol.advertisement import (
    Advertisement,
    GrammarError,
    format_directive,
    negotiate,
    parse_advertisement,
)
from ript.protocol.descriptions import (
    CallDescription,
    CallDirection,
    CallList,
    ClaimRequest,
    DescriptionError,
    HandlerDescription,
    InboundPolicy,
    MediaKey,
    OutboundPolicy,
    PlaceCallRequest,
    ProviderTgs,
    PushBinding,
    TgRef,
    TrunkGroup,
)
from ript.protocol.events import (
    STATE_EVENTS,
    CallStatus,
    Direction,
    Event,
    HandlerChanged,
    Migrate,
    Ping,
    Pong,
    Reconnected,
    Reconnecting,
    StateEvent,
    format_timestamp,
)
from ript.protocol.numbers import NumberPolicy, is_e164
from ript.protocol.taps import TapType
from riptprovider.accounts import Account, FarEnd, Outcome
from riptprovider.db import CallRecord, ProviderDb, token_hash
from riptprovider.oauth import Issuer, IssuerSettings

PROVIDER_ADVERTISEMENT = (
    "1 in: opus,ptime=60; PCMU,ptime=60; PCMA,ptime=60; telephone-event; CN;\n"
    "1 out: opus,ptime=60; PCMU,ptime=60; PCMA,ptime=60; telephone-event; CN;"
)
"""Every codec of the table, up to 60 ms a chunk (the far end follows the phone's ptime)."""
ALERT_AFTER = 0.2
"""Seconds from proceeding to alerting of the simulated far end."""
IDLE_END_AFTER = 30.0
"""Seconds without any reverse byway before a call is ended (draft 9.12)."""
RETRY_BACKOFF_MS = 2000
ENDED_RETENTION_S = 3600.0
"""How long an ended call stays readable (``GET {call}`` answers its final state)."""
MAX_HANDLERS_PER_ACCOUNT = 16
"""Handlers one account may register (``[server] max_handlers_per_account``); more: 403."""
MEDIA_TIMEOUT_MS = 5000
MEDIA_TAG_LENGTH = 8

KEEP_EVENTS_S = 8.0
"""Seconds a call's events are kept for a reverse byway re-established after a blip: the
profile's 5 s, plus the 3 s the media keep too (the path's own recovery after a 5 s blip,
ript.protocol.media_streams.RESEND_WINDOW)."""
MAX_KEPT_EVENTS = 64
"""Events kept per call at most (a burst of admin events must not grow memory)."""
_NOT_REPLAYED = (StateEvent, Reconnecting, Reconnected, Migrate)
"""Kinds a new reverse byway does not replay: its first events state the call's state and
the far end's connectivity, and a phone opening a byway is doing what ``migrate`` asks."""

_ORDER = {CallStatus.PROCEEDING: 0, CallStatus.ALERTING: 1, CallStatus.ANSWERED: 2}
_CLIENT_REJECTS = frozenset({CallStatus.DECLINED, CallStatus.FAILED, CallStatus.NOANSWER})


class RiptHttpError(Exception):
    """A request the core refuses: the HTTP status to answer and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"RiptHttpError({self.status}, {self.message!r})"


PushHook = Callable[[HandlerDescription, TapType, str], None]
"""``push_hook(handler, tap type, call URI)``: publish one shoulder tap (profile section 9)."""

PassportCheck = Callable[[str, str], "str | None"]
"""``passport_check(token, destination)``: the problem with the PASSporT, or None."""


@dataclass(frozen=True, slots=True)
class EventResult:
    """What :meth:`ProviderCore.client_event` did with one event of a forward byway.

    ``replies`` go back to the sender on its reverse byways (a ``pong``);
    ``problem`` says why the event was refused (the call is unchanged, the
    byway stays open: the HTTP layer logs it).
    """

    replies: tuple[Event, ...] = ()
    problem: str | None = None


class Subscription:
    """One reverse byway of a call.

    With ``on_event`` every event is handed to it, on the thread that caused
    it (the HTTP layer passes a function that posts into its loop, e.g.
    ``loop.call_soon_threadsafe``).  Without, events collect in
    :attr:`events` (thread-safe appends) for :meth:`drain`.
    """

    __slots__ = ("_on_event", "closed", "events", "uri")

    def __init__(self, uri: str, on_event: Callable[[Event], None] | None) -> None:
        self.uri = uri
        self.events: deque[Event] = deque()
        self._on_event = on_event
        self.closed = False

    def deliver(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        else:
            self.events.append(event)

    def drain(self) -> list[Event]:
        """The events collected so far, oldest first, removed from :attr:`events`."""
        out: list[Event] = []
        while self.events:
            out.append(self.events.popleft())
        return out


@dataclass(slots=True)
class _Live:
    """The parts of a call's state that are not its description.

    ``leg`` is the token of the current handler's leg (the ``ript-leg``
    cookie the HTTP layer sets on a claim); ``old_legs`` those of handlers
    that lost the call, whose media requests are refused.  Both are written
    to the file as they change (:meth:`ProviderCore._save_legs`); the rest
    lives in memory only.
    """

    subscribers: list[Subscription] = field(default_factory=list)
    unwatched_since: float = 0.0
    """Monotonic time the last reverse byway went (the 30 s idle timer runs from it)."""
    created_at: float = 0.0
    state_at: float = 0.0
    """Monotonic times of the call's creation and of its last state change: the ring
    timeout and the far end's steps run from them, so a step of the wall clock moves
    no deadline (the wall-clock ``created``/``state_since`` are for the wire and the file)."""
    far_end_reconnecting: bool = False
    leg: str | None = None
    old_legs: set[str] = field(default_factory=set)
    seq: int = 0
    """The number (``seq``) of the last event sent to the call's reverse byways."""
    kept: deque[tuple[float, Event]] = field(default_factory=deque)
    """The events sent in the last :data:`KEEP_EVENTS_S` (monotonic time sent, event),
    oldest first, at most :data:`MAX_KEPT_EVENTS`: replayed on a new reverse byway."""


@dataclass(slots=True)
class _Handler:
    account: str
    description: HandlerDescription
    created: float
    owner: str | None = None
    """The device that registered it (:attr:`Caller.device`); None: from before owners."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a request: the account, and which of its devices.

    ``device`` is ``login:<id>`` for an access token of an OAuth login (one per
    device grant, kept across refreshes) and ``token:<sha256>`` for a static
    (lab) token or an issued token of no login: every phone using the same lab
    token is the same device.
    """

    account: Account
    device: str


_T = TypeVar("_T")
_E = TypeVar("_E", bound=Event)
log = logging.getLogger(__name__)


def _parse(kind: Callable[[bytes], _T], data: bytes) -> _T:
    try:
        return kind(data)
    except DescriptionError as exc:
        raise RiptHttpError(400, str(exc)) from None


def _key() -> MediaKey:
    return MediaKey(secrets.token_bytes(16), secrets.token_bytes(12), MEDIA_TAG_LENGTH)


class ProviderCore:
    """All RIPT state of the reference provider.

    ``origin`` is ``https://host[:port]`` without a final slash; ``clock``
    returns Unix seconds (tests pass a fake one): what goes on the wire and in
    the file.  ``monotonic`` is the clock of deadlines (ring timeout, idle
    timer, the far end's steps): :meth:`next_deadline` and :meth:`tick` speak
    it; the server passes ``time.monotonic``; by default it is ``clock``
    (tests that move one fake clock).  Thread-safe: one lock guards the
    state, so the MQTT or admin threads may call in too.
    """

    def __init__(
        self,
        db_path: str,
        accounts: Mapping[str, Account] | Iterable[Account],
        origin: str,
        clock: Callable[[], float],
        oauth: IssuerSettings | None = None,
        *,
        max_handlers_per_account: int = MAX_HANDLERS_PER_ACCOUNT,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(accounts, Mapping):
            self._accounts: dict[str, Account] = dict(accounts)
        else:
            self._accounts = {account.id: account for account in accounts}
        self.origin = origin.rstrip("/")
        self._clock = clock
        self._mono = clock if monotonic is None else monotonic
        self._lock = threading.RLock()
        self._provider_adv = parse_advertisement(PROVIDER_ADVERTISEMENT)
        self._tokens = {t: a.id for a in self._accounts.values() for t in a.tokens}
        self._static_hashes = {token_hash(t) for t in self._tokens}
        self.db = ProviderDb(db_path)
        self.issuer = Issuer(self.db, self._accounts, self.origin, clock, oauth)
        """The OAuth login (device codes, grants, issued tokens): ``docs/provider-oauth.md``."""
        now = clock()
        self.max_handlers_per_account = max_handlers_per_account
        self._handlers: dict[str, _Handler] = {}
        self._handler_uris: dict[tuple[str, str], str] = {}
        """(account id, handler-id) -> handler URI: a registration finds its handler at once."""
        for account_id, description, owner in self.db.load_handlers():
            if account_id in self._accounts and description.uri is not None:
                self._handlers[description.uri] = _Handler(account_id, description, now, owner)
                self._handler_uris[account_id, description.handler_id] = description.uri
        self._calls: dict[str, CallRecord] = {}
        self._live: dict[str, _Live] = {}
        legs = self.db.load_legs()
        for call in self.db.load_open_calls():
            if call.account in self._accounts:
                self._calls[call.uri] = call
                live = self._live[call.uri] = self._anchored(call)
                # Clients need time to find the restarted provider: the 30 s start now.
                live.unwatched_since = self._mono()
                # The phones' ript-leg cookies stay good (and the lost legs refused).
                live.leg, live.old_legs = legs.get(call.uri, (None, set()))
                # The events kept are lost; their numbers must not be used again (a phone
                # would skip the new events as seen): number from the wall clock's
                # milliseconds on, above what any call sent before (< 1000 a second).
                live.seq = int(self._clock() * 1000)
        self.push_hook: PushHook | None = None
        """Publishes taps: ``call`` to each forking target, ``take``/``answer``/``decline``.

        Called after the core's lock is released, on the thread of the operation."""
        self.push_binder: Callable[[Account, HandlerDescription], PushBinding | None] | None = None
        """Gives a registering handler its push binding (the MQTT layer sets it).

        Called under the core's lock: it must be quick (the MQTT layer makes the
        user in memory and writes its files and reloads the broker on a thread)."""
        self.push_settled: Callable[[], concurrent.futures.Future[None]] | None = None
        """A future done once the push credentials handed out so far work at the broker
        (the MQTT layer sets it; the HTTP layer awaits it before answering a registration)."""
        self.handler_removed: Callable[[HandlerDescription], None] | None = None
        """Told of each deleted handler, so its push credentials go too (the MQTT layer sets it)."""
        self.call_renamed: Callable[[str, str], None] | None = None
        """Told of each call moved to a new URI (``old``, ``new``): the HTTP layer moves the
        call's media state (numbering, sessions) with it."""
        self.call_ended: Callable[[str], None] | None = None
        """Told of each call that reached a final state, however it got there (the HTTP layer
        drops the call's media state then)."""
        self._oldest_ended = self.db.oldest_ended()

    def close(self) -> None:
        self.db.close()

    def _anchored(self, call: CallRecord) -> _Live:
        """Memory state for a call known only from its wall-clock stamps (the file).

        The monotonic clock does not survive a restart: its anchors are worked out
        from how long ago the stamps were, never in the future (a wall clock set back
        since counts as now).
        """
        mono, wall = self._mono(), self._clock()
        return _Live(
            unwatched_since=mono,
            created_at=mono - max(0.0, wall - call.created),
            state_at=mono - max(0.0, wall - call.state_since),
        )

    def _live_of(self, call: CallRecord) -> _Live:
        live = self._live.get(call.uri)
        if live is None:
            live = self._live[call.uri] = self._anchored(call)
        return live

    def _fresh_live(self, leg: str | None = None) -> _Live:
        """Memory state of a call made now."""
        mono = self._mono()
        return _Live(unwatched_since=mono, created_at=mono, state_at=mono, leg=leg)

    # ------------------------------------------------------------------ accounts and TGs

    def authenticate(self, bearer_token: str) -> Account | None:
        """The account a bearer token belongs to (static or issued), or None.

        An issued token that expired or whose login was revoked is None.
        """
        caller = self.caller(bearer_token)
        return None if caller is None else caller.account

    def caller(self, bearer_token: str) -> Caller | None:
        """The account and device a bearer token speaks for (see :class:`Caller`), or None."""
        if not bearer_token:
            return None
        device = f"token:{token_hash(bearer_token)}"
        account_id = self._tokens.get(bearer_token)
        if account_id is None:
            found = self.db.token_login(bearer_token, self._clock())
            if found is None:
                return None
            account_id, login = found
            if login is not None:
                device = f"login:{login}"
        account = self._accounts.get(account_id)
        return None if account is None else Caller(account, device)

    def _device_alive(self, device: str) -> bool:
        """Whether a device can still act: its login or token still works."""
        kind, _, ident = device.partition(":")
        now = self._clock()
        if kind == "login":
            return self.db.login_alive(ident, now)
        return ident in self._static_hashes or self.db.token_alive(ident, now)

    def _foreign(self, found: _Handler, device: str | None) -> bool:
        """Whether ``found`` belongs to another device that can still act (then: 403).

        ``device`` None is the provider itself (admin, tests): never foreign.  A
        handler whose owner can no longer act (its login ended: the phone logs in
        again; a lab token taken out of the configuration) or that has none (from
        before owners) is taken over by the next device that registers or updates it.
        """
        if device is None or found.owner is None or found.owner == device:
            return False
        return self._device_alive(found.owner)

    def issue_token(self, account: Account, token: str, lifetime: float | None) -> None:
        """Remember an issued bearer token (its hash) for ``lifetime`` seconds (None: forever)."""
        now = self._clock()
        self.db.add_token(account.id, token, now, None if lifetime is None else now + lifetime)

    def tg_uri(self, account: Account) -> str:
        return f"{self.origin}/tgs/{account.id}"

    def provider_tgs(self, account: Account) -> ProviderTgs:
        return ProviderTgs((TgRef(self.tg_uri(account), account.name),))

    def trunk_group(self, account: Account) -> TrunkGroup:
        return TrunkGroup(
            uri=self.tg_uri(account),
            outbound=OutboundPolicy(destinations=account.destinations),
            inbound=InboundPolicy(destinations=NumberPolicy.from_json(list(account.numbers))),
            retry_backoff_ms=RETRY_BACKOFF_MS,
            media_timeout_ms=MEDIA_TIMEOUT_MS,
        )

    # ------------------------------------------------------------------ handlers

    def _check_advertisement(self, text: str) -> Advertisement:
        try:
            return parse_advertisement(text)
        except GrammarError as exc:
            raise RiptHttpError(400, f"handler description: 'advertisement' {exc}") from None

    def register_handler(
        self, account: Account, handler: HandlerDescription | bytes, device: str | None = None
    ) -> HandlerDescription:
        """``POST {tg}/handlers``: the description echoed with ``uri`` (and ``push``).

        A second registration of the same ``handler-id`` in the account
        updates and returns the first one (same URI): a phone that lost its
        state re-registers without leaving a ghost handler behind.  The
        handler belongs to ``device``: another device that can still act is
        refused (403); see :meth:`_foreign` for when it is taken over.
        """
        if isinstance(handler, bytes):
            handler = _parse(HandlerDescription.from_bytes, handler)
        self._check_advertisement(handler.advertisement)
        with self._lock:
            known = self._handler_uris.get((account.id, handler.handler_id))
            existing = None if known is None else self._handlers.get(known)
            owner = device
            if existing is not None:
                if self._foreign(existing, device):
                    raise RiptHttpError(
                        403,
                        f"handler-id {handler.handler_id!r} is registered by another device "
                        "of this account",
                    )
                uri = existing.description.uri
                push = existing.description.push
                if device is None:
                    owner = existing.owner
                elif existing.owner != device:
                    self._revoke_push(existing)  # the old device's password stops working
                    push = None
            else:
                count = sum(1 for key in self._handler_uris if key[0] == account.id)
                if count >= self.max_handlers_per_account:
                    raise RiptHttpError(
                        403,
                        f"account {account.id} already has {count} handlers, the most allowed: "
                        "delete one (DELETE {handler}) before registering another",
                    )
                uri = f"{self.tg_uri(account)}/handlers/{uuid.uuid4()}"
                push = None
            described = HandlerDescription(
                handler.handler_id, handler.advertisement, handler.name, uri, push
            )
            if push is None and self.push_binder is not None:
                described = dataclasses.replace(
                    described, push=self.push_binder(account, described)
                )
            return self._store_handler(account, described, existing, owner)

    def _revoke_push(self, found: _Handler) -> None:
        """Drop a handler's MQTT user: the new owner gets a fresh password."""
        if found.description.push is not None and self.handler_removed is not None:
            # Quick under the lock: the MQTT layer writes and reloads on its own thread.
            self.handler_removed(found.description)

    def _store_handler(
        self,
        account: Account,
        described: HandlerDescription,
        existing: _Handler | None,
        owner: str | None,
    ) -> HandlerDescription:
        assert described.uri is not None
        created = existing.created if existing is not None else self._clock()
        self.db.save_handler(account.id, described, created, owner)
        self._handlers[described.uri] = _Handler(account.id, described, created, owner)
        self._handler_uris[account.id, described.handler_id] = described.uri
        return described

    def _handler(self, account: Account, uri: str) -> _Handler:
        found = self._handlers.get(uri)
        if found is None or found.account != account.id:
            raise RiptHttpError(404, f"no handler {uri} in this account")
        return found

    def get_handler(
        self, account: Account, uri: str, device: str | None = None
    ) -> HandlerDescription:
        """``GET {handler}``: the push password only to the device that owns the handler."""
        with self._lock:
            found = self._handler(account, uri)
            described, push = found.description, found.description.push
            if device is None or found.owner == device or push is None:
                return described
            return dataclasses.replace(described, push=dataclasses.replace(push, password=None))

    def set_push_binding(self, account: Account, uri: str, push: PushBinding | None) -> None:
        """Fill in (or clear) a handler's push binding: the hook for the MQTT layer."""
        with self._lock:
            found = self._handler(account, uri)
            described = dataclasses.replace(found.description, push=push)
            self._store_handler(account, described, found, found.owner)

    def update_handler(
        self,
        account: Account,
        uri: str,
        handler: HandlerDescription | bytes,
        device: str | None = None,
    ) -> HandlerDescription:
        """``PUT {handler}``: a new name and advertisement; the URI and push binding stay.

        Only by the owning device (else 403), or one taking the handler over (a new
        push password then, as for a registration)."""
        if isinstance(handler, bytes):
            handler = _parse(HandlerDescription.from_bytes, handler)
        self._check_advertisement(handler.advertisement)
        with self._lock:
            found = self._handler(account, uri)
            if handler.handler_id != found.description.handler_id:
                raise RiptHttpError(400, "handler description: 'handler-id' cannot change")
            if handler.uri is not None and handler.uri != uri:
                raise RiptHttpError(400, "handler description: 'uri' is not this handler's URI")
            described = dataclasses.replace(
                found.description, advertisement=handler.advertisement, name=handler.name
            )
            self._check_owner(found, device)
            owner = found.owner
            if device is not None and found.owner != device:
                self._revoke_push(found)
                push = None if self.push_binder is None else self.push_binder(account, described)
                described, owner = dataclasses.replace(described, push=push), device
            return self._store_handler(account, described, found, owner)

    def _check_owner(self, found: _Handler, device: str | None) -> None:
        if self._foreign(found, device):
            raise RiptHttpError(
                403, f"handler {found.description.uri} belongs to another device of this account"
            )

    def delete_handler(self, account: Account, uri: str, device: str | None = None) -> None:
        """``DELETE {handler}``; the handler answers 404 afterwards.  Another device's: 403."""
        with self._lock:
            found = self._handler(account, uri)
            self._check_owner(found, device)
            gone = found.description
            self.db.delete_handler(uri)
            del self._handlers[uri]
            self._handler_uris.pop((account.id, gone.handler_id), None)
        if self.handler_removed is not None:
            # Outside the lock: the MQTT layer rewrites its files and reloads the broker.
            self.handler_removed(gone)

    def handlers(self, account: Account) -> list[HandlerDescription]:
        """The account's handlers, oldest first."""
        with self._lock:
            return [h.description for h in self._handlers.values() if h.account == account.id]

    # ------------------------------------------------------------------ calls

    def _directives(self, handler: HandlerDescription) -> tuple[str, str]:
        """(client directive, server directive) for ``handler``'s leg."""
        advertisement = self._check_advertisement(handler.advertisement)
        # The handler's order of codecs is its preference (its [audio] codecs), both ways.
        preference = tuple(
            dict.fromkeys(codec.name for port in advertisement.ports for codec in port.codecs)
        )
        client = negotiate(advertisement, self._provider_adv, preference)
        server = negotiate(self._provider_adv, advertisement, preference)
        if not client or not server:
            raise RiptHttpError(
                400, f"handler {handler.uri} shares no codec with the provider in both directions"
            )
        return format_directive(client), format_directive(server)

    def _describe(self, call: CallRecord, *, with_key: bool = True) -> CallDescription:
        return CallDescription(
            uri=call.uri,
            direction=call.direction,
            from_=call.from_,
            to=call.to,
            state=call.state,
            handler=call.handler,
            client_directives=call.client_directives,
            server_directives=call.server_directives,
            media_key=call.media_key if with_key else None,
        )

    def _save(self, call: CallRecord) -> None:
        self.db.save_call(call)
        if call.state is CallStatus.ENDED:
            self._calls.pop(call.uri, None)
            live = self._live.pop(call.uri, None)
            if live is not None:
                for subscription in live.subscribers:
                    subscription.closed = True
        else:
            self._calls[call.uri] = call

    def _call(self, account: Account | None, uri: str) -> CallRecord:
        call = self._calls.get(uri)
        if call is None or (account is not None and call.account != account.id):
            raise RiptHttpError(404, f"no call {uri}: it is unknown or over")
        return call

    def place_call(
        self,
        account: Account,
        request: PlaceCallRequest | bytes,
        passport_check: PassportCheck,
        device: str | None = None,
    ) -> CallDescription:
        """``POST {tg}/calls``: a new outbound call in state proceeding.

        Checks, in order: 400 malformed; 500 the handler is not one of this
        account's; 403 the destination is outside the TG's outbound
        destinations, or the PASSporT fails ``passport_check``, or the handler
        belongs to another device; 404 the destination is unreachable; 400 the
        handler shares no codec.
        """
        if isinstance(request, bytes):
            request = _parse(PlaceCallRequest.from_bytes, request)
        destination = request.destination
        with self._lock:
            found = self._handlers.get(request.handler)
            if found is None or found.account != account.id:
                raise RiptHttpError(
                    500, f"{request.handler} is not a registered handler of this account"
                )
            self._check_owner(found, device)
            if not is_e164(destination):
                raise RiptHttpError(404, f"{destination} is unreachable: no private trunks here")
            if not account.destinations.allows(destination):
                raise RiptHttpError(
                    403, f"{destination} is outside this TG's outbound destinations"
                )
            problem = passport_check(request.passport, destination)
            if problem is not None:
                raise RiptHttpError(403, f"the PASSporT is refused: {problem}")
            if account.is_unreachable(destination):
                raise RiptHttpError(404, f"{destination} is unreachable")
            client, server = self._directives(found.description)
            now = self._clock()
            call = CallRecord(
                uri=f"{self.origin}/calls/{uuid.uuid4()}",
                account=account.id,
                direction=CallDirection.OUTBOUND,
                from_=account.main_number,
                to=destination,
                state=CallStatus.PROCEEDING,
                created=now,
                state_since=now,
                handler=request.handler,
                client_directives=client,
                server_directives=server,
                media_key=_key(),
            )
            # The placing handler's leg: its media is refused once the call is pulled away.
            live = self._live[call.uri] = self._fresh_live(leg=secrets.token_urlsafe(16))
            self._save(call)
            self._save_legs(call.uri, live)
            described = self._describe(call)
            others = self._other_handlers(account, request.handler)
        # Many devices (profile section 9): the user's other phones show the call as in
        # use elsewhere, and can pull it, as they can an inbound call answered elsewhere.
        self._tap((h, TapType.CALL, call.uri) for h in others)
        return described

    def _other_handlers(self, account: Account, placing: str) -> list[HandlerDescription]:
        """The account's handlers but ``placing``: those a call placed on it is shown to."""
        return [
            h.description
            for uri, h in self._handlers.items()
            if h.account == account.id and uri != placing
        ]

    def get_call(self, account: Account, uri: str) -> CallDescription:
        """``GET {call}``: 404 when unknown, ended, or another account's."""
        with self._lock:
            return self._describe(self._call(account, uri))

    def list_calls(self, account: Account) -> CallList:
        """``GET {tg}/calls``: the account's calls not over, without media keys."""
        with self._lock:
            return CallList(
                tuple(
                    self._describe(call, with_key=False)
                    for call in self._calls.values()
                    if call.account == account.id and not call.state.is_final
                )
            )

    def claim_call(
        self,
        account: Account,
        uri: str,
        claim: ClaimRequest | bytes,
        device: str | None = None,
    ) -> CallDescription:
        """``POST {call}``: take the call with a handler, or ask for a new directive.

        Who may take the call (inbound draft sections 4.2, 4.4, 4.7):

        * a call no handler holds yet (a forked inbound call, a 3PCC outbound
          call) goes to the first handler that claims it; for a 3PCC call the
          far end's timeline starts now;
        * an inbound call claimed but not yet answered stays with its claimer:
          another handler gets ``409`` (two phones lifted at the same time);
        * otherwise a claim by another handler is a call pull (or the end of
          a push or 3PCC move): the call moves.

        A different handler becomes the call's handler with a fresh media key
        and leg token, and every reverse byway hears ``handler-changed``.  The
        current handler naming itself again (a phone that restarted and numbers
        its chunks from 0) gets a fresh media key too.  An empty claim
        recomputes the directives from the handler's current advertisement and
        keeps the key.
        """
        if isinstance(claim, bytes):
            claim = _parse(ClaimRequest.from_bytes, claim)
        with self._lock:
            call = self._call(account, uri)
            if call.state.is_final:
                raise RiptHttpError(409, f"call {uri} is over ({call.state.value})")
            handler_uri = claim.handler if claim.handler is not None else call.handler
            if handler_uri is None:
                raise RiptHttpError(400, f"call {uri} has no handler yet: name one to claim it")
            found = self._handlers.get(handler_uri)
            if found is None or found.account != account.id:
                raise RiptHttpError(
                    500, f"{handler_uri} is not a registered handler of this account"
                )
            if claim.handler is not None:
                self._check_owner(found, device)  # a device claims with its own handler only
            changed = handler_uri != call.handler
            if (
                changed
                and call.handler is not None
                and call.direction is CallDirection.INBOUND
                and call.state is not CallStatus.ANSWERED
            ):
                raise RiptHttpError(
                    409, f"call {uri} is being answered by another handler ({call.handler})"
                )
            client, server = self._directives(found.description)
            now = self._clock()
            first_outbound = call.handler is None and call.direction is CallDirection.OUTBOUND
            call = dataclasses.replace(
                call,
                handler=handler_uri,
                client_directives=client,
                server_directives=server,
                # A handler naming itself is a phone that restarted (docs/protocol.md 9.1):
                # its chunk numbering starts again at 0, so the old key would repeat nonces.
                media_key=(
                    _key()
                    if changed or claim.handler is not None or call.media_key is None
                    else call.media_key
                ),
                # A 3PCC call is placed towards the far end only once a phone takes it.
                state_since=now if first_outbound else call.state_since,
            )
            live = self._live_of(call)
            if first_outbound:
                live.state_at = self._mono()
            self._save(call)
            if changed:
                if live.leg is not None:
                    live.old_legs.add(live.leg)
                live.leg = secrets.token_urlsafe(16)
                self._save_legs(uri, live)
                if not live.subscribers:
                    # The new handler needs its own 30 s to open its byways.
                    live.unwatched_since = self._mono()
                self._fan_out(
                    HandlerChanged(
                        direction=Direction.S2C,
                        call=uri,
                        timestamp=self._now(),
                        handler=handler_uri,
                    )
                )
            elif live.leg is None:
                live.leg = secrets.token_urlsafe(16)  # e.g. a call from before legs were kept
                self._save_legs(uri, live)
            return self._describe(call)

    def _save_legs(self, uri: str, live: _Live) -> None:
        self.db.save_legs(uri, live.leg, live.old_legs)

    def s2c_numbering(self, key: MediaKey) -> int:
        """Where the provider's chunk numbering resumes under a call's ``key``: the last
        reserved ceiling (0 for a key never used); see :meth:`reserve_s2c`."""
        return self.db.s2c_next(key)

    def reserve_s2c(self, key: MediaKey, ceiling: int) -> None:
        """Make durable that the provider's chunks under a call's ``key`` (every stream and
        the acks) may be numbered up to ``ceiling``, exclusive: after a restart its
        numbering resumes there, so no nonce is used twice under one key.  By key, so a
        ``migrate`` to a new URI at the same moment changes nothing."""
        self.db.reserve_s2c(key, ceiling)

    def leg_token(self, uri: str) -> str | None:
        """The current handler's leg token (the HTTP layer's ``ript-leg`` cookie value)."""
        with self._lock:
            live = self._live.get(uri)
            return None if live is None else live.leg

    def leg_for(self, uri: str, device: str | None) -> str | None:
        """The current leg token when ``device`` owns the call's handler, else None.

        A re-established ``PUT {call}/events`` carries no cookie (protocol.md 9.1); its
        answer sets the leg cookie again for the device whose leg it is, which matters
        after a ``migrate`` to a new URI (the old cookie's path no longer matches).
        """
        with self._lock:
            call = self._calls.get(uri)
            live = self._live.get(uri)
            if call is None or live is None or call.handler is None or device is None:
                return None
            found = self._handlers.get(call.handler)
            if found is None or found.owner != device:
                return None
            return live.leg

    def check_media_leg(
        self, account: Account, uri: str, leg: str | None, device: str | None = None
    ) -> None:
        """Refuse a media request that is not the current handler's leg.

        A leg token of a handler that lost the call: 409.  The current leg's token
        passes.  Without a token, or with one the core does not know (anyone can
        send a made-up cookie), the requesting ``device`` must own the call's current
        handler (:meth:`_foreign`, as for the handler's own resources), else 403:
        another device of the same account would otherwise take the call's downlink
        (the provider sends to the newest session or held GET).  ``device`` None is
        the provider itself (tests): let through.
        """
        with self._lock:
            call = self._call(account, uri)
            live = self._live.get(uri)
            if leg is not None and live is not None:
                if leg in live.old_legs:
                    raise RiptHttpError(
                        409, f"call {uri} is now handled by {call.handler}, not by this device"
                    )
                if leg == live.leg:
                    return
            if device is None:
                return
            found = None if call.handler is None else self._handlers.get(call.handler)
            if found is None or self._foreign(found, device):
                raise RiptHttpError(
                    403, f"call {uri} is handled by another device: claim it with POST {{call}}"
                )

    def _now(self) -> str:
        return format_timestamp(self._clock())

    # ------------------------------------------------------------------ events

    def _state_event(
        self, call: CallRecord, reason: str | None = None, at: float | None = None
    ) -> StateEvent:
        kind = STATE_EVENTS[call.state]
        stamp = self._now() if at is None else format_timestamp(at)
        return kind(direction=Direction.S2C, call=call.uri, timestamp=stamp, reason=reason)

    def _keep(self, live: _Live, event: _E) -> _E:
        """``event`` numbered as the call's next, and kept for replay (see :meth:`subscribe`)."""
        live.seq += 1
        event = dataclasses.replace(event, seq=live.seq)
        now = self._mono()
        kept = live.kept
        kept.append((now, event))
        while kept and (len(kept) > MAX_KEPT_EVENTS or kept[0][0] < now - KEEP_EVENTS_S):
            kept.popleft()
        return event

    def _fan_out(self, event: Event) -> Event:
        """Send ``event`` to every reverse byway of its call, numbered and kept; returns it."""
        live = self._live.get(event.call)
        if live is not None:
            event = self._keep(live, event)
            for subscription in list(live.subscribers):
                subscription.deliver(event)
        return event

    def _set_state(
        self,
        call: CallRecord,
        state: CallStatus,
        reason: str | None = None,
        at: float | None = None,
    ) -> None:
        """Move ``call`` to ``state`` as of ``at`` (default now) and tell every byway.

        Timer steps pass their (monotonic) deadline as ``at`` so a late tick
        does not push the next step of the far end's timeline later; the
        wall-clock stamp is the wall time of that moment.
        """
        mono = self._mono()
        at_mono = mono if at is None else at
        now = self._clock() - (mono - at_mono)
        updated = dataclasses.replace(
            call, state=state, state_since=now, ended=now if state is CallStatus.ENDED else None
        )
        event = self._state_event(updated, reason, now)
        # Saving an ended call drops its subscribers: take them first.  Save
        # before delivering so that a failing subscriber cannot lose the state.
        live = self._live.get(call.uri)
        if live is not None:
            live.state_at = at_mono
            event = self._keep(live, event)
        subscribers = list(live.subscribers) if live is not None else []
        self._save(updated)
        for subscription in subscribers:
            subscription.deliver(event)
        if updated.state.is_final:
            if self._oldest_ended is None and updated.ended is not None:
                self._oldest_ended = updated.ended
            if self.call_ended is not None:
                self.call_ended(updated.uri)

    def subscribe(
        self, account: Account, uri: str, on_event: Callable[[Event], None] | None = None
    ) -> Subscription:
        """A new reverse byway: the current state, the events kept, every later event.

        First the current state (draft 9.9), numbered as the last event sent, and
        ``reconnecting`` when the far end is away (``reconnected`` when it came back in
        the time events are kept); then the events of the last
        :data:`KEEP_EVENTS_S` but those the state sums up (state events) or that ask
        for what the phone is doing (``migrate``): what a phone whose byways were down
        may have missed.  The phone applies those numbered above the last it had, and,
        on a first byway, none (docs/protocol.md section 6).
        """
        with self._lock:
            call = self._call(account, uri)
            live = self._live_of(call)
            subscription = Subscription(uri, on_event)
            subscription.deliver(dataclasses.replace(self._state_event(call), seq=live.seq))
            oldest = self._mono() - KEEP_EVENTS_S
            recent = [event for at, event in live.kept if at >= oldest]
            if live.far_end_reconnecting:
                subscription.deliver(
                    Reconnecting(direction=Direction.S2C, call=uri, timestamp=self._now())
                )
            elif any(isinstance(event, Reconnected) for event in recent):
                # The far end came back lately: a phone that missed it learns it here.
                subscription.deliver(
                    Reconnected(direction=Direction.S2C, call=uri, timestamp=self._now())
                )
            for event in recent:
                if not isinstance(event, _NOT_REPLAYED):
                    subscription.deliver(event)
            live.subscribers.append(subscription)
            return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """The reverse byway is gone; the last one leaving starts the 30 s timer."""
        with self._lock:
            subscription.closed = True
            live = self._live.get(subscription.uri)
            if live is not None and subscription in live.subscribers:
                live.subscribers.remove(subscription)
                if not live.subscribers:
                    live.unwatched_since = self._mono()

    def client_event(self, account: Account, uri: str, event: Event) -> EventResult:
        """Apply one event received on a forward byway of call ``uri``.

        ``ping`` is answered with a ``pong`` (same nonce) in the result.  A
        client may send, on an inbound call, proceeding, alerting, answered,
        declined, failed, noanswer and end (inbound draft section 5), each
        only where it fits the state; on an outbound call only end.  Unknown
        event types are ignored.  A refused event leaves the call unchanged.
        """
        with self._lock:
            call = self._call(account, uri)
            if event.direction is not Direction.C2S:
                return EventResult(problem=f"a client's event must be c2s, not {event.direction}")
            if event.call != uri:
                return EventResult(problem=f"the event names call {event.call}, not {uri}")
            if isinstance(event, Ping):
                pong = Pong(
                    direction=Direction.S2C, call=uri, timestamp=self._now(), nonce=event.nonce
                )
                return EventResult(replies=(pong,))
            if isinstance(event, Migrate | HandlerChanged | Reconnecting | Reconnected):
                return EventResult(problem=f"'{event.type}' is sent by the server only")
            if not isinstance(event, StateEvent):
                return EventResult()  # pong, media-panic, unknown types: nothing to do
            problem = self._state_problem(call, event.status)
            if problem is not None:
                return EventResult(problem=problem)
            if event.status is not call.state:
                self._set_state(call, event.status, event.reason)
            return EventResult()

    @staticmethod
    def _state_problem(call: CallRecord, wanted: CallStatus) -> str | None:
        if wanted is CallStatus.ENDED:
            return None  # also after declined etc.: the client closes the call
        if call.state.is_final:
            return f"the call is over ({call.state.value})"
        if call.direction is CallDirection.OUTBOUND:
            return f"the client of an outbound call may only send end, not {wanted.value}"
        if call.state is CallStatus.ANSWERED:
            return f"the call is answered; only end may follow, not {wanted.value}"
        if wanted is CallStatus.ANSWERED and call.handler is None:
            return "answer the call with POST {call} and your handler first"
        if wanted in _ORDER and _ORDER[wanted] < _ORDER[call.state]:
            return f"the call is {call.state.value}; it cannot go back to {wanted.value}"
        return None

    def set_far_end_reconnecting(self, uri: str, reconnecting: bool) -> None:
        """The far end lost (True) or regained (False) its connection; tell every byway."""
        with self._lock:
            live = self._live_of(self._call(None, uri))
            if live.far_end_reconnecting == reconnecting:
                return
            live.far_end_reconnecting = reconnecting
            kind = Reconnecting if reconnecting else Reconnected
            self._fan_out(kind(direction=Direction.S2C, call=uri, timestamp=self._now()))

    def hangup(self, uri: str, reason: str | None = None) -> None:
        """The far end (or an admin) ends the call: ``end`` on every byway."""
        with self._lock:
            self._set_state(self._call(None, uri), CallStatus.ENDED, reason)

    # ------------------------------------------------------------------ timers

    def _far_end_step(self, call: CallRecord) -> tuple[float, CallStatus, str | None] | None:
        """When and to which state the simulated far end moves ``call`` next."""
        account = self._accounts[call.account]
        live = self._live_of(call)
        ring_deadline = live.created_at + account.inbound_ring_timeout
        if call.direction is CallDirection.INBOUND:
            # Also when claimed but never answered: a phone that died mid-answer.
            if call.state in (CallStatus.PROCEEDING, CallStatus.ALERTING):
                return ring_deadline, CallStatus.NOANSWER, "nobody took the call"
            return None
        if call.handler is None:
            # A 3PCC call no phone took: the far end never heard of it.
            if call.state.is_final:
                return None
            return ring_deadline, CallStatus.ENDED, "no device took the call"
        far_end: FarEnd = account.far_end(call.to)
        if call.state is CallStatus.PROCEEDING:
            if far_end.outcome is Outcome.BUSY:
                return live.state_at + ALERT_AFTER, CallStatus.FAILED, "busy"
            return live.state_at + ALERT_AFTER, CallStatus.ALERTING, None
        if call.state is CallStatus.ALERTING:
            since = live.state_at
            noanswer = (since + far_end.noanswer_after, CallStatus.NOANSWER, "no answer")
            if far_end.outcome is Outcome.DECLINE:
                return since + far_end.reject_after, CallStatus.DECLINED, None
            if far_end.outcome is Outcome.ANSWER and far_end.answer_after < far_end.noanswer_after:
                return since + far_end.answer_after, CallStatus.ANSWERED, None
            return noanswer
        return None

    def _idle_deadline(self, call: CallRecord) -> float | None:
        live = self._live.get(call.uri)
        if live is None or live.subscribers:
            return None
        # A call nobody has taken (inbound, 3PCC) may have no byways yet; its ring
        # timeout applies instead.
        if call.handler is None:
            return None
        return live.unwatched_since + IDLE_END_AFTER

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has something to do (None: nothing pending)."""
        with self._lock:
            times: list[float] = []
            for call in self._calls.values():
                idle = self._idle_deadline(call)
                if idle is not None:
                    times.append(idle)
                step = self._far_end_step(call)
                if step is not None:
                    times.append(step[0])
            if self._oldest_ended is not None:
                # Pruning compares the stored wall-clock end times: its deadline follows the
                # wall clock (a step moves it, harmlessly), translated to the monotonic one.
                due_in = self._oldest_ended + ENDED_RETENTION_S - self._clock()
                times.append(self._mono() + due_in)
            return min(times, default=None)

    def tick(self, now: float) -> None:
        """Advance every call whose deadline is at or before ``now`` (monotonic), as often
        as needed."""
        with self._lock:
            oldest, wall = self._oldest_ended, self._clock()
            if oldest is not None and wall >= oldest + ENDED_RETENTION_S:
                # Ended calls (and their media keys) are kept ENDED_RETENTION_S for a
                # late GET {call}, then deleted.
                pruned = self.db.prune_ended(wall - ENDED_RETENTION_S)
                self._oldest_ended = self.db.oldest_ended()
                log.info("pruned %d ended calls", pruned)
            for uri in list(self._calls):
                # Several steps can be due at once (answer-after 0 right after alerting).
                while (call := self._calls.get(uri)) is not None:
                    idle = self._idle_deadline(call)
                    if idle is not None and idle <= now:
                        self._set_state(
                            call, CallStatus.ENDED, "no signalling byway for 30 s", idle
                        )
                        break
                    step = self._far_end_step(call)
                    if step is None or step[0] > now:
                        break
                    self._set_state(call, step[1], step[2], step[0])

    # ------------------------------------------------------------------ inbound and 3PCC

    def _tap(self, taps: Iterable[tuple[HandlerDescription, TapType, str]]) -> None:
        """Publish taps, outside the lock: the hook may block briefly or call back in."""
        hook = self.push_hook
        if hook is None:
            return
        for handler, tap_type, uri in taps:
            hook(handler, tap_type, uri)

    def account(self, account_id: str) -> Account:
        """The account with this id; 404 when there is none (admin requests name accounts)."""
        found = self._accounts.get(account_id)
        if found is None:
            raise RiptHttpError(404, f"there is no account {account_id!r}")
        return found

    def find_handler(self, account: Account, ref: str) -> HandlerDescription:
        """A handler of ``account`` by URI, ``handler-id`` or unique name (for admins)."""
        with self._lock:
            mine = [h.description for h in self._handlers.values() if h.account == account.id]
            for key in ("uri", "handler_id", "name"):
                matches = [h for h in mine if getattr(h, key) == ref]
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise RiptHttpError(409, f"several handlers of {account.id} are named {ref!r}")
            raise RiptHttpError(404, f"account {account.id} has no handler {ref!r}")

    def find_call(self, ref: str) -> CallDescription:
        """A live call by URI or by the UUID at its end (for admins); 404 when over or unknown."""
        with self._lock:
            uri = ref if "/" in ref else f"{self.origin}/calls/{ref}"
            return self._describe(self._call(None, uri))

    def inject_inbound(self, account: Account, from_number: str) -> CallDescription:
        """A new inbound call from ``from_number`` to the account's main number.

        Forking (inbound draft 4.1): every handler of the account gets a
        ``call`` tap; the first to claim it takes it.
        """
        if not is_e164(from_number):
            raise RiptHttpError(400, f"caller {from_number!r} is not an E.164 number")
        with self._lock:
            now = self._clock()
            call = CallRecord(
                uri=f"{self.origin}/calls/{uuid.uuid4()}",
                account=account.id,
                direction=CallDirection.INBOUND,
                from_=from_number,
                to=account.main_number,
                state=CallStatus.PROCEEDING,
                created=now,
                state_since=now,
            )
            self._live[call.uri] = self._fresh_live()
            self._save(call)
            taps = [(h, TapType.CALL, call.uri) for h in self.forking_targets(call.uri)]
            described = self._describe(call)
        self._tap(taps)
        return described

    def forking_targets(self, uri: str) -> list[HandlerDescription]:
        """The handlers a new inbound call rings: every handler of its account."""
        with self._lock:
            call = self._call(None, uri)
            return [h.description for h in self._handlers.values() if h.account == call.account]

    def place_for(self, account: Account, handler_ref: str, destination: str) -> CallDescription:
        """3PCC place (inbound draft 4.7): an outbound call a chosen phone is to pick up.

        The call is outbound, ``proceeding``, with no handler; only the chosen
        handler gets a ``call`` tap.  The far end hears of the call once a
        handler claims it (:meth:`claim_call`), so ringback is the phone's.
        The same policy as ``POST {tg}/calls`` applies, without a PASSporT
        (the provider itself vouches for a call its user placed from here).
        """
        with self._lock:
            handler = self.find_handler(account, handler_ref)
            if not is_e164(destination):
                raise RiptHttpError(404, f"{destination} is unreachable: no private trunks here")
            if not account.destinations.allows(destination):
                raise RiptHttpError(
                    403, f"{destination} is outside this TG's outbound destinations"
                )
            if account.is_unreachable(destination):
                raise RiptHttpError(404, f"{destination} is unreachable")
            now = self._clock()
            call = CallRecord(
                uri=f"{self.origin}/calls/{uuid.uuid4()}",
                account=account.id,
                direction=CallDirection.OUTBOUND,
                from_=account.main_number,
                to=destination,
                state=CallStatus.PROCEEDING,
                created=now,
                state_since=now,
            )
            self._live[call.uri] = self._fresh_live()
            self._save(call)
            described = self._describe(call)
        self._tap([(handler, TapType.CALL, call.uri)])
        return described

    def _admin_target(
        self, call_ref: str, handler_ref: str
    ) -> tuple[CallRecord, HandlerDescription]:
        described = self.find_call(call_ref)
        call = self._call(None, described.uri)
        if call.state.is_final:
            raise RiptHttpError(409, f"call {call.uri} is over ({call.state.value})")
        return call, self.find_handler(self._accounts[call.account], handler_ref)

    def move_call(self, call_ref: str, handler_ref: str) -> CallDescription:
        """Call push / 3PCC move (inbound draft 4.5, 4.10): a ``take`` tap to the handler.

        The call moves when that phone claims it; the core changes nothing now.
        """
        with self._lock:
            call, handler = self._admin_target(call_ref, handler_ref)
            if call.handler is None:
                raise RiptHttpError(
                    409, f"no device holds call {call.uri} yet: use answer (or place's tap)"
                )
            if call.handler == handler.uri:
                raise RiptHttpError(409, f"call {call.uri} is already on {handler.uri}")
            described = self._describe(call, with_key=False)
        self._tap([(handler, TapType.TAKE, call.uri)])
        return described

    def _ringing_target(
        self, call_ref: str, handler_ref: str
    ) -> tuple[CallRecord, HandlerDescription]:
        call, handler = self._admin_target(call_ref, handler_ref)
        if call.direction is not CallDirection.INBOUND or call.handler is not None:
            raise RiptHttpError(409, f"call {call.uri} is not an inbound call ringing unclaimed")
        return call, handler

    def answer_on(self, call_ref: str, handler_ref: str) -> CallDescription:
        """3PCC answer (inbound draft 4.8): an ``answer`` tap; the phone claims and answers."""
        with self._lock:
            call, handler = self._ringing_target(call_ref, handler_ref)
            described = self._describe(call, with_key=False)
        self._tap([(handler, TapType.ANSWER, call.uri)])
        return described

    def decline_on(self, call_ref: str, handler_ref: str) -> CallDescription:
        """3PCC decline (inbound draft 4.8): a ``decline`` tap; the phone sends ``declined``."""
        with self._lock:
            call, handler = self._ringing_target(call_ref, handler_ref)
            described = self._describe(call, with_key=False)
        self._tap([(handler, TapType.DECLINE, call.uri)])
        return described

    def send_event(
        self,
        call_ref: str,
        event_type: str,
        *,
        uri: str | None = None,
        rename: bool = False,
        handler: str | None = None,
        reason: str | None = None,
    ) -> Event:
        """Send an event to every reverse byway of a call (tests of a phone's resilience).

        ``migrate``: with ``rename`` the call moves to a fresh URI, sent as
        ``uri`` (the old URI answers 404 from then on); otherwise ``uri`` is
        sent as given and the call stays where it is (a phone's handling of a
        bogus URI can be tested that way).  ``handler-changed`` names
        ``handler`` (default: the call's handler) without moving the call.
        ``reconnecting`` / ``reconnected`` as :meth:`set_far_end_reconnecting`.
        ``end`` ends the call like :meth:`hangup`.
        """
        with self._lock:
            call = self._call(None, self.find_call(call_ref).uri)
            event: Event
            if event_type == "end":
                self._set_state(call, CallStatus.ENDED, reason)
                return self._state_event(dataclasses.replace(call, state=CallStatus.ENDED), reason)
            if event_type in ("reconnecting", "reconnected"):
                self.set_far_end_reconnecting(call.uri, event_type == "reconnecting")
                kind = Reconnecting if event_type == "reconnecting" else Reconnected
                return kind(direction=Direction.S2C, call=call.uri, timestamp=self._now())
            if event_type == "migrate":
                if rename:
                    if uri is not None:
                        raise RiptHttpError(400, "give either a new uri or rename, not both")
                    uri = f"{self.origin}/calls/{uuid.uuid4()}"
                event = Migrate(
                    direction=Direction.S2C, call=call.uri, timestamp=self._now(), uri=uri
                )
                event = self._fan_out(event)
                if rename:
                    assert uri is not None
                    self._rename(call, uri)
                return event
            if event_type == "handler-changed":
                target = handler if handler is not None else call.handler
                if target is None:
                    raise RiptHttpError(400, f"call {call.uri} has no handler: name one")
                if "/" not in target:
                    target = self.find_handler(self._accounts[call.account], target).uri or target
                event = HandlerChanged(
                    direction=Direction.S2C, call=call.uri, timestamp=self._now(), handler=target
                )
                event = self._fan_out(event)
                return event
            raise RiptHttpError(
                400,
                f"event type {event_type!r} is not one of migrate, handler-changed, "
                "reconnecting, reconnected, end",
            )

    def _rename(self, call: CallRecord, new_uri: str) -> None:
        """Move ``call`` to ``new_uri`` (server-side migration): state, byways and file.

        The call keeps its handler, media key and legs: the handler's phone gets its
        ``ript-leg`` cookie again, for the new path, on its ``PUT {new}/events``
        (:meth:`leg_for`), and its media carries on where it was (``call_renamed``).
        """
        self.db.rename_call(call.uri, new_uri)
        del self._calls[call.uri]
        self._calls[new_uri] = dataclasses.replace(call, uri=new_uri)
        live = self._live.pop(call.uri, None)
        if live is not None:
            # The phone ends these byways on migrate; until then they hear nothing more.
            for subscription in live.subscribers:
                subscription.closed = True
            live.subscribers.clear()
            # They name the old URI; the numbering goes on, so no number is used twice.
            live.kept.clear()
            live.unwatched_since = self._mono()
            self._live[new_uri] = live
        if self.call_renamed is not None:
            self.call_renamed(call.uri, new_uri)
