"""Tests of the OLED screens (riptphone.ui.render) through luma's dummy device."""

from __future__ import annotations

import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from luma.core.device import dummy
from PIL import Image

from riptdev import gallery
from riptphone.ui import render as r
from riptphone.ui.model import (
    Calling,
    CallSummary,
    Dialling,
    Idle,
    InCall,
    NotConnected,
    NotProvisioned,
    RemoteInUse,
    Ringing,
    Screen,
)

SCREEN_TYPES: tuple[type, ...] = typing.get_args(Screen)
DOCS_SCREENS = Path(__file__).resolve().parents[2] / "docs" / "screens"
PROPERTY = settings(max_examples=150, deadline=None)
ZBARIMG = shutil.which("zbarimg") or (
    "/usr/bin/zbarimg" if Path("/usr/bin/zbarimg").exists() else None
)


def on_device(image: Image.Image) -> Image.Image:
    """What the OLED would show: the picture through luma's dummy SSD1306 stand-in."""
    device = dummy(width=128, height=64, mode="1")
    device.display(image)
    shown: Image.Image = device.image
    return shown


def texts(screen: Screen) -> list[str]:
    return [d.text for d in r.layout(screen, strict=True).drawn if d.text]


def assert_inside(canvas: r.Canvas) -> None:
    assert canvas.problems == []
    for drawn in canvas.drawn:
        x0, y0, x1, y1 = drawn.box
        assert 0 <= x0 <= x1 <= r.WIDTH and 0 <= y0 <= y1 <= r.HEIGHT, drawn


def test_the_union_has_the_twelve_screens() -> None:
    assert len(SCREEN_TYPES) == 12


@pytest.mark.parametrize("screen_type", SCREEN_TYPES, ids=lambda c: c.__name__)
def test_every_screen_type_renders_and_has_gallery_variants(screen_type: type) -> None:
    variants = [v for v in gallery.VARIANTS if type(v.screen) is screen_type]
    assert variants, f"no gallery variant for {screen_type.__name__}: add one to VARIANTS"
    for variant in variants:
        assert variant.name.startswith(gallery.slug(screen_type))
        image = on_device(r.render(variant.screen, strict=True))
        assert image.size == (128, 64)
        assert image.getbbox() is not None, f"{variant.name} is blank"


@pytest.mark.parametrize("screen_type", SCREEN_TYPES, ids=lambda c: c.__name__)
def test_any_value_of_every_screen_type_stays_inside_the_frame(screen_type: type) -> None:
    @PROPERTY
    @given(st.from_type(screen_type))
    def check(screen: Screen) -> None:
        canvas = r.layout(screen, strict=True)
        assert_inside(canvas)
        assert on_device(canvas.image).size == (128, 64)

    check()


names = st.text(max_size=200)
numbers = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True),
    st.text(alphabet="+0123456789 -", max_size=80),
    st.text(max_size=120),
)


@PROPERTY
@given(peer=numbers, name=st.one_of(st.none(), names), seconds=st.integers(0, 10**7))
def test_long_numbers_and_names_stay_inside_the_frame(
    peer: str, name: str | None, seconds: int
) -> None:
    for screen in (
        Calling(peer, name),
        Ringing(peer, name),
        InCall(peer, seconds, name, codec="OPUS", quality=2, muted=True, reconnecting=True),
        InCall(peer, seconds, name, volume=100),
        RemoteInUse(peer, name, name),
        CallSummary(peer, name or "", seconds, name),
        Idle(peer, name or "", "14:05", push="down", missed=seconds, dnd=True),
        Idle(peer, name or "", "14:05", last_error=name),
        Dialling(peer, preview=peer, problem=None),
        Dialling(peer, problem=name),
        NotConnected(name or "", retry_in_s=seconds),
        NotProvisioned(peer, name or "", seconds),
    ):
        assert_inside(r.layout(screen, strict=True))


def test_the_checker_refuses_text_outside_the_frame_and_overlaps() -> None:
    wide = r.fit_name("a name far too wide for the screen", 1000, (r.SMALL,))
    with pytest.raises(r.LayoutError, match="outside"):
        r.Canvas(strict=True).text("name", wide, 10, 0)
    canvas = r.Canvas(strict=True)
    canvas.text("first", r.fit_name("Alice", 60, (r.SMALL,)), 2, 20)
    with pytest.raises(r.LayoutError, match="overlaps first"):
        canvas.text("second", r.fit_name("Bob", 60, (r.SMALL,)), 4, 22)
    lenient = r.Canvas()
    lenient.text("name", wide, 10, 0)
    assert len(lenient.problems) == 1


def test_e164_numbers_are_grouped_when_they_fit() -> None:
    assert "+1 408 555 1002" in texts(Calling("+14085551002"))
    assert "+44 20 7946 0958" in texts(Ringing("+442079460958"))
    assert "+86 106 552 998 8123" in texts(Idle("+861065529988123", "", "14:05"))


def test_long_text_shrinks_before_it_is_cut() -> None:
    short = r.fit_name("Alice", 124, r.NAME_SIZES)
    longer = r.fit_name("Alice Pleasance Liddell", 124, r.NAME_SIZES)
    assert short.size == r.NAME_SIZES[0]
    assert longer.size < short.size and longer.text == "Alice Pleasance Liddell"
    cut = r.fit_name("Alice Pleasance Liddell of Oxford, Christ Church", 124, r.NAME_SIZES)
    assert cut.size == r.NAME_SIZES[-1]
    assert cut.text.endswith("…") and cut.text.startswith("Alice Pleasance")


