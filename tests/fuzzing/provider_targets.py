"""Fuzz targets of the provider's request bodies: RIPT POSTs, event streams, OAuth, admin.

The provider's core keeps its state in SQLite; the targets give it a
database in /dev/shm when there is one (durable writes on an SD card or a
disk would make a million inputs take a day) and start a fresh core every
:data:`RESET_EVERY` inputs, so handlers and calls do not pile up.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import shutil
import sqlite3
import tempfile
from pathlib import Path

import h11

from ript.protocol.jsonstream import EventStreamError, EventStreamReader, InvalidEvent
from riptprovider import https as provider_https
from riptprovider.accounts import Account, load_accounts
from riptprovider.admin import answer_line
from riptprovider.core import ProviderCore, RiptHttpError
from riptprovider.db import DbError, ProviderDb
from riptprovider.login_web import LoginWeb, WebReply, WebRequest
from riptprovider.oauth import IssuerSettings

from .engine import Target

RESET_EVERY = 2000
ORIGIN = "https://p.example"
PHONE_AD = "1 in: opus; PCMU; PCMA; telephone-event; CN;\n1 out: opus; PCMU; PCMA; CN;"
HANDLER_ID = "0b1f3c0e-7a51-4d8e-9a3f-2d6c1e5b7a90"


class _Fixture:
    """A provider core with one account, one registered handler and one open call."""

    def __init__(self) -> None:
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        self._dir = Path(tempfile.mkdtemp(prefix="ript-fuzz-provider-", dir=base))
        atexit.register(shutil.rmtree, self._dir, ignore_errors=True)
        self._count = 0
        self._core: ProviderCore | None = None
        self.account: Account
        self.handler_uri = ""
        self.call_uri = ""

    def core(self) -> ProviderCore:
        self._count += 1
        if self._core is None or self._count % RESET_EVERY == 0:
            self._fresh()
        assert self._core is not None
        return self._core

    def _fresh(self) -> None:
        if self._core is not None:
            self._core.close()
        for path in self._dir.iterdir():
            path.unlink()
        accounts = load_accounts(
            {
                "alice": {
                    "numbers": ["+14085551002", "+14085551003"],
                    "destinations": ["+1408*", "+1650*"],
                    "tokens": ["alice-token-0123456789"],
                },
                "bob": {"numbers": ["+16505550100"]},
            }
        )
        clock = iter(range(1_800_000_000, 1 << 62))
        core = ProviderCore(
            str(self._dir / "provider.db"),
            accounts,
            ORIGIN,
            lambda: float(next(clock)),
            IssuerSettings(client_ids=("ript-phone",)),
        )
        self.account = accounts["alice"]
        body = (
            f'{{"handler-id":"{HANDLER_ID}","advertisement":{PHONE_AD!r},"name":"Desk"}}'
        ).replace("'", '"')
        handler = core.register_handler(self.account, body.encode())
        assert handler.uri is not None
        self.handler_uri = handler.uri
        place = (
            f'{{"handler":"{handler.uri}","destination":"+14085559999","passport":"a.b.c"}}'
        ).encode()
        self.call_uri = core.place_call(self.account, place, lambda _t, _d: None).uri
        self._core = core


_fixture: _Fixture | None = None


def fixture() -> _Fixture:
    global _fixture  # noqa: PLW0603 - one provider per process
    if _fixture is None:
        _fixture = _Fixture()
    return _fixture


def _requests(data: bytes) -> None:
    """One body of a RIPT request, to the route the first byte picks."""
    fx = fixture()
    core = fx.core()
    route = data[0] % 6 if data else 0
    body = data[1:]
    if route == 0:
        core.register_handler(fx.account, body)
    elif route == 1:
        core.update_handler(fx.account, fx.handler_uri, body)
    elif route == 2:
        core.place_call(fx.account, body, lambda _token, _destination: None)
    elif route == 3:
        core.claim_call(fx.account, fx.call_uri, body)
    else:
        # PUT {call}/events: the server reads the stream and hands each event to the core.
        reader = EventStreamReader()
        for event in reader.feed(body):
            if not isinstance(event, InvalidEvent):
                core.client_event(fx.account, fx.call_uri, event)


def _request_seeds() -> list[bytes]:
    handler = (
        f'{{"handler-id":"{HANDLER_ID}","advertisement":"1 in: PCMU;\\n1 out: PCMU;",'
        f'"name":"Desk"}}'
    ).encode()
    place = b'{"handler":"%s","destination":"+14085551003","passport":"a.b.c"}'
    claim = b'{"handler":"%s"}'
    call = b"https://p.example/calls/x"
    events = (
        b'[{"direction":"c2s","timestamp":"2026-11-22T10:00:00.123Z","call":"%s",'
        b'"event":"end","reason":"bye"},'
        b'{"direction":"c2s","timestamp":"2026-11-22T10:00:00.123Z","call":"%s",'
        b'"event":"ping","nonce":"n1"}'
    )
    return [
        b"\x00" + handler,
        b"\x01" + handler,
        b"\x02" + place % b"https://p.example/tgs/alice/handlers/1",
        b"\x03" + claim % b"https://p.example/tgs/alice/handlers/1",
        b"\x03{}",
        b"\x04" + events % (call, call),
    ]


_loop: asyncio.AbstractEventLoop | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop  # noqa: PLW0603 - one loop per process, reused for every input
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


async def _unused(request: WebRequest) -> WebReply:
    raise AssertionError("the target calls LoginWeb.answer itself")


async def _http_exchange(data: bytes) -> None:
    web = LoginWeb(fixture().core().issuer)
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=provider_https.MAX_HEADER)
    listener = provider_https.HttpsListener(_unused)  # only its request reader is used
    while True:
        request = await listener._read_request(conn, reader)
        if request is None:
            return
        await web.answer(request)
        if request.method == "POST" and request.path == "/device":
            return  # one sign-in per input: scrypt takes a tenth of a second
        conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
        conn.send(h11.EndOfMessage())
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


def _http(data: bytes) -> None:
    """The OAuth endpoints and the verification page: HTTPS/1.1 requests in, replies out."""
    _event_loop().run_until_complete(_http_exchange(data))


def _http_seeds() -> list[bytes]:
    form = b"application/x-www-form-urlencoded"
    return [
        b"POST /oauth/device HTTP/1.1\r\nhost: p.example\r\ncontent-type: " + form + b"\r\n"
        b"content-length: 40\r\n\r\nclient_id=ript-phone&device_name=Desk+ph",
        b"POST /oauth/token HTTP/1.1\r\nhost: p.example\r\ncontent-type: " + form + b"\r\n"
        b"content-length: 96\r\n\r\ngrant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3A"
        b"device_code&device_code=abc&client_id=ript",
        b"GET /.well-known/oauth-authorization-server HTTP/1.1\r\nhost: p.example\r\n\r\n"
        b"GET /device?user_code=WDJB-MJHT HTTP/1.1\r\nhost: p.example\r\n\r\n",
        b"POST /device HTTP/1.1\r\nhost: p.example\r\ncontent-type: " + form + b"\r\n"
        b"content-length: 49\r\n\r\nstep=decide&user_code=WDJBMJHT&decision=approve&c",
        b"GET /D/WDJBMJHT HTTP/1.1\r\nhost: p.example\r\ntransfer-encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
    ]


def _sql_value(field: bytes) -> object:
    """One column value of any SQLite type: SQLite keeps whatever a damaged file holds."""
    kind, rest = field[:1], field[1:]
    if kind == b"i":
        return int.from_bytes(rest[:8], "big", signed=True)
    if kind == b"f":
        return float(len(rest)) / 7.0
    if kind == b"n":
        return None
    if kind == b"b":
        return bytes(rest)
    return rest.decode("utf-8", "replace")


_db: ProviderDb | None = None


def _provider_db(data: bytes) -> None:
    """A handler row and a call row with fuzzed column values, read back as a restart does.

    The fields are cut at NUL; each one's first byte picks its SQLite type.  One
    database serves every input (opening one costs more than the parse).
    """
    global _db  # noqa: PLW0603 - one database per process
    if _db is None:
        from .targets import scratch

        (scratch() / "provider-db").mkdir()
        _db = ProviderDb(scratch() / "provider-db" / "provider.db")
    values = [_sql_value(f) for f in data.split(b"\x00")]
    values += [None] * (len(_HANDLER_COLUMNS) + len(_CALL_COLUMNS) - len(values))
    handler = values[: len(_HANDLER_COLUMNS)]
    call = values[len(_HANDLER_COLUMNS) : len(_HANDLER_COLUMNS) + len(_CALL_COLUMNS)]
    try:
        with _db._write() as conn:
            conn.execute("DELETE FROM handlers")
            conn.execute("DELETE FROM calls")
            conn.execute(_insert("handlers", _HANDLER_COLUMNS), handler)
            conn.execute(_insert("calls", _CALL_COLUMNS), call)
    except sqlite3.IntegrityError:
        return  # a NOT NULL column left empty: SQLite itself refuses the row
    # Each reader on its own: one refusing the rows must not hide another's crash.
    refused: list[DbError] = []
    for load in (_db.load_handlers, _db.load_open_calls, _db.load_legs):
        try:
            load()
        except DbError as exc:
            refused.append(exc)
    if refused:
        raise refused[0]  # the engine's outcome signal: which refusal this input reached


_HANDLER_COLUMNS = (
    "uri", "account", "handler_id", "name", "advertisement", "push", "created", "owner",
)  # fmt: skip
_CALL_COLUMNS = (
    "uri", "account", "direction", "from_number", "to_number", "state", "handler",
    "client_directives", "server_directives", "media_key", "media_salt", "media_tag_length",
    "created", "state_since", "ended", "leg", "old_legs", "s2c_next",
)  # fmt: skip


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _provider_db_seeds() -> list[bytes]:
    push = b'{"broker":"mqtts://b.example:8883","topic":"ript/v1/h/1","username":"u"}'
    handler = [
        b"shttps://p.example/tgs/alice/handlers/1",
        b"salice",
        b"s" + HANDLER_ID.encode(),
        b"sDesk",
        b"s1 in: PCMU;\n1 out: PCMU;",
        b"s" + push,
        b"f1234567",
        b"sdevice-1",
    ]
    call = [
        b"shttps://p.example/calls/1",
        b"salice",
        b"soutbound",
        b"s+14085551002",
        b"s+14085551003",
        b"sanswered",
        b"shttps://p.example/tgs/alice/handlers/1",
        b"s1 to 1: PCMU;",
        b"s1 to 1: PCMU;",
        b"b0123456789abcdef",
        b"b0123456789ab",
        b"i\x00\x00\x00\x00\x00\x00\x00\x08",
        b"f1234567",
        b"f1234568",
        b"n",
        b"sleg-1",
        b"sleg-0 leg-00",
        b"i\x00\x00\x00\x00\x00\x00\x01\x00",
    ]
    return [b"\x00".join(handler + call), b"\x00".join([*handler[:5], b"n", b"f1", b"n", *call])]


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


_captured = _Captured()
logging.getLogger("riptprovider.admin").addHandler(_captured)


def _admin(data: bytes) -> None:
    """One admin socket line: answered, never raises; an internal error is the finding."""
    fx = fixture()
    answer_line(fx.core(), data.replace(b"$CALL", fx.call_uri.encode()))
    if _captured.errors:
        error = _captured.errors.pop()
        _captured.errors.clear()
        raise error


def _admin_seeds() -> list[bytes]:
    return [
        b'{"cmd":"inbound","account":"alice","from":"+14085551234"}',
        b'{"cmd":"place","account":"alice","handler":"x","to":"+14085551003"}',
        b'{"cmd":"hangup","call":"$CALL","reason":"bye"}',
        b'{"cmd":"event","call":"$CALL","type":"migrate","uri":"https://p.example/x"}',
        b'{"cmd":"move","call":"$CALL","handler":"h"}',
        b'{"cmd":"calls","account":"alice"}',
        b'{"cmd":"handlers","account":"alice"}',
        b'{"cmd":"approve","account":"alice","code":"WDJB-MJHT"}',
        b'{"cmd":"deny","code":"WDJB-MJHT"}',
    ]


def targets() -> list[Target]:
    provider = ("ript", "riptprovider")
    return [
        Target(
            "provider-requests",
            "riptprovider.core: POST {tg}/handlers, PUT {handler}, POST {tg}/calls, "
            "POST {call}, PUT {call}/events bodies",
            _requests,
            (RiptHttpError, EventStreamError),
            _request_seeds,
            (b'"handler-id"', b'"advertisement"', b'"handler"', b'"destination"', b'"event"'),
            instrument=provider,
        ),
        Target(
            "provider-http",
            "riptprovider.https request reading (h11) + login_web: OAuth form bodies, "
            "the verification page",
            _http,
            (provider_https._RefusedError,),
            _http_seeds,
            (b"\r\n", b"content-length: ", b"grant_type=", b"&", b"user_code=", b"step="),
            instrument=provider,
        ),
        Target(
            "provider-db",
            "riptprovider.db load_handlers, load_open_calls (rows of a damaged database)",
            _provider_db,
            (DbError,),
            _provider_db_seeds,
            (b"\x00s", b"\x00i", b"\x00n", b"\x00b", b"\x00f", b"inbound", b"outbound"),
            instrument=provider,
        ),
        Target(
            "provider-admin",
            "riptprovider.admin.answer_line (never raises; an internal error is a finding)",
            _admin,
            (),
            _admin_seeds,
            (b'"cmd"', b'"account"', b'"call"', b'"handler"', b'"$CALL"', b'"alice"'),
            instrument=provider,
        ),
    ]
