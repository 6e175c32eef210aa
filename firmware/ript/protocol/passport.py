"""PASSporT (RFC 8225) as profile section 5 uses it: create, parse, verify.

Every outbound call carries a compact JWS signed with ES256 by the phone's
P-256 key, naming the certificate that vouches for the caller's number::

    header  {"alg":"ES256","typ":"passport","x5u":"https://p.example/tgs/7/certs/1"}
    claims  {"dest":{"tn":["14089529999"]},"iat":1767225600,"orig":{"tn":"14085551002"}}

Numbers are in RFC 8224 §8.3 canonical form (E.164 digits, no ``+``) and
both JSON objects are serialised as RFC 8225 §9 asks (keys in lexicographic
order, no white space).  The JWS layer is PyJWT's (nothing hand-rolled);
this module adds the PASSporT rules on top: header values, claim shapes,
freshness of ``iat``, and that the signer's certificate (RFC 8226
TNAuthList) covers ``orig``.

:func:`verify_chain` validates the certificate chain itself with
``cryptography``'s X.509 path builder (``PolicyBuilder``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ript.protocol.csr import CsrError, tn_entries_of_certificate
from ript.protocol.errors import RemoteProtocolError
from ript.protocol.strictjson import JsonBodyError, load_json
from ript.protocol.tnauth import TnAuthError, check_tn, covers, tn_from_e164

ALG = "ES256"
TYP = "passport"
DEFAULT_MAX_AGE_S = 60
"""Freshness window for ``iat`` in seconds, either side of now (RFC 8224's recommended 60 s)."""
MAX_TOKEN_LENGTH = 8192
"""Longest token accepted; a real one is about 400 characters."""

# Only ES256 is registered, so no other algorithm can ever be tried.
_JWS = jwt.PyJWS(algorithms=[ALG])


class PassportError(RemoteProtocolError):
    """A PASSporT, or the certificate chain meant to vouch for it, is not acceptable."""


@dataclass(frozen=True, slots=True)
class Passport:
    """A parsed PASSporT: header fields and claims, numbers in canonical form."""

    alg: str
    typ: str
    x5u: str
    orig: str
    dests: tuple[str, ...]
    iat: int


def _canonical(e164: str, what: str) -> str:
    try:
        return tn_from_e164(e164)
    except TnAuthError as exc:
        raise PassportError(f"{what}: {exc}") from None


def create_passport(
    key: ec.EllipticCurvePrivateKey, cert_uri: str, orig_e164: str, dest_e164: str, iat: int
) -> str:
    """Compact JWS of a PASSporT from ``orig_e164`` to ``dest_e164`` issued at ``iat`` (s)."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PassportError(f"ES256 needs an EC P-256 private key, not {type(key).__name__}")
    if not isinstance(cert_uri, str) or not cert_uri:
        raise PassportError("the certificate URI (x5u) must be a non-empty string")
    if isinstance(iat, bool) or not isinstance(iat, int) or iat < 0:
        raise PassportError(f"iat must be a non-negative integer of seconds, not {iat!r}")
    claims = {
        "orig": {"tn": _canonical(orig_e164, "orig")},
        "dest": {"tn": [_canonical(dest_e164, "dest")]},
        "iat": iat,
    }
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    # PyJWT starts from {"typ": ..., "alg": ...}; ours replaces typ, and
    # sort_headers gives the RFC 8225 §9 key order alg, typ, x5u.
    return _JWS.encode(
        payload, key, algorithm=ALG, headers={"typ": TYP, "x5u": cert_uri}, sort_headers=True
    )


def _load_claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = load_json(payload, limit=MAX_TOKEN_LENGTH, noun="claims set")
    except JsonBodyError as exc:
        raise PassportError(str(exc)) from None
    if not isinstance(claims, dict):
        raise PassportError(f"claims must be a JSON object, not {type(claims).__name__}")
    return claims


_JSON_TYPES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _member(doc: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in doc:
        raise PassportError(f"{where} lacks the {name!r} member")
    value = doc[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        raise PassportError(f"{where} member {name!r} must be {_JSON_TYPES[kind]}, not {got}")
    return value


def _tn(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PassportError(f"{where} must be a string, not {type(value).__name__}")
    try:
        return check_tn(value, where)
    except TnAuthError as exc:
        raise PassportError(str(exc)) from None


def _check_header(header: dict[str, Any]) -> tuple[str, str, str]:
    alg = header.get("alg")
    if alg != ALG:
        raise PassportError(f"PASSporT alg must be {ALG!r}, not {alg!r}")
    typ = header.get("typ")
    if typ != TYP:
        raise PassportError(f"PASSporT typ must be {TYP!r}, not {typ!r}")
    x5u = header.get("x5u")
    if not isinstance(x5u, str) or not x5u:
        raise PassportError(f"PASSporT header needs x5u, a certificate URI, not {x5u!r}")
    for name in ("crit", "b64"):
        # No PASSporT extension (ppt) is part of the profile, so nothing may be critical.
        if name in header:
            raise PassportError(f"PASSporT header member {name!r} is not supported")
    return alg, typ, x5u


def decode_passport_unverified(token: str) -> Passport:
    """Parse ``token`` and check its shape, WITHOUT checking the signature.

    For finding ``x5u`` (which certificate to fetch) before verifying; never
    trust what it returns on its own.
    """
    if not isinstance(token, str):
        raise PassportError(f"a PASSporT must be a string, not {type(token).__name__}")
    if len(token) > MAX_TOKEN_LENGTH:
        raise PassportError(f"PASSporT of {len(token)} characters exceeds {MAX_TOKEN_LENGTH}")
    if not token.isascii() or token.count(".") != 2:
        raise PassportError("a PASSporT must be a compact JWS: three base64url parts joined by '.'")
    try:
        parts = _JWS.decode_complete(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, RecursionError) as exc:
        raise PassportError(f"malformed JWS: {exc}") from None
    alg, typ, x5u = _check_header(parts["header"])
    claims = _load_claims(parts["payload"])
    orig = _member(claims, "orig", dict, "claims")
    dest = _member(claims, "dest", dict, "claims")
    iat = _member(claims, "iat", int, "claims")
    orig_tn = _tn(_member(orig, "tn", str, "orig"), "orig tn")
    dest_tns = _member(dest, "tn", list, "dest")
    if not dest_tns:
        raise PassportError("dest tn must list at least one number")
    dests = tuple(_tn(item, f"dest tn[{index}]") for index, item in enumerate(dest_tns))
    return Passport(alg=alg, typ=typ, x5u=x5u, orig=orig_tn, dests=dests, iat=iat)


def _load_chain(chain_pem: bytes, what: str) -> list[x509.Certificate]:
    if not isinstance(chain_pem, bytes | bytearray):
        raise PassportError(f"{what} must be PEM bytes, not {type(chain_pem).__name__}")
    try:
        certs = x509.load_pem_x509_certificates(bytes(chain_pem))
    except (ValueError, x509.InvalidVersion) as exc:
        raise PassportError(f"{what} is not PEM certificates: {exc}") from None
    if not certs:
        raise PassportError(f"{what} holds no certificate")
    return certs


def _moment(now: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(now, tz=_dt.UTC)


def verify_chain(chain_pem: bytes, trusted_ca_pem: bytes, now: int) -> x509.Certificate:
    """Check that the chain's first certificate leads to a trusted CA; return that leaf.

    ``chain_pem`` is the ``application/pem-certificate-chain`` body: the leaf
    first, then any intermediates (a copy of the root is harmless).
    ``trusted_ca_pem`` holds one or more trust anchors.  Every certificate on
    the path must be valid at ``now`` (Unix seconds).  Path building and
    signatures are ``cryptography``'s ``PolicyBuilder``; issuing certificates
    must meet RFC 5280 / Web PKI CA rules (basicConstraints cA, keyUsage
    keyCertSign, ...), while the leaf's extensions are left unchecked so that
    a STIR leaf without serverAuth/clientAuth usages is accepted.
    """
    chain = _load_chain(chain_pem, "certificate chain")
    anchors = _load_chain(trusted_ca_pem, "trusted CA")
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(anchors))
            .time(_moment(now))
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        verifier.verify(chain[0], chain[1:])
    except (VerificationError, ValueError) as exc:
        raise PassportError(f"certificate chain does not verify: {exc}") from None
    return chain[0]


def _check_validity(cert: x509.Certificate, now: int) -> None:
    moment = _moment(now)
    if moment < cert.not_valid_before_utc:
        raise PassportError(f"certificate is not valid before {cert.not_valid_before_utc}")
    if moment > cert.not_valid_after_utc:
        raise PassportError(f"certificate expired at {cert.not_valid_after_utc}")


def _covered(entries: Iterable[Any], tn: str) -> bool:
    try:
        return covers(entries, tn)
    except TnAuthError as exc:
        raise PassportError(str(exc)) from None


def verify_passport(
    token: str,
    cert_chain_pem: bytes,
    *,
    now: int,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    expected_dest: str | None = None,
    trusted_ca_pem: bytes | None = None,
) -> Passport:
    """Verify ``token`` with the certificate chain fetched from its ``x5u``.

    In order: the token's shape and header (:func:`decode_passport_unverified`);
    the chain against ``trusted_ca_pem`` when given (:func:`verify_chain`);
    the leaf valid at ``now``; the ES256 signature by the leaf's key; ``iat``
    no more than ``max_age_s`` before or after ``now``; ``orig`` covered by the
    leaf's TNAuthList; ``expected_dest`` (E.164 or canonical) among the
    ``dest`` numbers when given.  The first failure raises :class:`PassportError`.
    """
    passport = decode_passport_unverified(token)
    if trusted_ca_pem is not None:
        leaf = verify_chain(cert_chain_pem, trusted_ca_pem, now)
    else:
        leaf = _load_chain(cert_chain_pem, "certificate chain")[0]
    _check_validity(leaf, now)
    try:
        public_key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PassportError(f"certificate key is unusable: {exc}") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise PassportError(f"certificate key must be EC P-256, not {type(public_key).__name__}")
    try:
        _JWS.decode_complete(token, key=public_key, algorithms=[ALG])
    except jwt.InvalidSignatureError:
        raise PassportError(
            "PASSporT signature does not verify with the certificate's key"
        ) from None
    except (jwt.PyJWTError, ValueError) as exc:
        raise PassportError(f"PASSporT signature check failed: {exc}") from None
    age = now - passport.iat
    if age > max_age_s:
        raise PassportError(f"PASSporT iat {passport.iat} is {age} s old (limit {max_age_s} s)")
    if -age > max_age_s:
        raise PassportError(
            f"PASSporT iat {passport.iat} is {-age} s in the future (limit {max_age_s} s)"
        )
    try:
        entries = tn_entries_of_certificate(leaf)
    except CsrError as exc:
        raise PassportError(str(exc)) from None
    if not _covered(entries, passport.orig):
        raise PassportError(f"certificate's TNAuthList does not cover orig {passport.orig}")
    if expected_dest is not None:
        wanted = expected_dest[1:] if expected_dest.startswith("+") else expected_dest
        if wanted not in passport.dests:
            raise PassportError(f"PASSporT dest {list(passport.dests)} does not include {wanted}")
    return passport
