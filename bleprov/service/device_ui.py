"""The device's little user interface: a number display, a button, a reset and a light.

The session server only needs ``show_number`` and ``clear`` (``bleprov.session.DeviceUi``);
the daemon also wants the state shown (an LED pattern) and the two physical inputs read:
a short press of the button opens the button-mode window, the reset (a long press, or its
own button) lifts a lockout of the attempt limiter. Both inputs arrive as callbacks
(:class:`UiActions`), always on the event loop, so the UI knows nothing of the runtime.

Two implementations: :class:`ConsoleUi` (numbers printed; the button is a line ``b`` on
stdin or SIGUSR1, the reset a line ``r`` or SIGUSR2), the default and what tests drive,
and :class:`GpioUi` on gpiozero for a Raspberry Pi (``pip install 'bleprov[gpio]'``),
imported lazily so the rest of bleprov never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Final, Protocol

from bleprov.core.advertising import DeviceState
from bleprov.core.errors import BleprovError

logger = logging.getLogger(__name__)

#: How long the reset button is held to count as a reset (seconds).
DEFAULT_LONG_PRESS: Final = 5.0
#: LED patterns (on seconds, off seconds) per state; None = steady on.
BLINK: Final[dict[DeviceState, tuple[float, float] | None]] = {
    DeviceState.VIRGIN: (1.0, 1.0),
    DeviceState.ENROLLED: None,
    DeviceState.PEER_BOUND: None,
    DeviceState.LOCKED_OUT: (0.1, 0.1),
}
#: While a number is shown (compare mode) the LED blinks quickly: look at the display.
NUMBER_BLINK: Final = (0.2, 0.2)
MAX_LINE: Final = 256


class UiError(BleprovError):
    """The device UI could not be set up (missing gpiozero, bad pin)."""


def state_name(state: DeviceState) -> str:
    """How logs and the ready line name a state: virgin, enrolled, peer-bound, locked-out."""
    return state.name.lower().replace("_", "-")


@dataclass(frozen=True)
class UiActions:
    """What the physical inputs do; called on the event loop."""

    button: Callable[[], None]
    reset: Callable[[], None]


class DeviceUiHooks(Protocol):
    """Everything the daemon asks of a device's UI."""

    def show_number(self, number: int) -> None: ...

    def clear(self) -> None: ...

    def show_state(self, state: DeviceState) -> None: ...

    async def start(self, actions: UiActions) -> None: ...

    async def close(self) -> None: ...


