"""Run one input through one harness and say whether it found something.

A finding is either an exception the harness does not allow (anything but the decoder's
documented typed errors) or an input that took longer than the harness's time bound. The
bound is CPU time of this process (``ITIMER_VIRTUAL``), so a loaded machine does not make
a fast decoder look slow. When it expires a :class:`TimeBoundExceeded` is raised in the
decoder; C code may swallow it (cbor2's encoder reports it as an "exception ignored"
and gives up), so the expiry is also recorded in a flag that decides.
"""

from __future__ import annotations

import linecache
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Final, Literal

#: Seconds of CPU one input may take, unless its harness says otherwise.
DEFAULT_TIME_BOUND: Final = 1.0
#: After the first expiry the timer fires again this often, in case the first
#: exception was swallowed by C code that kept going.
_REPEAT: Final = 0.05


class TimeBoundExceeded(BaseException):
    """Raised into a decoder that ran past its harness's time bound. A BaseException, so
    that a decoder's ``except Exception`` does not turn it into a typed error."""


@dataclass(frozen=True)
class Finding:
    """What one input did that it must not."""

    harness: str
    kind: Literal["exception", "slow"]
    #: The exception's qualified type name ("cbor2.CBOREncodeValueError"); for a slow
    #: input, "slow".
    error: str
    #: The innermost frame in bleprov (``bleprov/core/session/messages.py:115``), or in
    #: whatever raised if no bleprov frame is on the traceback.
    where: str
    message: str
    seconds: float
    detail: str = ""
    #: The source line at ``where``.
    code: str = ""

    @property
    def signature(self) -> str:
        """What findings are deduplicated by: kind, type and the bleprov line."""
        return f"{self.kind} {self.error} at {self.where}"


class _Alarm:
    """SIGVTALRM after ``seconds`` of CPU, then every :data:`_REPEAT` until disarmed.

    Only in the main thread (elsewhere the time is only measured). The handler raises only
    while armed, and :meth:`disarm` clears that first, so an expiry racing the disarm
    cannot escape past it."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self.armed = False
        self._active = seconds is not None and (
            threading.current_thread() is threading.main_thread()
        )
        self._previous_handler: Any = None
        self._previous_hook: Any = None
        self._swallowed: list[Any] = []

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self.expired = True
            raise TimeBoundExceeded

    def arm(self) -> None:
        if not self._active or self.seconds is None:
            return
        self._previous_handler = signal.signal(signal.SIGVTALRM, self._expire)
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._swallowed.append
        self.armed = True
        signal.setitimer(signal.ITIMER_VIRTUAL, self.seconds, _REPEAT)

    def disarm(self) -> None:
        """Idempotent; retried until it completes."""
        while True:
            try:
                self._disarm()
                return
            except TimeBoundExceeded:
                self.expired = True

    def _disarm(self) -> None:
        self.armed = False
        if self._previous_hook is None:
            return
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, self._previous_handler)
        hook, self._previous_hook = self._previous_hook, None
        sys.unraisablehook = hook
        if not self.expired:
            for unraisable in self._swallowed:  # not ours: let the caller's hook judge them
                hook(unraisable)
        self._swallowed.clear()


def _qualified(error: BaseException) -> str:
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _short_path(filename: str) -> str:
    for marker in ("/bleprov/", "/fuzz/"):
        index = filename.rfind(marker)
        if index >= 0:
            return filename[index + 1 :]
    parts = filename.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def _where(tb: TracebackType | None) -> tuple[str, str]:
    """The innermost bleprov frame (else the innermost frame) and its source line."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "/bleprov/" in f.filename] or frames
    if not ours:
        return "?", ""
    frame = ours[-1]
    code = linecache.getline(frame.filename, frame.lineno or 0).strip()
    return f"{_short_path(frame.filename)}:{frame.lineno}", code


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_input(
    name: str,
    call: Callable[[bytes], object],
    allowed: tuple[type[BaseException], ...],
    data: bytes,
    *,
    time_bound: float | None = DEFAULT_TIME_BOUND,
) -> Finding | None:
    """Feed ``data`` to ``call``; None if it returned or raised an allowed error in time."""
    alarm = _Alarm(time_bound)
    started = time.process_time()
    error: BaseException | None = None
    interrupted: BaseException | None = None
    try:
        try:
            alarm.arm()
            call(data)
        finally:
            alarm.disarm()
    except TimeBoundExceeded as exc:
        error = exc
    except allowed as exc:
        interrupted = exc  # for a slow input: where it stopped
    except Exception as exc:
        error = exc
    finally:
        alarm.disarm()
    seconds = time.process_time() - started
    if alarm.expired or (time_bound is not None and seconds > time_bound):
        stopped = error or interrupted
        where, code = _where(stopped.__traceback__) if stopped is not None else ("?", "")
        return Finding(
            name,
            "slow",
            "slow",
            where,
            f"more than {time_bound:g} s of CPU ({seconds:.2f} s before it stopped)",
            seconds,
            code=code,
        )
    if error is None:
        return None
    where, code = _where(error.__traceback__)
    return Finding(
        name,
        "exception",
        _qualified(error),
        where,
        _first_line(error),
        seconds,
        "".join(traceback.format_exception(error)),
        code,
    )


__all__ = ["DEFAULT_TIME_BOUND", "Finding", "TimeBoundExceeded", "run_input"]
