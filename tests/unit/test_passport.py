"""PASSporT: create/verify, every rejection, chain validation, and the vectors.

The certificates these tests need (a CA, intermediates, leaves carrying
TNAuthList) are made here with ``cryptography``.  Running this file as a
script (``python tests/unit/test_passport.py``) rewrites
``tests/vectors/passport.json`` with fresh keys.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ript.protocol.csr import (
    TN_AUTH_LIST,
    build_csr,
    key_from_pem,
    key_to_pem,
    make_key,
    parse_csr,
)
from ript.protocol.errors import RemoteProtocolError
from ript.protocol.passport import (
    MAX_TOKEN_LENGTH,
    Passport,
    PassportError,
    create_passport,
    decode_passport_unverified,
    verify_chain,
    verify_passport,
)
from ript.protocol.tnauth import TnEntry, TnOne, TnRange, encode_tn_auth_list
from riptprovider.tls import ca_certificate

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "passport.json"

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
ORIG = "+14085551002"
DEST = "+14089529999"
URI = "https://p.example/tgs/7/certs/1"
DAY = 86_400


# --- certificates ------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _moment(t: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC)


def make_ca(
    key: ec.EllipticCurvePrivateKey,
    cn: str = "RIPT test CA",
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    not_before: int = T0 - 30 * DAY,
    not_after: int = T0 + 3650 * DAY,
) -> x509.Certificate:
    """A CA certificate (self-signed, or signed by ``issuer`` for an intermediate)."""
    return ca_certificate(key, cn, _moment(not_before), _moment(not_after), issuer=issuer)


def issue_leaf(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    entries: list[TnEntry] | None,
    *,
    cn: str = ORIG,
    not_before: int = T0 - DAY,
    not_after: int = T0 + 90 * DAY,
) -> x509.Certificate:
    """What a provider's CA does with a CSR: a leaf carrying TNAuthList (if ``entries``)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_moment(not_before))
        .not_valid_after(_moment(not_after))
    )
    if entries is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(TN_AUTH_LIST, encode_tn_auth_list(entries)), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


@dataclass(frozen=True)
class Pki:
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    phone_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate

    @property
    def chain(self) -> bytes:
        return pem(self.leaf)

    @property
    def ca_pem(self) -> bytes:
        return pem(self.ca)


def make_pki() -> Pki:
    """CA, phone key, and the leaf the provider issues from the phone's real CSR."""
    ca_key = make_key()
    ca = make_ca(ca_key)
    phone_key = make_key()
    request = parse_csr(build_csr(phone_key, ORIG))
    leaf = issue_leaf(ca, ca_key, request.public_key, list(request.tn_entries))
    return Pki(ca_key, ca, phone_key, leaf)


@functools.cache
def pki() -> Pki:
    return make_pki()


def token(iat: int = T0, orig: str = ORIG, dest: str = DEST) -> str:
    return create_passport(pki().phone_key, URI, orig, dest, iat)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def signed(
    header: dict[str, Any], payload: bytes, key: ec.EllipticCurvePrivateKey | None = None
) -> str:
    """A correctly ES256-signed JWS of arbitrary header members and payload bytes."""
    return jwt.PyJWS().encode(
        payload, key or pki().phone_key, algorithm="ES256", headers=header, sort_headers=True
    )


GOOD_HEADER: dict[str, Any] = {"typ": "passport", "x5u": URI}
GOOD_CLAIMS: dict[str, Any] = {
    "orig": {"tn": "14085551002"},
    "dest": {"tn": ["14089529999"]},
    "iat": T0,
}


def claims_with(**changes: Any) -> bytes:
    doc = dict(GOOD_CLAIMS)
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not _DROP}).encode()


_DROP = object()


# --- create ------------------------------------------------------------------------------------


