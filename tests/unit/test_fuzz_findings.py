"""Regression tests of the fuzzing's findings (docs/fuzzing.md): each input once let an
exception other than the parser's own error escape; now the parser refuses it with its own."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import wave
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ript.protocol.oauth import DeviceAuthorization, OAuthError, ServerMetadata, TokenResponse
from riptphone.config import ConfigError, load_config
from riptphone.control.client import format_event, format_status
from riptphone.line.tokens import tokens_from
from riptphone.net.h3 import TrustConfigError
from riptphone.net.h3 import _load_ca_file as load_ca_file
from riptphone.store import IDENTITY, Identity, RecordError, StateStore
from riptprovider.config import ProviderConfigError
from riptprovider.config import load_config as load_provider_config
from riptprovider.db import DbError, ProviderDb
from riptprovider.far_end_audio import FarEndAudioError, file_frames, load_wav
from riptprovider.tls import CaError, load_or_create_ca

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _metadata(issuer: str) -> bytes:
    return json.dumps(
        {
            "issuer": issuer,
            "device_authorization_endpoint": "https://p.example/oauth/device",
            "token_endpoint": "https://p.example/oauth/token",
        }
    ).encode()


@pytest.mark.parametrize(
    "uri",
    [
        "https://p.exam[]ple",
        "https://[::1",
        "https://[zz]/x",
        "https://p.example:99999/",
        "https://p.example:x/",
    ],
)
def test_oauth_metadata_with_a_bad_host_or_port_is_an_oauth_error(uri: str) -> None:
    with pytest.raises(OAuthError, match="'issuer' must be an https URL"):
        ServerMetadata.from_bytes(_metadata(uri))


def test_oauth_device_authorization_with_a_bad_verification_uri_is_an_oauth_error() -> None:
    body = json.dumps(
        {
            "device_code": "d",
            "user_code": "U",
            "verification_uri": "https://[p.example/device",
            "expires_in": 600,
        }
    ).encode()
    with pytest.raises(OAuthError, match="'verification_uri' must be an https URL"):
        DeviceAuthorization.from_bytes(body)


@pytest.mark.parametrize("member", ["expires_in", "interval"])
def test_a_device_authorization_with_seconds_past_any_clock_is_an_oauth_error(member: str) -> None:
    doc = {
        "device_code": "d",
        "user_code": "U",
        "verification_uri": "https://p.example/device",
        "expires_in": 600,
        "interval": 5,
    }
    doc[member] = 10**400  # was accepted, then now + expires_in raised OverflowError
    with pytest.raises(OAuthError, match=f"'{member}' must be a whole number of seconds up to"):
        DeviceAuthorization.from_bytes(json.dumps(doc).encode())


def test_a_token_response_with_a_lifetime_past_any_clock_is_an_oauth_error() -> None:
    body = json.dumps({"access_token": "a", "token_type": "Bearer", "expires_in": 10**400})
    with pytest.raises(OAuthError, match="'expires_in' must be a whole number of seconds up to"):
        TokenResponse.from_bytes(body.encode())


def test_the_longest_lifetime_read_still_makes_stored_tokens() -> None:
    body = json.dumps({"access_token": "a", "token_type": "Bearer", "expires_in": 2**31 - 1})
    tokens = tokens_from(TokenResponse.from_bytes(body.encode()), 1_800_000_000.0)
    assert tokens.expires_at == 1_800_000_000.0 + 2**31 - 1


# --------------------------------------------------------------------------- configuration files


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[phone]\nstate_dir = "~nobody-ript-fuzz/x"\n', r"\[phone\] state_dir: cannot expand ~"),
        ('[provider]\nca_file = "a\\u0000b"\n', r"\[provider\] ca_file: a path cannot hold a NUL"),
        ('[phone]\nboot_file = "~nobody-ript-fuzz/b"\n', r"\[phone\] boot_file: cannot expand ~"),
        ('[phone]\ncontrol_socket = "s\\u0000"\n', r"\[phone\] control_socket: a path cannot"),
    ],
)
def test_a_phone_config_path_that_cannot_be_a_path_is_a_config_error(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "phone.toml"
    body = toml if toml.startswith("[provider]") else '[provider]\ndomain = "p.example"\n' + toml
    if toml.startswith("[provider]"):
        body = toml.replace("[provider]\n", '[provider]\ndomain = "p.example"\n')
    path.write_text(body)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ('state_dir = "s\\u0000"', r"\[server\] state_dir: 's\\x00' is not a usable path"),
        (
            'state_dir = "~nobody-ript-fuzz/s"',
            r"\[server\] state_dir: '~nobody-ript-fuzz/s' is not",
        ),
    ],
)
def test_a_provider_state_dir_that_cannot_be_a_path_is_a_config_error(
    tmp_path: Path, server: str, message: str
) -> None:
    path = tmp_path / "provider.toml"
    path.write_text(f'[server]\n{server}\n[accounts.a]\nnumbers = ["+14085551002"]\n')
    with pytest.raises(ProviderConfigError, match=message):
        load_provider_config(path)


def test_a_provider_push_file_that_cannot_be_a_path_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "provider.toml"
    path.write_text(
        '[server]\nstate_dir = "s"\n[push]\nbroker = "spawn"\nmosquitto = "~nobody-ript-fuzz/m"\n'
        '[accounts.a]\nnumbers = ["+14085551002"]\n'
    )
    with pytest.raises(ProviderConfigError, match=r"\[push\] mosquitto: .* is not a usable path"):
        load_provider_config(path)


# --------------------------------------------------------------------------- state files


def _p256_pem_with_curve_byte(last: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    oid = bytes.fromhex("2a8648ce3d030107")  # 1.2.840.10045.3.1.7, P-256
    at = der.index(oid)
    der[at + len(oid) - 1] = last
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"


def _version_4_certificate() -> str:
    """The vectors' leaf with its version field set to 3 (X.509 v4, which does not exist)."""
    chain = json.loads((VECTORS / "passport.json").read_text())["chain_pem"]
    pem = chain.split("-----END CERTIFICATE-----")[0]
    der = bytearray(base64.b64decode("".join(pem.splitlines()[1:])))
    at = der.index(bytes([0xA0, 0x03, 0x02, 0x01, 0x02]))  # [0] EXPLICIT INTEGER 2 (v3)
    der[at + 4] = 3
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def test_an_identity_key_on_an_unknown_curve_is_a_record_error() -> None:
    record = {"key_pem": _p256_pem_with_curve_byte(0x55), "cert_chain_pem": None, "cert_uri": None}
    with pytest.raises(RecordError, match="'key_pem' is not an unencrypted PEM private key"):
        Identity.from_json(record)


