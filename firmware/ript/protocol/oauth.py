"""The OAuth documents of the phone's login (profile sections 1-2), read and written the same way
by the phone and the provider.

* RFC 8414 authorization server metadata (``GET /.well-known/ript-oauth``);
* RFC 8628 device authorization request and response;
* RFC 6749 token requests (device-code grant, refresh grant) and responses,
  and the error response of section 5.2.

Requests are ``application/x-www-form-urlencoded`` (:func:`form_encode`,
:func:`form_decode`); responses are JSON read with the one strict reader
(:mod:`ript.protocol.strictjson`).  Unknown members are ignored (profile
section 1).  Every malformed document raises :class:`OAuthError`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ript.protocol.strictjson import JsonBodyError, json_type_name, load_json

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"
SCOPE = "ript"
METADATA_PATH = "/.well-known/ript-oauth"
FORM = "application/x-www-form-urlencoded"
MAX_BODY = 65536
MAX_SECONDS = 2**31 - 1
"""Longest ``expires_in`` or ``interval`` read (68 years): the phone adds them to a float
clock, and an integer of 400 digits would make that addition raise OverflowError."""

POLL_ERRORS = frozenset({"authorization_pending", "slow_down", "access_denied", "expired_token"})
"""Token-endpoint errors that are a step of the device flow (RFC 8628 section 3.5)."""
SLOW_DOWN_S = 5
"""RFC 8628 section 3.5: after ``slow_down`` the interval grows by 5 seconds for good."""
DEFAULT_INTERVAL_S = 5
"""RFC 8628 section 3.2: the polling interval when the response names none."""


class OAuthError(ValueError):
    """An OAuth document or form that cannot be used; one sentence."""


def form_encode(fields: Mapping[str, str]) -> bytes:
    """A form body (``application/x-www-form-urlencoded``), in the order given."""
    return urllib.parse.urlencode(list(fields.items())).encode("ascii")


def form_decode(body: bytes, *, limit: int = MAX_BODY) -> dict[str, str]:
    """A form body as a dict; a repeated or non-UTF-8 field is refused (RFC 6749 section 3.2)."""
    if len(body) > limit:
        raise OAuthError(f"the form is over {limit} bytes")
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError(f"the form is not url-encoded UTF-8: {exc}") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise OAuthError(f"form field {name!r} appears twice")
        fields[name] = value
    return fields


def _object(data: bytes, noun: str) -> dict[str, Any]:
    try:
        doc = load_json(data, limit=MAX_BODY, noun=noun)
    except JsonBodyError as exc:
        raise OAuthError(str(exc)) from None
    if not isinstance(doc, dict):
        raise OAuthError(f"the {noun} must be a JSON object, not {json_type_name(doc)}")
    return doc


def _string(doc: Mapping[str, Any], name: str, noun: str, *, required: bool = True) -> str | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise OAuthError(f"{noun}: {name!r} must be a non-empty string, not {value!r}")
    return value


def _https(doc: Mapping[str, Any], name: str, noun: str, *, required: bool = True) -> str | None:
    value = _string(doc, name, noun, required=required)
    if value is None:
        return None
    problem = f"{noun}: {name!r} must be an https URL, not {value!r}"
    try:
        parsed = urllib.parse.urlsplit(value)
        # Read now what the HTTPS client reads later: a bad IPv6 literal or
        # port raises ValueError there, far from the document that held it.
        hostname, _port = parsed.hostname, parsed.port
    except ValueError:
        raise OAuthError(problem) from None
    if parsed.scheme != "https" or not hostname:
        raise OAuthError(problem)
    return value


def _seconds(doc: Mapping[str, Any], name: str, noun: str, default: int | None) -> int | None:
    value = doc.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
        raise OAuthError(
            f"{noun}: {name!r} must be a whole number of seconds up to {MAX_SECONDS}, not {value!r}"
        )
    return value


def _to_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode("utf-8")


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """RFC 8414 metadata: where the phone logs in (the endpoints may be on another host)."""

    issuer: str
    device_authorization_endpoint: str
    token_endpoint: str

    @staticmethod
    def from_bytes(data: bytes) -> ServerMetadata:
        noun = "OAuth metadata"
        doc = _object(data, noun)
        return ServerMetadata(
            issuer=str(_https(doc, "issuer", noun)),
            device_authorization_endpoint=str(_https(doc, "device_authorization_endpoint", noun)),
            token_endpoint=str(_https(doc, "token_endpoint", noun)),
        )

    def to_bytes(self) -> bytes:
        return _to_bytes(
            {
                "issuer": self.issuer,
                "device_authorization_endpoint": self.device_authorization_endpoint,
                "token_endpoint": self.token_endpoint,
                "grant_types_supported": [DEVICE_CODE_GRANT, REFRESH_GRANT],
                "scopes_supported": [SCOPE],
                "token_endpoint_auth_methods_supported": ["none"],
            }
        )


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """RFC 8628 section 3.2: the codes the phone shows and polls with."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int = DEFAULT_INTERVAL_S

    @property
    def shown_uri(self) -> str:
        """What the QR code carries: the complete URI when there is one."""
        return self.verification_uri_complete or self.verification_uri

    @staticmethod
    def from_bytes(data: bytes) -> DeviceAuthorization:
        noun = "device authorization"
        doc = _object(data, noun)
        expires_in = _seconds(doc, "expires_in", noun, None)
        if expires_in is None:
            raise OAuthError(f"{noun}: 'expires_in' is required")
        interval = _seconds(doc, "interval", noun, DEFAULT_INTERVAL_S)
        complete = _https(doc, "verification_uri_complete", noun, required=False)
        return DeviceAuthorization(
            device_code=str(_string(doc, "device_code", noun)),
            user_code=str(_string(doc, "user_code", noun)),
            verification_uri=str(_https(doc, "verification_uri", noun)),
            verification_uri_complete=complete,
            expires_in=expires_in,
            interval=DEFAULT_INTERVAL_S if interval is None else max(1, interval),
        )

    def to_bytes(self) -> bytes:
        return _to_bytes(
            {
                "device_code": self.device_code,
                "user_code": self.user_code,
                "verification_uri": self.verification_uri,
                "verification_uri_complete": self.verification_uri_complete,
                "expires_in": self.expires_in,
                "interval": self.interval,
            }
        )


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """RFC 6749 section 5.1: a bearer access token, its lifetime, and a refresh token."""

    access_token: str = field(repr=False)
    expires_in: int | None
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    token_type: str = "Bearer"

    @staticmethod
    def from_bytes(data: bytes) -> TokenResponse:
        noun = "token response"
        doc = _object(data, noun)
        token_type = str(_string(doc, "token_type", noun))
        if token_type.lower() != "bearer":
            raise OAuthError(f"{noun}: token_type must be Bearer, not {token_type!r}")
        return TokenResponse(
            access_token=str(_string(doc, "access_token", noun)),
            expires_in=_seconds(doc, "expires_in", noun, None),
            refresh_token=_string(doc, "refresh_token", noun, required=False),
            scope=_string(doc, "scope", noun, required=False),
            token_type="Bearer",
        )

    def to_bytes(self) -> bytes:
        return _to_bytes(
            {
                "access_token": self.access_token,
                "token_type": self.token_type,
                "expires_in": self.expires_in,
                "refresh_token": self.refresh_token,
                "scope": self.scope,
            }
        )


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """RFC 6749 section 5.2 (and RFC 8628 section 3.5): ``error`` and an optional description."""

    error: str
    description: str | None = None

    @staticmethod
    def from_bytes(data: bytes) -> ErrorResponse:
        noun = "OAuth error response"
        doc = _object(data, noun)
        return ErrorResponse(
            error=str(_string(doc, "error", noun)),
            description=_string(doc, "error_description", noun, required=False),
        )

    def to_bytes(self) -> bytes:
        return _to_bytes({"error": self.error, "error_description": self.description})
