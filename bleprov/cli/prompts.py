"""Questions the ``bleprov`` command asks a person at the terminal.

Every prompt goes through :func:`ask` or :func:`ask_yes_no`, for two reasons:

* One Ctrl-C at a prompt is exit 130. A prompt inside ``asyncio.run`` used to swallow
  the first Ctrl-C: asyncio's SIGINT handler only cancels the main task, which cannot
  run while ``input()`` blocks the loop, so the prompt kept waiting; the second Ctrl-C
  became click's ``Abort`` (exit 1). While a question is on screen, SIGINT raises
  :class:`KeyboardInterrupt` at once, and an ``Abort`` caused by it is re-raised as one.
  End of input (Ctrl-D) stays click's ``Abort``.
* Time spent waiting for a person is not the protocol's time: :func:`seconds_at_prompts`
  is the total spent at prompts, which the reported durations leave out.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import typer

_seconds_at_prompts = 0.0


def seconds_at_prompts() -> float:
    """How long this process has waited for answers at prompts, in total."""
    return _seconds_at_prompts


@contextmanager
def _answering() -> Iterator[None]:
    """A question is on screen: Ctrl-C interrupts at once; the wait is timed."""
    global _seconds_at_prompts
    interrupted = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    started = time.monotonic()
    try:
        yield
    except typer.Abort:
        if interrupted:
            raise KeyboardInterrupt from None
        raise  # end of input (Ctrl-D): click's own abort
    finally:
        _seconds_at_prompts += time.monotonic() - started
        if main_thread:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def ask(text: str, *, hide_input: bool = False, **options: Any) -> Any:
    """``typer.prompt``, where one Ctrl-C raises KeyboardInterrupt (exit 130)."""
    with _answering():
        try:
            return typer.prompt(text, hide_input=hide_input, **options)
        except typer.Abort:
            if not hide_input:  # click ends the line itself only after a hidden prompt
                typer.echo("")
            raise


def ask_yes_no(text: str, *, default: bool) -> bool:
    """``typer.confirm``, where one Ctrl-C raises KeyboardInterrupt (exit 130)."""
    with _answering():
        try:
            return typer.confirm(text, default=default)
        except typer.Abort:
            typer.echo("")
            raise
