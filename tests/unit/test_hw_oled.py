"""The OLED: frames through luma's dummy device, and the errors when no panel is there."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from riptphone.hw import oled
from riptphone.hw.oled import Display, DisplayError, dummy_display, open_display


def frame(text: str, mode: str = "1") -> Image.Image:
    image = Image.new(mode, (128, 64))
    ImageDraw.Draw(image).text((4, 4), text, fill="white")
    return image


def test_the_dummy_display_receives_frames_and_identical_ones_are_skipped() -> None:
    device = dummy_display()
    assert (device.width, device.height, device.mode) == (128, 64, "1")
    display = Display(device)
    assert display.show(frame("idle 14:05"))
    assert device.image.tobytes() == frame("idle 14:05").tobytes()
    assert not display.show(frame("idle 14:05"))
    assert display.show(frame("idle 14:06"))
    assert device.image.tobytes() == frame("idle 14:06").tobytes()
    assert (display.sent, display.skipped) == (2, 1)
    assert display.frame is not None and display.frame.tobytes() == frame("idle 14:06").tobytes()


def test_colour_frames_are_converted_and_wrong_sizes_refused() -> None:
    display = Display(dummy_display())
    assert display.show(frame("ringing", mode="RGB"))
    assert display.device.image.mode == "1"
    assert display.device.image.getbbox() is not None  # the text survived the conversion
    with pytest.raises(ValueError, match="128x64"):
        display.show(Image.new("1", (128, 32)))
    display.clear()
    assert display.device.image.getbbox() is None
    display.close()


@pytest.mark.skipif(Path("/dev/i2c-1").exists(), reason="this machine has an I2C bus 1")
def test_no_i2c_bus_gives_one_clear_line() -> None:
    with pytest.raises(DisplayError) as caught:
        open_display("ssd1306", port=1, address=0x3C)
    message = str(caught.value)
    assert "\n" not in message
    assert "/dev/i2c-1" in message and "enable I2C" in message
    assert "display = 'none'" in message


class SilentBus:
    """An I2C bus where nothing acknowledges the address, as smbus2 reports it."""

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        raise OSError(errno.EREMOTEIO, "Remote I/O error")

    def close(self) -> None:
        pass


class RecordingBus:
    """An I2C bus with a panel that accepts everything."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, int, list[int]]] = []

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        self.writes.append((address, register, data))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("driver", ["ssd1306", "sh1106"])
def test_no_panel_at_the_address_gives_one_clear_line(driver: str) -> None:
    with pytest.raises(DisplayError) as caught:
        open_display(driver, port=1, address=0x3D, bus=SilentBus())
    message = str(caught.value)
    assert "\n" not in message
    assert f"no {driver} display answers at address 0x3d" in message
    assert "i2cdetect -y 1" in message


@pytest.mark.parametrize("driver", ["ssd1306", "sh1106"])
def test_a_panel_that_answers_is_initialised_at_its_address(driver: str) -> None:
    bus = RecordingBus()
    device: Any = open_display(driver, address=0x3C, rotate=2, bus=bus)
    assert (device.width, device.height) == (128, 64)
    assert bus.writes and {address for address, _, _ in bus.writes} == {0x3C}
    sent = len(bus.writes)
    display = Display(device)
    display.show(frame("hello"))
    assert len(bus.writes) > sent
    sent = len(bus.writes)
    display.show(frame("hello"))
    assert len(bus.writes) == sent  # the identical frame never reached the bus


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(DisplayError, match="ssd1306, sh1106"):
        open_display("ssd1309")
    with pytest.raises(DisplayError, match="0-3"):
        open_display("ssd1306", rotate=4)
    assert oled.DRIVERS == ("ssd1306", "sh1106")
