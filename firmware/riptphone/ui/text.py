"""The screens as short text lines, and the wording both renderers share.

:func:`lines` turns a :mod:`~riptphone.ui.model` screen into a few lines of at
most :data:`LINE_WIDTH` characters: the control socket's ``screen`` field
(profile section 11) and the virtual handset's text display.  The OLED
renderer (:mod:`riptphone.ui.render`) uses the helpers here for the same words
(titles, hints, number grouping), so both displays say the same thing.

Everything is pure: no clock is read (screens carry their own ``clock``) and
any string, however long or odd, gives lines within the width.
"""

from __future__ import annotations

import textwrap
import unicodedata
from typing import assert_never

import phonenumbers

from ript.protocol.numbers import country_code_of, is_e164
from riptphone.ui.model import (
    Boot,
    Calling,
    CallSummary,
    Dialling,
    Error,
    Idle,
    InCall,
    NotConnected,
    NotProvisioned,
    RemoteInUse,
    Resetting,
    Ringing,
    Screen,
)

LINE_WIDTH = 21
"""Characters per line: the OLED's width (128 px) in its small font."""

ELLIPSIS = "…"

# How the national part of a number is grouped, by its length: digits are read
# in blocks of 3-4, and a block of 1 is never left at the end.
_GROUPS: dict[int, tuple[int, ...]] = {
    5: (2, 3),
    6: (3, 3),
    7: (3, 4),
    8: (4, 4),
    9: (3, 3, 3),
    10: (2, 4, 4),
    11: (3, 4, 4),
    12: (4, 4, 4),
    13: (3, 3, 3, 4),
    14: (2, 4, 4, 4),
}


def clean(text: str) -> str:
    """``text`` on one line: control, format and combining characters dropped, spaces collapsed.

    Caller names come from the network: a newline, a right-to-left override or
    a stack of combining marks must not wreck the layout.
    """
    text = unicodedata.normalize("NFC", text)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Zs", "Zl", "Zp") or char in "\t\n\r\v\f":
            kept.append(" ")
        elif category[0] in "CM":
            continue
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


def ascii_only(text: str) -> str:
    """``text`` in printable ASCII (accents dropped, anything else ``?``): the last resort."""
    decomposed = unicodedata.normalize("NFKD", clean(text))
    out = []
    for char in decomposed:
        if unicodedata.category(char)[0] == "M":
            continue
        out.append(char if " " <= char <= "~" else "?")
    return "".join(out)


def format_number(number: str) -> str:
    """An E.164 number as its country writes it (``+44 7911 123456``); anything else cleaned.

    libphonenumber (``phonenumbers``) knows each country's groups; its dashes
    become spaces (``+1 408 555 1002``), one separator on every screen.  A
    number it does not know (a test range, a new plan) is grouped by length.
    """
    if not is_e164(number):
        return clean(number)
    known = _libphonenumber(number)
    if known is not None:
        return known
    code = country_code_of(number)
    national = number[1 + len(code) :]
    if code == "1" and len(national) == 10:
        groups: tuple[int, ...] = (3, 3, 4)
    else:
        groups = _GROUPS.get(len(national), (len(national),))
    parts = [f"+{code}"]
    at = 0
    for size in groups:
        if national[at : at + size]:
            parts.append(national[at : at + size])
        at += size
    return " ".join(parts)


