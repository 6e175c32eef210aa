"""The handset the daemon drives, built from ``[hardware]``: inputs, display, ringer and LED.

Three backends share one shape (:class:`Handset`):

* ``gpio``: the hook switch, matrix keypad and buttons on the Pi's pins
  (:class:`riptphone.hw.gpio.GpioHandset`), the OLED over I2C, and the
  optional ringer and LED outputs;
* ``virtual``: the keyboard (:class:`riptphone.hw.virtual.KeyboardHandset`)
  and a display in the terminal (text lines, or luma.emulator) or a window
  (the last two need the optional ``luma.emulator``, imported only for them);
* ``none``: nothing; the control socket is the only way in.

Hardware events arrive on the adapters' threads; :func:`to_input` turns each
into the state machine's input, and :class:`ResetChord` watches for the
factory-reset hold (``*`` and ``#`` held together for :data:`RESET_HOLD_S`
on hook, which becomes :class:`ResetRequested`); the handset posts the
inputs into the asyncio loop with ``call_soon_threadsafe``, so the machine is
only touched from the loop.
Drawing to the OLED is I2C traffic (~25 ms a frame), so :meth:`Handset.show`
renders and sends on a worker thread, dropping frames that a newer one
replaced while it waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from riptphone.app.inputs import (
    Button,
    ButtonLong,
    HookOff,
    HookOn,
    Input,
    Key,
    KeyLong,
    ResetRequested,
)
from riptphone.config import HardwareConfig
from riptphone.hw.events import (
    ButtonLongPress,
    ButtonUp,
    HookChanged,
    HwEvent,
    KeyDown,
    KeyLongPress,
    KeyUp,
)
from riptphone.hw.virtual import KeyboardHandset, help_text
from riptphone.ui.model import Screen
from riptphone.ui.text import lines

if TYPE_CHECKING:
    from riptphone.hw.oled import Display

# gpiozero (riptphone.hw.gpio), luma and Pillow (riptphone.hw.oled, riptphone.ui.render)
# are imported by the backend that uses them, not here: together they hold some 12 MB
# of the daemon's memory, which a phone without pins or an OLED has no use for.

log = logging.getLogger(__name__)


class HandsetError(Exception):
    """The configured hardware cannot be opened; one line saying what to check."""


def to_input(event: HwEvent) -> Input | None:
    """The machine's input for one hardware event (None: nothing to do).

    A key or button acts when released after a short press, or when the
    long-press time is reached: the machine gives some keys two meanings
    (``#`` dials, a held ``#`` toggles do-not-disturb), so the press itself
    cannot decide.
    """
    if isinstance(event, HookChanged):
        return HookOff() if event.off_hook else HookOn()
    if isinstance(event, KeyUp):
        return None if event.long else Key(event.key)
    if isinstance(event, KeyLongPress):
        return KeyLong(event.key)
    if isinstance(event, ButtonUp):
        return None if event.long else Button(event.name)
    if isinstance(event, ButtonLongPress):
        return ButtonLong(event.name)
    return None


RESET_KEYS = frozenset("*#")
RESET_HOLD_S = 10.0
"""How long ``*`` and ``#`` are held together, on hook, for a factory reset."""


class ResetChord:
    """Whether the reset keys are held together on hook (sans-IO; the handset times it).

    ``*`` and ``#`` share the bottom row of a matrix keypad, in different
    columns: two keys are never a ghosting pattern (that takes three corners
    of a rectangle, :func:`riptphone.hw.keypad.ambiguous`), so both read.
    Once both are down, their long presses and releases are swallowed until
    both are up again: a held ``#`` alone toggles do-not-disturb, which the
    reset hold must not do on its way.
    """

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.off_hook = False
        self.chord = False  # both went down together; swallow their key events

    @property
    def held(self) -> bool:
        """Both reset keys down, on hook: the hold is being timed."""
        return self.down >= RESET_KEYS and not self.off_hook

    def feed(self, event: HwEvent) -> bool:
        """Note ``event``; True if it must not reach the machine."""
        if isinstance(event, HookChanged):
            self.off_hook = event.off_hook
            return False
        key = getattr(event, "key", None)
        if key not in RESET_KEYS:
            return False
        if isinstance(event, KeyDown):
            self.down.add(key)
            if self.down >= RESET_KEYS:
                self.chord = True
            return False
        if isinstance(event, KeyUp):
            self.down.discard(key)
            swallow = self.chord
            if not self.down:
                self.chord = False
            return swallow
        return self.chord  # a long press while the chord is held


class TextDisplay:
    """The virtual handset's display as text: the screen's lines, boxed, when they change."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out if out is not None else sys.stdout
        self._last: list[str] | None = None

    def show(self, screen: Screen) -> None:
        shown = lines(screen)
        if shown == self._last:
            return
        self._last = shown
        width = max([21, *(len(line) for line in shown)])
        box = ["+" + "-" * (width + 2) + "+"]
        box += [f"| {line.ljust(width)} |" for line in shown]
        box.append(box[0])
        with contextlib.suppress(OSError, ValueError):
            self._out.write("\n".join(box) + "\n")
            self._out.flush()


class Handset:
    """Inputs, display and outputs of one backend; see the module docstring."""

    def __init__(
        self,
        config: HardwareConfig,
        loop: asyncio.AbstractEventLoop,
        on_input: Callable[[Input], object],
        *,
        pin_factory: Any = None,
        display_device: Any = None,
        text_out: TextIO | None = None,
    ) -> None:
        self.config = config
        self._loop = loop
        self._on_input = on_input
        self.gpio: Any = None
        self.keyboard: Any = None
        self.display: Display | None = None
        self.text: TextDisplay | None = None
        self._pending: Screen | None = None
        self._shown: Screen | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._drawer: threading.Thread | None = None
        self.reset_hold_s = RESET_HOLD_S
        self._chord = ResetChord()
        self._chord_lock = threading.Lock()  # adapters report on their own threads
        self._reset_timer: asyncio.TimerHandle | None = None
        try:
            self._open(pin_factory, display_device, text_out)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ opening

    def _open(self, pin_factory: Any, display_device: Any, text_out: TextIO | None) -> None:
        config = self.config
        if config.backend == "gpio":
            from riptphone.hw.gpio import GpioHandset  # noqa: PLC0415 (see the imports)
            from riptphone.hw.oled import DisplayError, open_display  # noqa: PLC0415

            try:
                self.gpio = GpioHandset(
                    self._post,
                    hook_pin=config.hook_pin,
                    hook_wiring=config.hook_wiring,
                    hook_debounce_ms=config.hook_debounce_ms,
                    keypad=config.keypad,
                    keypad_rows=config.keypad_rows,
                    keypad_columns=config.keypad_columns,
                    keypad_debounce_ms=config.keypad_debounce_ms,
                    long_press_ms=config.long_press_ms,
                    buttons=config.buttons,
                    ringer_pin=config.ringer_pin,
                    led_pin=config.led_pin,
                    pin_factory=pin_factory,
                )
            except Exception as exc:  # gpiozero raises many kinds; all mean "check the pins"
                raise HandsetError(f"cannot open the GPIO handset: {exc}") from None
            if display_device is None and config.display != "none":
                try:
                    display_device = open_display(
                        config.display,
                        config.display_i2c_port,
                        config.display_i2c_address,
                        config.display_rotate,
                    )
                except DisplayError as exc:
                    # The phone still works without its screen: say so once.
                    log.error("event=display_unavailable reason=%r", str(exc))
        elif config.backend == "virtual":
            self.keyboard = KeyboardHandset(self._post)
            log.info("event=virtual_handset %s", help_text())
            if display_device is None:
                display_device = _emulator(config.virtual_display)
            if display_device is None and config.virtual_display == "text":
                self.text = TextDisplay(text_out)
        if display_device is not None:
            self._start_drawer(display_device)

    def start(self) -> None:
        """Start reading the inputs (each reports its state once)."""
        if self.gpio is not None:
            self.gpio.start()
        if self.keyboard is not None:
            self.keyboard.start()
        if self.gpio is None and self.keyboard is None:
            # No handset: the control socket's hook is the only one, down until told
            # otherwise.  Said once like the others, so the machine knows the hook (a
            # call resumed after a restart waits for it: docs/phone-states.md).
            self._post(HookChanged(False))

    # ------------------------------------------------------------ inputs

    def _post(self, event: HwEvent) -> None:
        # Runs on an adapter's thread.
        with self._chord_lock:
            was = self._chord.held
            swallow = self._chord.feed(event)
            held = self._chord.held
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are shutting down
            if held != was:
                self._loop.call_soon_threadsafe(self._time_reset, held)
            value = None if swallow else to_input(event)
            if value is not None:
                self._loop.call_soon_threadsafe(self._on_input, value)

    def _time_reset(self, held: bool) -> None:
        # On the loop: the hold starts (a timer) or ends before its time (no reset).
        if self._reset_timer is not None:
            self._reset_timer.cancel()
            self._reset_timer = None
        if held:
            log.info("event=reset_hold_started hold_s=%g", self.reset_hold_s)
            self._reset_timer = self._loop.call_later(self.reset_hold_s, self._reset_held)

    def _reset_held(self) -> None:
        self._reset_timer = None
        log.warning("event=reset_held")
        self._on_input(ResetRequested("keypad"))

    # ------------------------------------------------------------ outputs

    def show(self, screen: Screen) -> None:
        """Put ``screen`` up (never blocks the loop)."""
        self._shown = screen
        if self.text is not None:
            self.text.show(screen)
        if self.display is None:
            return
        with self._wake:
            self._pending = screen
            self._wake.notify()

    def ring(self, on: bool) -> None:
        """The ringer output and the LED's blinking while a call rings here."""
        gpio = self.gpio
        if gpio is None:
            return
        if gpio.ringer is not None:
            gpio.ringer.ring() if on else gpio.ringer.off()
        if gpio.led is not None:
            gpio.led.blink() if on else gpio.led.off()

    def in_call(self, on: bool) -> None:
        """The LED is lit while a call is carried here."""
        gpio = self.gpio
        if gpio is not None and gpio.led is not None:
            gpio.led.on() if on else gpio.led.off()

    def _draw_loop(self) -> None:
        from riptphone.ui.render import render  # noqa: PLC0415 (see the imports)

        display = self.display
        assert display is not None
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                screen, self._pending = self._pending, None
            assert screen is not None
            try:
                display.show(render(screen))
            except Exception as exc:  # a display error must never stop the phone
                log.warning("event=display_failed reason=%r", str(exc))

    def reopen_display(self, config: HardwareConfig) -> None:
        """The OLED with new settings (a re-read configuration), showing the same screen.

        Only the GPIO handset's OLED is reopened here; the virtual display keeps its kind
        until a restart.  A display that cannot be opened is one line, as at start.
        """
        if self.config.backend != "gpio":
            return
        self._stop_drawer()
        if self.display is not None:
            self.display.close()
            self.display = None
        self.config = dataclasses.replace(
            self.config,
            display=config.display,
            display_i2c_port=config.display_i2c_port,
            display_i2c_address=config.display_i2c_address,
            display_rotate=config.display_rotate,
        )
        if config.display == "none":
            return
        from riptphone.hw.oled import DisplayError, open_display  # noqa: PLC0415

        try:
            device = open_display(
                config.display,
                config.display_i2c_port,
                config.display_i2c_address,
                config.display_rotate,
            )
        except DisplayError as exc:
            log.error("event=display_unavailable reason=%r", str(exc))
            return
        self._start_drawer(device)
        if self._shown is not None:
            self.show(self._shown)

    def _start_drawer(self, device: Any) -> None:
        from riptphone.hw.oled import Display  # noqa: PLC0415 (see the imports)

        self.display = Display(device)
        with self._wake:
            self._closing = False
        self._drawer = threading.Thread(target=self._draw_loop, name="display", daemon=True)
        self._drawer.start()

    def _stop_drawer(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._drawer is not None:
            self._drawer.join(2.0)
            self._drawer = None

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._drawer is not None:
            self._drawer.join(2.0)
        if self.keyboard is not None:
            self.keyboard.stop()
        if self.gpio is not None:
            self.gpio.close()
        if self.display is not None:
            self.display.close()


def _emulator(kind: str) -> Any:
    """A luma.emulator device for the virtual display, or None for 'text'/'none'."""
    if kind not in ("asciiblock", "pygame"):
        return None
    # Imported here: luma.emulator is an optional extra (pip install luma.emulator), so the
    # daemon runs from a plain install with the text display or the real OLED.
    try:
        from luma.emulator import device as emulator  # noqa: PLC0415
    except ImportError:
        log.error(
            "event=display_unavailable kind=%s reason=%r",
            kind,
            "luma.emulator is not installed (pip install luma.emulator)",
        )
        return None
    try:
        if kind == "asciiblock":
            return emulator.asciiblock(width=128, height=64, mode="1")
        return emulator.pygame(width=128, height=64, mode="1", scale=4)
    except Exception as exc:  # no terminal, no pygame, no window system
        log.error("event=display_unavailable kind=%s reason=%r", kind, str(exc))
        return None