def test_create_writes_exact_rfc8225_header_and_claims() -> None:
    parts = token().split(".")
    assert len(parts) == 3
    assert _unb64(parts[0]) == b'{"alg":"ES256","typ":"passport","x5u":"' + URI.encode() + b'"}'
    assert _unb64(parts[1]) == (
        b'{"dest":{"tn":["14089529999"]},"iat":1767225600,"orig":{"tn":"14085551002"}}'
    )
    assert len(_unb64(parts[2])) == 64  # JWS ES256: raw r || s, 32 bytes each


def test_create_then_verify() -> None:
    result = verify_passport(token(), pki().chain, now=T0 + 5, expected_dest=DEST)
    assert result == Passport(
        alg="ES256",
        typ="passport",
        x5u=URI,
        orig="14085551002",
        dests=("14089529999",),
        iat=T0,
    )


def test_verify_with_trusted_ca() -> None:
    result = verify_passport(token(), pki().chain, now=T0, trusted_ca_pem=pki().ca_pem)
    assert result.orig == "14085551002"


def test_expected_dest_in_canonical_form() -> None:
    assert verify_passport(token(), pki().chain, now=T0, expected_dest="14089529999").dests == (
        "14089529999",
    )


def test_decode_unverified_finds_x5u() -> None:
    result = decode_passport_unverified(token(iat=12345))
    assert (result.x5u, result.orig, result.dests, result.iat) == (
        URI,
        "14085551002",
        ("14089529999",),
        12345,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((URI, "14085551002", DEST, T0), "orig"),
        ((URI, ORIG, "+0123", T0), "dest"),
        ((URI, ORIG, DEST, -1), "iat"),
        ((URI, ORIG, DEST, True), "iat"),
        (("", ORIG, DEST, T0), "x5u"),
    ],
)
def test_create_rejects_bad_arguments(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(PassportError, match=message):
        create_passport(pki().phone_key, *args)


def test_create_rejects_other_curves() -> None:
    with pytest.raises(PassportError, match="P-256"):
        create_passport(ec.generate_private_key(ec.SECP384R1()), URI, ORIG, DEST, T0)


# --- verify: rejections ------------------------------------------------------------------------


def _tamper_payload(good: str) -> str:
    head, _, sig = good.split(".")
    forged = claims_with(orig={"tn": "14085551003"})
    return f"{head}.{_b64(forged)}.{sig}"


def _tamper_header(good: str) -> str:
    _, body, sig = good.split(".")
    forged = b'{"alg":"ES256","typ":"passport","x5u":"https://evil.example/c"}'
    return f"{_b64(forged)}.{body}.{sig}"


def _tamper_signature(good: str) -> str:
    head, body, sig = good.split(".")
    raw = bytearray(_unb64(sig))
    raw[10] ^= 0x01
    return f"{head}.{body}.{_b64(bytes(raw))}"


@pytest.mark.parametrize("tamper", [_tamper_payload, _tamper_header, _tamper_signature])
def test_tampering_breaks_the_signature(tamper: Any) -> None:
    forged = tamper(token())
    decode_passport_unverified(forged)  # still well formed: only the signature can tell
    with pytest.raises(PassportError, match="signature does not verify"):
        verify_passport(forged, pki().chain, now=T0)


def test_wrong_key_rejected() -> None:
    other = create_passport(make_key(), URI, ORIG, DEST, T0)
    with pytest.raises(PassportError, match="signature does not verify"):
        verify_passport(other, pki().chain, now=T0)


def test_iat_window_edges() -> None:
    good = token()
    assert verify_passport(good, pki().chain, now=T0 + 60).iat == T0
    assert verify_passport(good, pki().chain, now=T0 - 60).iat == T0
    with pytest.raises(PassportError, match="61 s old"):
        verify_passport(good, pki().chain, now=T0 + 61)
    with pytest.raises(PassportError, match="61 s in the future"):
        verify_passport(good, pki().chain, now=T0 - 61)
    with pytest.raises(PassportError, match="limit 5 s"):
        verify_passport(good, pki().chain, now=T0 + 6, max_age_s=5)


def test_orig_not_covered_by_certificate() -> None:
    other_number = token(orig="+14085551003")
    with pytest.raises(PassportError, match="does not cover orig 14085551003"):
        verify_passport(other_number, pki().chain, now=T0)


def test_orig_covered_by_a_range() -> None:
    p = pki()
    leaf = issue_leaf(p.ca, p.ca_key, p.phone_key.public_key(), [TnRange("14085551000", 100)])
    good = token(orig="+14085551099")
    assert verify_passport(good, pem(leaf), now=T0, trusted_ca_pem=p.ca_pem).orig == "14085551099"
    with pytest.raises(PassportError, match="does not cover"):
        verify_passport(token(orig="+14085551100"), pem(leaf), now=T0)


def test_wrong_dest_rejected() -> None:
    with pytest.raises(PassportError, match="does not include 14089520000"):
        verify_passport(token(), pki().chain, now=T0, expected_dest="+14089520000")


def test_alg_none_rejected() -> None:
    unsigned = jwt.PyJWS().encode(claims_with(), "", algorithm="none", headers=GOOD_HEADER)
    with pytest.raises(PassportError, match="alg must be 'ES256', not 'none'"):
        verify_passport(unsigned, pki().chain, now=T0)


def test_alg_hs256_key_confusion_rejected() -> None:
    # The classic attack: HMAC "signed" with the public key bytes the verifier holds.
    secret = (
        pki()
        .leaf.public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    forged = jwt.PyJWS().encode(claims_with(), secret, algorithm="HS256", headers=GOOD_HEADER)
    with pytest.raises(PassportError, match="alg must be 'ES256', not 'HS256'"):
        verify_passport(forged, pki().chain, now=T0)


def test_alg_es384_rejected() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    forged = jwt.PyJWS().encode(claims_with(), key, algorithm="ES384", headers=GOOD_HEADER)
    with pytest.raises(PassportError, match="alg must be 'ES256'"):
        verify_passport(forged, pki().chain, now=T0)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"typ": "JWT", "x5u": URI}, "typ must be 'passport', not 'JWT'"),
        ({"typ": "", "x5u": URI}, "typ must be 'passport', not None"),
        ({"typ": "passport"}, "needs x5u"),
        ({"typ": "passport", "x5u": 7}, "needs x5u"),
        ({"typ": "passport", "x5u": URI, "ppt": "shaken", "crit": ["ppt"]}, "critical"),
    ],
)
def test_header_rejections(header: dict[str, Any], message: str) -> None:
    with pytest.raises(PassportError, match=message):
        verify_passport(signed(header, claims_with()), pki().chain, now=T0)


