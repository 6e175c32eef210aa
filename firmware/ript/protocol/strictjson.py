"""One strict reader for every small JSON body of the protocol.

Documents, taps and PASSporT claims are read the same way: UTF-8, a size
limit, no ``NaN``/``Infinity``, and no member named twice, because two
parsers that resolve a repeated member differently could read two different
callers (or call URIs) out of one document.  Each caller turns
:class:`JsonBodyError` into its own module's error with its own prefix.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from ript.protocol.varint import Buffer


class JsonBodyError(ValueError):
    """One sentence saying why the bytes are not an acceptable JSON body."""


class _NotJsonError(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _NotJsonError(f"{name} is not a JSON value")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise JsonBodyError(f"member {key!r} appears twice")
        doc[key] = value
    return doc


def json_type_name(value: object) -> str:
    """How an error message names the JSON type of a decoded value ("a string", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def load_json(data: object, *, limit: int, noun: str = "body") -> object:
    """Decode ``data`` (bytes of at most ``limit``); raise :class:`JsonBodyError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise JsonBodyError(f"the {noun} must be bytes, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > limit:
        raise JsonBodyError(f"the {noun} is {len(raw)} bytes, over the limit of {limit}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"the {noun} is not UTF-8 (byte offset {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except JsonBodyError:
        raise
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))
        raise JsonBodyError(f"the {noun} is not JSON: {exc.msg} (byte offset {offset})") from None
    except RecursionError:
        raise JsonBodyError(f"the {noun} nests too deeply") from None
    except _NotJsonError as exc:
        raise JsonBodyError(f"the {noun} is not JSON: {exc}") from None
    except ValueError:  # Python refuses to convert integers of over 4300 digits
        raise JsonBodyError(f"the {noun} holds a number too long to read") from None


__all__ = ["Buffer", "JsonBodyError", "json_type_name", "load_json"]
