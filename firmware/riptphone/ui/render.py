"""The screens as 128x64 one-bit pictures for the OLED.

:func:`render` is pure: a :mod:`~riptphone.ui.model` screen in, a PIL image
out (mode ``"1"``, lit pixels 1), no hardware.  The hardware adapter and the
emulators only ever display what it returns.

Layout rules (docs/screens.md shows the result):

* a title/status bar on top (rows 0-10, a rule under it), the main item large
  in the middle, one hint line at the bottom (rows 53-63);
* text that does not fit is shrunk step by step, then cut: numbers in the
  middle (both ends identify a number), names and messages at the end, digits
  as typed at the start (the newest digits matter);
* every piece drawn is claimed as a box on a :class:`Canvas`, which checks that
  it lies inside the frame and overlaps no other piece.  ``strict=True`` (tests,
  the gallery) raises :class:`LayoutError`; otherwise the picture is drawn
  anyway, clipped by PIL.

Font: Pillow's built-in scalable font (``ImageFont.load_default(size=...)``,
Aileron, embedded in Pillow >= 10.1 when it has FreeType), so the phone needs
no font file and draws the same on a Pi and a laptop.  Without FreeType the
old bitmap default is used at every size and text is reduced to ASCII.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, assert_never

from PIL import Image, ImageDraw, ImageFont

from riptphone.ui import text as t
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

if TYPE_CHECKING:
    import segno

WIDTH = 128
HEIGHT = 64

SMALL = 10
"""The small font's size: status bar, hints, secondary lines (21 characters wide)."""
BIG_SIZES = (22, 20, 18, 16, 14, 12, 10)
"""Sizes tried, largest first, for the main item."""
NAME_SIZES = (20, 18, 16, 14, 12, 10)
TYPED_SIZES = (22, 20, 18, 16, 14)
"""Digits as typed stay large: past 14 px the oldest give way to '…'."""

# Rows of the standard layout: [y0, y1) with y1 exclusive.
STATUS = (0, 11)
RULE_Y = 12
MAIN = (14, 52)
HINT = (53, 64)

Align = Literal["left", "center", "right"]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Box = tuple[int, int, int, int]  # x0, y0, x1, y1; x1 and y1 exclusive


class LayoutError(ValueError):
    """Something would be drawn outside the frame or over something else."""


# --- fonts -------------------------------------------------------------------


@functools.cache
def font(size: int) -> Font:
    """Pillow's scalable default font at ``size`` px, or the bitmap default without FreeType."""
    try:
        scalable = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 has no size; no FreeType
        return ImageFont.load_default_imagefont()
    return scalable


def scalable() -> bool:
    """True when text is drawn with a FreeType font (any size, Unicode)."""
    return isinstance(font(SMALL), ImageFont.FreeTypeFont)


_PRINTABLE = "".join(c for c in string.printable if c.isprintable())


@functools.cache
def row_metrics(size: int) -> tuple[int, int]:
    """(top, bottom) of the ink of printable ASCII at ``size``, from the drawing origin.

    A row of text is this tall; any string whose ink stays inside it (all of
    ASCII does) lines up with the others whatever letters it holds.
    """
    _, top, _, bottom = font(size).getbbox(_PRINTABLE, mode="1")
    return int(top), int(bottom)


def row_height(size: int) -> int:
    top, bottom = row_metrics(size)
    return bottom - top


@dataclass(frozen=True, slots=True)
class Fit:
    """A string chosen to fit a width, and the size it fits at."""

    text: str
    size: int
    width: int

    @property
    def height(self) -> int:
        return row_height(self.size)


def _fits(text: str, size: int, max_width: int) -> Fit | None:
    if not text:
        return Fit(text, size, 0)
    # mode "1": glyphs hinted for one-bit output have other advances than anti-aliased ones.
    left, top, right, bottom = font(size).getbbox(text, mode="1")
    row_top, row_bottom = row_metrics(size)
    if right - left <= max_width and top >= row_top and bottom <= row_bottom:
        return Fit(text, size, int(right - left))
    return None


def _encodable(text: str) -> str:
    return text if scalable() else t.ascii_only(text)


