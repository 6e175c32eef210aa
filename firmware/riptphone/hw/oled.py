"""The OLED: a 128x64 SSD1306 or SH1106 on I2C, through luma.oled.

:func:`open_display` opens the real panel and turns every way it can be
missing (no I2C bus, I2C disabled, no permission, nothing answering at the
address) into one :class:`DisplayError` line that says what to check.
:func:`dummy_display` is luma's in-memory device, for tests and screenshots.
:class:`Display` sends only frames that differ from the last one: a full frame
is 1 KiB over 400 kHz I2C, ~25 ms on the bus that the phone would otherwise
spend redrawing an unchanged idle screen every tick.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from luma.core.device import dummy
from luma.core.error import DeviceAddressError, DeviceNotFoundError, DevicePermissionError
from luma.core.interface.serial import i2c
from luma.oled import device as oled
from PIL import Image

__all__ = ["DRIVERS", "Display", "DisplayError", "dummy_display", "open_display"]

DRIVERS = ("ssd1306", "sh1106")
WIDTH, HEIGHT = 128, 64


class DisplayError(Exception):
    """The display cannot be used; the message is one line saying why and what to check."""


def open_display(
    driver: str, port: int = 1, address: int = 0x3C, rotate: int = 0, *, bus: Any = None
) -> Any:
    """Open the panel: a luma device (``.display(image)``, ``.mode``, ``.size``).

    ``bus`` is an already open smbus-like object to use instead of ``/dev/i2c-<port>``.
    """
    if driver not in DRIVERS:
        raise DisplayError(f"display driver must be one of {', '.join(DRIVERS)}, not {driver!r}")
    if not 0 <= rotate <= 3:
        raise DisplayError(f"display rotate must be 0-3 quarter turns, not {rotate}")
    where = f"I2C bus {port} (/dev/i2c-{port})"
    try:
        serial = i2c(bus=bus, port=port, address=address)
    except DeviceNotFoundError:
        raise DisplayError(
            f"no {where}: enable I2C (raspi-config, or dtparam=i2c_arm=on in "
            f"/boot/firmware/config.txt) and reboot, or set hardware.display = 'none'"
        ) from None
    except DevicePermissionError:
        raise DisplayError(
            f"no permission to open {where}: add the phone's user to the 'i2c' group"
        ) from None
    except DeviceAddressError:
        raise DisplayError(f"{address!r} is not an I2C address") from None
    try:
        # The driver sends its init sequence here: the first time the panel must answer.
        return getattr(oled, driver)(
            serial_interface=serial, width=WIDTH, height=HEIGHT, rotate=rotate
        )
    except (DeviceNotFoundError, OSError) as error:
        raise DisplayError(
            f"no {driver} display answers at address {address:#04x} on {where} ({error}): "
            f"check its power and wiring, and its address with i2cdetect -y {port}"
        ) from None


def dummy_display(width: int = WIDTH, height: int = HEIGHT) -> Any:
    """luma's in-memory 1-bit device: the last frame is in ``device.image``."""
    return dummy(width=width, height=height, mode="1")


class Display:
    """A luma device that skips frames identical to the last one shown.

    Thread-safe: the daemon may draw from the loop while a test or the
    control socket asks for the current frame.
    """

    def __init__(self, device: Any) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._last: bytes | None = None
        self.frame: Image.Image | None = None
        self.sent = 0
        self.skipped = 0

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.device.width), int(self.device.height))

    @property
    def mode(self) -> str:
        return str(self.device.mode)

    def show(self, image: Image.Image) -> bool:
        """Send ``image`` (converted to the device's mode) unless it is the frame shown now.

        Returns whether it was sent.
        """
        if image.size != self.size:
            raise ValueError(
                f"a {self.size[0]}x{self.size[1]} display cannot show a "
                f"{image.size[0]}x{image.size[1]} image"
            )
        if image.mode != self.mode:
            image = image.convert(self.mode)
        data = image.tobytes()
        with self._lock:
            if data == self._last:
                self.skipped += 1
                return False
            self.device.display(image)
            self._last = data
            self.frame = image.copy()
            self.sent += 1
            return True

    def clear(self) -> None:
        """Blank the panel."""
        self.show(Image.new(self.mode, self.size))

    def close(self) -> None:
        """Blank the panel and let luma release the bus."""
        with self._lock:
            self._last = None
        # The bus may already be gone; closing must not fail.
        with contextlib.suppress(Exception):
            self.device.cleanup()
