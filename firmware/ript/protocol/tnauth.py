"""The TNAuthList certificate extension of RFC 8226 (which numbers a cert speaks for).

A STIR certificate names the telephone numbers its key may sign PASSporTs
for in the extension ``id-pe-TNAuthList`` (OID 1.3.6.1.5.5.7.1.26), whose
value is the DER of (RFC 8226 §9; its ASN.1 module uses EXPLICIT TAGS)::

    TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
    TNEntry ::= CHOICE {
      spc   [0] ServiceProviderCode,
      range [1] TelephoneNumberRange,
      one   [2] TelephoneNumber }
    ServiceProviderCode ::= IA5String
    TelephoneNumberRange ::= SEQUENCE { start TelephoneNumber, count INTEGER (2..MAX), ... }
    TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*"))

This module holds the three entry kinds as values (:class:`TnOne`,
:class:`TnRange`, :class:`TnSpc`), their DER codec (:func:`encode_tn_auth_list`,
:func:`decode_tn_auth_list`, built on pyasn1 rather than hand-written ASN.1,
in :mod:`ript.protocol.tnauth_der`) and :func:`covers`, which says whether a
list vouches for a number.

pyasn1 is imported only when a DER list is encoded or decoded (enrolment,
checking a certificate): it costs about 1.2 MB of memory, and a phone that
has its certificate, and signs its PASSporTs with it, needs only the values
and :func:`tn_from_e164` (docs/performance.md, "the phone's memory in a call").

Numbers here are always in the canonical form of RFC 8224 §8.3: the digits
of the E.164 number without ``+`` (``"14085551002"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ript.protocol.errors import RemoteProtocolError

TN_AUTH_LIST_OID = "1.3.6.1.5.5.7.1.26"
"""``id-pe-TNAuthList`` (``id-pe 26``)."""

TN_MAX_DIGITS = 15
_TN_ALPHABET = frozenset("0123456789#*")


class TnAuthError(RemoteProtocolError):
    """A TNAuthList (or one of its entries) is malformed."""


def check_tn(tn: str, what: str = "telephone number") -> str:
    """Return ``tn`` if it is a valid RFC 8226 TelephoneNumber, else raise :class:`TnAuthError`."""
    if not isinstance(tn, str):
        raise TnAuthError(f"{what} must be a string, not {type(tn).__name__}")
    if not 1 <= len(tn) <= TN_MAX_DIGITS or not set(tn) <= _TN_ALPHABET:
        raise TnAuthError(
            f"{what} {tn!r} must be 1 to {TN_MAX_DIGITS} characters of 0-9, # and * (no '+')"
        )
    return tn


def tn_from_e164(e164: str) -> str:
    """Canonical form of an E.164 number: ``"+14085551002"`` -> ``"14085551002"``."""
    if (
        not isinstance(e164, str)
        or not 2 <= len(e164) <= TN_MAX_DIGITS + 1
        or e164[0] != "+"
        or not e164[1:].isascii()
        or not e164[1:].isdigit()
        or e164[1] == "0"
    ):
        raise TnAuthError(
            f"{e164!r} is not an E.164 number ('+', then 1 to {TN_MAX_DIGITS} digits, not 0 first)"
        )
    return e164[1:]


@dataclass(frozen=True, slots=True)
class TnOne:
    """``one [2] TelephoneNumber``: a single number."""

    tn: str

    def __post_init__(self) -> None:
        check_tn(self.tn)


@dataclass(frozen=True, slots=True)
class TnRange:
    """``range [1]``: ``count`` numbers of the same length from ``start`` upwards."""

    start: str
    count: int

    def __post_init__(self) -> None:
        check_tn(self.start, "range start")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 2:
            raise TnAuthError(f"range count must be an integer of at least 2, not {self.count!r}")


@dataclass(frozen=True, slots=True)
class TnSpc:
    """``spc [0] ServiceProviderCode``: a carrier identifier, not a number."""

    code: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code.isascii():
            raise TnAuthError(f"service provider code {self.code!r} must be an ASCII string")


TnEntry = TnOne | TnRange | TnSpc


def encode_tn_auth_list(entries: Iterable[TnEntry]) -> bytes:
    """DER of a TNAuthorizationList holding ``entries`` in order (at least one)."""
    from ript.protocol import tnauth_der  # noqa: PLC0415 (pyasn1 only when DER is needed)

    return tnauth_der.encode(entries)


def decode_tn_auth_list(der: bytes | bytearray | memoryview) -> list[TnEntry]:
    """Entries of a DER TNAuthorizationList; raise :class:`TnAuthError` on anything else.

    Only DER is accepted (the encoding must be the one this module would
    produce), and a range carrying components beyond ``start`` and ``count``
    is rejected rather than skipped.
    """
    from ript.protocol import tnauth_der  # noqa: PLC0415

    return tnauth_der.decode(der)


def _range_covers(entry: TnRange, tn: str) -> bool:
    # Ranges count in decimal within one number length: 1408555999x + 5 does not
    # spill into 12-digit numbers.  A start with # or * has no arithmetic.
    if len(tn) != len(entry.start) or not (tn.isdigit() and entry.start.isdigit()):
        return False
    first = int(entry.start)
    return first <= int(tn) < first + entry.count


def covers(entries: Iterable[TnEntry], tn: str) -> bool:
    """True if some entry vouches for ``tn`` (canonical digits, no ``+``).

    A ``one`` entry covers its number; a ``range`` covers ``start`` ..
    ``start + count - 1`` among numbers of the same length as ``start``; an
    ``spc`` entry names a carrier and covers no number.
    """
    check_tn(tn)
    for entry in entries:
        if isinstance(entry, TnOne) and entry.tn == tn:
            return True
        if isinstance(entry, TnRange) and _range_covers(entry, tn):
            return True
    return False