def fit(
    variants: Sequence[str],
    max_width: int,
    sizes: Sequence[int],
    cut: Callable[[str, int], str],
) -> Fit:
    """The first of ``variants`` that fits ``max_width`` at the largest size, else the last cut.

    Each variant (a grouped number, then the bare one) is tried at every size,
    largest first; then the last variant is cut with ``cut(text, chars)``
    at the smallest size; then the same in plain ASCII, whose every glyph fits
    a row.
    """
    variants = [_encodable(v) for v in variants]
    for variant in variants:
        for size in sizes:
            found = _fits(variant, size, max_width)
            if found is not None:
                return found
    smallest = sizes[-1]
    for base in (variants[-1], t.ascii_only(variants[-1])):
        for chars in range(min(len(base), 2 * WIDTH), 0, -1):
            found = _fits(_encodable(cut(base, chars)), smallest, max_width)
            if found is not None:
                return found
    return Fit("", smallest, 0)


def fit_number(number: str, max_width: int, sizes: Sequence[int]) -> Fit:
    """A phone number: grouped if that fits, else bare, else cut in the middle."""
    bare = t.clean(number).replace(" ", "")
    return fit([t.format_number(number), bare], max_width, sizes, t.shorten_middle)


def fit_name(name: str, max_width: int, sizes: Sequence[int]) -> Fit:
    """A name or message: cut at the end."""
    return fit([t.clean(name)], max_width, sizes, t.shorten_end)


def fit_typed(typed: str, max_width: int, sizes: Sequence[int]) -> Fit:
    """Digits as typed: the newest kept, ``…`` in front."""
    return fit([t.clean(typed).replace(" ", "")], max_width, sizes, t.shorten_start)


def wrap_px(text: str, max_width: int, size: int, max_lines: int) -> list[Fit]:
    """``text`` wrapped on words to ``max_width`` px, at most ``max_lines``, the last cut."""
    words = t.clean(text).split(" ")
    out: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if _fits(_encodable(candidate), size, max_width) is not None:
            current = candidate
            continue
        if current:
            out.append(current)
        current = word
        # A word wider than the line is broken where it must be.
        while _fits(_encodable(current), size, max_width) is None and len(current) > 1:
            cut = len(current) - 1
            while cut > 1 and _fits(_encodable(current[:cut]), size, max_width) is None:
                cut -= 1
            out.append(current[:cut])
            current = current[cut:]
    if current:
        out.append(current)
    if len(out) > max_lines:
        out = [*out[: max_lines - 1], " ".join(out[max_lines - 1 :])]
    fits = [fit_name(line, max_width, (size,)) for line in out]
    return fits


# --- the canvas ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drawn:
    """One piece of the picture and the box it covers."""

    what: str
    box: Box
    parent: int | None = None  # index of the container it sits in (a QR code's light box...)
    text: str = ""  # what a text piece says, for tests and debugging


@dataclass
class Canvas:
    """A 128x64 picture that knows where everything on it is."""

    strict: bool = False
    image: Image.Image = field(default_factory=lambda: Image.new("1", (WIDTH, HEIGHT), 0))
    drawn: list[Drawn] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.draw = ImageDraw.Draw(self.image)
        self.draw.fontmode = "1"

    def claim(self, what: str, box: Box, parent: int | None = None, text: str = "") -> int:
        """Record ``box``; a problem if it leaves the frame or its parent, or overlaps a sibling."""
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0 or x1 > WIDTH or y1 > HEIGHT or x1 < x0 or y1 < y0:
            self._problem(f"{what} at {box} is outside the {WIDTH}x{HEIGHT} frame")
        if parent is not None:
            px0, py0, px1, py1 = self.drawn[parent].box
            if x0 < px0 or y0 < py0 or x1 > px1 or y1 > py1:
                self._problem(f"{what} at {box} leaves {self.drawn[parent].what}")
        for other in self.drawn:
            if other.parent == parent and _overlap(other.box, box):
                self._problem(f"{what} at {box} overlaps {other.what} at {other.box}")
        self.drawn.append(Drawn(what, box, parent, text))
        return len(self.drawn) - 1

    def _problem(self, message: str) -> None:
        self.problems.append(message)
        if self.strict:
            raise LayoutError(message)

    def text(
        self,
        what: str,
        fitted: Fit,
        x: int,
        y: int,
        *,
        fill: int = 1,
        parent: int | None = None,
    ) -> Box:
        """Draw ``fitted`` with its ink starting at ``x`` and its row's top at ``y``."""
        if not fitted.text:
            return (x, y, x, y)
        face = font(fitted.size)
        left, _, _, _ = face.getbbox(fitted.text, mode="1")
        top, _ = row_metrics(fitted.size)
        origin = (x - int(left), y - top)
        box = tuple(int(v) for v in self.draw.textbbox(origin, fitted.text, font=face))
        self.claim(what, (box[0], box[1], box[2], box[3]), parent, fitted.text)
        self.draw.text(origin, fitted.text, font=face, fill=fill)
        return (box[0], box[1], box[2], box[3])

    def rect(
        self,
        what: str,
        box: Box,
        *,
        fill: int = 1,
        parent: int | None = None,
        outline: bool = False,
    ) -> int:
        """A filled (or outlined) rectangle; ``box`` exclusive at the right and bottom."""
        index = self.claim(what, box, parent)
        x0, y0, x1, y1 = box
        if outline:
            self.draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=fill)
        else:
            self.draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
        return index

    def bitmap(self, what: str, rows: Sequence[str], x: int, y: int) -> Box:
        """A small icon drawn from rows of ``#`` (lit) and ``.``."""
        box = (x, y, x + max(len(r) for r in rows), y + len(rows))
        self.claim(what, box)
        for dy, row in enumerate(rows):
            for dx, char in enumerate(row):
                if char == "#":
                    self.draw.point((x + dx, y + dy), fill=1)
        return box


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _x(align: Align, width: int, x0: int, x1: int) -> int:
    if align == "left":
        return x0
    if align == "right":
        return x1 - width
    return x0 + (x1 - x0 - width) // 2


