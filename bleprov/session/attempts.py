"""The device's attempt counters between RAM and their store: :class:`AttemptLedger`.

The rule (docs/protocol.md section 6, "Attempt counters"): an attempt is durably counted
before the device reveals anything about it. The ledger keeps that rule with as few
store writes as it can, and none on the reply path when a reservation was made:

- a connection's reservation is written as soon as the session opens, before its HELLO
  can arrive (:meth:`AttemptLedger.cover`; on the event loop, or in a worker thread:
  :data:`WRITE_IN_THREAD`);
- whatever a session sends waits until the stored state covers the counters in RAM
  (:meth:`~bleprov.core.attempts.AttemptLimits.covers`): after a durable reservation a
  HELLO's count is already covered, so the reply waits for nothing;
- settling (a success's reset, a failure's count for its one secret, a reservation no
  HELLO used) is written after the session, a little later (:attr:`settle_delay`), so that
  a next connection's reservation, or a commit (:meth:`commit_record`), writes it too.
  A connection flood reuses the one stored reservation and writes nothing more.

Writes are serialised (each waits for the one before), so the state last written is the
one last stored, and :attr:`durable` says what the store holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from bleprov.core.attempts import AttemptLimiter, AttemptLimits
from bleprov.core.errors import MalformedData

logger = logging.getLogger("bleprov.radio.secure_link")

#: Seconds after a session ends before its settled counters are written, unless a new
#: connection's reservation or a commit writes them first.
DEFAULT_SETTLE_DELAY: Final = 2.0
#: Whether writes run in a worker thread. On the event loop (the default) a write costs
#: less CPU (measured: a hand-off to a worker thread added 0.5-1.5 ms per write) and still
#: starts when the session opens, before its HELLO; in a thread it overlaps the reply's
#: computation and leaves the loop free during the fsync.
WRITE_IN_THREAD = False


class AttemptStore(Protocol):
    """Where the device keeps its failed-attempt counters (survives power cuts): the
    bytes of :meth:`AttemptLimits.to_bytes`, one record for every secret."""

    def load(self) -> bytes | None: ...

    def save(self, state: bytes) -> None: ...


class AttemptLedger:
    """One attempt record: :attr:`limits` (RAM), what the store holds, the writes between."""

    def __init__(
        self,
        store: AttemptStore,
        factory: Callable[[], AttemptLimiter],
        *,
        settle_delay: float = DEFAULT_SETTLE_DELAY,
        in_thread: bool | None = None,
    ) -> None:
        self.store = store
        #: Write in a worker thread (see WRITE_IN_THREAD).
        self.in_thread = WRITE_IN_THREAD if in_thread is None else in_thread
        self.factory = factory
        self.settle_delay = settle_delay
        #: The record of zero counters (what no record at all means).
        self._zero_raw = AttemptLimits(template=factory).to_bytes()
        #: The last record parsed for reading only (durable, a write's, a snapshot's),
        #: with its parse: a session's events parse the same few bytes again and again.
        self._parsed: tuple[bytes | None, AttemptLimits] | None = None
        raw = store.load()
        self.limits = self._parse(raw)
        #: What the store holds, as a reader would find it (reservations folded in).
        self.durable = self._parse_shared(raw)
        #: The bytes the store holds (None: no record yet).
        self.durable_raw = raw
        #: Store writes started by this ledger (tests count them).
        self.writes = 0
        self._write: asyncio.Future[None] | None = None
        self._write_state: AttemptLimits | None = None
        self._settle: asyncio.TimerHandle | None = None

    def _parse(self, raw: bytes | None) -> AttemptLimits:
        if raw is None:
            return AttemptLimits(template=self.factory)
        try:
            return AttemptLimits.from_bytes(raw, self.factory)
        except MalformedData:
            # A corrupt record must not reset the counters to zero: lock every secret.
            logger.error("attempt counters unreadable: locking until a physical reset")
            return AttemptLimits.all_locked(self.factory)

    def _parse_shared(self, raw: bytes | None) -> AttemptLimits:
        """:meth:`_parse`, memoised for the states this ledger only reads (never the
        counters in RAM, which sessions change): the same bytes give the same state."""
        parsed = self._parsed
        if parsed is not None and parsed[0] == raw:
            return parsed[1]
        limits = self._parse(raw)
        self._parsed = (raw, limits)
        return limits

    @property
    def covered(self) -> bool:
        """The stored state accounts for every failure in RAM: replies may leave."""
        return self.durable.covers(self.limits)

    def cover(self, state: bytes | None = None) -> asyncio.Future[None] | None:
        """None if the store covers ``state`` (a :class:`PersistAttempts` snapshot;
        default: the counters in RAM); otherwise a future done once a write that covers
        it is (a write in flight if it does, else a new one). The future raises if the
        write failed: nothing may be sent then."""
        # A snapshot of the counters as they stand in RAM (the usual case) is compared as
        # they are: read back, its bytes would give the same counts (reservations folded
        # in), and parsing it costs more than the comparison.
        if state is None or state == self.limits.to_bytes():
            target = self.limits
        else:
            target = self._parse_shared(state)
        if self.durable.covers(target):
            return None
        pending = self._write
        if (
            pending is not None
            and not pending.done()
            and self._write_state is not None
            and self._write_state.covers(target)
        ):
            return pending
        # The counters in RAM if they cover it (they usually do), else the snapshot
        # itself (RAM moved on within one step, e.g. a HELLO that also succeeded).
        if self.limits.covers(target) or state is None:
            return self._start_write()
        return self._start_write(state)

    def _unchanged(self) -> bool:
        """The store holds the counters in RAM (no record: the same as zero counters)."""
        state = self.limits.to_bytes()
        if self.durable_raw is None:
            return state == self._zero_raw
        return state == self.durable_raw

    def settle_soon(self) -> None:
        """A session ended: write the counters after :attr:`settle_delay` if the store
        still holds another state then (nothing to do after a commit wrote them)."""
        self._cancel_settle()
        if self._unchanged():
            return
        loop = asyncio.get_running_loop()
        self._settle = loop.call_later(self.settle_delay, self._settle_now)

    def write_soon(self) -> asyncio.Future[None]:
        """Write the counters now (after any write in flight): a physical reset, a
        shutdown."""
        self._cancel_settle()
        return self._start_write()

    async def flush(self) -> None:
        """Write what is not stored yet and wait for it (shutdown, tests)."""
        self._cancel_settle()
        if not self._unchanged():
            self._start_write()
        await self.idle()

    async def idle(self) -> None:
        """Wait until no write is in flight (a commit writes the record itself)."""
        while self._write is not None and not self._write.done():
            await asyncio.gather(self._write, return_exceptions=True)

    def commit_record(self) -> bytes | None:
        """The counters to store in a commit's one atomic write (None: already stored).
        Call :meth:`committed` with them once that write succeeded."""
        return None if self._unchanged() else self.limits.to_bytes()

    def committed(self, state: bytes) -> None:
        """A commit stored ``state`` (from :meth:`commit_record`)."""
        self._cancel_settle()
        self._stored(state)

    def forget_durable(self) -> None:
        """The record was removed behind the ledger (a factory reset): assume nothing is
        stored, so the next reservation is written, not taken as standing."""
        self.durable = AttemptLimits(template=self.factory)
        self.durable_raw = None

    # ------------------------------------------------------------ internals

    def _cancel_settle(self) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None

    def _settle_now(self) -> None:
        self._settle = None
        if not self._unchanged():
            future = self._start_write()
            future.add_done_callback(_log_failure)

    def _start_write(self, state: bytes | None = None) -> asyncio.Future[None]:
        self._cancel_settle()
        state = self.limits.to_bytes() if state is None else state
        previous = self._write
        loop = asyncio.get_running_loop()

        self.writes += 1
        if not self.in_thread and (previous is None or previous.done()):
            done: asyncio.Future[None] = loop.create_future()
            try:
                self.store.save(state)
            except Exception as exc:  # handed to whoever waits on the write
                done.set_exception(exc)
            else:
                self._stored(state)
                done.set_result(None)
            self._write, self._write_state = done, self._parse_shared(state)
            return done

        async def write() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            # A worker thread: the event loop keeps serving the link meanwhile.
            await loop.run_in_executor(None, self.store.save, state)
            self._stored(state)

        task = loop.create_task(write())
        self._write = task
        self._write_state = self._parse_shared(state)
        return task

    def _stored(self, state: bytes) -> None:
        self.durable_raw = state
        self.durable = self._parse_shared(state)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("attempt counters not stored: %s", future.exception())


__all__ = ["DEFAULT_SETTLE_DELAY", "WRITE_IN_THREAD", "AttemptLedger", "AttemptStore"]
