"""Cutting a device's radio link at a chosen point: after a whole message, or inside one.

:class:`CuttingPeripheral` wraps the device's real peripheral (bumble on the virtual
radio) and watches the DATA frames of the framing layer (docs/protocol.md, section 4) both
ways, as the device's radio sees them. When its :class:`Cut` is reached it drops the link
there: nothing more is delivered either way, as when a host walks out of range. The cut
is one-shot: the next connection (a host coming back) is served normally.

A point is named by direction and message number (1 = that direction's first message):
``end`` cuts right after the message's last frame (a message boundary: a host-to-device
message is handed to the device, which may act on it, but nothing it answers leaves), and
``inside`` right after the first frame of a message of several frames (the rest never
arrives).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from bleprov.core.profile import GattProfile
from bleprov.radio.peripheral import (
    CentralConnected,
    ConnectionId,
    EventHandler,
    FrameReceived,
    Peripheral,
    PeripheralEvent,
)

_KIND_MASK = 0xC0
_DATA = 0x00
_FIRST = 0x20
#: DATA first frame: ctl, seq, u24 total length, then payload.
_FIRST_HEADER = 5
#: DATA continuation: ctl, seq, then payload.
_NEXT_HEADER = 2


class Direction(enum.Enum):
    UP = "host->device"
    DOWN = "device->host"


@dataclass(frozen=True)
class Cut:
    direction: Direction
    message: int
    inside: bool = False

    def __str__(self) -> str:
        where = "inside" if self.inside else "after"
        return f"{where} {self.direction.value} message {self.message}"


@dataclass
class MessageTrace:
    """One message as the device's radio saw it: its direction, number and frames."""

    direction: Direction
    number: int
    frames: int = 0


@dataclass
class _Reassembly:
    remaining: int = 0
    count: int = 0


@dataclass
class CuttingPeripheral(Peripheral):
    """The device's peripheral, with a cut that can be armed (see the module doc)."""

    inner: Peripheral
    cut: Cut | None = None
    #: Called when the cut happens (tests record where).
    on_cut: Callable[[Cut], None] = lambda cut: None
    #: Every complete message of the current connection, in order (both directions).
    trace: list[MessageTrace] = field(default_factory=list)
    done: bool = False
    #: While set, the device does not advertise: out of every host's reach.
    hidden: bool = False

    def __post_init__(self) -> None:
        self.capabilities = self.inner.capabilities
        self._on_event: EventHandler | None = None
        self._cutting = False
        self._connection: ConnectionId | None = None
        self._state = {Direction.UP: _Reassembly(), Direction.DOWN: _Reassembly()}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wanted: tuple[bytes, str] | None = None

    def arm(self, cut: Cut) -> None:
        self.cut, self.done = cut, False

    def cut_now(self) -> None:
        """Drop the link at once (a point found by the test, not by counting)."""
        self._cutting = True
        if self._connection is not None:
            self._spawn(self.inner.disconnect(self._connection))

    # ------------------------------------------------------------------ Peripheral

    async def start(self, profile: GattProfile, on_event: EventHandler) -> None:
        self._on_event = on_event
        await self.inner.start(profile, self._event)

    def set_info(self, value: bytes) -> None:
        self.inner.set_info(value)

    async def start_advertising(self, service_data: bytes, local_name: str) -> None:
        self._wanted = (service_data, local_name)
        if self.hidden:
            await self.inner.stop_advertising()
            return
        await self.inner.start_advertising(service_data, local_name)

    async def stop_advertising(self) -> None:
        self._wanted = None
        await self.inner.stop_advertising()

    async def back_in_reach(self) -> None:
        """Hosts hear it again: what the device last asked to advertise is on the air (the
        device never knew it was out of reach, so it asks nothing new)."""
        self.hidden = False
        if self._wanted is not None:
            await self.inner.start_advertising(*self._wanted)

    async def send(self, connection: ConnectionId, frame: bytes) -> None:
        if self._cutting:
            return
        await self.inner.send(connection, frame)
        self._frame(Direction.DOWN, frame)

    async def disconnect(self, connection: ConnectionId) -> None:
        await self.inner.disconnect(connection)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.inner.close()

    # -------------------------------------------------------------------- internals

    def _event(self, event: PeripheralEvent) -> None:
        assert self._on_event is not None
        if isinstance(event, CentralConnected):
            self._cutting = False
            self._connection = event.connection
            self._state = {Direction.UP: _Reassembly(), Direction.DOWN: _Reassembly()}
            self.trace = []
        elif isinstance(event, FrameReceived):
            if self._cutting:
                return
            self._on_event(event)
            self._frame(Direction.UP, event.data)
            return
        self._on_event(event)

    def _frame(self, direction: Direction, frame: bytes) -> None:
        if not frame or frame[0] & _KIND_MASK != _DATA:
            return  # CREDIT, OPEN, RESET: not part of a message
        state = self._state[direction]
        if frame[0] & _FIRST:
            total = int.from_bytes(frame[2:5], "big")
            state.count += 1
            state.remaining = total - (len(frame) - _FIRST_HEADER)
            self.trace.append(MessageTrace(direction, state.count, 1))
            first = True
        else:
            state.remaining -= len(frame) - _NEXT_HEADER
            for message in reversed(self.trace):
                if message.direction is direction:
                    message.frames += 1
                    break
            first = False
        cut = self.cut
        if cut is None or self.done or cut.direction is not direction:
            return
        if cut.message != state.count:
            return
        if (cut.inside and first and state.remaining > 0) or (
            not cut.inside and state.remaining <= 0
        ):
            self.done = True
            self.on_cut(cut)
            self.cut_now()

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