# --- icons -------------------------------------------------------------------

# A receiver (the usual "phone" sign): the line; a small x beside an icon: down.
ICON_LINE = (
    "###......",
    "###......",
    "###......",
    ".##......",
    ".###.....",
    "..###.###",
    "...######",
    "....#####",
    ".....###.",
)
ICON_LINE_DOWN = (
    "###....#.#",
    "###.....#.",
    "###....#.#",
    ".##.......",
    ".###......",
    "..###.###.",
    "...######.",
    "....#####.",
    ".....###..",
)
ICON_BELL = (
    "...#...",
    "..###..",
    ".#####.",
    ".#####.",
    ".#####.",
    "#######",
    ".......",
    "...#...",
)
ICON_BELL_DOWN = (
    "...#.....#.#",
    "..###.....#.",
    ".#####...#.#",
    ".#####......",
    ".#####......",
    "#######.....",
    "............",
    "...#........",
)
ICON_DND = (
    "..####..",
    ".######.",
    "########",
    "#......#",
    "#......#",
    "########",
    ".######.",
    "..####..",
)


# --- the pieces of a screen ------------------------------------------------------


def _bar(canvas: Canvas, title: str, right: str = "", *, inverted: bool = False) -> None:
    """The title bar: ``title`` left, ``right`` (a timer, a clock) right, a rule under."""
    fill = 0 if inverted else 1
    parent = None
    if inverted:
        parent = canvas.rect("title bar", (0, STATUS[0], WIDTH, STATUS[1] + 1))
    natural = fit_name(title, WIDTH - 4, (SMALL,)).width
    right_room = max(WIDTH // 3, WIDTH - 4 - 6 - natural)
    right_fit = fit_name(right, right_room, (SMALL,)) if right else None
    room = WIDTH - 4 - (right_fit.width + 6 if right_fit else 0)
    title_fit = fit_name(title, room, (SMALL,))
    canvas.text(
        "title", title_fit, 2, STATUS[0] + 1 if inverted else STATUS[0], fill=fill, parent=parent
    )
    if right_fit:
        canvas.text(
            "title, right",
            right_fit,
            WIDTH - 2 - right_fit.width,
            STATUS[0] + 1 if inverted else STATUS[0],
            fill=fill,
            parent=parent,
        )
    if not inverted:
        canvas.rect("rule", (0, RULE_Y, WIDTH, RULE_Y + 1))


def _stack(
    canvas: Canvas,
    rows: Sequence[tuple[str, Fit]],
    area: tuple[int, int],
    align: Align = "center",
    gap: int = 2,
) -> None:
    """Rows of text centred as a block in the vertical ``area``, ``gap`` px apart."""
    rows = [(what, f) for what, f in rows if f.text]
    total = sum(f.height for _, f in rows) + gap * max(0, len(rows) - 1)
    y = area[0] + max(0, (area[1] - area[0] - total) // 2)
    for what, fitted in rows:
        canvas.text(what, fitted, _x(align, fitted.width, 2, WIDTH - 2), y)
        y += fitted.height + gap


def _hint(canvas: Canvas, hint: str) -> None:
    fitted = fit_name(hint, WIDTH - 4, (SMALL,))
    canvas.text("hint", fitted, _x("center", fitted.width, 2, WIDTH - 2), HINT[0])


def _peer_rows(
    peer: str, name: str | None, *, room: int, two_rows: bool = True
) -> list[tuple[str, Fit]]:
    """A caller: the name large and the number small, or the number large alone."""
    width = WIDTH - 4
    cleaned = t.clean(name or "")
    if not cleaned and not t.clean(peer):
        cleaned, two_rows = "unknown", False
    if cleaned:
        rows = [("name", fit_name(cleaned, width, _sizes_for(NAME_SIZES, room, two_rows)))]
        if two_rows:
            rows.append(("number", fit_number(peer, width, (SMALL,))))
        return rows
    return [("number", fit_number(peer, width, _sizes_for(BIG_SIZES, room, False)))]


def _sizes_for(sizes: Sequence[int], room: int, with_small_row: bool) -> tuple[int, ...]:
    """The sizes whose row, plus a small row under it if any, fit ``room`` px of height."""
    spare = room - (row_height(SMALL) + 2 if with_small_row else 0)
    fitting = tuple(s for s in sizes if row_height(s) <= spare)
    return fitting or (sizes[-1],)


def _quality(canvas: Canvas, quality: int | None, x: int, y1: int) -> int:
    """Four bars, as many lit as ``quality`` (0-4); none at all until it is measured."""
    if quality is None:
        return x
    level = max(0, min(4, quality))
    for i in range(4):
        height = 3 + 2 * i
        box = (x + i * 4, y1 - height, x + i * 4 + 3, y1)
        canvas.rect(f"quality bar {i}", box, outline=i >= level)
    return x + 16


# --- the screens -------------------------------------------------------------


def render(screen: Screen, *, strict: bool = False) -> Image.Image:
    """``screen`` as a 128x64 mode-"1" image; ``strict`` raises :class:`LayoutError` on overflow."""
    return layout(screen, strict=strict).image


def layout(screen: Screen, *, strict: bool = False) -> Canvas:
    """The canvas ``screen`` was drawn on: the image, the boxes and any problems."""
    canvas = Canvas(strict=strict)
    _draw(canvas, screen)
    return canvas


def _draw(canvas: Canvas, screen: Screen) -> None:
    match screen:
        case Boot():
            _stack(
                canvas,
                [
                    ("product", fit_name("ript-phone", WIDTH - 4, BIG_SIZES[1:])),
                    ("version", fit_name(screen.version, WIDTH - 4, (SMALL,))),
                ],
                (0, HINT[0]),
            )
            _hint(canvas, t.clean(screen.detail) or "starting…")
        case NotProvisioned():
            _not_provisioned(canvas, screen)
        case NotConnected():
            _bar(canvas, t.offline_title(screen), t.retry_hint(screen) or "")
            lines = wrap_px(screen.reason, WIDTH - 4, SMALL, 4)
            _stack(canvas, [("reason", line) for line in lines], (MAIN[0], HEIGHT), "left")
        case Idle():
            _idle(canvas, screen)
        case Dialling():
            _dialling(canvas, screen)
        case Calling():
            _bar(canvas, t.calling_title(screen))
            _stack(canvas, _peer_rows(screen.peer, screen.peer_name, room=MAIN[1] - MAIN[0]), MAIN)
            _hint(canvas, t.CALLING_HINT)
        case Ringing():
            _bar(canvas, t.ringing_title(screen), inverted=True)
            _stack(canvas, _peer_rows(screen.peer, screen.peer_name, room=MAIN[1] - MAIN[0]), MAIN)
            _hint(canvas, t.ringing_hint(screen))
        case InCall():
            _in_call(canvas, screen)
        case RemoteInUse():
            _bar(canvas, t.remote_title(screen))
            _stack(canvas, _peer_rows(screen.peer, screen.peer_name, room=MAIN[1] - MAIN[0]), MAIN)
            _hint(canvas, t.PULL_HINT)
        case CallSummary():
            _bar(
                canvas, "Call ended", t.timer(screen.seconds) if screen.seconds is not None else ""
            )
            reason = wrap_px(screen.reason, WIDTH - 4, SMALL, 2)
            bottom = HEIGHT - len(reason) * (row_height(SMALL) + 1)
            room = bottom - MAIN[0] - 1
            two = len(reason) < 2
            _stack(
                canvas,
                _peer_rows(screen.peer, screen.peer_name, room=room, two_rows=two),
                (MAIN[0], bottom - 1),
            )
            _stack(canvas, [("reason", line) for line in reason], (bottom, HEIGHT))
        case Resetting():
            _bar(canvas, t.RESET_TITLE, inverted=True)
            _stack(canvas, [("message", fit_name(t.RESET_HINT, WIDTH - 4, (SMALL,)))], MAIN)
        case Error():
            _bar(canvas, t.clean(screen.title) or "Error", inverted=True)
            lines = wrap_px(screen.message, WIDTH - 4, SMALL, 4)
            _stack(canvas, [("message", line) for line in lines], (MAIN[0], HEIGHT), "left")
        case _:
            assert_never(screen)


def _idle(canvas: Canvas, screen: Idle) -> None:
    x = 2
    icon = ICON_LINE if screen.registered else ICON_LINE_DOWN
    x = canvas.bitmap("registration", icon, x, 1)[2] + 4
    if screen.push != "none":
        x = canvas.bitmap("push", ICON_BELL if screen.push == "up" else ICON_BELL_DOWN, x, 1)[2] + 4
    if screen.dnd:
        x = canvas.bitmap("dnd", ICON_DND, x, 1)[2] + 4
    clock = fit_name(screen.clock, WIDTH - x - 2, (SMALL,))
    canvas.text("clock", clock, WIDTH - 2 - clock.width, STATUS[0])
    canvas.rect("rule", (0, RULE_Y, WIDTH, RULE_Y + 1))
    if screen.last_error:
        hint = t.clean(screen.last_error)
    elif screen.dnd:
        hint = "DND - " + t.missed_hint(screen.missed) if screen.missed else "do not disturb"
    elif screen.missed:
        hint = t.missed_hint(screen.missed)
    elif not screen.registered:
        hint = "not registered"
    else:
        hint = "lift to call"
    # An error gets two lines (its end, a status code, matters) and the name gives way.
    hints = wrap_px(hint, WIDTH - 4, SMALL, 2)
    bottom = HEIGHT - len(hints) * (row_height(SMALL) + 1)
    name = t.clean(screen.name) if len(hints) == 1 else ""
    rows: list[tuple[str, Fit]] = []
    if screen.number:
        room = bottom - 1 - MAIN[0] - ((row_height(SMALL) + 2) if name else 0)
        sizes = _sizes_for(BIG_SIZES, room, False)
        rows.append(("number", fit_number(screen.number, WIDTH - 4, sizes)))
        if name:
            rows.append(("name", fit_name(name, WIDTH - 4, (SMALL,))))
    else:
        sizes = _sizes_for(NAME_SIZES, bottom - 1 - MAIN[0], False)
        rows.append(("name", fit_name(t.clean(screen.name) or "no number", WIDTH - 4, sizes)))
    _stack(canvas, rows, (MAIN[0], bottom - 1))
    _stack(canvas, [("hint", line) for line in hints], (bottom, HEIGHT), gap=1)


def _dialling(canvas: Canvas, screen: Dialling) -> None:
    typed = t.clean(screen.typed).replace(" ", "")
    _bar(canvas, "Dialling" if typed else "Dial tone")
    main = (MAIN[0], MAIN[1] - row_height(SMALL) - 1)
    if typed:
        sizes = _sizes_for(TYPED_SIZES, main[1] - main[0], False)
        digits = fit_typed(typed, WIDTH - 4, sizes)
        _stack(canvas, [("digits", digits)], main)
    if screen.problem:
        lines = wrap_px(screen.problem, WIDTH - 4, SMALL, 2)
        _stack(canvas, [("problem", line) for line in lines], (main[1] + 1, HEIGHT), gap=1)
        return
    if screen.preview:
        bare = t.clean(screen.preview).replace(" ", "")
        preview = fit(
            ["= " + t.format_number(screen.preview), "= " + bare],
            WIDTH - 4,
            (SMALL,),
            lambda text, chars: "= " + t.shorten_middle(text[2:], max(1, chars - 2)),
        )
        _stack(canvas, [("preview", preview)], (main[1] + 1, HINT[0] - 1))
    _hint(canvas, t.dialling_hint(screen))


def _in_call(canvas: Canvas, screen: InCall) -> None:
    _bar(
        canvas,
        "Reconnecting…" if screen.reconnecting else "In call",
        t.timer(screen.seconds),
        inverted=screen.reconnecting,
    )
    _stack(canvas, _peer_rows(screen.peer, screen.peer_name, room=MAIN[1] - MAIN[0]), MAIN)
    x = 2
    if screen.volume is not None:
        left = f"vol {max(0, min(999, screen.volume))}%"
    elif screen.no_audio:
        left = t.NO_AUDIO_DEVICE
    else:
        left = t.clean(screen.codec or "") or "no audio yet"
    label_room = 40 if screen.muted else 0
    left_fit = fit_name(left, WIDTH - 4 - 20 - label_room, (SMALL,))
    x = canvas.text("media", left_fit, x, HINT[0])[2] + 4 if left_fit.text else x
    _quality(canvas, screen.quality, x, HEIGHT - 1)
    if screen.muted:
        label = fit_name("MUTED", 36, (SMALL,))
        x0 = WIDTH - label.width - 6
        parent = canvas.rect("mute label", (x0, HINT[0], WIDTH, HEIGHT))
        canvas.text("mute", label, x0 + 3, HINT[0], fill=0, parent=parent)


def _not_provisioned(canvas: Canvas, screen: NotProvisioned) -> None:
    qr_right = _qr(canvas, screen.url)
    x0 = qr_right + 3
    width = WIDTH - x0 - 1
    code = t.clean(screen.user_code)
    parts = [p for p in code.split("-") if p] if len(code) > 6 else [code]
    parts = parts[:3] or ["?"]
    rows = [("title", fit_name("Set up:", width, (SMALL,)))]
    expires = t.expires_hint(screen.expires_in_s)
    tail = (
        [("expires", fit_name(expires.replace("expires in ", "for "), width, (SMALL,)))]
        if (expires)
        else []
    )
    fixed = sum(f.height + 2 for _, f in rows + tail)
    per_row = (HEIGHT - fixed - 2 * (len(parts) - 1)) // len(parts)
    sizes = _sizes_for(BIG_SIZES, per_row, False)
    # One size for every part of the code, so it reads as one code.
    size = min(fit_name(p, width, sizes).size for p in parts)
    rows += [("code", fit_name(p, width, (size,))) for p in parts]
    rows += tail
    total = sum(f.height for _, f in rows) + 2 * (len(rows) - 1)
    y = max(0, (HEIGHT - total) // 2)
    for what, fitted in rows:
        canvas.text(what, fitted, x0 + (width - fitted.width) // 2, y)
        y += fitted.height + 2


def qr_for(url: str) -> tuple[segno.QRCode, int] | None:
    """The QR code for ``url`` and its pixels per module, or None if it cannot fit 64 px.

    Two pixels per module (version 3 at most) scans from a phone at arm's
    length on a 0.96" OLED; one pixel per module (up to version 10) still
    decodes but needs the camera close and steady, so it is only the fallback
    for URLs too long for version 3.
    """
    if not url:
        return None
    # Imported here: only the log-in screens draw a QR code, and segno holds about
    # 0.8 MB for as long as the daemon runs once imported (docs/performance.md,
    # "the phone's memory in a call").
    import segno  # noqa: PLC0415

    try:
        for error in ("M", "L"):
            qr = segno.make(url, error=error, micro=False, boost_error=True)
            if qr_version(qr) <= 3:
                return qr, 2
        qr = segno.make(url, error="L", micro=False, boost_error=True)
    except (ValueError, segno.DataOverflowError):  # beyond version 40
        return None
    return (qr, 1) if qr_version(qr) <= 10 else None


def qr_version(qr: segno.QRCode) -> int:
    """The QR code's version (1-40)."""
    return qr.version if isinstance(qr.version, int) else 0  # micro=False: always an int


def _qr(canvas: Canvas, url: str) -> int:
    """Draw the QR code dark-on-lit at the left; return its right edge."""
    found = qr_for(t.clean(url).replace(" ", ""))
    if found is None:
        fitted = wrap_px("this URL does not fit a QR code", 60, SMALL, 4)
        _stack(canvas, [("no qr", f) for f in fitted], (0, HEIGHT), "left")
        return 62
    qr, scale = found
    modules = int(qr.symbol_size(scale=1, border=0)[0])
    side = modules * scale
    quiet = (HEIGHT - side) // 2
    light = canvas.rect("qr light", (0, 0, side + 2 * quiet, HEIGHT))
    for row, bits in enumerate(qr.matrix_iter(scale=1, border=0)):
        for col, dark in enumerate(bits):
            if dark:
                x, y = quiet + col * scale, quiet + row * scale
                canvas.draw.rectangle((x, y, x + scale - 1, y + scale - 1), fill=0)
    canvas.claim("qr modules", (quiet, quiet, quiet + side, quiet + side), light)
    return side + 2 * quiet