def test_detached_payload_rejected() -> None:
    detached = jwt.PyJWS().encode(
        claims_with(), pki().phone_key, algorithm="ES256", headers={**GOOD_HEADER, "b64": False}
    )
    with pytest.raises(PassportError, match="detached"):
        decode_passport_unverified(detached)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (claims_with(orig=_DROP), "claims lacks the 'orig' member"),
        (claims_with(dest=_DROP), "claims lacks the 'dest' member"),
        (claims_with(iat=_DROP), "claims lacks the 'iat' member"),
        (claims_with(iat=1.5), "'iat' must be an integer, not a number"),
        (claims_with(iat=True), "'iat' must be an integer, not a boolean"),
        (claims_with(iat="1767225600"), "'iat' must be an integer, not a string"),
        (claims_with(orig="14085551002"), "'orig' must be an object, not a string"),
        (claims_with(orig={"uri": "sip:a@b"}), "orig lacks the 'tn' member"),
        (claims_with(orig={"tn": 14085551002}), "'tn' must be a string, not an integer"),
        (claims_with(orig={"tn": "+14085551002"}), "orig tn '\\+14085551002' must be 1 to 15"),
        (claims_with(dest={"tn": "14089529999"}), "'tn' must be an array, not a string"),
        (claims_with(dest={"tn": []}), "at least one number"),
        (claims_with(dest={"tn": ["1", 2]}), "dest tn\\[1\\] must be a string"),
        (claims_with(dest={"tn": ["1234567890123456"]}), "dest tn\\[0\\]"),
        (b"[1, 2]", "claims must be a JSON object, not list"),
        (b'{"iat": 1, "iat": 2}', "member 'iat' appears twice"),
        (b"\xff\xfe", "the claims set is not UTF-8"),
        (b"{", "the claims set is not JSON"),
        (b"[" * 5000, "the claims set nests too deeply"),
    ],
)
def test_claim_rejections(payload: bytes, message: str) -> None:
    bad = signed(GOOD_HEADER, payload)
    with pytest.raises(PassportError, match=message):
        decode_passport_unverified(bad)
    with pytest.raises(PassportError, match=message):
        verify_passport(bad, pki().chain, now=T0)


