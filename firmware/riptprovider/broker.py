"""The provider's side of the push channel (profile section 9): a mosquitto broker and its taps.

Three parts:

* :class:`DeviceRegistry` keeps one MQTT user per handler (username = the
  handler-id, a random password, topic ``ript/v1/<account>/<handler-id>``)
  plus the provider's own publisher user, in ``push/devices.json`` (mode
  0600), and writes from it the broker's ``password_file`` (mosquitto's
  ``$7$`` PBKDF2-SHA512 format, hashed here so that no password ever appears
  on a command line) and ``acl_file`` (a device may only *read* its own topic;
  the publisher may only *write* under ``ript/v1/``).  After each change it
  calls its ``reload`` callable so the broker re-reads both files.  Each
  password is hashed once, when its user is made (or loaded): a change
  rewrites the files from the kept hashes.  Once :meth:`DeviceRegistry.write_behind`
  is on (the running provider), a change only updates memory and wakes a
  writer thread, which writes the files and reloads the broker for every
  change made meanwhile at once; :meth:`DeviceRegistry.settled` tells when
  the users handed out so far are live.
* :class:`MosquittoBroker` runs a real ``/usr/sbin/mosquitto`` as a child
  process: a TLS listener on 127.0.0.1 with a certificate from the
  provider's CA, no anonymous access, persistence in the state directory.
  ``reload`` is SIGHUP, which mosquitto 2.0 answers by re-reading the password
  and ACL files and disconnecting clients that are no longer allowed.  Once
  :meth:`MosquittoBroker.supervise` is on (the running provider), a mosquitto
  that exits unbidden (a crash, a stray signal, the OOM killer) is started
  again on the same port, after a back-off.
* :class:`TapPublisher` is a paho client logged in as the publisher user; it
  publishes taps with QoS 1 to a handler's topic.

:func:`start_push` builds the lot from the ``[push]`` section of the
configuration (a spawned broker, or an external one whose files the provider
manages) for ``ript-provider serve``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ript.atomic import atomic_write
from ript.backoff import Backoff, BackoffPolicy
from ript.protocol.descriptions import HandlerDescription, PushBinding
from ript.protocol.taps import Tap, TapType
from riptprovider.accounts import Account
from riptprovider.core import ProviderCore
from riptprovider.tls import ProviderCa

log = logging.getLogger("ript-provider.push")

MOSQUITTO = "/usr/sbin/mosquitto"
TOPIC_ROOT = "ript/v1"
PUBLISHER_USER = "ript-provider"
PBKDF2_ITERATIONS = 101
"""What mosquitto_passwd 2.0 uses; the passwords are 256-bit random, so more buys nothing."""
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
RELOAD_TIMEOUT = 2.0
RESIGNAL_S = 0.1
"""Seconds without a logged reload after which :meth:`MosquittoBroker.reload` signals again."""
LOG_KEEP = 1 << 20
"""Bytes of mosquitto.log beyond which a start moves it to mosquitto.log.1."""
BROKER_CERT_LIFETIME = datetime.timedelta(days=825)
RESTART_POLICY = BackoffPolicy(initial=1.0, maximum=30.0)
"""Waits before starting again a mosquitto that exited unbidden (supervision)."""
STABLE_AFTER = 60.0
"""Seconds a supervised mosquitto must run for its next restart to wait the first delay again."""
PUBLISHER_RECONNECT = (1, 4)
"""The publisher's reconnection delays (s, paho doubles from the first to the second): taps
queued while the broker is away wait for this login, so it retries often; it is one client."""
SESSION_EXPIRY = 86400

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Handler-ids and account ids that are safe as MQTT usernames, topic levels and file lines."""


def _tls_context(ca_file: str | Path | None) -> ssl.SSLContext:
    """The system's trust anchors plus ``ca_file``; certificate and host name checked."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def _session_properties() -> Properties:
    """CONNECT properties keeping the publisher's session (and its unsent taps) a day."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY
    return properties


class PushError(Exception):
    """The broker cannot be started, reached or managed; one sentence."""


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` atomically with ``mode`` (:func:`ript.atomic.atomic_write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode)


def password_hash(password: str, salt: bytes | None = None) -> str:
    """Mosquitto's ``$7$`` hash: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key, base64."""
    salt = secrets.token_bytes(12) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(key).decode()
    return f"$7${PBKDF2_ITERATIONS}${encoded[0]}${encoded[1]}"