def test_an_identity_chain_of_an_unknown_x509_version_is_a_record_error() -> None:
    key = _p256_pem_with_curve_byte(0x07)  # unchanged: a good P-256 key
    record = {"key_pem": key, "cert_chain_pem": _version_4_certificate(), "cert_uri": None}
    with pytest.raises(RecordError, match="'cert_chain_pem' is not a PEM certificate chain"):
        Identity.from_json(record)


def test_a_damaged_identity_record_loads_as_damaged_not_as_a_crash(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    key = _p256_pem_with_curve_byte(0x55)
    store.save(IDENTITY, {"key_pem": key, "cert_chain_pem": None, "cert_uri": None}, secret=True)
    loaded = store.load_identity()
    assert loaded.data is None
    assert loaded.problem is not None and "'key_pem'" in loaded.problem


def test_a_phone_ca_file_of_an_unknown_x509_version_is_a_trust_config_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ca.pem"
    path.write_text(_version_4_certificate())
    with pytest.raises(TrustConfigError, match="holds no PEM certificate"):
        load_ca_file(path)


def test_a_provider_ca_of_an_unknown_x509_version_is_a_ca_error(tmp_path: Path) -> None:
    load_or_create_ca(tmp_path)
    (tmp_path / "tls" / "ca.pem").write_text(_version_4_certificate())
    with pytest.raises(CaError, match=r"the provider CA in .* is unusable"):
        load_or_create_ca(tmp_path)


def test_a_damaged_provider_server_certificate_is_issued_again(tmp_path: Path) -> None:
    ca = load_or_create_ca(tmp_path)
    ca.server_cert_file.write_text(_version_4_certificate())
    again = load_or_create_ca(tmp_path)
    cert = x509.load_pem_x509_certificate(again.server_cert_file.read_bytes())
    assert cert.issuer == again.ca_cert.subject


# --------------------------------------------------------------------------- far-end audio files


def test_a_wav_whose_chunk_runs_past_the_file_is_a_far_end_audio_error(tmp_path: Path) -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(640))
    data = bytearray(out.getvalue())
    # A chunk before "data" that claims more bytes than the file holds: wave seeks past
    # the end and raises a bare RuntimeError.
    data[12:12] = b"LIST" + (100_000).to_bytes(4, "little") + b"junk"
    path = tmp_path / "far.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(FarEndAudioError, match="cannot read the WAV file: a chunk is cut short"):
        load_wav(str(path), 8000)
    assert file_frames(path, 8000)() == bytes(320)  # the far end plays silence


