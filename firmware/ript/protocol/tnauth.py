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
:func:`decode_tn_auth_list`, built on pyasn1 rather than hand-written ASN.1)
and :func:`covers`, which says whether a list vouches for a number.

Numbers here are always in the canonical form of RFC 8224 §8.3: the digits
of the E.164 number without ``+`` (``"14085551002"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.der import decoder as _der_decoder
from pyasn1.codec.der import encoder as _der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, tag, univ

from ript.protocol.errors import RemoteProtocolError

TN_AUTH_LIST_OID = "1.3.6.1.5.5.7.1.26"
"""``id-pe-TNAuthList`` (``id-pe 26``)."""

TN_MAX_DIGITS = 15
_TN_ALPHABET = frozenset("0123456789#*")
# A TNAuthList sits in a certificate extension; a few KiB is far more than any
# real one, and the cap keeps a hostile blob from costing much to decode.
_MAX_DER_LENGTH = 16384


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


def _context(number: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number)


class _Range(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(  # noqa: N815 (pyasn1's name)
        namedtype.NamedType("start", char.IA5String()),
        namedtype.NamedType("count", univ.Integer()),
    )


class _Entry(univ.Choice):  # type: ignore[misc]
    # EXPLICIT TAGS: each alternative is a constructed [n] wrapping the universal TLV.
    componentType = namedtype.NamedTypes(  # noqa: N815
        namedtype.NamedType("spc", char.IA5String().subtype(explicitTag=_context(0))),
        namedtype.NamedType("range", _Range().subtype(explicitTag=_context(1))),
        namedtype.NamedType("one", char.IA5String().subtype(explicitTag=_context(2))),
    )


class _List(univ.SequenceOf):  # type: ignore[misc]
    componentType = _Entry()  # noqa: N815


def _to_asn1(entries: Iterable[TnEntry]) -> Any:
    value = _List()
    for entry in entries:
        item = _Entry()
        if isinstance(entry, TnOne):
            item["one"] = entry.tn
        elif isinstance(entry, TnSpc):
            item["spc"] = entry.code
        elif isinstance(entry, TnRange):
            item["range"]["start"] = entry.start
            item["range"]["count"] = entry.count
        else:
            raise TnAuthError(f"not a TN entry: {entry!r}")
        value.append(item)
    return value


def encode_tn_auth_list(entries: Iterable[TnEntry]) -> bytes:
    """DER of a TNAuthorizationList holding ``entries`` in order (at least one)."""
    value = _to_asn1(entries)
    if len(value) == 0:
        raise TnAuthError("a TNAuthList must hold at least one entry")
    try:
        return bytes(_der_encoder.encode(value))
    except PyAsn1Error as exc:
        raise TnAuthError(f"cannot DER-encode the TNAuthList: {exc}") from None


def _from_asn1(item: Any, index: int) -> TnEntry:
    name = item.getName()
    component = item.getComponent()
    where = f"TNAuthList entry {index}"
    if name == "one":
        return TnOne(check_tn(str(component), f"{where}: number"))
    if name == "spc":
        return TnSpc(str(component))
    if name == "range":
        count = int(component["count"])
        if count < 2:
            raise TnAuthError(f"{where}: range count {count} is below 2")
        return TnRange(check_tn(str(component["start"]), f"{where}: range start"), count)
    raise TnAuthError(f"{where}: unknown alternative {name!r}")


def _why(exc: Exception) -> str:
    # pyasn1 messages embed whole schema reprs; keep the gist.
    text = str(exc)
    unexpected = re.search(r"tags ([0-9:-]+)> not in asn1Spec", text)
    if unexpected:
        return f"unexpected tag {unexpected.group(1)} (class:form:number, outermost last)"
    gist = text.split(" at <", 1)[0].strip()[:100]
    return f"{type(exc).__name__}: {gist}" if gist else type(exc).__name__


def decode_tn_auth_list(der: bytes | bytearray | memoryview) -> list[TnEntry]:
    """Entries of a DER TNAuthorizationList; raise :class:`TnAuthError` on anything else.

    Only DER is accepted (the encoding must be the one this module would
    produce), and a range carrying components beyond ``start`` and ``count``
    is rejected rather than skipped.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TnAuthError(f"TNAuthList must be bytes, not {type(der).__name__}")
    der = bytes(der)  # pyasn1 wants bytes, and a private copy cannot change under us
    if not der:
        raise TnAuthError("TNAuthList is empty (0 bytes)")
    if len(der) > _MAX_DER_LENGTH:
        raise TnAuthError(f"TNAuthList of {len(der)} bytes exceeds {_MAX_DER_LENGTH}")
    try:
        value, rest = _der_decoder.decode(der, asn1Spec=_List())
        reencoded = bytes(_der_encoder.encode(value))
    except (PyAsn1Error, ValueError, TypeError) as exc:
        raise TnAuthError(f"TNAuthList is not a DER SEQUENCE OF TNEntry ({_why(exc)})") from None
    if rest:
        consumed = len(der) - len(rest)
        raise TnAuthError(f"TNAuthList has {len(rest)} trailing bytes at offset {consumed}")
    if reencoded != der:
        raise TnAuthError("TNAuthList is BER but not DER (non-minimal or non-canonical encoding)")
    if len(value) == 0:
        raise TnAuthError("TNAuthList holds no entry (SIZE (1..MAX))")
    try:
        return [_from_asn1(item, index) for index, item in enumerate(value)]
    except PyAsn1Error as exc:
        raise TnAuthError(f"TNAuthList entry is incomplete ({_why(exc)})") from None


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