def test_numbers_are_cut_in_the_middle_and_typed_digits_keep_the_newest() -> None:
    uri = "sip:anonymous-caller-with-a-long-name@anonymous.invalid"
    cut = r.fit_number(uri, 124, r.BIG_SIZES)
    head, tail = cut.text.split("…")
    assert uri.startswith(head) and uri.endswith(tail) and head and tail
    typed = "0114420794609581234567890123"
    shown = r.fit_typed(typed, 124, r.TYPED_SIZES)
    assert shown.text.startswith("…") and typed.endswith(shown.text[1:])
    assert shown.size == r.TYPED_SIZES[-1]


def test_in_call_shows_timer_codec_and_mute() -> None:
    shown = texts(InCall("+14085551002", 201, "Alice", codec="OPUS", quality=3, muted=True))
    assert {"In call", "03:21", "Alice", "OPUS", "MUTED"} <= set(shown)
    canvas = r.layout(InCall("+14085551002", 3723, quality=0, reconnecting=True), strict=True)
    assert {"Reconnecting…", "1:02:03"} <= {d.text for d in canvas.drawn}
    bars = [d for d in canvas.drawn if d.what.startswith("quality bar")]
    assert len(bars) == 4
    unmeasured = r.layout(InCall("+14085551002", 0), strict=True)
    assert not [d for d in unmeasured.drawn if d.what.startswith("quality bar")]
    assert "no audio yet" in {d.text for d in unmeasured.drawn}


def test_offline_reason_is_wrapped_on_lines() -> None:
    shown = texts(NotConnected("no network: cannot resolve provider.example.com", retry_in_s=30))
    assert shown[:2] == ["Offline", "retry in 30 s"]
    assert len(shown) >= 4 and " ".join(shown[2:]).replace("  ", " ").startswith("no network")


SHORT_URL = "HTTPS://RIPT.EXAMPLE/D/WDJBMJHT"
LONG_URL = "https://provider.example.com/device?user_code=WDJB-MJHT"


def test_qr_module_size_is_two_pixels_up_to_version_3() -> None:
    found = r.qr_for(SHORT_URL)
    assert found is not None and found[1] == 2 and r.qr_version(found[0]) <= 3
    found = r.qr_for(LONG_URL)
    assert found is not None and found[1] == 1 and r.qr_version(found[0]) >= 4
    assert r.qr_for("x" * 400) is None
    assert_inside(r.layout(NotProvisioned("x" * 400, "WDJB-MJHT"), strict=True))


@pytest.mark.skipif(ZBARIMG is None, reason="zbarimg (Debian zbar-tools) is not installed")
@pytest.mark.parametrize("url", [SHORT_URL, LONG_URL], ids=["2px", "1px"])
def test_the_qr_code_decodes_back_to_the_url(url: str, tmp_path: Path) -> None:
    image = on_device(r.render(NotProvisioned(url, "WDJB-MJHT", 900), strict=True))
    path = tmp_path / "screen.png"
    image.save(path)
    assert ZBARIMG is not None
    done = subprocess.run(
        [ZBARIMG, "--quiet", "--raw", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == url
    assert {"WDJB", "MJHT"} <= set(texts(NotProvisioned(url, "WDJB-MJHT", 900)))


def test_docs_screens_hold_a_png_of_every_screen_type() -> None:
    pngs = {p.stem for p in DOCS_SCREENS.glob("*.png")}
    for screen_type in SCREEN_TYPES:
        assert any(name.startswith(gallery.slug(screen_type)) for name in pngs), (
            f"docs/screens has no PNG of {screen_type.__name__}: "
            "run python -m riptdev gallery docs/screens"
        )
    for variant in gallery.VARIANTS:
        assert variant.name in pngs, f"docs/screens/{variant.name}.png is missing"
        with Image.open(DOCS_SCREENS / f"{variant.name}.png") as image:
            assert image.size == (128 * gallery.SCALE, 64 * gallery.SCALE)
    index = (DOCS_SCREENS.parent / "screens.md").read_text(encoding="utf-8")
    for variant in gallery.VARIANTS:
        assert f"screens/{variant.name}.png" in index


def test_gallery_writes_every_variant(tmp_path: Path) -> None:
    outdir = tmp_path / "screens"
    assert gallery.main([str(outdir)]) == 0
    assert len(list(outdir.glob("*.png"))) == len(gallery.VARIANTS)
    assert len(list((outdir / "1x").glob("*.png"))) == len(gallery.VARIANTS)
    assert "![idle](screens/idle.png)" in (tmp_path / "screens.md").read_text(encoding="utf-8")


def test_without_freetype_the_bitmap_font_fits_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFont

    bitmap = ImageFont.load_default_imagefont()
    monkeypatch.setattr(r, "font", lambda size: bitmap)
    r.row_metrics.cache_clear()
    try:
        assert not r.scalable()
        for variant in gallery.VARIANTS:
            assert_inside(r.layout(variant.screen, strict=True))
        assert_inside(r.layout(Ringing("+14085551002", "Zoë 李 " * 20), strict=True))
    finally:
        r.row_metrics.cache_clear()


def test_segno_loads_only_to_draw_a_qr_code() -> None:
    # A phone that is logged in never shows a QR code: segno (about 0.8 MB once
    # imported) must not load with the renderer or for the other screens.
    probe = (
        "import sys\n"
        "from riptphone.ui import render as r\n"
        "from riptphone.ui.model import InCall, NotProvisioned\n"
        "r.render(InCall('+14085551002', 61, 'Alice', codec='OPUS', quality=3))\n"
        "print('segno' in sys.modules)\n"
        "r.render(NotProvisioned('https://p.example/device?code=WDJB-MJHT', 'WDJB-MJHT'))\n"
        "print('segno' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
