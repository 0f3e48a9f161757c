"""What both doubles share: joining the bus as a daemon, and knowing who called."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Annotated, Any, Final

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import NameFlag, RequestNameReply

#: The interface of the doubles' test-only controls (never part of a daemon's API).
TEST_IFACE: Final = "org.bleprov.Test"
#: How long a double waits for a client it calls back (GetAll, GetSecrets...).
CALLBACK_TIMEOUT: Final = 5.0

NoReply = Annotated[None, DBusSignature("")]
Paths = Annotated[list[str], DBusSignature("ao")]
Strings = Annotated[list[str], DBusSignature("as")]
Profile = Annotated[dict[str, dict[str, Variant]], DBusSignature("a{sa{sv}}")]

_caller: ContextVar[str] = ContextVar("dbus_doubles_caller", default="")


def caller() -> str:
    """The unique bus name of the client whose method call is being served.

    dbus-fast does not hand a method its message; daemons key state by the caller
    (BlueZ's advertisements, NetworkManager's agents), so :class:`Daemon` notes the
    sender of each call in a context variable just before dbus-fast dispatches it. An
    ``async`` method's task copies the context when it is created, so it sees its own
    caller even when other calls arrive before it runs.
    """
    return _caller.get()


class Daemon:
    """A double's connection to the bus, owning ``name`` like the real daemon."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._bus: MessageBus | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bus(self) -> MessageBus:
        assert self._bus is not None, "the double is not started"
        return self._bus

    async def start(self, address: str) -> None:
        """Connect, export the objects (:meth:`export`), then take the well-known name,
        so a client that sees the name finds the objects."""
        self._bus = await MessageBus(bus_address=address).connect()
        self._bus.add_message_handler(_note_caller)
        self.export()
        reply = await self._bus.request_name(self.name, NameFlag.DO_NOT_QUEUE)
        if reply is not RequestNameReply.PRIMARY_OWNER:
            raise RuntimeError(f"{self.name} is already owned on the test bus ({reply})")

    def export(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Leave the bus, as the daemon does when it stops (its name goes with it)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine in the background (cancelled by :meth:`stop`)."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def later(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        """Run a coroutine function after ``seconds``, as the daemon's timers do."""

        async def run() -> None:
            await asyncio.sleep(seconds)
            await work()

        self.spawn(run())

    async def call_client(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        """Call back a client (the daemon reading an advertisement, asking an agent);
        an error reply raises :class:`DBusError`."""
        reply = await asyncio.wait_for(
            self.bus.call(
                Message(
                    destination=destination,
                    path=path,
                    interface=interface,
                    member=member,
                    signature=signature,
                    body=body or [],
                )
            ),
            CALLBACK_TIMEOUT,
        )
        assert reply is not None
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise DBusError(reply.error_name or "unknown", text)
        result: list[Any] = reply.body
        return result


def _note_caller(message: Message) -> None:
    if message.message_type is MessageType.METHOD_CALL:
        _caller.set(message.sender or "")