def device_topic(account_id: str, handler_id: str) -> str:
    return f"{TOPIC_ROOT}/{account_id}/{handler_id}"


@dataclass(frozen=True, slots=True)
class Device:
    """One phone's MQTT user: ``handler_id`` is also its username and client id."""

    handler_id: str
    account_id: str
    password: str

    @property
    def topic(self) -> str:
        return device_topic(self.account_id, self.handler_id)


class DeviceRegistry:
    """The MQTT users of the provider, kept in ``state_file`` and written out as broker files.

    ``broker_url`` is what the phones are told (``mqtts://host:port``);
    ``reload`` makes the broker re-read ``password_file`` and ``acl_file``
    (returning False when it cannot tell that the broker did: the writer then
    tries again).
    Thread-safe.  A change costs one password hash at most: the hashes are
    kept, so the files are rewritten without hashing anyone again.
    """

    def __init__(
        self,
        state_file: Path,
        password_file: Path,
        acl_file: Path,
        broker_url: str,
        reload: Callable[[], bool | None] | None = None,
    ) -> None:
        self.state_file = state_file
        self.password_file = password_file
        self.acl_file = acl_file
        self.broker_url = broker_url
        self.reload = reload
        self._lock = threading.RLock()
        self._devices: dict[str, Device] = {}
        self._hashes: dict[str, str] = {}
        """Username -> its ``$7$`` hash, made once per password."""
        self._rendered: dict[str, tuple[str, str, str]] = {}
        """Handler-id -> its password file line, ACL block and devices.json member, made once
        per device so that writing the files is joins, not work (the writer shares the GIL
        with the event loop)."""
        self._publisher_password = ""
        self._extra: dict[str, Any] = {}
        self._writer: _Writer | None = None
        self._load()

    # -- persistence -------------------------------------------------------------------

    def _load(self) -> None:
        try:
            doc = json.loads(self.state_file.read_bytes())
        except FileNotFoundError:
            self._publisher_password = secrets.token_urlsafe(32)
            self._hash(PUBLISHER_USER, self._publisher_password)
            self._save()
            return
        except (OSError, ValueError) as exc:
            raise PushError(f"{self.state_file} is unreadable: {exc}") from None
        try:
            self._publisher_password = str(doc["publisher"]["password"])
            for handler_id, entry in doc["devices"].items():
                self._devices[handler_id] = Device(
                    handler_id, str(entry["account"]), str(entry["password"])
                )
            self._extra = {k: v for k, v in doc.items() if k not in ("publisher", "devices")}
        except (KeyError, TypeError, AttributeError) as exc:
            raise PushError(f"{self.state_file} is not a device list ({exc!r})") from None
        # Once per start: from here on a change hashes only the password it adds.
        self._hash(PUBLISHER_USER, self._publisher_password)
        for device in self._devices.values():
            self._hash(device.handler_id, device.password)

    def _hash(self, username: str, password: str) -> None:
        hashed = self._hashes[username] = password_hash(password)
        device = self._devices.get(username)
        if device is not None:
            entry = {"account": device.account_id, "password": device.password}
            self._rendered[username] = (
                f"{username}:{hashed}\n",
                f"user {username}\ntopic read {device.topic}\n\n",
                f"{json.dumps(username)}:{json.dumps(entry, sort_keys=True)}",
            )

    def _forget(self, username: str) -> None:
        self._hashes.pop(username, None)
        self._rendered.pop(username, None)

    def _state_doc(self) -> bytes:
        doc = {
            **self._extra,
            "publisher": {"username": PUBLISHER_USER, "password": self._publisher_password},
            "devices": {},
        }
        head = json.dumps(doc, sort_keys=True)
        # The devices' members are kept rendered; spliced into the empty "devices" object.
        members = ",".join(rendered[2] for rendered in self._rendered.values())
        return head.replace('"devices": {}', '"devices": {' + members + "}", 1).encode()

    def _save(self) -> None:
        _write(self.state_file, self._state_doc())

    def get_extra(self, key: str) -> Any:
        """A value kept beside the devices (the spawned broker's port)."""
        with self._lock:
            return self._extra.get(key)

    def set_extra(self, key: str, value: Any) -> None:
        with self._lock:
            self._extra[key] = value
            if self._writer is None:
                self._save()
            else:
                self._writer.request()  # one writer of devices.json at a time: the thread

    # -- the broker's files ------------------------------------------------------------

    def _broker_files(self) -> tuple[bytes, bytes]:
        """The password and ACL files' contents, from the kept hashes (no hashing here)."""
        passwd = f"{PUBLISHER_USER}:{self._hashes[PUBLISHER_USER]}\n" + "".join(
            rendered[0] for rendered in self._rendered.values()
        )
        acl = (
            "# Written by ript-provider: every change is overwritten.\n"
            "# No 'topic' line before the first 'user': anonymous access gets nothing.\n"
            f"user {PUBLISHER_USER}\ntopic write {TOPIC_ROOT}/#\n\n"
        ) + "".join(rendered[1] for rendered in self._rendered.values())
        return passwd.encode(), acl.encode()

    def write_broker_files(self) -> None:
        """Write ``password_file`` and ``acl_file`` (mode 0600) from the device list."""
        with self._lock:
            passwd, acl = self._broker_files()
            _write(self.password_file, passwd)
            _write(self.acl_file, acl)

    def _flush(self) -> None:
        """Write the device list and the broker's files as they are now, then reload the broker.

        The contents are taken under the lock, the (fsync-ed) writes and the
        reload happen outside it, so a registration never waits for the disk
        or the broker.  Only one thread flushes at a time (the writer, or the
        caller when write-behind is off).
        """
        with self._lock:
            state = self._state_doc()
            passwd, acl = self._broker_files()
        _write(self.state_file, state)
        _write(self.password_file, passwd)
        _write(self.acl_file, acl)
        if self.reload is not None and self.reload() is False:
            # Not settled: the users handed out meanwhile may not work at the broker yet.
            raise PushError("the broker did not confirm its reload")

    def _changed(self) -> None:
        writer = self._writer
        if writer is None:
            with contextlib.suppress(PushError):  # logged by reload; the next change retries
                self._flush()
        else:
            writer.request()

    def write_behind(self) -> None:
        """From now on a change returns at once; a thread writes the files and reloads.

        Changes made while it works are written together at its next pass, so
        a burst of registrations costs one reload, not one each.
        """
        with self._lock:
            if self._writer is None:
                self._writer = _Writer(self._flush)

    def settled(self) -> concurrent.futures.Future[None]:
        """Done once every change made so far is written and the broker reloaded."""
        writer = self._writer
        if writer is None:
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return done
        return writer.settled()

    def close(self) -> None:
        """Write what is pending and stop the writer thread (back to writing at each change)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    # -- devices -----------------------------------------------------------------------

    @property
    def publisher_credentials(self) -> tuple[str, str]:
        return PUBLISHER_USER, self._publisher_password

    def binding(self, device: Device) -> PushBinding:
        return PushBinding(self.broker_url, device.topic, device.handler_id, device.password)

    def add_device(self, handler_id: str, account_id: str) -> PushBinding:
        """The push binding of a handler: made (and the broker reloaded) on first use.

        Raises :class:`PushError` for a handler-id that cannot be an MQTT
        username or topic level, or that another account already holds.
        """
        for what, name in (("handler-id", handler_id), ("account id", account_id)):
            if not _SAFE_NAME.fullmatch(name):
                raise PushError(f"{what} {name!r} cannot name an MQTT user or topic")
        if handler_id == PUBLISHER_USER:
            raise PushError(f"handler-id {handler_id!r} is the provider's own MQTT user")
        with self._lock:
            device = self._devices.get(handler_id)
            if device is not None:
                if device.account_id != account_id:
                    raise PushError(f"handler-id {handler_id!r} belongs to another account")
                return self.binding(device)
            device = Device(handler_id, account_id, secrets.token_urlsafe(32))
            self._devices[handler_id] = device
            self._hash(handler_id, device.password)
            self._changed()
        log.info("push: added MQTT user %s (topic %s)", handler_id, device.topic)
        return self.binding(device)

    def restore(self, binding: PushBinding, account_id: str) -> bool:
        """Take back a binding the core still holds but the device list lost (a wiped ``push/``).

        True when the device list changed; False when the binding is not one of
        this broker's (then the caller should give the handler a new one).
        """
        handler_id = binding.username
        if (
            binding.broker != self.broker_url
            or handler_id is None
            or binding.password is None
            or binding.topic != device_topic(account_id, handler_id)
            or not _SAFE_NAME.fullmatch(handler_id)
            or handler_id == PUBLISHER_USER
        ):
            return False
        with self._lock:
            if handler_id in self._devices:
                return False
            self._devices[handler_id] = Device(handler_id, account_id, binding.password)
            self._hash(handler_id, binding.password)
            self._changed()
        log.info("push: restored MQTT user %s", handler_id)
        return True

    def remove_device(self, handler_id: str) -> bool:
        """Forget a handler's MQTT user; the broker disconnects it at the reload."""
        with self._lock:
            if self._devices.pop(handler_id, None) is None:
                return False
            self._forget(handler_id)
            self._changed()
        log.info("push: removed MQTT user %s", handler_id)
        return True

    def device(self, handler_id: str) -> Device | None:
        with self._lock:
            return self._devices.get(handler_id)

    def devices(self) -> list[Device]:
        with self._lock:
            return list(self._devices.values())