def _libphonenumber(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    shown = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    shown = " ".join(shown.replace("-", " ").split())
    # Only digits and spaces, every digit kept: anything else (an extension) is not shown.
    return shown if shown.replace(" ", "") == number else None


def shorten_end(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with ``…`` at the end (names, messages)."""
    return text if len(text) <= width else text[: width - 1].rstrip() + ELLIPSIS


def shorten_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with ``…`` in the middle (numbers, URIs).

    Both ends of a number identify it: the country code and the last digits.
    """
    if len(text) <= width:
        return text
    head = width // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def shorten_start(text: str, width: int) -> str:
    """The last ``width - 1`` characters after ``…``: digits as typed, newest kept."""
    return text if len(text) <= width else ELLIPSIS + text[-(width - 1) :]


def number_line(number: str, width: int = LINE_WIDTH) -> str:
    """A number on one line: grouped if that fits, else bare, else cut in the middle."""
    grouped = format_number(number)
    if len(grouped) <= width:
        return grouped
    return shorten_middle(clean(number).replace(" ", ""), width)


def timer(seconds: int) -> str:
    """Talk time as ``mm:ss``, or ``h:mm:ss`` from one hour on."""
    seconds = max(0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def wrap(text: str, width: int, max_lines: int) -> list[str]:
    """``text`` wrapped on words into at most ``max_lines`` lines, the last cut with ``…``."""
    wrapped = textwrap.wrap(clean(text), width, break_long_words=True, break_on_hyphens=False)
    if len(wrapped) > max_lines:
        rest = " ".join(wrapped[max_lines - 1 :])
        wrapped = [*wrapped[: max_lines - 1], shorten_end(rest, width)]
    return wrapped


def offline_title(screen: NotConnected) -> str:
    """The not-connected screen's title: still trying or waiting."""
    return "Registering…" if screen.registering else "Offline"


def retry_hint(screen: NotConnected) -> str | None:
    """When the next attempt is due, if known."""
    if screen.retry_in_s is None:
        return None
    return (
        f"retry in {screen.retry_in_s} s"
        if screen.retry_in_s < 120
        else (f"retry in {screen.retry_in_s // 60} min")
    )


def idle_status(screen: Idle) -> str:
    """Registration and push in words: ``registered, push up``."""
    line = "registered" if screen.registered else "not registered"
    if screen.push != "none":
        line += f", push {screen.push}"
    return line


def missed_hint(missed: int) -> str:
    """``1 missed call`` / ``3 missed calls``."""
    return f"{missed} missed call" + ("" if missed == 1 else "s")


def dialling_hint(screen: Dialling) -> str:
    """What to do next while dialling."""
    return "type a number" if not screen.typed else "# to dial"


def calling_title(screen: Calling) -> str:
    """``Calling…`` until the far end rings."""
    return "Ringing…" if screen.alerting else "Calling…"


def ringing_title(screen: Ringing) -> str:
    """Inbound call, or a 3PCC call waiting to be placed from this phone."""
    return "Call to place" if screen.outbound else "Incoming call"


def ringing_hint(screen: Ringing) -> str:
    """What lifting the handset does."""
    return "lift to call" if screen.outbound else "lift to answer"


def remote_title(screen: RemoteInUse) -> str:
    """Where the call is."""
    return (
        f"On {clean(screen.device)}"
        if screen.device and clean(screen.device)
        else "In use elsewhere"
    )


PULL_HINT = "PULL: take it here"
CALLING_HINT = "hang up to cancel"
QR_HINT = "Scan to set up"
RESET_TITLE = "Factory reset…"
RESET_HINT = "forgetting the login"
NO_AUDIO_DEVICE = "no audio device"


def expires_hint(expires_in_s: int | None) -> str | None:
    """How long the user code is good for."""
    if expires_in_s is None:
        return None
    if expires_in_s < 120:
        return f"expires in {max(0, expires_in_s)} s"
    return f"expires in {expires_in_s // 60} min"


def _peer(peer: str, peer_name: str | None) -> list[str]:
    name = clean(peer_name or "")
    out = [shorten_end(name, LINE_WIDTH)] if name else []
    number = number_line(peer)
    if number:
        out.append(number)
    return out or ["unknown"]


def lines(screen: Screen) -> list[str]:
    """The screen as non-empty lines of at most :data:`LINE_WIDTH` characters."""
    out = [shorten_end(line.strip(), LINE_WIDTH).strip() for line in _lines(screen)]
    return [line for line in out if line] or ["?"]


def _lines(screen: Screen) -> list[str]:
    match screen:
        case Boot():
            return [
                "ript-phone",
                shorten_end(clean(screen.version), LINE_WIDTH),
                shorten_end(clean(screen.detail) or "starting…", LINE_WIDTH),
            ]
        case NotProvisioned():
            # The whole URL, cut into lines: a user of the text display must be
            # able to type it, so nothing may be left out.
            url = clean(screen.url).replace(" ", "")
            return [
                "Not set up. Visit",
                *[url[i : i + LINE_WIDTH] for i in range(0, len(url), LINE_WIDTH)],
                shorten_middle("code " + clean(screen.user_code), LINE_WIDTH)
                if clean(screen.user_code)
                else "",
                expires_hint(screen.expires_in_s) or "",
            ]
        case NotConnected():
            return [
                offline_title(screen),
                *wrap(screen.reason, LINE_WIDTH, 3),
                retry_hint(screen) or "",
            ]
        case Idle():
            name = clean(screen.name)
            return [
                number_line(screen.number) if screen.number else "no number",
                shorten_end(name, LINE_WIDTH) if name else "",
                shorten_end(f"Idle  {clean(screen.clock)}".strip(), LINE_WIDTH),
                idle_status(screen),
                "do not disturb" if screen.dnd else "",
                missed_hint(screen.missed) if screen.missed else "",
                *(wrap(screen.last_error, LINE_WIDTH, 2) if screen.last_error else []),
            ]
        case Dialling():
            typed = clean(screen.typed).replace(" ", "")
            preview = number_line(screen.preview, LINE_WIDTH - 2) if screen.preview else ""
            return [
                "Dialling" if typed else "Dial tone",
                shorten_start(typed, LINE_WIDTH),
                ("= " + preview) if preview else "",
                *(wrap(screen.problem, LINE_WIDTH, 2) if screen.problem else []),
                dialling_hint(screen),
            ]
        case Calling():
            return [calling_title(screen), *_peer(screen.peer, screen.peer_name), CALLING_HINT]
        case Ringing():
            return [
                ringing_title(screen),
                *_peer(screen.peer, screen.peer_name),
                ringing_hint(screen),
            ]
        case InCall():
            status = "reconnecting…" if screen.reconnecting else "In call"
            media = [clean(screen.codec or "") or "no audio yet"]
            if screen.no_audio:
                media = [NO_AUDIO_DEVICE]  # the bars would not fit beside it; this matters more
            elif screen.quality is not None:
                media.append(f"q {max(0, min(4, screen.quality))}/4")
            return [
                f"{status}  {timer(screen.seconds)}",
                *_peer(screen.peer, screen.peer_name),
                shorten_end("  ".join(media), LINE_WIDTH),
                "MUTED" if screen.muted else "",
                f"volume {screen.volume}%" if screen.volume is not None else "",
            ]
        case RemoteInUse():
            return [
                shorten_end(remote_title(screen), LINE_WIDTH),
                *_peer(screen.peer, screen.peer_name),
                PULL_HINT,
            ]
        case CallSummary():
            title = "Call ended"
            if screen.seconds is not None:
                title += f"  {timer(screen.seconds)}"
            return [
                title,
                *_peer(screen.peer, screen.peer_name),
                *wrap(screen.reason, LINE_WIDTH, 2),
            ]
        case Resetting():
            return [RESET_TITLE, RESET_HINT]
        case Error():
            return [
                shorten_end(clean(screen.title) or "Error", LINE_WIDTH),
                *wrap(screen.message, LINE_WIDTH, 4),
            ]
        case _:
            assert_never(screen)