def test_unknown_members_are_ignored() -> None:
    payload = claims_with(attest="A", origid="x", dest={"tn": ["14089529999"], "uri": ["sip:x"]})
    result = verify_passport(signed({**GOOD_HEADER, "kid": "k"}, payload), pki().chain, now=T0)
    assert result.dests == ("14089529999",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "compact JWS"),
        ("a.b", "compact JWS"),
        ("a.b.c.d", "compact JWS"),
        ("é.b.c", "compact JWS"),
        ("a.b.c", "malformed JWS"),
        ("e30.e30.", "alg must be"),  # {} header
        ("W10.e30.", "malformed JWS"),  # [] header
        ("x" * (MAX_TOKEN_LENGTH + 1), f"exceeds {MAX_TOKEN_LENGTH}"),
    ],
)
def test_malformed_tokens(text: str, message: str) -> None:
    with pytest.raises(PassportError, match=message):
        decode_passport_unverified(text)


def test_token_must_be_text() -> None:
    with pytest.raises(PassportError, match="must be a string, not bytes"):
        decode_passport_unverified(token().encode())  # type: ignore[arg-type]


def test_deeply_nested_header_is_a_passport_error() -> None:
    text = _b64(b"[" * 3000) + ".e30.AA"
    with pytest.raises(PassportError):
        decode_passport_unverified(text)


# --- certificates used by verify ---------------------------------------------------------------


def test_leaf_without_tnauthlist_rejected() -> None:
    p = pki()
    bare = issue_leaf(p.ca, p.ca_key, p.phone_key.public_key(), None)
    with pytest.raises(PassportError, match="no TNAuthList"):
        verify_passport(token(), pem(bare), now=T0)


def test_leaf_outside_validity_rejected_even_without_ca() -> None:
    p = pki()
    leaf = issue_leaf(
        p.ca, p.ca_key, p.phone_key.public_key(), [TnOne("14085551002")], not_after=T0 - 10
    )
    with pytest.raises(PassportError, match="certificate expired"):
        verify_passport(token(iat=T0 - 20), pem(leaf), now=T0)
    future = issue_leaf(
        p.ca, p.ca_key, p.phone_key.public_key(), [TnOne("14085551002")], not_before=T0 + 10
    )
    with pytest.raises(PassportError, match="not valid before"):
        verify_passport(token(), pem(future), now=T0)


def test_leaf_with_other_curve_rejected() -> None:
    p = pki()
    key384 = ec.generate_private_key(ec.SECP384R1())
    leaf = issue_leaf(p.ca, p.ca_key, key384.public_key(), [TnOne("14085551002")])
    with pytest.raises(PassportError, match="must be EC P-256"):
        verify_passport(token(), pem(leaf), now=T0)