class ConsoleUi:
    """Numbers and states printed; button and reset from stdin lines or signals.

    stdin is optional (a service has none): when it is not a pipe or terminal the event
    loop cannot watch it, and only the signals work.
    """

    def __init__(
        self,
        out: IO[str] | None = None,
        stdin: IO[str] | None = None,
        *,
        signals: bool = True,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.stdin = stdin
        self.signals = signals
        self._actions: UiActions | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading: int | None = None
        self._buffer = b""
        self._signals_added: list[int] = []

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show_number(self, number: int) -> None:
        self._print(f"display: {number:06d}")

    def clear(self) -> None:
        self._print("display: cleared")

    def show_state(self, state: DeviceState) -> None:
        self._print(f"led: {state_name(state)}")

    async def start(self, actions: UiActions) -> None:
        self._actions = actions
        self._loop = loop = asyncio.get_running_loop()
        if self.stdin is not None:
            fd = self.stdin.fileno()
            try:
                os.set_blocking(fd, False)
                loop.add_reader(fd, self._readable, fd)
                self._reading = fd
            except (OSError, ValueError) as exc:  # /dev/null or a file: not watchable
                logger.info("console UI: stdin not watched (%s); use SIGUSR1/SIGUSR2", exc)
        if self.signals:
            for signum, action in (
                (signal.SIGUSR1, actions.button),
                (signal.SIGUSR2, actions.reset),
            ):
                loop.add_signal_handler(signum, action)
                self._signals_added.append(signum)

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._command(line.strip().decode(errors="replace"))
        if len(self._buffer) > MAX_LINE:  # no command is that long: drop the noise
            self._buffer = b""

    def _command(self, line: str) -> None:
        assert self._actions is not None
        if line == "b":
            self._actions.button()
        elif line == "r":
            self._actions.reset()
        elif line:
            self._print(f"console: unknown input {line[:20]!r}: 'b' = button, 'r' = reset")

    def _stop_reading(self) -> None:
        if self._reading is not None and self._loop is not None:
            self._loop.remove_reader(self._reading)
            self._reading = None

    async def close(self) -> None:
        self._stop_reading()
        if self._loop is not None:
            for signum in self._signals_added:
                self._loop.remove_signal_handler(signum)
        self._signals_added.clear()


class GpioUi:
    """A Raspberry Pi's UI on gpiozero: a button, an optional reset button and an LED.

    With no reset pin (or the same pin as the button), holding the button for
    ``long_press`` seconds is the reset and a shorter press is the button. gpiozero calls
    back on its own threads; every action is handed to the event loop. There is no
    display: numbers go to ``display`` (a console by default) and the LED blinks fast.
    """

    def __init__(
        self,
        *,
        button_pin: int | str | None = None,
        reset_pin: int | str | None = None,
        led_pin: int | str | None = None,
        long_press: float = DEFAULT_LONG_PRESS,
        pin_factory: Any = None,
        display: ConsoleUi | None = None,
    ) -> None:
        try:
            import gpiozero
        except ImportError:
            raise UiError(
                "the GPIO UI needs gpiozero: pip install 'bleprov[gpio]' (or use --ui console)"
            ) from None
        self.display = display if display is not None else ConsoleUi(signals=False)
        self.long_press = long_press
        self._loop: asyncio.AbstractEventLoop | None = None
        self._actions: UiActions | None = None
        self._state = DeviceState.VIRGIN
        self._showing_number = False
        self._held = False
        try:
            self.button = (
                gpiozero.Button(button_pin, hold_time=long_press, pin_factory=pin_factory)
                if button_pin is not None
                else None
            )
            shared = reset_pin is None or reset_pin == button_pin
            self.reset_button = (
                None
                if shared
                else gpiozero.Button(reset_pin, hold_time=long_press, pin_factory=pin_factory)
            )
            self.led = (
                gpiozero.LED(led_pin, pin_factory=pin_factory) if led_pin is not None else None
            )
        except gpiozero.GPIOZeroError as exc:
            raise UiError(f"GPIO setup failed: {exc}; check the pin numbers (BCM)") from None

    def _call(self, action: Callable[[], None]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(action)

    async def start(self, actions: UiActions) -> None:
        self._loop = asyncio.get_running_loop()
        self._actions = actions
        if self.button is not None:
            if self.reset_button is None:
                self.button.when_pressed = self._pressed
                self.button.when_held = self._held_long
                self.button.when_released = self._released
            else:
                self.button.when_pressed = lambda: self._call(actions.button)
        if self.reset_button is not None:
            self.reset_button.when_held = lambda: self._call(actions.reset)
        self._show_led()

    # One shared button: a short press is the button, a long one the reset.
    def _pressed(self) -> None:
        self._held = False

    def _held_long(self) -> None:
        self._held = True
        if self._actions is not None:
            self._call(self._actions.reset)

    def _released(self) -> None:
        if not self._held and self._actions is not None:
            self._call(self._actions.button)
        self._held = False

    def _show_led(self) -> None:
        if self.led is None:
            return
        pattern = NUMBER_BLINK if self._showing_number else BLINK.get(self._state)
        if pattern is None:
            self.led.on()
        else:
            self.led.blink(on_time=pattern[0], off_time=pattern[1], background=True)

    def show_number(self, number: int) -> None:
        self._showing_number = True
        self.display.show_number(number)
        self._show_led()

    def clear(self) -> None:
        self._showing_number = False
        self.display.clear()
        self._show_led()

    def show_state(self, state: DeviceState) -> None:
        self._state = state
        self._show_led()

    async def close(self) -> None:
        for device in (self.button, self.reset_button, self.led):
            if device is not None:
                with contextlib.suppress(Exception):  # closing a pin must not stop shutdown
                    device.close()
