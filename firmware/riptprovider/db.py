"""SQLite persistence of what must survive a restart of the reference provider.

One file, WAL mode, mode 0600 (it holds media keys, push passwords and token
hashes).  The schema is versioned with ``PRAGMA user_version`` and created on
first start; every write is one transaction.  Issued bearer tokens are stored
as SHA-256 hashes only, so the file never holds a usable token.

The connection is shared by the provider's threads behind a lock; every
method is a short statement or two, fast enough to call from the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ript.protocol.descriptions import (
    CallDirection,
    DescriptionError,
    HandlerDescription,
    MediaKey,
    PushBinding,
)
from ript.protocol.events import CallStatus

SCHEMA_VERSION = 5

# Version 5 links each rotated refresh token to the one issued in its place, so that
# the provider can tell a lost answer (the successor was never used: the old token is
# honoured again for a grace period) from a replay (riptprovider.oauth).  A used row
# whose successor is NULL was superseded without being redeemed: showing it is a replay.
_SUCCESSOR_COLUMN = "ALTER TABLE refresh_tokens ADD COLUMN successor TEXT;"

# Version 4 keeps what a call's media needs across a restart of the provider: the
# current handler leg (the ript-leg cookie's value), the legs that lost the call (their
# media is refused), and how far the provider's own chunk numbering (s2c, under the
# call's current media key) may have got: no nonce is ever used twice under one key.
_CALL_MEDIA_COLUMNS = """
ALTER TABLE calls ADD COLUMN leg TEXT;
ALTER TABLE calls ADD COLUMN old_legs TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN s2c_next INTEGER NOT NULL DEFAULT 0;
CREATE INDEX calls_media_key ON calls (media_key);
"""

# Version 3 gave each handler its owner: the device (an OAuth login, or a static token)
# that registered it, which alone may manage it and read its push password.
_OWNER_COLUMN = "ALTER TABLE handlers ADD COLUMN owner TEXT;"

# Version 2 added the OAuth device flow (riptprovider.oauth): device codes,
# logins (one per approved device code: a refresh-token family) and their
# refresh tokens; an access token names the login it belongs to, so revoking
# a login revokes its access tokens too.
_OAUTH_SCHEMA = """
CREATE TABLE device_codes (
    device_sha256 TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    device_name TEXT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    interval INTEGER NOT NULL,
    last_poll REAL,
    status TEXT NOT NULL,
    account TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    consent_sha256 TEXT,
    consent_account TEXT
);
CREATE TABLE logins (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    client_id TEXT NOT NULL,
    device_name TEXT,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE refresh_tokens (
    token_sha256 TEXT PRIMARY KEY,
    login TEXT NOT NULL REFERENCES logins (id),
    created REAL NOT NULL,
    expires REAL NOT NULL,
    used REAL
);
"""

_SCHEMA = (
    """
CREATE TABLE tokens (
    token_sha256 TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    login TEXT
);
CREATE TABLE handlers (
    uri TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    handler_id TEXT NOT NULL,
    name TEXT,
    advertisement TEXT NOT NULL,
    push TEXT,
    created REAL NOT NULL,
    owner TEXT,
    UNIQUE (account, handler_id)
);
CREATE TABLE calls (
    uri TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    direction TEXT NOT NULL,
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    state TEXT NOT NULL,
    handler TEXT,
    client_directives TEXT,
    server_directives TEXT,
    media_key BLOB,
    media_salt BLOB,
    media_tag_length INTEGER,
    created REAL NOT NULL,
    state_since REAL NOT NULL,
    ended REAL,
    leg TEXT,
    old_legs TEXT NOT NULL DEFAULT '',
    s2c_next INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX calls_open ON calls (ended) WHERE ended IS NULL;
CREATE INDEX calls_media_key ON calls (media_key);
"""
    + _OAUTH_SCHEMA
    + _SUCCESSOR_COLUMN
)
_MIGRATIONS = {
    1: "ALTER TABLE tokens ADD COLUMN login TEXT;" + _OAUTH_SCHEMA,
    2: _OWNER_COLUMN,
    3: _CALL_MEDIA_COLUMNS,
    4: _SUCCESSOR_COLUMN,
}
"""Version -> the script that brings a database of that version to the next."""


class DbError(RuntimeError):
    """The database file cannot be used (newer schema, unreadable row)."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call as the provider keeps it; ``state_since`` is when ``state`` was reached."""

    uri: str
    account: str
    direction: CallDirection
    from_: str
    to: str
    state: CallStatus
    created: float
    state_since: float
    handler: str | None = None
    client_directives: str | None = None
    server_directives: str | None = None
    media_key: MediaKey | None = None
    ended: float | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ProviderDb:
    """The provider's SQLite file; open it with the path, close it with :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # Create the file 0600 before SQLite opens it; the -wal and -shm files
        # SQLite makes take the database file's mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also tighten a file made by hand
        finally:
            os.close(fd)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: in WAL mode NORMAL can lose the last commits in a power cut (a handler the
        # provider answered 201 for would vanish); FULL syncs the WAL at every commit.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            with self._lock:
                self._conn.executescript(
                    "BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
                )
        elif version in _MIGRATIONS:
            # Each step brings its version to the next; all of them in one transaction.
            steps = "".join(_MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
            with self._lock:
                self._conn.executescript(
                    "BEGIN IMMEDIATE;" + steps + f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
                )
        elif version != SCHEMA_VERSION:
            self._conn.close()
            raise DbError(
                f"{self.path} has schema version {version}; this provider knows {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self) -> _Transaction:
        return _Transaction(self._conn, self._lock)

    # ------------------------------------------------------------------ tokens

    def add_token(
        self,
        account: str,
        token: str,
        created: float,
        expires: float | None,
        login: str | None = None,
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?, ?)",
                (token_hash(token), account, created, expires, login),
            )

    def token_login(self, token: str, now: float) -> tuple[str, str | None] | None:
        """(account, login id or None) of an access token neither expired nor revoked."""
        with self._lock:
            row = self._conn.execute(
                "SELECT t.account, t.login FROM tokens t LEFT JOIN logins l ON t.login = l.id "
                "WHERE t.token_sha256 = ? AND (t.expires IS NULL OR t.expires > ?) "
                "AND l.revoked IS NULL",
                (token_hash(token), now),
            ).fetchone()
        return None if row is None else (str(row[0]), None if row[1] is None else str(row[1]))

    def login_alive(self, login: str, now: float) -> bool:
        """Whether a login can still act: not revoked, with a working access or refresh token."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM logins l WHERE l.id = ? AND l.revoked IS NULL AND ("
                "EXISTS (SELECT 1 FROM tokens t WHERE t.login = l.id "
                "AND (t.expires IS NULL OR t.expires > ?)) OR "
                "EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.login = l.id "
                "AND r.used IS NULL AND r.expires > ?))",
                (login, now, now),
            ).fetchone()
        return row is not None

    def token_alive(self, token_sha256: str, now: float) -> bool:
        """Whether an issued token (by its hash) still works."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM tokens t LEFT JOIN logins l ON t.login = l.id "
                "WHERE t.token_sha256 = ? AND (t.expires IS NULL OR t.expires > ?) "
                "AND l.revoked IS NULL",
                (token_sha256, now),
            ).fetchone()
        return row is not None

    def token_account(self, token: str, now: float) -> str | None:
        """The account of an access token neither expired nor of a revoked login."""
        with self._lock:
            row = self._conn.execute(
                "SELECT t.account FROM tokens t LEFT JOIN logins l ON t.login = l.id "
                "WHERE t.token_sha256 = ? AND (t.expires IS NULL OR t.expires > ?) "
                "AND l.revoked IS NULL",
                (token_hash(token), now),
            ).fetchone()
        return None if row is None else str(row[0])

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query, under the lock (for the OAuth store in riptprovider.oauth)."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def transaction(self) -> _Transaction:
        """``with db.transaction() as conn:`` one write transaction (BEGIN IMMEDIATE ... COMMIT)."""
        return _Transaction(self._conn, self._lock)

    # ------------------------------------------------------------------ handlers

    def save_handler(
        self, account: str, handler: HandlerDescription, created: float, owner: str | None = None
    ) -> None:
        push = None if handler.push is None else json.dumps(handler.push.to_json())
        with self._write() as conn:
            conn.execute(
                "INSERT INTO handlers VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uri) DO UPDATE "
                "SET name = excluded.name, advertisement = excluded.advertisement, "
                "push = excluded.push, owner = excluded.owner",
                (
                    handler.uri,
                    account,
                    handler.handler_id,
                    handler.name,
                    handler.advertisement,
                    push,
                    created,
                    owner,
                ),
            )

    def delete_handler(self, uri: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM handlers WHERE uri = ?", (uri,))

    def load_handlers(self) -> list[tuple[str, HandlerDescription, str | None]]:
        """Every handler as ``(account id, description, owner)``, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT account, handler_id, name, advertisement, uri, push, owner FROM handlers "
                "ORDER BY created, rowid"
            ).fetchall()
        handlers: list[tuple[str, HandlerDescription, str | None]] = []
        for row in rows:
            _check_row(self.path, "handler", row, _HANDLER_COLUMNS)
            account, handler_id, name, advertisement, uri, push, owner = row
            try:
                binding = None if push is None else _push_binding(push)
                description = HandlerDescription(handler_id, advertisement, name, uri, binding)
                handlers.append((account, description, owner))
            except (DescriptionError, ValueError) as exc:
                raise DbError(f"{self.path}: handler {uri!r} is unreadable: {exc}") from None
        return handlers

    # ------------------------------------------------------------------ calls

    def save_call(self, call: CallRecord) -> None:
        """Write the call's description; its legs stay, its s2c numbering too unless the
        media key changed (a new key numbers from 0 again)."""
        key = call.media_key
        with self._write() as conn:
            conn.execute(
                "INSERT INTO calls (uri, account, direction, from_number, to_number, state, "
                "handler, client_directives, server_directives, media_key, media_salt, "
                "media_tag_length, created, state_since, ended) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uri) DO UPDATE "
                "SET account = excluded.account, direction = excluded.direction, "
                "from_number = excluded.from_number, to_number = excluded.to_number, "
                "state = excluded.state, handler = excluded.handler, "
                "client_directives = excluded.client_directives, "
                "server_directives = excluded.server_directives, "
                "s2c_next = CASE WHEN calls.media_key IS excluded.media_key "
                "THEN calls.s2c_next ELSE 0 END, "
                "media_key = excluded.media_key, media_salt = excluded.media_salt, "
                "media_tag_length = excluded.media_tag_length, created = excluded.created, "
                "state_since = excluded.state_since, ended = excluded.ended",
                (
                    call.uri,
                    call.account,
                    call.direction.value,
                    call.from_,
                    call.to,
                    call.state.value,
                    call.handler,
                    call.client_directives,
                    call.server_directives,
                    None if key is None else key.key,
                    None if key is None else key.salt,
                    None if key is None else key.tag_length,
                    call.created,
                    call.state_since,
                    call.ended,
                ),
            )

    def load_open_calls(self) -> list[CallRecord]:
        """Every call not ended, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT uri, account, direction, from_number, to_number, state, handler, "
                "client_directives, server_directives, media_key, media_salt, media_tag_length, "
                "created, state_since, ended FROM calls WHERE ended IS NULL ORDER BY created, rowid"
            ).fetchall()
        calls: list[CallRecord] = []
        for row in rows:
            _check_row(self.path, "call", row, _CALL_COLUMNS)
            (uri, account, direction, from_, to, state, handler, cdir, sdir) = row[:9]
            key, salt, tag_length, created, state_since, ended = row[9:]
            try:
                media_key = None if key is None else MediaKey(key, salt, tag_length)
                calls.append(
                    CallRecord(
                        uri=uri,
                        account=account,
                        direction=CallDirection(direction),
                        from_=from_,
                        to=to,
                        state=CallStatus(state),
                        created=created,
                        state_since=state_since,
                        handler=handler,
                        client_directives=cdir,
                        server_directives=sdir,
                        media_key=media_key,
                        ended=ended,
                    )
                )
            except (DescriptionError, ValueError) as exc:
                raise DbError(f"{self.path}: call {uri!r} is unreadable: {exc}") from None
        return calls

    def save_legs(self, uri: str, leg: str | None, old_legs: Iterable[str]) -> None:
        """The call's current handler leg and the legs that lost it (``ript-leg`` values)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE calls SET leg = ?, old_legs = ? WHERE uri = ?",
                (leg, " ".join(sorted(old_legs)), uri),
            )

    def load_legs(self) -> dict[str, tuple[str | None, set[str]]]:
        """Every open call's ``(leg, old legs)`` by URI."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT uri, leg, old_legs FROM calls WHERE ended IS NULL"
            ).fetchall()
        for row in rows:
            _check_row(self.path, "call", row, _LEG_COLUMNS)
        return {uri: (leg, set(old.split())) for uri, leg, old in rows}

    def reserve_s2c(self, key: MediaKey, ceiling: int) -> None:
        """Record that the provider may number its chunks up to ``ceiling`` (exclusive) under
        ``key``.  By the key (random, one per call leg), not the URI: a call renamed
        meanwhile is still found, a call whose key changed is not."""
        with self._write() as conn:
            conn.execute(
                "UPDATE calls SET s2c_next = max(s2c_next, ?) "
                "WHERE media_key = ? AND media_salt = ?",
                (ceiling, key.key, key.salt),
            )

    def s2c_next(self, key: MediaKey) -> int:
        """The first s2c number never reserved under ``key`` (0: none was)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT s2c_next FROM calls WHERE media_key = ? AND media_salt = ?",
                (key.key, key.salt),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def rename_call(self, uri: str, new_uri: str) -> None:
        """Give a call a new URI (a migration to another URI); the old one is then unknown."""
        with self._write() as conn:
            conn.execute("UPDATE calls SET uri = ? WHERE uri = ?", (new_uri, uri))

    def prune_ended(self, before: float) -> int:
        """Delete the calls that ended before ``before``, their media keys with them."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM calls WHERE ended IS NOT NULL AND ended < ?", (before,)
            )
            return cursor.rowcount

    def oldest_ended(self) -> float | None:
        """When the earliest ended call still stored ended (None: there is none)."""
        with self._lock:
            row = self._conn.execute("SELECT min(ended) FROM calls").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def call_state(self, uri: str) -> CallStatus | None:
        """The stored state of any call, ended or not (None when unknown)."""
        with self._lock:
            row = self._conn.execute("SELECT state FROM calls WHERE uri = ?", (uri,)).fetchone()
        return None if row is None else CallStatus(row[0])


def _push_binding(text: str) -> PushBinding:
    """The stored push binding; ValueError when it is not the JSON object ``save_handler`` wrote."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError("push: nested too deeply") from None
    if not isinstance(doc, dict) or "broker" not in doc or "topic" not in doc:
        raise ValueError("push: not a JSON object with 'broker' and 'topic'")
    return PushBinding(doc["broker"], doc["topic"], doc.get("username"), doc.get("password"))


