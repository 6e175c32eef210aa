"""Error types of the protocol core.

Every parser in ``ript.protocol`` raises only its own subclass of
:class:`RiptProtocolError` on bad input, never a bare ``ValueError``,
``KeyError`` or ``IndexError``: callers catch one type per module and turn it
into one clear line for the user.

As in h11, errors are split by who is at fault: a :class:`LocalProtocolError`
means this program asked for something the protocol does not allow (a bug in
the caller, or a user action that does not fit the call's state); a
:class:`RemoteProtocolError` means the peer sent something that does not fit.
"""

from __future__ import annotations


class RiptProtocolError(ValueError):
    """Base of every error the protocol core raises on bad input."""


class LocalProtocolError(RiptProtocolError):
    """This side tried to do something the protocol or the call's state forbids."""


class RemoteProtocolError(RiptProtocolError):
    """The peer sent something malformed or out of place."""