class _Writer:
    """The registry's write-behind thread: ``flush`` once per batch of requested changes.

    :meth:`request` counts a change; the thread flushes whatever was counted
    by the time it starts, then resolves the :meth:`settled` futures of the
    changes that flush covered.  A flush that fails is logged and retried a
    second later (a full disk must not lose the change: memory still holds it).
    """

    RETRY_S = 1.0

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._cond = threading.Condition()
        self._requested = 0
        self._written = 0
        self._waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="push-files", daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            self._requested += 1
            self._cond.notify_all()

    def settled(self) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            if self._written >= self._requested:
                future.set_result(None)
            else:
                self._waiters.append((self._requested, future))
        return future

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._requested > self._written or self._closing)
                if self._requested == self._written:
                    return  # closing with nothing pending
                target = self._requested
            try:
                self._flush()
            except PushError as exc:  # the broker's reload was not seen: the files again
                log.warning("push: %s; retrying in %g s", exc, self.RETRY_S)
                if self._closing:
                    return
                time.sleep(self.RETRY_S)
                continue
            except Exception:
                log.exception("push: cannot write the broker files; retrying in %g s", self.RETRY_S)
                if self._closing:
                    return
                time.sleep(self.RETRY_S)
                continue
            with self._cond:
                self._written = target
                done = [f for gen, f in self._waiters if gen <= target]
                self._waiters = [(gen, f) for gen, f in self._waiters if gen > target]
            for future in done:
                # A registration that stopped waiting (its 3 s are up, or its request was
                # cancelled) cancelled its future: resolving it again would end this thread.
                if not future.done():
                    future.set_result(None)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(STOP_TIMEOUT)
        with self._cond:
            waiters, self._waiters = self._waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_result(None)  # nobody will write them now: do not keep anyone waiting