# --------------------------------------------------------------------------- the provider's CA


def _ca_der(state: Path) -> bytearray:
    pem = (state / "tls" / "ca.pem").read_text()
    return bytearray(base64.b64decode("".join(pem.strip().splitlines()[1:-1])))


def _write_ca_der(state: Path, der: bytes) -> None:
    body = base64.encodebytes(der).decode()
    (state / "tls" / "ca.pem").write_text(
        f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
    )
    (state / "tls" / "server.pem").unlink()  # so that a restart issues it from the CA


def test_a_provider_ca_with_a_damaged_subject_is_a_ca_error(tmp_path: Path) -> None:
    load_or_create_ca(tmp_path)
    der = _ca_der(tmp_path)
    name = b"ript reference provider CA"
    subject = der.index(name, der.index(name) + 1)  # issuer first, then the subject
    der[subject] = 0xFF  # not UTF-8: cryptography finds out only when issuing reads it
    _write_ca_der(tmp_path, bytes(der))
    with pytest.raises(CaError, match=r"the provider CA in .* is unusable"):
        load_or_create_ca(tmp_path)


def test_a_provider_ca_whose_name_is_a_bit_string_is_a_ca_error(tmp_path: Path) -> None:
    load_or_create_ca(tmp_path)
    der = _ca_der(tmp_path)
    name = b"ript reference provider CA"
    subject = der.index(name, der.index(name) + 1)
    der[subject - 2] = 0x03  # UTF8String -> BIT STRING: cryptography raises TypeError
    _write_ca_der(tmp_path, bytes(der))
    with pytest.raises(CaError, match="X500_UNIQUE_IDENTIFIER"):
        load_or_create_ca(tmp_path)


def test_a_provider_ca_with_a_repeated_extension_is_a_ca_error(tmp_path: Path) -> None:
    load_or_create_ca(tmp_path)
    der = _ca_der(tmp_path)
    key_usage = der.index(bytes.fromhex("0603551d0f"))  # OID 2.5.29.15
    der[key_usage + 4] = 0x0E  # now a second 2.5.29.14 (subject key identifier)
    _write_ca_der(tmp_path, bytes(der))
    with pytest.raises(CaError, match="Duplicate"):
        load_or_create_ca(tmp_path)


