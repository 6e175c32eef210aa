"""The reference provider's own CA: its TLS server certificate and the phones' STIR certificates.

On first start :func:`load_or_create_ca` makes, in the provider's state
directory, a P-256 CA (self-signed, ``basicConstraints`` cA critical,
``keyUsage`` keyCertSign, subject key identifier: what
:func:`ript.protocol.passport.verify_chain` asks of an issuing CA) and
a TLS certificate for ``localhost`` / ``127.0.0.1`` / ``::1`` signed by it.
Later starts reuse both.  The same CA issues the phones' RFC 8226
certificates from their CSRs (``POST {tg}/certs``); each issued chain is kept
as a file so that ``GET {cert URI}`` (the PASSporT's ``x5u``) and the
PASSporT check find it again, also after a restart.

Files (keys mode 0600, written atomically)::

    {state}/tls/ca.pem  ca.key  server.pem  server.key
    {state}/certs/{account id}/{serial hex}.pem
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ript.atomic import atomic_write
from ript.protocol.csr import TN_AUTH_LIST, CsrError, key_from_pem, key_to_pem, parse_csr
from ript.protocol.tnauth import TnEntry, TnOne, TnRange, encode_tn_auth_list, tn_from_e164
from riptprovider.core import RiptHttpError

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=825)
LEAF_LIFETIME = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(minutes=5)
"""Certificates start a little in the past so that a slightly slow clock accepts them."""
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")

log = logging.getLogger(__name__)

# What reading a damaged certificate raises: cryptography parses lazily, and not every
# one of its errors is a ValueError (a name attribute of the wrong ASN.1 type is a TypeError).
_X509_ERRORS = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    UnsupportedAlgorithm,
)

_SERIAL = re.compile(r"[0-9a-f]{1,40}")
_ACCOUNT = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as account ids are: never "." or ".."


class CaError(Exception):
    """The CA's files in the state directory are unreadable or inconsistent."""


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically with ``mode`` (:func:`ript.atomic.atomic_write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    """A CA certificate as ``verify_chain`` needs it: cA, keyCertSign, SKI.

    Self-signed, or signed by ``issuer`` (certificate, key) for an intermediate.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer[1] if issuer else key, hashes.SHA256())
    )


def _make_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = _now()
    return ca_certificate(key, "ript reference provider CA", now - BACKDATE, now + CA_LIFETIME)


def _leaf_builder(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    lifetime: datetime.timedelta,
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )


def _numbers_problem(entries: Iterable[TnEntry], numbers: Iterable[str]) -> str | None:
    """Why the TNAuthList asks for something the account does not hold, or None."""
    held = {tn_from_e164(number) for number in numbers}
    for entry in entries:
        if isinstance(entry, TnOne):
            if entry.tn not in held:
                return f"the number {entry.tn} is not one of this account's numbers"
        elif isinstance(entry, TnRange):
            # A range is granted only when every number in it is held; a range
            # larger than the account cannot be, so it is refused unexpanded.
            start = entry.start
            if entry.count > len(held) or not start.isdigit():
                return f"the range {start} (+{entry.count}) is not wholly this account's"
            wanted = {str(int(start) + i).zfill(len(start)) for i in range(entry.count)}
            if not wanted <= held:
                return f"the range {start} (+{entry.count}) is not wholly this account's"
        else:
            return "this provider does not vouch for service provider codes (spc)"
    return None


@dataclass(frozen=True, slots=True)
class ProviderCa:
    """The provider's CA and TLS files, loaded from (or created in) the state directory."""

    state_dir: Path
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM): the phone's ``ca_file`` trusts the provider with it."""
        return self.state_dir / "tls" / "ca.pem"

    @property
    def server_cert_file(self) -> Path:
        return self.state_dir / "tls" / "server.pem"

    @property
    def server_key_file(self) -> Path:
        return self.state_dir / "tls" / "server.key"

    @property
    def ca_pem(self) -> bytes:
        return _pem(self.ca_cert)

    def issue(self, account_id: str, numbers: Iterable[str], csr_pem: bytes) -> tuple[str, bytes]:
        """Issue a STIR leaf for a CSR: ``(serial hex, chain PEM)``, saved for later ``GET``.

        Raises :class:`RiptHttpError` 400 for a bad CSR, 403 when a TNAuthList
        entry is not the account's.
        """
        try:
            info = parse_csr(csr_pem)
        except CsrError as exc:
            raise RiptHttpError(400, str(exc)) from None
        problem = _numbers_problem(info.tn_entries, numbers)
        if problem is not None:
            raise RiptHttpError(403, problem)
        leaf = (
            _leaf_builder(self.ca_cert, self.ca_key, info.subject, info.public_key, LEAF_LIFETIME)
            .add_extension(
                x509.UnrecognizedExtension(TN_AUTH_LIST, encode_tn_auth_list(info.tn_entries)),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        serial = format(leaf.serial_number, "x")
        chain = _pem(leaf) + self.ca_pem
        _write(self._cert_path(account_id, serial), chain, 0o644)
        return serial, chain

    def _cert_path(self, account_id: str, serial: str) -> Path:
        return self.state_dir / "certs" / account_id / f"{serial}.pem"

    def chain(self, account_id: str, serial: str) -> bytes | None:
        """The chain issued under ``serial`` for the account, or None (also for bad names)."""
        if not _ACCOUNT.fullmatch(account_id) or not _SERIAL.fullmatch(serial):
            return None  # never let a URI path reach outside the certs directory
        try:
            return self._cert_path(account_id, serial).read_bytes()
        except FileNotFoundError:
            return None


def _issue_server(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVER_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])])
    cert = (
        _leaf_builder(ca, ca_key, subject, key.public_key(), SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(cert), key_to_pem(key)


def _check_ca(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    """Read now the parts of the CA certificate that issuing reads (``cryptography`` parses
    them lazily: a damaged subject would raise ValueError at the first issue); raise
    ValueError when they are damaged or the key is not the certificate's."""
    _ = (cert.subject, cert.issuer, cert.not_valid_after_utc, cert.extensions)
    if cert.public_key() != key.public_key():
        raise ValueError("the CA key is not the CA certificate's key")


def _server_cert_expiring(path: Path) -> bool:
    """Whether the server certificate must be issued again: missing, damaged or nearly due.

    A damaged file is reissued from the CA (which signs it anew) rather than
    stopping the provider with a traceback.
    """
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        not_after = cert.not_valid_after_utc
    except FileNotFoundError:
        return True
    except _X509_ERRORS:
        log.warning("the server certificate %s is damaged; issuing a new one", path)
        return True
    return not_after < _now() + datetime.timedelta(days=1)


def load_or_create_ca(state_dir: Path) -> ProviderCa:
    """The CA of ``state_dir``, made (with a server certificate) on the first start."""
    tls = state_dir / "tls"
    ca_file, ca_key_file = tls / "ca.pem", tls / "ca.key"
    try:
        if ca_file.exists():
            ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
            ca_key = key_from_pem(ca_key_file.read_bytes())
            _check_ca(ca_cert, ca_key)
        else:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = _make_ca(ca_key)
            # The key first: a crash between the two writes leaves no CA without key.
            _write(ca_key_file, key_to_pem(ca_key), 0o600)
            _write(ca_file, _pem(ca_cert), 0o644)
    except (OSError, CsrError, *_X509_ERRORS) as exc:
        raise CaError(f"the provider CA in {tls} is unusable: {exc}") from None
    ca = ProviderCa(state_dir, ca_cert, ca_key)
    expiring = _server_cert_expiring(ca.server_cert_file)
    if expiring or not ca.server_key_file.exists():
        cert_pem, key_pem = _issue_server(ca_cert, ca_key)
        _write(ca.server_key_file, key_pem, 0o600)
        _write(ca.server_cert_file, cert_pem, 0o644)
    return ca