@pytest.mark.parametrize("chain", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAA\n"])
def test_unusable_chain_rejected(chain: bytes) -> None:
    with pytest.raises(PassportError, match="certificate chain"):
        verify_passport(token(), chain, now=T0)


def test_verify_chain_accepts_direct_issuance_and_returns_leaf() -> None:
    p = pki()
    assert verify_chain(p.chain, p.ca_pem, T0) == p.leaf
    # A chain that also carries the root, as many PEM chains do:
    assert verify_chain(pem(p.leaf, p.ca), p.ca_pem, T0) == p.leaf


def test_verify_chain_through_an_intermediate() -> None:
    p = pki()
    inter_key = make_key()
    inter = make_ca(inter_key, "RIPT intermediate", issuer=(p.ca, p.ca_key))
    leaf = issue_leaf(inter, inter_key, p.phone_key.public_key(), [TnOne("14085551002")])
    assert verify_chain(pem(leaf, inter), p.ca_pem, T0) == leaf
    with pytest.raises(PassportError, match="does not verify"):
        verify_chain(pem(leaf), p.ca_pem, T0)  # intermediate missing


def test_verify_chain_rejects_other_ca() -> None:
    other_key = make_key()
    other = make_ca(other_key, "Another CA")
    with pytest.raises(PassportError, match="does not verify"):
        verify_chain(pki().chain, pem(other), T0)
    with pytest.raises(PassportError, match="does not verify"):
        verify_passport(token(), pki().chain, now=T0, trusted_ca_pem=pem(other))


def test_verify_chain_rejects_same_name_wrong_key() -> None:
    impostor = make_ca(make_key())  # same subject as the real CA, different key
    with pytest.raises(PassportError, match="does not verify"):
        verify_chain(pki().chain, pem(impostor), T0)


def test_verify_chain_checks_time() -> None:
    p = pki()
    with pytest.raises(PassportError, match="does not verify"):
        verify_chain(p.chain, p.ca_pem, T0 + 91 * DAY)  # leaf expired
    with pytest.raises(PassportError, match="does not verify"):
        verify_chain(p.chain, p.ca_pem, T0 - 2 * DAY)  # leaf not yet valid


def test_verify_chain_rejects_issuer_that_is_not_a_ca() -> None:
    p = pki()
    # The phone's own leaf used as an "issuer": no basicConstraints cA.
    fake = issue_leaf(p.leaf, p.phone_key, make_key().public_key(), [TnOne("14085551002")])
    with pytest.raises(PassportError, match="does not verify"):
        verify_chain(pem(fake, p.leaf), p.ca_pem, T0)


def test_verify_chain_rejects_garbage_anchor() -> None:
    with pytest.raises(PassportError, match="trusted CA"):
        verify_chain(pki().chain, b"nope", T0)


# --- properties --------------------------------------------------------------------------------

_numbers = st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(orig=_numbers, dest=_numbers, iat=st.integers(min_value=0, max_value=2**53))
def test_create_decode_round_trip(orig: str, dest: str, iat: int) -> None:
    result = decode_passport_unverified(create_passport(pki().phone_key, URI, orig, dest, iat))
    assert (result.orig, result.dests, result.iat, result.x5u) == (orig[1:], (dest[1:],), iat, URI)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_raises_only_passport_error(text: str) -> None:
    with pytest.raises(PassportError):
        decode_passport_unverified(text)


_segment = st.binary(max_size=120).map(_b64)


@settings(max_examples=300, deadline=None)
@given(_segment, _segment, _segment)
def test_random_jws_parts_raise_only_passport_error(head: str, body: str, sig: str) -> None:
    with pytest.raises(PassportError):
        verify_passport(f"{head}.{body}.{sig}", pki().chain, now=T0)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orig=st.one_of(_json, st.fixed_dictionaries({"tn": _json})),
    dest=st.one_of(_json, st.fixed_dictionaries({"tn": _json})),
    iat=_json,
)
def test_random_signed_claims_raise_only_passport_error(orig: Any, dest: Any, iat: Any) -> None:
    payload = json.dumps({"orig": orig, "dest": dest, "iat": iat}).encode()
    try:
        result = verify_passport(signed(GOOD_HEADER, payload), pki().chain, now=T0)
    except PassportError:
        return
    # Only a genuinely good PASSporT may get through.
    assert result.orig == "14085551002"
    assert abs(result.iat - T0) <= 60


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_chain_raises_only_passport_error(der: bytes) -> None:
    body = base64.encodebytes(der).decode()
    chain = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()
    with pytest.raises(PassportError):
        verify_passport(token(), chain, now=T0)
    with pytest.raises(PassportError):
        verify_chain(chain, pki().ca_pem, T0)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_leaf_raises_only_passport_error(data: st.DataObject) -> None:
    original = pki().leaf
    der = bytearray(original.public_bytes(serialization.Encoding.DER))
    position = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
    der[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    body = base64.encodebytes(bytes(der)).decode()
    chain = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()
    with contextlib.suppress(PassportError):
        verify_passport(token(), chain, now=T0)
    try:
        leaf = verify_chain(chain, pki().ca_pem, T0)
    except PassportError:
        return
    # Accepted only if what the CA signed, and its signature, are untouched (a
    # flipped unused-bits count of the signature BIT STRING, say).
    assert leaf.tbs_certificate_bytes == original.tbs_certificate_bytes
    assert leaf.signature == original.signature


def test_errors_are_remote_protocol_errors() -> None:
    assert issubclass(PassportError, RemoteProtocolError)


# --- vectors -----------------------------------------------------------------------------------


def load_vectors() -> dict[str, Any]:
    with VECTORS.open(encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def test_vector_key_and_chain_belong_together() -> None:
    doc = load_vectors()
    key = key_from_pem(doc["phone_private_key_pem"].encode())
    leaf = verify_chain(doc["chain_pem"].encode(), doc["trusted_ca_pem"].encode(), doc["iat"])
    assert leaf.public_key() == key.public_key()
    csr = parse_csr(doc["csr_pem"].encode())
    assert csr.public_key == key.public_key()
    assert csr.tn_entries == (TnOne("14085551002"),)


@pytest.mark.parametrize("case", load_vectors().get("passports", []), ids=lambda c: str(c["name"]))
def test_passport_vector(case: dict[str, Any]) -> None:
    doc = load_vectors()
    kwargs: dict[str, Any] = {
        "now": case["now"],
        "max_age_s": case["max_age_s"],
        "expected_dest": case["expected_dest"],
        "trusted_ca_pem": doc["trusted_ca_pem"].encode(),
    }
    if case["valid"]:
        result = verify_passport(case["token"], doc["chain_pem"].encode(), **kwargs)
        assert result.orig == case["claims"]["orig"]["tn"]
        assert list(result.dests) == case["claims"]["dest"]["tn"]
        assert result.iat == case["claims"]["iat"]
        assert result.x5u == case["header"]["x5u"]
        head, body, _ = case["token"].split(".")
        assert json.loads(_unb64(head)) == case["header"]
        assert json.loads(_unb64(body)) == case["claims"]
    else:
        with pytest.raises(PassportError, match=case["error"]):
            verify_passport(case["token"], doc["chain_pem"].encode(), **kwargs)


def _openssl(*args: str) -> str:
    binary = shutil.which("openssl")
    assert binary is not None, "the openssl binary is required for this test"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_openssl_agrees_with_the_vectors(tmp_path: Path) -> None:
    """An independent ES256 and X.509 check of the valid vector, by the openssl binary."""
    doc = load_vectors()
    valid = next(case for case in doc["passports"] if case["name"] == "valid")
    leaf = x509.load_pem_x509_certificates(doc["chain_pem"].encode())[0]
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    (tmp_path / "ca.pem").write_text(doc["trusted_ca_pem"], encoding="utf-8")
    verified = _openssl(
        "verify",
        "-attime",
        str(valid["now"]),
        "-CAfile",
        str(tmp_path / "ca.pem"),
        str(tmp_path / "leaf.pem"),
    )
    assert verified.strip().endswith(": OK")
    head, body, sig = valid["token"].split(".")
    raw = _unb64(sig)
    der_sig = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    (tmp_path / "input").write_bytes(f"{head}.{body}".encode())
    (tmp_path / "sig.der").write_bytes(der_sig)
    (tmp_path / "pub.pem").write_bytes(
        leaf.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = _openssl(
        "dgst",
        "-sha256",
        "-verify",
        str(tmp_path / "pub.pem"),
        "-signature",
        str(tmp_path / "sig.der"),
        str(tmp_path / "input"),
    )
    assert out.strip() == "Verified OK"


def test_vectors_cover_every_rejection_kind() -> None:
    names = {case["name"] for case in load_vectors()["passports"]}
    assert {
        "valid",
        "tampered-payload",
        "tampered-header",
        "tampered-signature",
        "expired-iat",
        "future-iat",
        "wrong-dest",
        "orig-not-covered",
        "alg-none",
        "alg-hs256",
    } <= names


# --- regenerating the vectors ------------------------------------------------------------------


def build_vectors() -> dict[str, Any]:
    """Fresh keys, chain and tokens; the hand-made TNAuthList cases are carried over."""
    old = load_vectors()
    p = make_pki()
    csr_pem = build_csr(p.phone_key, ORIG)
    good = create_passport(p.phone_key, URI, ORIG, DEST, T0)
    header = {"alg": "ES256", "typ": "passport", "x5u": URI}
    claims = json.loads(_unb64(good.split(".")[1]))
    secret = p.leaf.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )

    def case(name: str, tok: str, valid: bool, error: str = "", **over: Any) -> dict[str, Any]:
        entry = {
            "name": name,
            "token": tok,
            "now": over.get("now", T0 + 5),
            "max_age_s": 60,
            "expected_dest": over.get("expected_dest", "+14089529999"),
            "valid": valid,
        }
        if valid:
            entry.update(header=header, claims=claims)
        else:
            entry["error"] = error
        return entry

    body = claims_with(orig={"tn": "14085551003"})
    return {
        "description": (
            "RIPT profile section 5 vectors. tn_auth_list: RFC 8226 TNAuthorizationList DER "
            "(EXPLICIT tags) for the listed entries; tn_auth_list_invalid: DER a decoder must "
            "reject. passports: verify token with chain_pem (leaf first) against trusted_ca_pem "
            "at Unix time `now`, allowing max_age_s, expecting expected_dest; valid=false cases "
            "must be rejected (error is this implementation's message, for information). "
            "ES256 signatures are randomised, so tokens cannot be reproduced byte for byte; "
            "phone_private_key_pem is TEST ONLY."
        ),
        "tn_auth_list": old["tn_auth_list"],
        "tn_auth_list_invalid": old["tn_auth_list_invalid"],
        "phone_private_key_pem": key_to_pem(p.phone_key).decode(),
        "csr_pem": csr_pem.decode(),
        "trusted_ca_pem": p.ca_pem.decode(),
        "chain_pem": pem(p.leaf, p.ca).decode(),
        "iat": T0,
        "passports": [
            case("valid", good, True),
            case("valid-at-max-age", good, True, now=T0 + 60),
            case("tampered-payload", _tamper_payload(good), False, "signature does not verify"),
            case("tampered-header", _tamper_header(good), False, "signature does not verify"),
            case("tampered-signature", _tamper_signature(good), False, "signature does not"),
            case("expired-iat", good, False, "61 s old", now=T0 + 61),
            case("future-iat", good, False, "61 s in the future", now=T0 - 61),
            case("wrong-dest", good, False, "does not include", expected_dest="+14089520000"),
            case(
                "orig-not-covered",
                create_passport(p.phone_key, URI, "+14085551003", DEST, T0),
                False,
                "does not cover orig",
            ),
            case(
                "alg-none",
                jwt.PyJWS().encode(body, "", algorithm="none", headers=GOOD_HEADER),
                False,
                "alg must be 'ES256'",
            ),
            case(
                "alg-hs256",
                jwt.PyJWS().encode(claims_with(), secret, algorithm="HS256", headers=GOOD_HEADER),
                False,
                "alg must be 'ES256'",
            ),
            case(
                "wrong-key",
                create_passport(make_key(), URI, ORIG, DEST, T0),
                False,
                "signature does not verify",
            ),
        ],
    }


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(build_vectors(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {VECTORS}")