# SQLite keeps whatever type a damaged (or hand-edited) file holds in a column: each
# column's Python types as this module writes them, checked before use.
_TEXT, _OPT_TEXT = (str,), (str, type(None))
_NUMBER, _OPT_NUMBER = (int, float), (int, float, type(None))
_OPT_BLOB, _OPT_INT = (bytes, type(None)), (int, type(None))
_HANDLER_COLUMNS = (
    ("account", _TEXT),
    ("handler_id", _TEXT),
    ("name", _OPT_TEXT),
    ("advertisement", _TEXT),
    ("uri", _TEXT),
    ("push", _OPT_TEXT),
    ("owner", _OPT_TEXT),
)
_CALL_COLUMNS = (
    ("uri", _TEXT),
    ("account", _TEXT),
    ("direction", _TEXT),
    ("from_number", _TEXT),
    ("to_number", _TEXT),
    ("state", _TEXT),
    ("handler", _OPT_TEXT),
    ("client_directives", _OPT_TEXT),
    ("server_directives", _OPT_TEXT),
    ("media_key", _OPT_BLOB),
    ("media_salt", _OPT_BLOB),
    ("media_tag_length", _OPT_INT),
    ("created", _NUMBER),
    ("state_since", _NUMBER),
    ("ended", _OPT_NUMBER),
)

_LEG_COLUMNS = (("uri", _TEXT), ("leg", _OPT_TEXT), ("old_legs", _TEXT))


def _check_row(
    path: Path, what: str, row: tuple[Any, ...], columns: tuple[tuple[str, tuple[type, ...]], ...]
) -> None:
    for value, (column, types) in zip(row, columns, strict=True):
        if not isinstance(value, types):
            raise DbError(
                f"{path}: a {what} row is unreadable: {column} holds {type(value).__name__}"
            )


class _Transaction:
    """``with``: hold the lock, BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None and self._conn.in_transaction:
                self._conn.execute("COMMIT")
        finally:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._lock.release()
