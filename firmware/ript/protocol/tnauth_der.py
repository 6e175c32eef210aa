"""The DER codec of RFC 8226's TNAuthList, on pyasn1 (see :mod:`ript.protocol.tnauth`).

Apart from :mod:`ript.protocol.tnauth` so that pyasn1 (about 1.2 MB of memory
once imported) is loaded only when a list is encoded or decoded; use
:func:`~ript.protocol.tnauth.encode_tn_auth_list` and
:func:`~ript.protocol.tnauth.decode_tn_auth_list`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pyasn1.codec.der import decoder as _der_decoder
from pyasn1.codec.der import encoder as _der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, tag, univ

from ript.protocol.tnauth import TnAuthError, TnEntry, TnOne, TnRange, TnSpc, check_tn

# A TNAuthList sits in a certificate extension; a few KiB is far more than any
# real one, and the cap keeps a hostile blob from costing much to decode.
_MAX_DER_LENGTH = 16384


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


def encode(entries: Iterable[TnEntry]) -> bytes:
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


def decode(der: bytes | bytearray | memoryview) -> list[TnEntry]:
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
