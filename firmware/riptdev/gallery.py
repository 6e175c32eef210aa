"""Every screen as PNG files, and an index for the docs.

``python -m riptdev gallery docs/screens`` renders each variant in
:data:`VARIANTS` (short and very long numbers and names, muted, poor quality,
DND, offline reasons, the QR code...) strictly (an overflow is an error), saves
it 4x enlarged with nearest-neighbour scaling as ``NAME.png`` for reading and
at its real size as ``1x/NAME.png``, and writes ``docs/screens.md`` (the
directory's name plus ``.md``, next to it) listing them with captions.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from riptphone.ui import render as r
from riptphone.ui import text
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

SCALE = 4


@dataclass(frozen=True, slots=True)
class Variant:
    """One picture of the gallery."""

    name: str  # file name without .png; starts with the screen's slug
    screen: Screen
    caption: str


def slug(screen_type: type) -> str:
    """``InCall`` -> ``in-call``: the prefix of a screen type's file names."""
    name = screen_type.__name__
    return "".join("-" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


LONG_NAME = "Dr. Maximiliane Wolkenstein-Hohenberg, Facilities"
VARIANTS: tuple[Variant, ...] = (
    Variant("boot", Boot("0.1.0", "reading state"), "Power-on."),
    Variant(
        "not-provisioned",
        NotProvisioned("HTTPS://RIPT.EXAMPLE/D/WDJBMJHT", "WDJB-MJHT", 900),
        "No token: an upper-case device-flow URL fits a version-3 QR code at 2 px/module.",
    ),
    Variant(
        "not-provisioned-long-url",
        NotProvisioned("https://provider.example.com/device?user_code=WDJB-MJHT", "WDJB-MJHT", 95),
        "A longer lower-case URL needs version 4+: drawn at 1 px/module (scan from close up).",
    ),
    Variant(
        "not-connected",
        NotConnected("no network", retry_in_s=30),
        "Not connected, with the reason and the next retry.",
    ),
    Variant(
        "not-connected-registering",
        NotConnected("connecting to the provider", registering=True),
        "Registering.",
    ),
    Variant(
        "not-connected-login-refused",
        NotConnected("login refused: press a key to try again"),
        "The user said no on the verification page: a key press starts over.",
    ),
    Variant(
        "not-connected-long-reason",
        NotConnected(
            "the provider refused the token (401 invalid_token); sign in again from the web "
            "page of your provider, then restart the phone",
            retry_in_s=600,
        ),
        "A reason too long for four lines is cut at the end.",
    ),
    Variant(
        "idle",
        Idle("+14085551001", "Front desk", "14:05", push="up"),
        "Idle: registered, push up; own number large.",
    ),
    Variant(
        "idle-not-registered",
        Idle("+14085551001", "Front desk", "14:05", registered=False, push="down"),
        "Idle, registration and push lost (struck icons).",
    ),
    Variant(
        "idle-dnd-missed",
        Idle("+14085551001", "Front desk", "09:41", push="up", missed=3, dnd=True),
        "Do not disturb, with missed calls.",
    ),
    Variant(
        "idle-missed",
        Idle("+442079460958", "Reception", "23:59", push="none", missed=12),
        "A UK number grouped for reading; missed calls.",
    ),
    Variant(
        "idle-long",
        Idle("+861065529988123", LONG_NAME, "14:05", push="up"),
        "A 15-digit number and a long name: smaller font, name cut.",
    ),
    Variant(
        "idle-error",
        Idle("+14085551001", "Front desk", "14:05", last_error="the provider refused: 403"),
        "The last error, shown until the next key.",
    ),
    Variant("dialling-empty", Dialling(""), "Dial tone."),
    Variant(
        "dialling",
        Dialling("4085551002", preview="+14085551002"),
        "Digits as typed, large, and the E.164 number they make.",
    ),
    Variant(
        "dialling-long",
        Dialling("011442079460958123456789"),
        "Too many digits: the newest shown after '…'.",
    ),
    Variant(
        "dialling-problem",
        Dialling("911", problem="emergency numbers: use another phone"),
        "Digits that cannot be dialled, and why.",
    ),
    Variant("calling", Calling("+14085551002"), "Calling a number."),
    Variant(
        "calling-alerting",
        Calling("+14085551002", "Alice Liddell", alerting=True),
        "The far end is ringing; name large, number small.",
    ),
    Variant("ringing", Ringing("+14085551002", "Alice Liddell"), "An inbound call."),
    Variant(
        "ringing-unknown",
        Ringing("sip:anonymous@anonymous.invalid"),
        "A caller id that is not a number: cut in the middle.",
    ),
    Variant(
        "ringing-long",
        Ringing("+4915112345678", LONG_NAME),
        "A long caller name, cut at the end.",
    ),
    Variant(
        "ringing-outbound",
        Ringing("+14085551002", "Alice Liddell", outbound=True),
        "A 3PCC call to be placed from this phone.",
    ),
    Variant(
        "in-call",
        InCall("+14085551002", 201, "Alice Liddell", codec="OPUS", quality=4),
        "In a call: timer, codec, quality 4/4.",
    ),
    Variant(
        "in-call-muted-poor",
        InCall("+14085551002", 59, codec="PCMU", quality=1, muted=True),
        "Muted, poor quality.",
    ),
    Variant(
        "in-call-reconnecting",
        InCall("+14085551002", 3723, "Alice Liddell", codec="OPUS", quality=0, reconnecting=True),
        "Reconnecting (inverted title), over an hour.",
    ),
    Variant(
        "in-call-no-media",
        InCall("+33612345678", 0, LONG_NAME),
        "Answered, no audio flowing yet; quality not measured.",
    ),
    Variant(
        "in-call-no-audio-device",
        InCall("+14085551002", 42, "Alice Liddell", codec="OPUS", quality=4, no_audio=True),
        "The microphone or earpiece is gone (a USB card unplugged): the call goes on, "
        "the device is tried again every second.",
    ),
    Variant(
        "in-call-volume",
        InCall("+14085551002", 75, "Alice Liddell", codec="OPUS", quality=3, volume=60),
        "Just after a volume change.",
    ),
    Variant(
        "remote-in-use",
        RemoteInUse("+14085551002", "Kitchen phone", "Alice Liddell"),
        "A call of this line on another device: pull it here.",
    ),
    Variant(
        "remote-in-use-unknown",
        RemoteInUse("+861065529988123"),
        "Same, device and name unknown.",
    ),
    Variant(
        "call-summary",
        CallSummary("+14085551002", "hung up", 201, "Alice Liddell"),
        "A call just ended, with its talk time.",
    ),
    Variant(
        "call-summary-refused",
        CallSummary("+14085551002", "the provider refused: 404 (no such number)"),
        "Why a call failed, on two lines.",
    ),
    Variant(
        "resetting",
        Resetting(),
        "Factory reset (* and # held 10 s on hook, or ript-phone reset): forgetting the login.",
    ),
    Variant(
        "error",
        Error("no audio device: hw:1,0 not found. Check [audio] device."),
        "Something the user must fix.",
    ),
    Variant(
        "error-long",
        Error(
            "the configuration file /etc/ript-phone/phone.toml cannot be read: [hardware] "
            "buttons: 'pull:99' is not a pin of this board (0-27)",
            "Bad config",
        ),
        "A long message, cut after four lines.",
    ),
)

INTRO = """\
# Screens

What the phone's 128x64 monochrome OLED shows, rendered by
`riptphone.ui.render` from the screen values of `riptphone.ui.model`. This page
is generated by `python -m riptdev gallery docs/screens` (do not edit the
list by hand); each picture is 4x enlarged, the real-size ones are in
`docs/screens/1x/`. The control socket's `screen` field and the virtual
handset's text display show the same screens as text lines
(`riptphone.ui.text.lines`, at most 21 characters each), listed under each
picture.

## Layout rules

- A title/status bar on top (rows 0-10, a rule under it): the screen's title
  and, on the right, a timer or the clock. On the idle screen it holds icons
  instead: the line (a handset; struck through when not registered), push (a
  bell; struck when down, absent when there is no push channel) and
  do-not-disturb (a no-entry sign). Ringing, reconnecting and errors invert it.
- The main item large in the middle: the peer's name (number small under it),
  or the number alone, or the digits as typed.
- One hint line at the bottom: what to do next ("lift to answer", "# to
  dial"), or the call's codec, quality bars (0-4 lit; none until measured)
  and a MUTED label.
- Long text is shrunk step by step (22 px down to 10 px), then cut: numbers in
  the middle (country code and last digits stay), names and messages at the
  end, digits as typed at the start (the newest stay, after "…"). E.164
  numbers are grouped for reading (`+1 408 555 1002`; other countries by
  length after the country code) when the grouped form fits, else shown bare.
- Every piece of text, icon and bar is claimed as a box; the renderer checks
  that each lies inside the frame and overlaps nothing else, and raises in
  strict mode (tests, this gallery).
- The QR code is drawn dark on a lit square (normal polarity, with a 2-3 px
  quiet zone). 2 px per module when the URL fits version 3 (29 modules, 58 px):
  readable by a phone camera at arm's length. Longer URLs fall back to 1 px
  per module (up to version 10), which decodes but needs the camera close:
  keep device-flow URLs short and upper-case (alphanumeric mode) so they fit
  version 3.

## Font

Pillow's built-in scalable font, `ImageFont.load_default(size=...)` (Aileron
Regular, embedded in Pillow 10.1+ when it is built with FreeType, as the
PyPI wheels for x86_64 and aarch64 are): no font file to install, and the
same pixels on a Pi and a laptop. Text is drawn without anti-aliasing
(mode "1"). DejaVu Sans (present on Debian desktops) is a little crisper at
8-9 px but is not guaranteed on a Pi image, so the smallest size used is
10 px, where Aileron reads well. Without FreeType the renderer falls back to
Pillow's old bitmap font at every size and reduces text to ASCII.

## Gallery
"""


def render_variant(variant: Variant) -> Image.Image:
    """The variant at 1x, rendered strictly."""
    return r.render(variant.screen, strict=True)


def write(outdir: Path, index: Path) -> list[Path]:
    """Render every variant into ``outdir`` and write ``index``; the PNG paths written."""
    (outdir / "1x").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections = [INTRO]
    rel = Path(os.path.relpath(outdir.resolve(), index.resolve().parent)).as_posix()
    for variant in VARIANTS:
        image = render_variant(variant)
        big = image.resize((image.width * SCALE, image.height * SCALE), Image.Resampling.NEAREST)
        path = outdir / f"{variant.name}.png"
        big.save(path)
        image.save(outdir / "1x" / f"{variant.name}.png")
        written.append(path)
        shown = " / ".join(text.lines(variant.screen))
        sections.append(
            f"### {variant.name}\n\n![{variant.name}]({rel}/{variant.name}.png)\n\n"
            f"{variant.caption} Text: `{shown}`\n"
        )
    index.write_text("\n".join(sections), encoding="utf-8")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gallery's command-line arguments (here and in ``python -m riptdev gallery``)."""
    parser.add_argument("outdir", type=Path, help="directory for the PNGs (docs/screens)")
    parser.add_argument(
        "--index", type=Path, help="the Markdown index to write (default: OUTDIR.md next to it)"
    )


def run(outdir: Path, index: Path | None = None) -> int:
    """Write the gallery and its index; 0, or 1 with one line on stderr."""
    index = index or outdir.with_name(outdir.name + ".md")
    try:
        written = write(outdir, index)
    except (OSError, r.LayoutError) as exc:
        print(f"gallery: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} screens to {outdir} and the index {index}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m riptdev gallery", description="Render every screen to PNG."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.outdir, args.index)


if __name__ == "__main__":
    sys.exit(main())
