"""Key, CSR and certificate TNAuthList: checked by our parser and by the real openssl."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol.csr import (
    RENEW_BEFORE_S,
    TN_AUTH_LIST,
    CsrError,
    build_csr,
    key_from_pem,
    key_to_pem,
    make_key,
    parse_csr,
    renewal_due,
    tn_entries_of_certificate,
)
from ript.protocol.errors import RemoteProtocolError
from ript.protocol.tnauth import TnEntry, TnOne, TnRange, TnSpc, encode_tn_auth_list

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "passport.json"
OPENSSL = shutil.which("openssl")
NUMBER = "+14085551002"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return make_key()


@pytest.fixture(scope="module")
def csr_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return build_csr(key, NUMBER)


def _openssl(*args: str) -> str:
    assert OPENSSL is not None, "the openssl binary is required for these tests"
    done = subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _pem(der: bytes, label: str = "CERTIFICATE REQUEST") -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n"
    ).encode()


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)


# --- build and parse ---------------------------------------------------------------------------


def test_round_trip(key: ec.EllipticCurvePrivateKey, csr_pem: bytes) -> None:
    info = parse_csr(csr_pem)
    assert info.tn_entries == (TnOne("14085551002"),)
    assert info.public_key == key.public_key()
    assert info.common_name == NUMBER
    assert info.subject.rfc4514_string() == "CN=\\+14085551002"


def test_csr_shape(csr_pem: bytes) -> None:
    assert csr_pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----\n")
    request = x509.load_pem_x509_csr(csr_pem)
    assert isinstance(request.signature_hash_algorithm, hashes.SHA256)
    extension = request.extensions.get_extension_for_oid(TN_AUTH_LIST)
    assert extension.critical is False
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    assert extension.value.value == bytes.fromhex("300fa20d160b3134303835353531303032")


def test_common_name_can_be_chosen(key: ec.EllipticCurvePrivateKey) -> None:
    info = parse_csr(build_csr(key, NUMBER, common_name="Desk phone"))
    assert info.common_name == "Desk phone"
    assert info.tn_entries == (TnOne("14085551002"),)


@pytest.mark.parametrize("bad", ["14085551002", "+0123", "+1408555100299999", "tel:+1408", ""])
def test_build_rejects_bad_numbers(key: ec.EllipticCurvePrivateKey, bad: str) -> None:
    with pytest.raises(CsrError, match=r"not an E\.164 number"):
        build_csr(key, bad)


def test_build_rejects_other_keys() -> None:
    with pytest.raises(CsrError, match="P-256"):
        build_csr(ec.generate_private_key(ec.SECP384R1()), NUMBER)


def test_build_rejects_overlong_common_name(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CsrError, match="bad common name"):
        build_csr(key, NUMBER, common_name="x" * 65)


# --- the real openssl --------------------------------------------------------------------------


def test_openssl_reads_the_csr(tmp_path: Path, csr_pem: bytes) -> None:
    path = tmp_path / "phone.csr"
    path.write_bytes(csr_pem)
    text = _openssl("req", "-in", str(path), "-noout", "-text")
    assert "Requested Extensions:" in text
    assert "1.3.6.1.5.5.7.1.26" in text or "TNAuthList" in text
    assert "14085551002" in text
    assert "ecdsa-with-SHA256" in text
    assert "NIST CURVE: P-256" in text
    assert 'Subject: CN = "+14085551002"' in text or "CN=+14085551002" in text
    assert "verify OK" in _openssl("req", "-in", str(path), "-noout", "-verify")


def test_openssl_asn1parse_of_the_extension(tmp_path: Path, csr_pem: bytes) -> None:
    path = tmp_path / "phone.csr"
    path.write_bytes(csr_pem)
    lines = _openssl("asn1parse", "-in", str(path)).splitlines()
    oid_at = next(i for i, line in enumerate(lines) if "1.3.6.1.5.5.7.1.26" in line)
    octet_line = lines[oid_at + 1]  # extnValue follows extnID (critical=FALSE is omitted)
    assert "OCTET STRING" in octet_line
    offset = octet_line.split(":", 1)[0].strip()
    inner = _openssl("asn1parse", "-in", str(path), "-strparse", offset).splitlines()
    assert [" ".join(line.split(":", 1)[1].split()) for line in inner] == [
        "d=0 hl=2 l= 15 cons: SEQUENCE",
        "d=1 hl=2 l= 13 cons: cont [ 2 ]",
        "d=2 hl=2 l= 11 prim: IA5STRING :14085551002",
    ]


def test_openssl_asn1parse_of_the_vector_der(tmp_path: Path) -> None:
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    for case in doc["tn_auth_list"]:
        path = tmp_path / f"{case['name']}.der"
        path.write_bytes(bytes.fromhex(case["der_hex"]))
        text = _openssl("asn1parse", "-inform", "DER", "-in", str(path))
        assert "SEQUENCE" in text
        for entry in case["entries"]:
            if "one" in entry:
                assert "cont [ 2 ]" in text
                assert f"IA5STRING         :{entry['one']}" in text
            elif "spc" in entry:
                assert "cont [ 0 ]" in text
                assert f"IA5STRING         :{entry['spc']}" in text
            else:
                assert "cont [ 1 ]" in text
                assert f"IA5STRING         :{entry['range']['start']}" in text
                assert f"INTEGER           :{entry['range']['count']:02X}" in text


# --- rejections --------------------------------------------------------------------------------


def test_bad_signature_rejected(csr_pem: bytes) -> None:
    der = bytearray(_der(csr_pem))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s
    with pytest.raises(CsrError, match="signature does not verify"):
        parse_csr(_pem(bytes(der)))


def test_changed_number_breaks_the_signature(csr_pem: bytes) -> None:
    der = _der(csr_pem)
    forged = der.replace(b"\x16\x0b14085551002", b"\x16\x0b14085551003")
    assert forged != der
    with pytest.raises(CsrError, match="signature does not verify"):
        parse_csr(_pem(forged))


def _request(
    key: Any, extensions: list[x509.ExtensionType], algorithm: hashes.SHA256 | hashes.SHA384
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NUMBER)])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def test_csr_without_tnauthlist_rejected(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CsrError, match="no TNAuthList extension"):
        parse_csr(_request(key, [], hashes.SHA256()))


def test_csr_with_malformed_tnauthlist_rejected(key: ec.EllipticCurvePrivateKey) -> None:
    garbage = x509.UnrecognizedExtension(TN_AUTH_LIST, b"\x30\x03\x82\x01\x31")
    with pytest.raises(CsrError, match="malformed TNAuthList"):
        parse_csr(_request(key, [garbage], hashes.SHA256()))


def test_csr_with_other_curve_rejected() -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    ext = x509.UnrecognizedExtension(TN_AUTH_LIST, encode_tn_auth_list([TnOne("1")]))
    with pytest.raises(CsrError, match="EC P-256"):
        parse_csr(_request(other, [ext], hashes.SHA256()))


def test_csr_with_other_hash_rejected(key: ec.EllipticCurvePrivateKey) -> None:
    ext = x509.UnrecognizedExtension(TN_AUTH_LIST, encode_tn_auth_list([TnOne("1")]))
    with pytest.raises(CsrError, match="SHA-256, not sha384"):
        parse_csr(_request(key, [ext], hashes.SHA384()))


def test_csr_may_ask_for_several_entries(key: ec.EllipticCurvePrivateKey) -> None:
    entries: list[TnEntry] = [TnOne("14085551002"), TnRange("14085551000", 10), TnSpc("1234")]
    ext = x509.UnrecognizedExtension(TN_AUTH_LIST, encode_tn_auth_list(entries))
    assert parse_csr(_request(key, [ext], hashes.SHA256())).tn_entries == tuple(entries)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n",
        b"-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_garbage_rejected(text: bytes) -> None:
    with pytest.raises(CsrError, match="not a PEM certificate request"):
        parse_csr(text)


def test_parse_rejects_text_and_huge_input() -> None:
    with pytest.raises(CsrError, match="must be PEM bytes, not str"):
        parse_csr("-----BEGIN")  # type: ignore[arg-type]
    with pytest.raises(CsrError, match="exceeds"):
        parse_csr(b"A" * 70000)


# --- certificates ------------------------------------------------------------------------------


def _certificate(key: ec.EllipticCurvePrivateKey, extension: bytes | None) -> x509.Certificate:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TG")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TG")]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
    )
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(TN_AUTH_LIST, extension), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def test_entries_of_certificate(key: ec.EllipticCurvePrivateKey) -> None:
    entries: list[TnEntry] = [TnOne("14085551000"), TnRange("14085551002", 5)]
    cert = _certificate(key, encode_tn_auth_list(entries))
    assert tn_entries_of_certificate(cert) == entries


def test_certificate_without_tnauthlist(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CsrError, match="certificate has no TNAuthList"):
        tn_entries_of_certificate(_certificate(key, None))


def test_certificate_with_malformed_tnauthlist(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CsrError, match="certificate has a malformed TNAuthList"):
        tn_entries_of_certificate(_certificate(key, b"\x30\x00"))


def test_renewal_due_24_hours_before_not_after(key: ec.EllipticCurvePrivateKey) -> None:
    cert = _certificate(key, None)
    not_after = int(cert.not_valid_after_utc.timestamp())
    assert RENEW_BEFORE_S == 86_400
    assert not renewal_due(cert, not_after - RENEW_BEFORE_S - 1)
    assert renewal_due(cert, not_after - RENEW_BEFORE_S)
    assert renewal_due(cert, not_after + 1)


# --- keys --------------------------------------------------------------------------------------


def test_key_pem_round_trip(key: ec.EllipticCurvePrivateKey) -> None:
    text = key_to_pem(key)
    assert text.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, not encrypted
    again = key_from_pem(text)
    assert again.private_numbers() == key.private_numbers()
    assert isinstance(again.curve, ec.SECP256R1)


def test_key_from_pem_rejections() -> None:
    with pytest.raises(CsrError, match="not an unencrypted PEM private key"):
        key_from_pem(b"nope")
    encrypted = make_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(CsrError, match="not an unencrypted PEM private key"):
        key_from_pem(encrypted)
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CsrError, match="P-256"):
        key_from_pem(other)


def test_key_to_pem_rejects_other_curves() -> None:
    with pytest.raises(CsrError, match="P-256"):
        key_to_pem(ec.generate_private_key(ec.SECP384R1()))


def test_vector_csr_and_key() -> None:
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    key = key_from_pem(doc["phone_private_key_pem"].encode())
    info = parse_csr(doc["csr_pem"].encode())
    assert info.public_key == key.public_key()
    assert info.tn_entries == (TnOne("14085551002"),)
    assert info.common_name == NUMBER


def test_error_is_a_remote_protocol_error() -> None:
    assert issubclass(CsrError, RemoteProtocolError)


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_csr_error(data: bytes) -> None:
    with pytest.raises(CsrError):
        parse_csr(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_der_in_pem_armour_raises_only_csr_error(data: bytes) -> None:
    with pytest.raises(CsrError):
        parse_csr(_pem(data))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_csr_raises_only_csr_error(data: st.DataObject) -> None:
    der = bytearray(_der(_VALID_PEM))
    position = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
    der[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        info = parse_csr(_pem(bytes(der)))
    except CsrError:
        return
    # Accepted only if the signed content and the signature are untouched.
    mutated = x509.load_pem_x509_csr(_pem(bytes(der)))
    original = x509.load_pem_x509_csr(_VALID_PEM)
    assert mutated.tbs_certrequest_bytes == original.tbs_certrequest_bytes
    assert mutated.signature == original.signature
    assert info.tn_entries == (TnOne("14085551002"),)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_key_pem_raises_only_csr_error(data: bytes) -> None:
    with pytest.raises(CsrError):
        key_from_pem(_pem(data, "PRIVATE KEY"))


_numbers = st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(_numbers)
def test_any_e164_number_round_trips(number: str) -> None:
    info = parse_csr(build_csr(_VALID_KEY, number))
    assert info.tn_entries == (TnOne(number[1:]),)
    assert info.common_name == number


_VALID_KEY = make_key()
_VALID_PEM = build_csr(_VALID_KEY, NUMBER)
