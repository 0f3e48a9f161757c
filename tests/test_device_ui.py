"""The device UI hooks: the console (stdin lines, signals) and GPIO on gpiozero's MockFactory."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from bleprov.core.advertising import DeviceState
from bleprov.service.device_ui import BLINK, ConsoleUi, GpioUi, UiActions, UiError, state_name


class Recorder:
    """UiActions that record what was done and let a test wait for it."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.changed = asyncio.Event()

    def actions(self) -> UiActions:
        return UiActions(button=lambda: self._add("button"), reset=lambda: self._add("reset"))

    def _add(self, what: str) -> None:
        self.events.append(what)
        self.changed.set()

    async def wait_for(self, count: int) -> list[str]:
        async with asyncio.timeout(10):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.events


@pytest.fixture
def pipe() -> Iterator[tuple[Any, io.RawIOBase]]:
    """Both ends as file objects: a test may close the writer, and closing it again here is
    a no-op. (os.close on the bare number twice closed whatever had reused it, e.g. the
    event loop pytest-asyncio < 1.0 makes at teardown, failing the next test.)"""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "r")
    writer = os.fdopen(write_fd, "wb", buffering=0)
    yield reader, writer
    reader.close()
    writer.close()


def test_state_names_are_what_the_ready_line_says() -> None:
    assert [state_name(s) for s in DeviceState] == [
        "virgin",
        "enrolled",
        "peer-bound",
        "locked-out",
    ]


async def test_console_reads_button_and_reset_lines_from_stdin(
    pipe: tuple[Any, io.RawIOBase],
) -> None:
    reader, writer = pipe
    out = io.StringIO()
    ui = ConsoleUi(out, reader, signals=False)
    recorder = Recorder()
    await ui.start(recorder.actions())
    writer.write(b"b\nhello\nr")
    assert await recorder.wait_for(1) == ["button"]
    writer.write(b"\n")
    assert await recorder.wait_for(2) == ["button", "reset"]
    assert "console: unknown input 'hello'" in out.getvalue()
    writer.close()  # end of input: the reader goes, nothing breaks
    await asyncio.sleep(0.05)
    assert ui._reading is None
    await ui.close()


async def test_console_drops_an_endless_line(pipe: tuple[Any, io.RawIOBase]) -> None:
    reader, writer = pipe
    ui = ConsoleUi(io.StringIO(), reader, signals=False)
    recorder = Recorder()
    await ui.start(recorder.actions())
    writer.write(b"x" * 5000)
    writer.write(b"\nb\n")
    assert await recorder.wait_for(1) == ["button"]
    assert len(ui._buffer) == 0
    await ui.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGUSR1/SIGUSR2 are POSIX")
async def test_console_signals_press_and_reset() -> None:
    ui = ConsoleUi(io.StringIO(), None, signals=True)
    recorder = Recorder()
    await ui.start(recorder.actions())
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await recorder.wait_for(1) == ["button"]
        os.kill(os.getpid(), signal.SIGUSR2)
        assert await recorder.wait_for(2) == ["button", "reset"]
    finally:
        await ui.close()
    assert ui._signals_added == []


async def test_console_with_unwatchable_stdin_still_starts(tmp_path: Any) -> None:
    path = tmp_path / "input"
    path.write_text("b\n")
    with path.open() as regular_file:  # epoll cannot watch a regular file
        ui = ConsoleUi(io.StringIO(), regular_file, signals=False)
        await ui.start(Recorder().actions())
        assert ui._reading is None
        await ui.close()


def test_console_prints_numbers_and_states() -> None:
    out = io.StringIO()
    ui = ConsoleUi(out, None)
    ui.show_number(42)
    ui.clear()
    ui.show_state(DeviceState.LOCKED_OUT)
    assert out.getvalue().splitlines() == ["display: 000042", "display: cleared", "led: locked-out"]


# --------------------------------------------------------------------------- GPIO


@pytest.fixture
def factory() -> Iterator[Any]:
    from gpiozero.pins.mock import MockFactory

    pins = MockFactory()
    yield pins
    pins.reset()


async def test_gpio_button_and_reset_buttons(factory: Any) -> None:
    ui = GpioUi(
        button_pin=17,
        reset_pin=27,
        led_pin=22,
        long_press=0.05,
        pin_factory=factory,
        display=ConsoleUi(io.StringIO(), None, signals=False),
    )
    recorder = Recorder()
    await ui.start(recorder.actions())
    try:
        button, reset = factory.pin(17), factory.pin(27)
        button.drive_low()  # pressed (pull-up)
        assert await recorder.wait_for(1) == ["button"]
        button.drive_high()
        reset.drive_low()
        assert await recorder.wait_for(2) == ["button", "reset"]  # held past long_press
        reset.drive_high()
    finally:
        await ui.close()


async def test_gpio_one_button_short_press_and_long_hold(factory: Any) -> None:
    ui = GpioUi(
        button_pin=17,
        long_press=0.05,
        pin_factory=factory,
        display=ConsoleUi(io.StringIO(), None, signals=False),
    )
    recorder = Recorder()
    await ui.start(recorder.actions())
    try:
        pin = factory.pin(17)
        pin.drive_low()
        pin.drive_high()  # released at once: a press
        assert await recorder.wait_for(1) == ["button"]
        pin.drive_low()
        assert await recorder.wait_for(2) == ["button", "reset"]  # held: the reset
        pin.drive_high()  # releasing a hold is not also a press
        await asyncio.sleep(0.05)
        assert recorder.events == ["button", "reset"]
    finally:
        await ui.close()


async def test_gpio_led_shows_the_state_and_numbers(factory: Any) -> None:
    out = io.StringIO()
    ui = GpioUi(led_pin=22, pin_factory=factory, display=ConsoleUi(out, None, signals=False))
    assert ui.led is not None
    led = ui.led = mock.Mock(wraps=ui.led)
    await ui.start(Recorder().actions())
    try:
        on, off = BLINK[DeviceState.VIRGIN] or (0, 0)
        led.blink.assert_called_with(on_time=on, off_time=off, background=True)
        ui.show_state(DeviceState.ENROLLED)
        led.on.assert_called_once_with()
        assert factory.pin(22).state
        ui.show_number(123456)
        led.blink.assert_called_with(on_time=0.2, off_time=0.2, background=True)
        ui.clear()
        assert led.on.call_count == 2  # back to the state's pattern
        assert out.getvalue().splitlines() == ["display: 123456", "display: cleared"]
    finally:
        await ui.close()


def test_gpio_without_gpiozero_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    with pytest.raises(UiError, match=r"bleprov\[gpio\]"):
        GpioUi(button_pin=17)


def test_gpio_bad_pin_is_a_typed_error(factory: Any) -> None:
    with pytest.raises(UiError, match="pin numbers"):
        GpioUi(button_pin=17, led_pin=17, pin_factory=factory)