# --- the spawned mosquitto ---------------------------------------------------------------


def _broker_certificate(ca: ProviderCa) -> tuple[bytes, bytes]:
    """A TLS server certificate for localhost / 127.0.0.1 / ::1 from the provider's CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ript MQTT broker")]))
        .issuer_name(ca.ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + BROKER_CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _cert_usable(path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return cert.not_valid_after_utc > soon


PORT_ATTEMPTS = 3


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As mosquitto binds: connections of the last run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class MosquittoBroker:
    """A mosquitto child process serving the provider's phones (TLS on 127.0.0.1).

    Files live in ``directory`` (``{state}/push`` for the provider)::

        mosquitto.conf  passwd  acl  devices.json  broker.pem  broker.key
        mosquitto.log   mosquitto.pid   data/ (the persistence database)

    ``port`` 0 picks a free port on the first start and keeps it in
    ``devices.json`` for later starts, because phones keep the broker URL of
    their push binding.  Use as a context manager or call :meth:`start` and
    :meth:`stop`.
    """

    HOST = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        ca: ProviderCa,
        port: int = 0,
        mosquitto: str = MOSQUITTO,
        restart_policy: BackoffPolicy = RESTART_POLICY,
    ) -> None:
        self.directory = directory
        self.ca = ca
        self.mosquitto = mosquitto
        self._wanted_port = port
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        """How many times supervision started mosquitto again."""
        self._supervised = False
        self._stopped = threading.Event()  # set by stop(): a waiting restart gives up
        self._lock = threading.Lock()  # one start at a time (the caller's or the supervisor's)
        self._started_at = 0.0
        self._restart_backoff = Backoff(restart_policy)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.registry = DeviceRegistry(
            directory / "devices.json",
            directory / "passwd",
            directory / "acl",
            broker_url="",
            reload=self.reload,
        )

    # -- paths -------------------------------------------------------------------------

    @property
    def conf_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mosquitto.pid"

    @property
    def url(self) -> str:
        return f"mqtts://{self.HOST}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA file clients must trust to reach this broker: the provider's CA."""
        return self.ca.ca_file

    # -- devices (delegated) -----------------------------------------------------------

    def add_device(self, handler_id: str, account_id: str) -> PushBinding:
        return self.registry.add_device(handler_id, account_id)

    def remove_device(self, handler_id: str) -> bool:
        return self.registry.remove_device(handler_id)

    # -- process -----------------------------------------------------------------------

    def _choose_port(self) -> int:
        if self._wanted_port:
            return self._wanted_port
        kept = self.registry.get_extra("port")
        if isinstance(kept, int) and 0 < kept < 65536 and _port_free(self.HOST, kept):
            return kept
        port = free_tcp_port(self.HOST)
        self.registry.set_extra("port", port)
        return port

    def _write_conf(self) -> None:
        cert, key = self.directory / "broker.pem", self.directory / "broker.key"
        if not _cert_usable(cert) or not key.exists():
            cert_pem, key_pem = _broker_certificate(self.ca)
            _write(key, key_pem, 0o600)
            _write(cert, cert_pem, 0o644)
        data = self.directory / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        lines = [
            "# Written by ript-provider at every start: edits are lost.",
            # Run as root, mosquitto would switch to the 'mosquitto' user, which
            # cannot read this 0700 state directory.
            *(["user root"] if os.geteuid() == 0 else []),
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.registry.password_file}",
            f"acl_file {self.registry.acl_file}",
            "persistence true",
            f"persistence_location {data}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            f"listener {self.port} {self.HOST}",
            # A device cannot take over another's session by borrowing its client id.
            # After the listener: before any, this per-listener option makes mosquitto
            # 2.0 open its default listener on 0.0.0.0:1883 as well.
            "use_username_as_clientid true",
            f"cafile {self.ca.ca_file}",
            f"certfile {cert}",
            f"keyfile {key}",
            "tls_version tlsv1.2",
            "",
        ]
        _write(self.conf_file, "\n".join(lines).encode(), 0o600)

    def _stop_stale(self) -> None:
        """Stop a mosquitto left running on this directory by a provider that was killed."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.conf_file).encode() not in cmdline:
            return
        log.warning("push: stopping mosquitto pid %d left over from an earlier run", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    def start(self) -> None:
        """Start mosquitto and return once it runs (it logs so); raise :class:`PushError`.

        A port chosen here can be taken by another process between the choice and
        mosquitto's bind: then a new one is chosen, a few times.
        """
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._start_once()
                return
            except PushError as exc:
                taken = "Address already in use" in str(exc)
                if not taken or self._wanted_port or attempt == PORT_ATTEMPTS - 1:
                    raise
                log.warning("push: port %d was taken meanwhile; choosing another", self.port)
                self.registry.set_extra("port", None)

    def _start_once(self) -> None:
        with self._lock:
            self._stopped.clear()
            self._launch(keep_port=False)

    def _launch(self, keep_port: bool) -> None:
        if self.process is not None:
            return
        if not os.access(self.mosquitto, os.X_OK):
            raise PushError(f"{self.mosquitto} is not an executable (apt-get install mosquitto)")
        self._stop_stale()
        if not keep_port:
            self.port = self._choose_port()
        self.registry.broker_url = self.url
        self.registry.write_broker_files()
        self._write_conf()
        if self._log_size() > LOG_KEEP:
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        self._log_offset = self._log_size()
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.process = subprocess.Popen(
                [self.mosquitto, "-c", str(self.conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,  # a ^C meant for the provider is not mosquitto's
            )
        finally:
            os.close(fd)
        _write(self.pid_file, f"{self.process.pid}\n".encode(), 0o644)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                status = self.process.returncode
                self.process = None
                raise PushError(
                    f"mosquitto exited with status {status} at start: {self._log_tail()}"
                )
            # Not a TCP probe: the socket listens before mosquitto installs its signal
            # handlers, and a SIGHUP (a device added at once) in between kills it.
            if self._logged_since(self._log_offset, b" running"):
                break
            if time.monotonic() > deadline:
                process, self.process = self.process, None
                self._terminate(process)
                raise PushError(
                    f"mosquitto did not start on {self.HOST}:{self.port} within "
                    f"{START_TIMEOUT:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.01)
        log.info("push: mosquitto pid %d listening on %s", self.process.pid, self.url)
        self._started_at = time.monotonic()
        if self._supervised:
            self._watch(self.process)

    # -- supervision -------------------------------------------------------------------

    def supervise(self) -> None:
        """From now on, start mosquitto again whenever it exits without :meth:`stop`.

        Same port, same files; its persistence database brings back the sessions
        and queued taps it last saved (all of them after a clean exit, those of
        its last save after a crash).  Phones and the publisher reconnect by
        themselves; a phone lists its calls after reconnecting
        (``GET {tg}/calls``), so a tap the broker lost still rings.
        """
        with self._lock:
            self._supervised = True
            if self.process is not None:
                self._watch(self.process)

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        threading.Thread(
            target=self._supervise, args=(process,), name="mosquitto-watch", daemon=True
        ).start()

    def _supervise(self, process: subprocess.Popen[bytes]) -> None:
        """One process's watcher: when it exits unbidden, start another (with back-off)."""
        status = process.wait()
        ran = time.monotonic() - self._started_at
        with self._lock:
            if self.process is not process or self._stopped.is_set():
                return  # stop() or kill(): meant
            self.process = None
        if ran > STABLE_AFTER:
            self._restart_backoff.reset()
        log.warning(
            "push: mosquitto pid %d exited unbidden (status %d) after %.1f s: %s",
            process.pid,
            status,
            ran,
            self._log_tail(),
        )
        while True:
            delay = self._restart_backoff.next_delay()
            log.warning("push: starting mosquitto again in %.1f s", delay)
            if self._stopped.wait(delay):
                return
            with self._lock:
                if self._stopped.is_set() or self.process is not None:
                    return
                try:
                    # The phones keep the broker URL: never another port.
                    self._launch(keep_port=True)
                except PushError as exc:
                    log.error("push: mosquitto did not start again: %s", exc)
                    continue
                self.restarts += 1
                return

    def _log_tail(self) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(self._log_offset)
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(nothing logged)"

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _logged_since(self, offset: int, needle: bytes) -> bool:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return needle in f.read()
        except OSError:
            return False

    def reload(self) -> bool:
        """SIGHUP: mosquitto re-reads the password and ACL files; False if it did not say so.

        Waits (at most :data:`RELOAD_TIMEOUT`) until mosquitto logs a reload begun
        after the call: it logs "Reloading config." and then reads the files, within
        one pass of its single-threaded loop, so the files written before this call
        are in force for any client that connects afterwards.

        A SIGHUP can be lost: mosquitto only sets a flag in its handler and clears
        it at the *end* of a reload, so a signal that comes while a reload is still
        reading (the previous call returned at that reload's log line; a
        write-behind pass follows at once) is swallowed, and the files written
        for it would wait for the next change.  Hence the signal is sent again
        every :data:`RESIGNAL_S` until a new reload shows in the log; a spare
        reload costs mosquitto one re-read.
        """
        # Under the lock: a SIGHUP while a start is under way (supervision) could come
        # before mosquitto installs its handler, and kill it.
        with self._lock:
            process = self.process
            if process is None or process.poll() is not None:
                return True  # the files are read at the next start
            offset = self._log_size()
            deadline = time.monotonic() + RELOAD_TIMEOUT
            while True:
                process.send_signal(signal.SIGHUP)
                resend = min(deadline, time.monotonic() + RESIGNAL_S)
                while True:
                    if self._logged_since(offset, b"Reloading config"):
                        return True
                    if time.monotonic() >= resend:
                        break
                    time.sleep(0.005)
                if time.monotonic() >= deadline or process.poll() is not None:
                    log.warning(
                        "push: mosquitto did not reload within %.0f s of SIGHUP", RELOAD_TIMEOUT
                    )
                    return False

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence database), then wait; SIGKILL if stuck.

        Supervision does not start it again (nor finishes a restart under way).
        """
        with self._lock:
            self._stopped.set()
            process, self.process = self.process, None
        if process is None:
            return
        self._terminate(process)
        log.info("push: mosquitto stopped")

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("push: mosquitto did not stop within %.0f s; killed", STOP_TIMEOUT)
                process.kill()
                process.wait()
        with contextlib.suppress(OSError):
            self.pid_file.unlink()

    def kill(self) -> None:
        """SIGKILL without a clean stop (tests: a broker crash loses what was not saved).

        Supervision does not start it again: this is the provider's own doing.
        """
        with self._lock:
            self._stopped.set()
            process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the publisher ----------------------------------------------------------------------


def tap_payload(tap_type: TapType, call_uri: str, now: Callable[[], float] = time.time) -> bytes:
    """One tap as published: ``{"v":1,"id":uuid4,"type":...,"call":uri,"ts":ms}``."""
    return Tap(str(uuid.uuid4()), tap_type, call_uri, int(now() * 1000)).to_bytes()


class TapPublisher:
    """The provider's MQTT client: publishes taps (QoS 1) to the handlers' topics.

    paho runs its network loop on its own thread (``loop_start``) and
    reconnects by itself; :meth:`publish` only queues the message, so it is
    safe and quick to call from the asyncio loop or the core's lock.  Taps
    published while the connection is down are sent after it comes back.
    """

    def __init__(
        self,
        broker_url: str,
        username: str,
        password: str,
        ca_file: Path | str | None = None,
        client_id: str = PUBLISHER_USER,
    ) -> None:
        binding = PushBinding(broker_url, f"{TOPIC_ROOT}/-", username, password)
        self.url = broker_url
        self._connected = threading.Event()
        self._stopping = False
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(username, password)
        if binding.tls:
            client.tls_set_context(_tls_context(ca_file))
        client.reconnect_delay_set(*PUBLISHER_RECONNECT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._host, self._port = binding.host, binding.port
        # Message ids not yet acknowledged: paho's MQTTMessageInfo cannot tell for a
        # message queued while disconnected (is_published raises), on_publish can.
        self._unacked: set[int] = set()
        self._acked_early: set[int] = set()  # PUBACKs that beat _track to the lock
        self._acked = threading.Condition()
        client.on_publish = self._on_publish

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("push: the broker refused the publisher: %s", reason)
            return
        self._connected.set()
        log.info("push: publisher connected to %s", self.url)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("push: publisher lost the broker: %s", reason)
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Connect and keep reconnecting; raise :class:`PushError` if not up within ``timeout``."""
        self._client.connect_async(
            self._host,
            self._port,
            keepalive=30,
            clean_start=False,
            properties=_session_properties(),
        )
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise PushError(f"the publisher could not log in to {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def publish(self, handler: HandlerDescription, tap_type: TapType, call_uri: str) -> str | None:
        """Publish one tap to ``handler``'s topic; the tap id, or None when it has no binding."""
        if handler.push is None:
            log.info("push: handler %s has no push binding; no tap", handler.handler_id)
            return None
        payload = tap_payload(tap_type, call_uri)
        tap_id = json.loads(payload)["id"]
        info = self._client.publish(handler.push.topic, payload, qos=1)
        if not self._track(info):
            log.warning(
                "push: tap %s for handler %s not queued: %s",
                tap_id,
                handler.handler_id,
                mqtt.error_string(info.rc),
            )
            return None
        log.info("push: tap %s %s %s -> %s", tap_id, tap_type.value, call_uri, handler.push.topic)
        return str(tap_id)

    def publish_payload(self, topic: str, payload: bytes) -> bool:
        """Publish any payload with QoS 1 (tests and benchmarks: bad taps on purpose)."""
        return self._track(self._client.publish(topic, payload, qos=1))

    def _track(self, info: mqtt.MQTTMessageInfo) -> bool:
        """Remember a queued message until the broker acknowledges it; False if not queued."""
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return False
        with self._acked:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            else:
                self._unacked.add(info.mid)
        return True

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("push: the broker refused a tap (message %d): %s", mid, reason)
        with self._acked:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._acked_early.add(mid)
            self._acked.notify_all()

    def flush(self, timeout: float = START_TIMEOUT) -> bool:
        """Wait until the broker has acknowledged (PUBACK) every tap so far; False on timeout."""
        with self._acked:
            return self._acked.wait_for(lambda: not self._unacked, timeout)

    def hook(self, handler: HandlerDescription, *args: TapType | str) -> None:
        """``core.push_hook`` for ``(handler, type, call_uri)`` and for ``(handler, call_uri)``.

        The older two-argument form means a ``call`` tap.
        """
        if len(args) == 1 and isinstance(args[0], str) and not isinstance(args[0], TapType):
            self.publish(handler, TapType.CALL, args[0])
        elif len(args) == 2 and isinstance(args[0], TapType) and isinstance(args[1], str):
            self.publish(handler, args[0], args[1])
        else:
            raise TypeError(f"push hook: expected (handler, [type,] call_uri), not {args!r}")


# --- the [push] section -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushSettings:
    """The ``[push]`` section (see :mod:`riptprovider.config`).

    ``broker`` is ``"spawn"`` (run mosquitto here) or an external broker's
    ``mqtts://host:port``; then the provider writes ``password_file`` and
    ``acl_file`` (which that broker reads) and runs ``reload_command`` after
    each change.
    """

    broker: str = "spawn"
    port: int = 0
    mosquitto: str = MOSQUITTO
    ca_file: Path | None = None
    password_file: Path | None = None
    acl_file: Path | None = None
    reload_command: tuple[str, ...] = ()

    @property
    def spawn(self) -> bool:
        return self.broker == "spawn"


class PushService:
    """A running push channel for ``ript-provider serve``: broker (if spawned) and publisher."""

    def __init__(
        self,
        registry: DeviceRegistry,
        publisher: TapPublisher,
        broker: MosquittoBroker | None = None,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.broker = broker

    @property
    def url(self) -> str:
        return self.registry.broker_url

    def binder(self, account: Account, handler: HandlerDescription) -> PushBinding | None:
        """``core.push_binder``: a new handler's binding; None (logged) when it cannot have one."""
        try:
            return self.registry.add_device(handler.handler_id, account.id)
        except PushError as exc:
            log.warning("push: no push binding for a handler of %s: %s", account.id, exc)
            return None

    def attach(self, core: ProviderCore, accounts: Iterable[Account]) -> None:
        """Make ``core`` bind new handlers and tap them; bring its existing handlers in line.

        A handler registered before push was configured gets a binding now; one
        whose binding this broker no longer knows (a wiped device list, a new
        broker URL) gets its password back or a new binding.  Phones learn a
        changed binding from ``GET {handler}``.
        """
        # From here on a change is made in memory (one hash) and the files and the reload
        # follow on a thread: the core calls in under its lock, from the event loop, and
        # bringing many handlers in line below costs one reload, not one each.
        self.registry.write_behind()
        for account in accounts:
            for handler in core.handlers(account):
                push, uri = handler.push, handler.uri
                if uri is None:
                    continue
                device = self.registry.device(handler.handler_id)
                if device is not None and device.account_id == account.id:
                    if push == self.registry.binding(device):
                        continue  # in line
                elif (
                    device is None and push is not None and self.registry.restore(push, account.id)
                ):
                    continue
                core.set_push_binding(account, uri, self.binder(account, handler))
        core.push_binder = self.binder
        core.push_hook = self.publisher.hook
        core.handler_removed = lambda handler: self.forget(handler.handler_id)
        core.push_settled = self.registry.settled

    def forget(self, handler_id: str) -> None:
        """A handler was deleted: its MQTT user and ACL go, so the device can no longer log in."""
        self.registry.remove_device(handler_id)

    def close(self) -> None:
        self.publisher.stop()
        self.registry.close()  # what is pending is written before the broker stops
        if self.broker is not None:
            self.broker.stop()


def _run_reload(command: Sequence[str]) -> Callable[[], None]:
    def reload() -> None:
        try:
            done = subprocess.run(
                list(command), capture_output=True, timeout=STOP_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("push: reload command %s failed: %s", command[0], exc)
            return
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            log.warning(
                "push: reload command %s exited %d: %s",
                command[0],
                done.returncode,
                err[-1] if err else "",
            )

    return reload


def start_push(settings: PushSettings, ca: ProviderCa, state_dir: Path) -> PushService:
    """Start the broker (when spawned) and the publisher; raise :class:`PushError`."""
    directory = state_dir / "push"
    broker: MosquittoBroker | None = None
    try:
        if settings.spawn:
            broker = MosquittoBroker(directory, ca, settings.port, settings.mosquitto)
            broker.start()
            broker.supervise()
            registry = broker.registry
            ca_file: Path | None = ca.ca_file
        else:
            assert settings.password_file is not None and settings.acl_file is not None
            external = DeviceRegistry(
                directory / "devices.json",
                settings.password_file,
                settings.acl_file,
                settings.broker,
                _run_reload(settings.reload_command) if settings.reload_command else None,
            )
            external.write_broker_files()
            if external.reload is not None:
                external.reload()
            registry, ca_file = external, settings.ca_file
        username, password = registry.publisher_credentials
        publisher = TapPublisher(registry.broker_url, username, password, ca_file)
        publisher.start()
    except OSError as exc:
        if broker is not None:
            broker.stop()
        raise PushError(f"{exc.filename or 'the push files'}: {exc.strerror or exc}") from None
    except PushError:
        if broker is not None:
            broker.stop()
        raise
    return PushService(registry, publisher, broker)
