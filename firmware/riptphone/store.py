"""The phone's power-safe state store (profile sections 2 and 4).

The handset keeps a few small records in its state directory: the handler
registration (handler id, handler URI, advertisement, push binding), the OAuth
tokens, its P-256 key with its certificate chain, and later a call log.  People
pull the plug at any moment and SD cards corrupt files, so every record is:

* written atomically: a temp file in the same directory, ``fsync``, ``os.replace``
  onto the target, ``fsync`` of the directory;
* wrapped in an envelope with a format version and a SHA-256 checksum, so a
  truncated or bit-flipped file is detected, never half-read;
* backed by a ``.last-good`` copy of the previous valid version, which a load
  falls back to (and restores the main file from) when the main file is bad;
* mode 0600 when it holds a secret (created so, never world-readable even for
  an instant), 0644 otherwise, in a directory of mode 0700.

Files of record ``NAME`` in the directory::

    NAME.json                  the record
    NAME.json.last-good        the previous valid version
    .NAME.json.tmp-<hex>       a write in progress (stale after a crash)
    .lock                      flock(2) serialising writers, readers and cleanup

The envelope (the checksum covers the canonical JSON of the other members)::

    {"format": 1, "secret": true, "sha256": "<64 hex>", "data": {...}}

Nothing here logs or raises with the contents of a record: problems name the
file and what is wrong with it, never a value.  The daemon calls this rarely
(at registration and login), so plain blocking I/O is used; call it through
``asyncio.to_thread`` from the event loop.  See docs/state-store.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ript.atomic import TEMP_MARK, atomic_write, sync_directory
from ript.protocol.advertisement import parse_advertisement
from ript.protocol.descriptions import DescriptionError, PushBinding
from ript.protocol.errors import RiptProtocolError

log = logging.getLogger(__name__)

FORMAT = 1
"""The envelope format this module writes and reads."""

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
DIRECTORY_MODE = 0o700

MAX_RECORD_BYTES = 1 << 20
"""A record file larger than this is reported as corrupt instead of being read whole."""

REGISTRATION = "registration"
TOKENS = "tokens"
IDENTITY = "identity"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
_SUFFIX = ".json"
_LAST_GOOD = ".last-good"
_TMP = TEMP_MARK
_LOCK = ".lock"
_TMP_FILE = re.compile(r"\.([a-z0-9][a-z0-9_-]{0,63})\.json\.tmp-[0-9a-f]+\Z")
_ENVELOPE_KEYS = frozenset({"format", "secret", "sha256", "data"})
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

T = TypeVar("T")


class StoreError(Exception):
    """The state store cannot do what was asked: the message names the path and the problem."""


class RecordError(ValueError):
    """A record's JSON is well formed but a field is wrong (never echoes a field's value)."""


@dataclass(frozen=True, slots=True)
class LoadResult(Generic[T]):
    """What a load found.

    ``data`` is the record, or None when there is none (never saved, deleted, or
    both copies bad).  ``problem`` is one line describing any damage found and
    what was done about it (None when everything was fine); ``recovered`` is
    True when the value came from the ``.last-good`` copy.
    """

    data: T | None
    problem: str | None = None
    recovered: bool = False


# --- the envelope ----------------------------------------------------------------------------


def _canonical(value: object) -> bytes:
    """The one byte string that is checksummed: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _check_jsonable(value: object, where: str = "data") -> None:
    """Refuse what JSON would not give back unchanged (tuples, int keys, NaN, objects)."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(f"cannot store {where}: NaN and infinities are not JSON")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_jsonable(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreError(f"cannot store {where}: an object key is not a string")
            _check_jsonable(item, f"{where}.{key}")
        return
    raise StoreError(f"cannot store {where}: a {type(value).__name__} is not a JSON value")


def _envelope(data: Mapping[str, Any], secret: bool) -> bytes:
    body = {"format": FORMAT, "secret": secret, "data": dict(data)}
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    return _canonical({**body, "sha256": digest}) + b"\n"


@dataclass(frozen=True, slots=True)
class _Opened:
    data: dict[str, Any]
    secret: bool


def _open_envelope(raw: bytes) -> _Opened:
    """The record inside ``raw``; ValueError with a short reason (no contents) if it is bad."""
    if not raw:
        raise ValueError("it is empty or unreadable")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("it is truncated or not JSON") from None
    if not isinstance(document, dict) or set(document) != _ENVELOPE_KEYS:
        raise ValueError("it is not a state-store envelope")
    if type(document["format"]) is not int or document["format"] != FORMAT:
        raise ValueError("its format version is not supported")
    digest, data, secret = document["sha256"], document["data"], document["secret"]
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError("its checksum field is malformed")
    if not isinstance(data, dict) or not isinstance(secret, bool):
        raise ValueError("it is not a state-store envelope")
    try:
        body = _canonical({"format": FORMAT, "secret": secret, "data": data})
    except ValueError:
        raise ValueError("it holds a value JSON cannot hold") from None
    if hashlib.sha256(body).hexdigest() != digest:
        raise ValueError("its checksum does not match (the file is damaged)")
    return _Opened(data, secret)


# --- the store -------------------------------------------------------------------------------


def _intact(raw: bytes | None) -> bool:
    """Whether ``raw`` is a whole, checksummed record file."""
    if raw is None:
        return False
    try:
        _open_envelope(raw)
    except ValueError:
        return False
    return True


class StateStore:
    """Records kept in one directory, written atomically and checked on every read.

    Opening a store creates the directory (mode 0700, tightened if looser) and
    removes temp files left by a crash in the middle of a write.  Every method
    takes an exclusive ``flock`` on ``.lock``, so a CLI reading the store while
    the daemon writes it sees either the old or the new record, and cleanup
    never removes a temp file a live writer is still filling.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
            info = os.stat(self.directory)
            if stat.S_IMODE(info.st_mode) != DIRECTORY_MODE:
                os.chmod(self.directory, DIRECTORY_MODE)
        except OSError as exc:
            raise StoreError(
                f"state directory {self.directory} cannot be created or secured: {_reason(exc)}"
            ) from exc
        if not self.directory.is_dir():
            raise StoreError(f"state directory {self.directory} is not a directory")
        self.recover()

    # paths

    def path(self, name: str) -> Path:
        """The main file of record ``name``."""
        _check_name(name)
        return self.directory / f"{name}{_SUFFIX}"

    def last_good_path(self, name: str) -> Path:
        """The ``.last-good`` copy of record ``name``."""
        return self.directory / f"{self.path(name).name}{_LAST_GOOD}"

    # public API

    def recover(self) -> list[Path]:
        """Remove temp files left by a write that a crash interrupted; returns what was removed."""
        with self._locked():
            return self._remove_temps(None)

    def load(
        self,
        name: str,
        validate: Callable[[Mapping[str, Any]], object] | None = None,
        *,
        secret: bool = False,
    ) -> LoadResult[dict[str, Any]]:
        """Read record ``name``, falling back to (and restoring from) its last-good copy.

        ``validate`` is called on the data of each candidate copy; if it raises
        ``ValueError`` the copy counts as corrupt, exactly like a checksum
        mismatch.  A copy whose envelope says it is secret, or any copy when
        ``secret`` is True, must have mode 0600: a looser mode is fixed and
        reported.  Never raises for damaged files: the damage is in ``problem``
        (also logged at WARNING, without contents).  Raises :class:`StoreError`
        only if the directory itself cannot be read.
        """
        main, last_good = self.path(name), self.last_good_path(name)
        with self._locked():
            problems: list[str] = []
            raw_main = self._read(main)
            opened, why = _judge(raw_main, validate)
            if opened is not None:
                self._fix_mode(main, opened.secret or secret, problems)
                return self._result(opened.data, problems, recovered=False)
            raw_good = self._read(last_good)
            if raw_main is None and raw_good is None:
                return LoadResult(None)
            main_problem = f"state file {main} {why}" if raw_main is not None else None
            good, good_why = _judge(raw_good, validate)
            if good is None:
                if raw_main is None:
                    problems.append(f"state file {main} is missing")
                elif main_problem is not None:
                    problems.append(main_problem)
                if raw_good is None:
                    problems.append(f"there is no last-good copy; record {name!r} is lost")
                else:
                    problems.append(
                        f"its last-good copy {last_good.name} {good_why}; record {name!r} is lost"
                    )
                return self._result(None, problems, recovered=False)
            assert raw_good is not None
            self._fix_mode(last_good, good.secret or secret, problems)
            head = main_problem if main_problem is not None else f"state file {main} is missing"
            try:
                self._write_atomic(main, raw_good, good.secret or secret)
            except OSError as exc:
                problems.insert(
                    0,
                    f"{head}; using its last-good copy {last_good.name}, "
                    f"but the main file could not be restored: {_reason(exc)}",
                )
            else:
                problems.insert(0, f"{head}; restored it from its last-good copy {last_good.name}")
            return self._result(good.data, problems, recovered=True)

    def save(self, name: str, data: Mapping[str, Any], *, secret: bool) -> None:
        """Replace record ``name`` with ``data``, keeping the previous valid version as last-good.

        A record saved for the first time is also written as its own last-good
        copy, so that every committed record has a second copy.

        When this returns, the new record is on stable storage.  If it raises
        :class:`StoreError` (disk full, I/O error, power cut simulated in a
        test), a later load still finds the previous committed record, or the
        new one if the rename had already happened.
        """
        try:
            _check_jsonable(dict(data))
        except RecursionError:
            raise StoreError(f"cannot store record {name!r}: it is nested too deeply") from None
        raw = _envelope(data, secret)
        main, last_good = self.path(name), self.last_good_path(name)
        with self._locked():
            try:
                current = self._read(main)
                previous = None
                if current is not None:
                    try:
                        previous = _open_envelope(current)
                    except ValueError:
                        previous = None  # a damaged main never replaces a good last-good
                    if previous is not None and self._read(last_good) != current:
                        self._write_atomic(last_good, current, previous.secret)
                self._write_atomic(main, raw, secret)
                if previous is None and not _intact(self._read(last_good)):
                    # A record's first save: with no earlier version to keep, the
                    # new one is its own last-good copy, so that a main file damaged
                    # before the next save (an SD card, a power cut) still recovers.
                    self._write_atomic(last_good, raw, secret)
            except OSError as exc:
                raise StoreError(f"state file {main} could not be written: {_reason(exc)}") from exc

    def delete(self, name: str) -> None:
        """Remove record ``name``: main file, last-good copy and any temp files."""
        main, last_good = self.path(name), self.last_good_path(name)
        with self._locked():
            try:
                for path in (main, last_good):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                self._remove_temps(name)
                self._sync_directory()
            except OSError as exc:
                raise StoreError(f"state file {main} could not be deleted: {_reason(exc)}") from exc

    def names(self) -> list[str]:
        """The records that have a main file or a last-good copy, sorted."""
        found: set[str] = set()
        for entry in self._entries():
            name = entry.removesuffix(_LAST_GOOD)
            if name.endswith(_SUFFIX) and _NAME.match(name.removesuffix(_SUFFIX)):
                found.add(name.removesuffix(_SUFFIX))
        return sorted(found)

    def wipe(self) -> None:
        """Factory reset: delete every record (and temp file) of this store; other files stay."""
        with self._locked():
            try:
                for name in self.names():
                    for path in (self.path(name), self.last_good_path(name)):
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                self._remove_temps(None)
                self._sync_directory()
            except OSError as exc:
                raise StoreError(
                    f"state directory {self.directory} could not be wiped: {_reason(exc)}"
                ) from exc

    # typed records

    def load_registration(self) -> LoadResult[Registration]:
        """The handler registration, or None if the phone has never registered."""
        return _typed(
            self.load(REGISTRATION, Registration.from_json, secret=True), Registration.from_json
        )

    def save_registration(self, registration: Registration) -> None:
        """Save the registration (secret: the push binding holds the broker password)."""
        self.save(REGISTRATION, registration.to_json(), secret=True)

    def load_tokens(self) -> LoadResult[Tokens]:
        """The OAuth tokens, or None if the phone has never logged in."""
        return _typed(self.load(TOKENS, Tokens.from_json, secret=True), Tokens.from_json)

    def save_tokens(self, tokens: Tokens) -> None:
        """Save the OAuth tokens (secret)."""
        self.save(TOKENS, tokens.to_json(), secret=True)

    def load_identity(self) -> LoadResult[Identity]:
        """The phone's key and certificate chain, or None if it has none yet."""
        return _typed(self.load(IDENTITY, Identity.from_json, secret=True), Identity.from_json)

    def save_identity(self, identity: Identity) -> None:
        """Save the private key and certificate chain (secret)."""
        self.save(IDENTITY, identity.to_json(), secret=True)

    # internals

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SECRET_MODE)
        except OSError as exc:
            raise StoreError(
                f"state directory {self.directory} cannot be locked: {_reason(exc)}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _entries(self) -> list[str]:
        try:
            return os.listdir(self.directory)
        except OSError as exc:
            raise StoreError(
                f"state directory {self.directory} cannot be listed: {_reason(exc)}"
            ) from exc

    def _read(self, path: Path) -> bytes | None:
        """The bytes of ``path``, None if it does not exist; an unreadable file reads as b""."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return b""  # a symlink: not ours, treat like a damaged file
            raise StoreError(f"state file {path} cannot be opened: {_reason(exc)}") from exc
        try:
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_RECORD_BYTES:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
            return b""  # far too big to be ours: treat as damaged
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""  # a bad block on the card: the file is damaged
            raise StoreError(f"state file {path} cannot be read: {_reason(exc)}") from exc
        finally:
            os.close(fd)

    def _write_atomic(self, target: Path, raw: bytes, secret: bool) -> None:
        """Put ``raw`` at ``target`` so that a power cut leaves either the old or the new file."""
        temp = target.with_name(f".{target.name.removesuffix(_LAST_GOOD)}{_TMP}")
        atomic_write(
            target,
            raw,
            SECRET_MODE if secret else PUBLIC_MODE,
            temp=temp.with_name(temp.name + secrets.token_hex(8)),
        )

    def _sync_directory(self) -> None:
        sync_directory(self.directory)

    def _remove_temps(self, name: str | None) -> list[Path]:
        removed: list[Path] = []
        for entry in self._entries():
            match = _TMP_FILE.match(entry)
            if match is None or (name is not None and match.group(1) != name):
                continue
            path = self.directory / entry
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(
                    f"stale temp file {path} cannot be removed: {_reason(exc)}"
                ) from exc
            removed.append(path)
        if removed:
            log.info("store_cleanup removed=%d directory=%s", len(removed), self.directory)
        return removed

    def _fix_mode(self, path: Path, secret: bool, problems: list[str]) -> None:
        if not secret:
            return
        try:
            mode = stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
            if mode & ~SECRET_MODE:
                os.chmod(path, SECRET_MODE)
                problems.append(f"secret file {path} had mode {mode:04o}; set it to 0600")
        except OSError as exc:
            problems.append(f"secret file {path} mode could not be checked: {_reason(exc)}")

    @staticmethod
    def _result(
        data: dict[str, Any] | None, problems: list[str], *, recovered: bool
    ) -> LoadResult[dict[str, Any]]:
        problem = "; ".join(problems) if problems else None
        if problem is not None:
            log.warning("store_problem %s", problem)
        return LoadResult(data, problem, recovered)


def _judge(
    raw: bytes | None, validate: Callable[[Mapping[str, Any]], object] | None
) -> tuple[_Opened | None, str]:
    """A valid copy, or None and why not (no contents in the reason)."""
    if raw is None:
        return None, "is missing"
    try:
        opened = _open_envelope(raw)
    except ValueError as exc:
        return None, f"is corrupt: {exc}"
    if validate is not None:
        try:
            validate(opened.data)
        except ValueError as exc:
            return None, f"is corrupt: {exc}"
    return opened, ""


def _typed(
    result: LoadResult[dict[str, Any]], parse: Callable[[Mapping[str, Any]], T]
) -> LoadResult[T]:
    data = None if result.data is None else parse(result.data)
    return LoadResult(data, result.problem, result.recovered)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(
            "a record name must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a "
            "letter or digit"
        )


def _reason(exc: OSError) -> str:
    """The OS error without the file name (the caller names the file)."""
    return exc.strerror or type(exc).__name__


# --- typed records ---------------------------------------------------------------------------


def _field(data: Mapping[str, Any], key: str, record: str) -> Any:
    if key not in data:
        raise RecordError(f"{record} record has no {key!r} field")
    return data[key]


def _string(data: Mapping[str, Any], key: str, record: str) -> str:
    value = _field(data, key, record)
    if not isinstance(value, str) or not value:
        raise RecordError(f"{record} record field {key!r} must be a non-empty string")
    return value


def _optional_https(data: Mapping[str, Any], key: str, record: str) -> str | None:
    value = _field(data, key, record)
    if value is None:
        return None
    return _https(value, f"{record} record field {key!r}")


def _https(value: object, what: str) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith("https://")
        or len(value) <= len("https://")
        or any(c.isspace() for c in value)
    ):
        raise RecordError(f"{what} must be an https:// URI")
    return value


def _no_extra(data: Mapping[str, Any], keys: frozenset[str], record: str) -> None:
    extra = set(data) - keys
    if extra:
        raise RecordError(f"{record} record has unknown fields {sorted(extra)}")


def _push_binding(value: object) -> PushBinding | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordError("registration record field 'push' must be a JSON object or null")
    try:
        return PushBinding.from_json(value)
    except DescriptionError as exc:  # names the member at fault, never its value
        raise RecordError(
            f"registration record field 'push' is not a push binding: {exc}"
        ) from None


@dataclass(frozen=True, slots=True)
class Registration:
    """The phone's handler at its TG (profile section 4).  Secret: ``push`` holds a password.

    ``handler_uri`` is None between choosing the handler id and the provider's
    ``201 Created``; ``push`` is the push binding the provider sent, saved as
    its JSON object (:meth:`PushBinding.to_json`).
    """

    handler_id: str
    handler_uri: str | None
    tg_uri: str
    advertisement: str
    push: PushBinding | None = field(default=None, repr=False)

    _KEYS = frozenset({"handler_id", "handler_uri", "tg_uri", "advertisement", "push"})

    def __post_init__(self) -> None:
        # Validate whatever way the value was built, so a bad one is never saved.
        Registration.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "handler_id": self.handler_id,
            "handler_uri": self.handler_uri,
            "tg_uri": self.tg_uri,
            "advertisement": self.advertisement,
            "push": None if self.push is None else self.push.to_json(),
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Registration:
        record = "registration"
        _no_extra(data, Registration._KEYS, record)
        handler_id = _string(data, "handler_id", record)
        try:
            parsed = uuid.UUID(handler_id)
        except ValueError:
            raise RecordError("registration record field 'handler_id' is not a UUID") from None
        if parsed.version != 4 or str(parsed) != handler_id:
            raise RecordError("registration record field 'handler_id' must be a lower-case uuid4")
        advertisement = _string(data, "advertisement", record)
        try:
            parse_advertisement(advertisement)
        except RiptProtocolError:
            raise RecordError(
                "registration record field 'advertisement' does not follow the grammar"
            ) from None
        push = _push_binding(_field(data, "push", record))
        value = object.__new__(Registration)
        for name, item in (
            ("handler_id", handler_id),
            ("handler_uri", _optional_https(data, "handler_uri", record)),
            ("tg_uri", _https(_field(data, "tg_uri", record), "registration record 'tg_uri'")),
            ("advertisement", advertisement),
            ("push", push),
        ):
            object.__setattr__(value, name, item)
        return value

    @staticmethod
    def new_handler_id() -> str:
        """A fresh handler id: a uuid4, chosen once and kept for the life of the phone."""
        return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Tokens:
    """OAuth tokens from the device-flow login (profile section 2).  Secret."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    """Unix time (seconds) at which the access token expires."""

    _KEYS = frozenset({"access_token", "refresh_token", "expires_at"})

    def __post_init__(self) -> None:
        Tokens.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Tokens:
        record = "tokens"
        _no_extra(data, Tokens._KEYS, record)
        access = _string(data, "access_token", record)
        refresh = _field(data, "refresh_token", record)
        if refresh is not None and (not isinstance(refresh, str) or not refresh):
            raise RecordError("tokens record field 'refresh_token' must be a string or null")
        expires = _field(data, "expires_at", record)
        if (
            isinstance(expires, bool)
            or not isinstance(expires, int | float)
            or not math.isfinite(expires)
            or expires < 0
        ):
            raise RecordError("tokens record field 'expires_at' must be a Unix time in seconds")
        value = object.__new__(Tokens)
        object.__setattr__(value, "access_token", access)
        object.__setattr__(value, "refresh_token", refresh)
        object.__setattr__(value, "expires_at", float(expires))
        return value


@dataclass(frozen=True, slots=True)
class Identity:
    """The phone's P-256 private key (PEM) and, once issued, its certificate chain.  Secret."""

    key_pem: bytes = field(repr=False)
    cert_chain_pem: bytes | None = None
    cert_uri: str | None = None

    _KEYS = frozenset({"key_pem", "cert_chain_pem", "cert_uri"})

    def __post_init__(self) -> None:
        Identity.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "key_pem": _pem_text(self.key_pem, "identity key_pem"),
            "cert_chain_pem": None
            if self.cert_chain_pem is None
            else _pem_text(self.cert_chain_pem, "identity cert_chain_pem"),
            "cert_uri": self.cert_uri,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Identity:
        record = "identity"
        _no_extra(data, Identity._KEYS, record)
        key_pem = _string(data, "key_pem", record).encode("ascii", "replace")
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):  # e.g. a curve OpenSSL lacks
            raise RecordError(
                "identity record field 'key_pem' is not an unencrypted PEM private key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise RecordError("identity record field 'key_pem' is not a P-256 key")
        chain = _field(data, "cert_chain_pem", record)
        chain_pem: bytes | None = None
        if chain is not None:
            if not isinstance(chain, str):
                raise RecordError("identity record field 'cert_chain_pem' must be a string")
            chain_pem = chain.encode("ascii", "replace")
            try:
                x509.load_pem_x509_certificates(chain_pem)
            except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError
                raise RecordError(
                    "identity record field 'cert_chain_pem' is not a PEM certificate chain"
                ) from None
        value = object.__new__(Identity)
        object.__setattr__(value, "key_pem", key_pem)
        object.__setattr__(value, "cert_chain_pem", chain_pem)
        object.__setattr__(value, "cert_uri", _optional_https(data, "cert_uri", record))
        return value


def _pem_text(value: object, what: str) -> str:
    if not isinstance(value, bytes):
        raise RecordError(f"{what} must be bytes")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise RecordError(f"{what} must be ASCII PEM text") from None
