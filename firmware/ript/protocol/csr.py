"""The phone's signing key, its certificate request, and TNAuthList in certificates.

Profile section 5: the phone makes a P-256 key that never leaves it and
posts a PEM PKCS#10 request (``POST {tg}/certs``) carrying the RFC 8226
TNAuthList extension with one ``one`` entry, its own number.  The provider
answers with a certificate chain whose leaf carries the same extension.

:func:`build_csr` writes such a request; :func:`parse_csr` is the provider's
side (signature, key type and TNAuthList checked); :func:`tn_entries_of_certificate`
reads the extension of an issued certificate (the phone's, or the TG's
``origins`` certificate), and :func:`renewal_due` says when the phone's cached
certificate must be replaced.  Everything X.509 goes through ``cryptography``;
the extension value is DER from :mod:`ript.protocol.tnauth`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ript.protocol.errors import RemoteProtocolError
from ript.protocol.tnauth import (
    TN_AUTH_LIST_OID,
    TnAuthError,
    TnEntry,
    TnOne,
    decode_tn_auth_list,
    encode_tn_auth_list,
    tn_from_e164,
)

TN_AUTH_LIST = x509.ObjectIdentifier(TN_AUTH_LIST_OID)
RENEW_BEFORE_S = 24 * 3600
"""The phone replaces its certificate this long before ``notAfter`` (profile section 5)."""
CSR_CONTENT_TYPE = "application/pkcs10"
CHAIN_CONTENT_TYPE = "application/pem-certificate-chain"
# A P-256 CSR with one short extension is well under 1 KiB of PEM.
_MAX_PEM_LENGTH = 65536


class CsrError(RemoteProtocolError):
    """A certificate request, key or certificate is malformed or unfit for RIPT."""


@dataclass(frozen=True, slots=True)
class CsrInfo:
    """What the provider needs from a verified request."""

    public_key: ec.EllipticCurvePublicKey
    tn_entries: tuple[TnEntry, ...]
    subject: x509.Name

    @property
    def common_name(self) -> str | None:
        names = self.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else None


def make_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 (secp256r1) key: the curve ES256 signs with."""
    return ec.generate_private_key(ec.SECP256R1())


def _require_p256_private(key: object) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CsrError(f"the key must be an EC P-256 private key, not {type(key).__name__}")
    return key


def build_csr(key: ec.EllipticCurvePrivateKey, e164: str, common_name: str | None = None) -> bytes:
    """PEM PKCS#10 request for ``e164`` (``"+14085551002"``), signed with SHA-256.

    Subject: ``CN=<common_name>``, or ``CN=<e164>`` when none is given.  The
    request asks for one non-critical TNAuthList extension holding
    ``one "<e164 without +>"``.
    """
    _require_p256_private(key)
    try:
        tn = tn_from_e164(e164)
    except TnAuthError as exc:
        raise CsrError(str(exc)) from None
    extension = x509.UnrecognizedExtension(TN_AUTH_LIST, encode_tn_auth_list([TnOne(tn)]))
    try:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or e164)])
    except ValueError as exc:
        raise CsrError(f"bad common name {common_name!r}: {exc}") from None
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(extension, critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def _tn_entries(extensions: x509.Extensions, what: str) -> list[TnEntry]:
    try:
        extension = extensions.get_extension_for_oid(TN_AUTH_LIST)
    except x509.ExtensionNotFound:
        raise CsrError(f"{what} has no TNAuthList extension ({TN_AUTH_LIST_OID})") from None
    value = extension.value
    # cryptography does not know this OID today; should it learn it, re-encode.
    der = value.value if isinstance(value, x509.UnrecognizedExtension) else value.public_bytes()
    try:
        return decode_tn_auth_list(der)
    except TnAuthError as exc:
        raise CsrError(f"{what} has a malformed TNAuthList: {exc}") from None


def parse_csr(pem: bytes) -> CsrInfo:
    """Check a PEM request the way the provider must, and return its content.

    Rejects (with :class:`CsrError`): anything that is not one PEM
    ``CERTIFICATE REQUEST``, a signature that does not verify with the
    request's own key, a key other than EC P-256, a hash other than SHA-256,
    and a missing or malformed TNAuthList.  Whether the numbers belong to the
    account is the caller's decision.
    """
    if not isinstance(pem, bytes | bytearray):
        raise CsrError(f"a CSR must be PEM bytes, not {type(pem).__name__}")
    if len(pem) > _MAX_PEM_LENGTH:
        raise CsrError(f"CSR of {len(pem)} bytes exceeds {_MAX_PEM_LENGTH}")
    try:
        request = x509.load_pem_x509_csr(bytes(pem))
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise CsrError(f"not a PEM certificate request: {exc}") from None
    try:
        signature_ok = request.is_signature_valid
        public_key = request.public_key()
        hash_algorithm = request.signature_hash_algorithm
        extensions = request.extensions
        subject = request.subject
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise CsrError(f"malformed certificate request: {exc}") from None
    if not signature_ok:
        raise CsrError("CSR signature does not verify with the CSR's own public key")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise CsrError(f"CSR key must be EC P-256, not {type(public_key).__name__}")
    if not isinstance(hash_algorithm, hashes.SHA256):
        name = hash_algorithm.name if hash_algorithm is not None else "none"
        raise CsrError(f"CSR must be signed with ECDSA SHA-256, not {name}")
    entries = _tn_entries(extensions, "CSR")
    return CsrInfo(public_key=public_key, tn_entries=tuple(entries), subject=subject)


def tn_entries_of_certificate(cert: x509.Certificate) -> list[TnEntry]:
    """The TNAuthList entries of ``cert``; :class:`CsrError` if absent or malformed."""
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension, UnsupportedAlgorithm) as exc:
        raise CsrError(f"certificate has malformed extensions: {exc}") from None
    return _tn_entries(extensions, "certificate")


def renewal_due(cert: x509.Certificate, now: int) -> bool:
    """True once ``now`` (Unix seconds) is within :data:`RENEW_BEFORE_S` of ``notAfter``."""
    return now >= cert.not_valid_after_utc.timestamp() - RENEW_BEFORE_S


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of ``key``.

    Not encrypted on purpose: the phone has no one to type a passphrase at
    boot; the file's protection is its mode 0600 in the state directory.
    """
    _require_p256_private(key)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load a key written by :func:`key_to_pem` (any unencrypted PEM P-256 key works)."""
    try:
        key = serialization.load_pem_private_key(bytes(pem), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CsrError(f"not an unencrypted PEM private key: {exc}") from None
    return _require_p256_private(key)
