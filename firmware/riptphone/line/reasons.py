"""Why the phone is not ready, in a few plain words that fit its screen.

The errors of coming online and logging in (:class:`RiptError` over HTTP/3,
:class:`HttpsError` over HTTPS, malformed documents, a missing number) carry
long sentences with URLs in them: right for the log, useless on a 128x64
display that cuts them off before the cause.  :func:`plain_reason` maps each
to one of a handful of short reasons; the caller logs the whole sentence
beside it.
"""

from __future__ import annotations

import errno
import socket

from ript.protocol.numbers import NumberError
from ript.protocol.oauth import OAuthError
from riptphone.net.h3 import ConnectionLostError, TLSVerificationError, TrustConfigError
from riptphone.net.https import HttpsError
from riptphone.net.ript_client import NoTrunkGroupError, RiptError
from riptphone.store import StoreError

NO_NETWORK = "no network"
UNREACHABLE = "provider unreachable"
NOT_FOUND = "provider not found"
NOT_TRUSTED = "provider not trusted"
PROVIDER_ERROR = "provider error"
LOGIN_REFUSED = "login refused"
NOT_ALLOWED = "refused by provider"
NO_LINE = "account has no line"
NO_NUMBER = "no phone number"
BAD_NUMBER = "bad phone number"
STORAGE = "cannot save state"

REASONS = (
    NO_NETWORK,
    UNREACHABLE,
    NOT_FOUND,
    NOT_TRUSTED,
    PROVIDER_ERROR,
    LOGIN_REFUSED,
    NOT_ALLOWED,
    NO_LINE,
    NO_NUMBER,
    BAD_NUMBER,
    STORAGE,
)
"""Every short reason; each fits one line of the small font (21 characters)."""

_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EIO})
_NO_NETWORK_ERRNOS = frozenset({errno.ENETUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL})
# getaddrinfo's "try again": no name server answered, which on a phone means no network.
_DNS_AGAIN = "Temporary failure in name resolution"


def plain_reason(exc: BaseException) -> str:
    """The short reason for ``exc`` (one of :data:`REASONS`)."""
    if isinstance(exc, HttpsError):
        return _https(exc)
    if isinstance(exc, NoTrunkGroupError):
        return NO_LINE
    if isinstance(exc, RiptError):
        return _ript(exc)
    if isinstance(exc, NumberError):
        return BAD_NUMBER
    if isinstance(exc, OAuthError):
        return PROVIDER_ERROR
    if isinstance(exc, StoreError) or (isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS):
        return STORAGE
    if isinstance(exc, OSError):
        return _os(exc)
    if isinstance(exc, ValueError) and "no number" in str(exc):
        return NO_NUMBER
    return PROVIDER_ERROR


def _https(exc: HttpsError) -> str:
    message = str(exc)
    if exc.kind == "dns":
        return NO_NETWORK if _DNS_AGAIN in message else NOT_FOUND
    if exc.kind == "tls":
        return NOT_TRUSTED
    if exc.kind == "connect":
        return NO_NETWORK if "unreachable" in message.lower() else UNREACHABLE
    if exc.kind == "timeout":
        return UNREACHABLE
    return PROVIDER_ERROR


def _ript(exc: RiptError) -> str:
    status = exc.status
    if status == 401:
        return LOGIN_REFUSED
    if status == 403:
        return NOT_ALLOWED
    if status is not None:
        return PROVIDER_ERROR
    cause = exc.__cause__
    if isinstance(cause, HttpsError):  # a refresh at the token endpoint failed
        return _https(cause)
    if isinstance(cause, TLSVerificationError | TrustConfigError):
        return NOT_TRUSTED
    if isinstance(cause, ConnectionLostError):
        reason = cause.reason
        if "cannot resolve host" in reason:
            return NO_NETWORK if _DNS_AGAIN in reason else NOT_FOUND
        if "unreachable" in reason.lower():
            return NO_NETWORK
        return UNREACHABLE
    if isinstance(cause, OSError):
        return _os(cause)
    return UNREACHABLE if cause is not None else PROVIDER_ERROR


def _os(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return NO_NETWORK if exc.errno == socket.EAI_AGAIN else NOT_FOUND
    if exc.errno in _NO_NETWORK_ERRNOS:
        return NO_NETWORK
    return UNREACHABLE