def test_a_provider_ca_key_that_is_not_the_certificates_is_a_ca_error(tmp_path: Path) -> None:
    load_or_create_ca(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "tls" / "ca.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(CaError, match="the CA key is not the CA certificate's key"):
        load_or_create_ca(tmp_path)


# --------------------------------------------------------------------------- provider database

_HANDLER = (
    "https://p.example/tgs/a/handlers/1",
    "a",
    "0b1f3c0e-7a51-4d8e-9a3f-2d6c1e5b7a90",
    "Desk",
    "1 in: PCMU;\n1 out: PCMU;",
    '{"broker": "mqtts://b.example:8883", "topic": "ript/v1/h/1"}',
    1.0,
)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (5, "1.5", "push: not a JSON object"),  # was TypeError: 'float' is not subscriptable
        (5, '{"broker": "mqtts://b.example"}', "push: not a JSON object"),  # was KeyError
        (2, b"0b1f3c0e-7a51-4d8e-9a3f-2d6c1e5b7a90", "handler_id holds bytes"),  # TypeError
    ],
)
def test_a_damaged_handler_row_is_a_db_error(
    tmp_path: Path, column: int, value: object, message: str
) -> None:
    path = tmp_path / "provider.db"
    ProviderDb(path).close()
    row = list(_HANDLER)
    row[column] = value
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO handlers (uri, account, handler_id, name, advertisement, push, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
    db = ProviderDb(path)
    try:
        with pytest.raises(DbError, match=message):
            db.load_handlers()
    finally:
        db.close()


def test_a_call_row_whose_old_legs_are_a_blob_is_a_db_error(tmp_path: Path) -> None:
    path = tmp_path / "provider.db"
    ProviderDb(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO calls (uri, account, direction, from_number, to_number, state, "
            "created, state_since, old_legs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("https://p.example/calls/1", "a", "outbound", "+1", "+2", "answered", 1, 1, b"l"),
        )
    db = ProviderDb(path)
    try:
        # A blob keeps its type in a TEXT column; its legs came back as bytes, which no
        # ript-leg cookie (a str) ever equals: the call's media refused for no visible reason.
        with pytest.raises(DbError, match="old_legs holds bytes"):
            db.load_legs()
    finally:
        db.close()


def test_a_call_row_with_a_key_but_no_tag_length_is_a_db_error(tmp_path: Path) -> None:
    path = tmp_path / "provider.db"
    ProviderDb(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO calls (uri, account, direction, from_number, to_number, state, "
            "media_key, media_salt, media_tag_length, created, state_since) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "https://p.example/calls/1",
                "a",
                "outbound",
                "+1",
                "+2",
                "answered",
                bytes(16),
                bytes(12),
                None,
                1.0,
                1.0,
            ),
        )
    db = ProviderDb(path)
    try:
        # Was TypeError: '<=' not supported between 'int' and 'NoneType' (MediaKey).
        with pytest.raises(DbError, match="'tag-length' must be 4 to 16"):
            db.load_open_calls()
    finally:
        db.close()


def test_a_call_row_with_a_tag_length_of_text_is_a_db_error(tmp_path: Path) -> None:
    path = tmp_path / "provider.db"
    ProviderDb(path).close()
    row = (
        "https://p.example/calls/1", "a", "outbound", "+14085551002", "+14085551003", "answered",
        None, None, None, bytes(16), bytes(12), "eight", 1.0, 1.0, None,
    )  # fmt: skip
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO calls (uri, account, direction, from_number, to_number, state, "
            "handler, client_directives, server_directives, media_key, media_salt, "
            "media_tag_length, created, state_since, ended) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
    db = ProviderDb(path)
    try:
        with pytest.raises(DbError, match="media_tag_length holds str"):
            db.load_open_calls()  # was TypeError: '<=' not supported between int and str
    finally:
        db.close()


# --------------------------------------------------------------------------- control socket lines


@pytest.mark.parametrize("call", ["state", 7, ["a"]])
def test_a_watch_or_status_line_whose_call_is_not_an_object_is_printed(call: object) -> None:
    # Was AttributeError: 'str' object has no attribute 'get', a traceback from the CLI.
    assert format_event({"event": "call", "call": call}).endswith(f"call {call}")
    assert f"call:       {call}" in format_status({"state": "idle", "call": call})


def test_a_boot_file_name_too_long_for_the_file_system_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "phone.toml"
    name = "b" * 300  # over NAME_MAX (255): is_file() raises ENAMETOOLONG instead of False
    path.write_text(f'[provider]\ndomain = "p.example"\n[phone]\nboot_file = "{name}"\n')
    with pytest.raises(ConfigError, match="cannot read the boot file: File name too long"):
        load_config(path)
