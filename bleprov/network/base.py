"""The interface every Wi-Fi backend implements, and the staging every one shares.

A new backend (iwd, ConnMan, ...) is one module with a :class:`StagingBackend` subclass
implementing its primitives, plus one line in ``bleprov.service.device_daemon.NETWORKS``
for the daemon's ``--network`` option.

Enrolment stages credentials: :meth:`NetworkBackend.try_join` proves them by joining;
:meth:`commit` keeps the last successful join in one step; :meth:`rollback` puts the
network back exactly as it was before the first ``try_join`` of the session. Scans run in
the background and are served from a cache, so a slow rescan never stalls the BLE link.

Nothing a backend does is durable in the OS: a Wi-Fi key must rest only in the device's
encrypted store, so the OS's network service keeps the enrolled network in memory only,
and :meth:`restore` re-applies it from the store at every start (``DeviceRuntime``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

from bleprov.core.errors import BleprovError
from bleprov.core.wifi import Connected, JoinOutcome, ScanResult, WifiCredentials


class NetworkError(BleprovError):
    """The network service failed or is unavailable (not a join outcome)."""


class NetworkBackend(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect to the network service and start background scanning."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def cached_scan(self) -> list[ScanResult]:
        """The latest scan results, strongest first; never blocks."""

    @abc.abstractmethod
    async def rescan(self) -> list[ScanResult]:
        """Ask for a fresh scan and wait for it (bounded by the backend's timeout)."""

    @abc.abstractmethod
    async def try_join(self, credentials: WifiCredentials, *, timeout: float) -> JoinOutcome:
        """Join with ``credentials`` without making them durable; say how it went."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Keep the last successful ``try_join`` (it replaces the network kept before) and
        end the session. Kept in the OS's memory only: the store makes it survive reboots,
        through :meth:`restore`."""

    @abc.abstractmethod
    async def rollback(self) -> None:
        """Undo every ``try_join`` since the last commit: the prior network state."""

    async def restore(self, credentials: WifiCredentials, *, timeout: float) -> JoinOutcome:
        """Re-apply the stored network at start: join and keep it.

        This default keeps it only if it joins (``try_join``, then ``commit`` or
        ``rollback``). A backend whose OS service joins on its own when the network comes
        into range keeps it whatever the outcome, so a device that starts before its
        access point still joins it later."""
        outcome = await self.try_join(credentials, timeout=timeout)
        if isinstance(outcome, Connected):
            await self.commit()
        else:
            await self.rollback()
        return outcome


class ScanCache:
    """Scans served from a cache, one at a time: concurrent requests share the scan in
    flight, and a rescan gives up after ``timeout`` seconds with ``timeout_error``.

    Each backend owns one and gives it its ``scan_once`` coroutine function; the
    background loop (which skips scans while a join runs) stays in the backend, since
    when to scan is the backend's business.
    """

    def __init__(
        self,
        scan_once: Callable[[], Awaitable[list[ScanResult]]],
        *,
        timeout: float,
        timeout_error: Callable[[float], NetworkError],
        name: str,
    ) -> None:
        self._scan_once = scan_once
        self.timeout = timeout
        self._timeout_error = timeout_error
        self._name = name
        self.results: list[ScanResult] = []
        self._inflight: asyncio.Task[list[ScanResult]] | None = None

    def cached(self) -> list[ScanResult]:
        return list(self.results)

    def current(self) -> asyncio.Task[list[ScanResult]]:
        """The scan in flight, or a new one."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._run(), name=f"{self._name}-scan-once")
        return self._inflight

    async def _run(self) -> list[ScanResult]:
        self.results = await self._scan_once()
        return self.results

    async def rescan(self) -> list[ScanResult]:
        try:
            async with asyncio.timeout(self.timeout):
                return list(await asyncio.shield(self.current()))
        except TimeoutError:
            raise self._timeout_error(self.timeout) from None

    def inflight(self) -> asyncio.Task[list[ScanResult]] | None:
        task, self._inflight = self._inflight, None
        return task


PriorT = TypeVar("PriorT")
StagedT = TypeVar("StagedT")


class StagingBackend(NetworkBackend, Generic[PriorT, StagedT]):
    """The staging protocol every Wi-Fi backend shares, over a few primitives.

    This class owns the session: the lock, the network state before the first
    ``try_join`` (``PriorT``), the staged join (``StagedT``) and whether it connected,
    the "joining" flag background scans wait on, the scan cache, and the errors common to
    every backend (a non-positive timeout, committing what did not join, restoring while
    a join is staged). A backend implements only what touches its OS service:

    - :meth:`_snapshot`: what to return to (taken at the first ``try_join``);
    - :meth:`_join`: join, setting ``self._staged`` once there is something to undo;
    - :meth:`_undo_join`: undo one staged join;
    - :meth:`_keep`: keep a staged join, replacing the network kept before;
    - :meth:`_return_to`: go back to the snapshot;
    - :meth:`_scan_once`, :meth:`_require_started`, ``start`` and ``close``.

    A backend whose OS service joins a kept network on its own once it comes into range
    sets :attr:`keeps_unjoined_restore`, and :meth:`restore` keeps the stored network
    whatever the outcome (:meth:`_forget_earlier_runs` first, :meth:`_unkept_restore`
    when nothing was staged).
    """

    #: The log lines of a join and a restore (``%s``: the outcome, never the key).
    join_log: ClassVar[str] = "joining the network: %s"
    restore_log: ClassVar[str] = "re-applied the stored network: %s"
    #: See the class doc: restore keeps the network even when it does not join now.
    keeps_unjoined_restore: ClassVar[bool] = False

    _scans: ScanCache

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        #: The network state before this session's first try_join (None: no session).
        self._prior: PriorT | None = None
        #: The last join's state, while there is something to undo.
        self._staged: StagedT | None = None
        self._staged_joined = False
        #: True while a join runs: background scans wait (they would stall it).
        self._joining = False

    # -- primitives --------------------------------------------------------------------

    @abc.abstractmethod
    def _require_started(self) -> None:
        """Raise the backend's error if ``start`` has not run."""

    @abc.abstractmethod
    async def _scan_once(self) -> list[ScanResult]: ...

    @abc.abstractmethod
    async def _snapshot(self) -> PriorT:
        """The network state this session's rollback returns to (never None: None means
        "no session")."""

    @abc.abstractmethod
    async def _join(
        self, credentials: WifiCredentials, timeout: float, *, keep_failed: bool = False
    ) -> JoinOutcome:
        """Join with ``credentials``; set ``self._staged`` once something can be undone.
        A failed join is undone by the caller unless ``keep_failed``."""

    @abc.abstractmethod
    async def _undo_join(self, staged: StagedT) -> None:
        """Undo one staged join (its profile, its network entry)."""

    @abc.abstractmethod
    async def _keep(self, staged: StagedT, prior: PriorT | None, *, joined: bool) -> None:
        """Keep ``staged`` (in the OS's memory only), replacing the network kept before;
        ``prior`` is the state the join started from, ``joined`` whether it connected."""

    @abc.abstractmethod
    async def _return_to(self, prior: PriorT) -> None:
        """Put the network back as :meth:`_snapshot` found it."""

    async def _forget_earlier_runs(self) -> PriorT | None:
        """Before a restore (``keeps_unjoined_restore``): remove what earlier runs left
        in the OS service; the state the restore starts from."""
        return None

    async def _unkept_restore(self, prior: PriorT | None) -> None:
        """A restore (``keeps_unjoined_restore``) whose join left nothing to keep."""

    # -- the protocol ------------------------------------------------------------------

    def cached_scan(self) -> list[ScanResult]:
        return self._scans.cached()

    async def rescan(self) -> list[ScanResult]:
        self._require_started()
        return await self._scans.rescan()

    async def try_join(self, credentials: WifiCredentials, *, timeout: float) -> JoinOutcome:
        self._require_started()
        if not timeout > 0:
            raise ValueError("the join timeout must be positive")
        async with self._lock:
            if self._prior is None:
                self._prior = await self._snapshot()
            await self._drop_staged()
            outcome = await self._joined(credentials, timeout, keep_failed=False)
            logging.getLogger(type(self).__module__).info(self.join_log, outcome)
            return outcome

    async def commit(self) -> None:
        async with self._lock:
            staged = self._staged
            if staged is None or not self._staged_joined:
                raise NetworkError("nothing to commit: the last try_join did not connect")
            await self._keep(staged, self._prior, joined=True)
            self._end_session()

    async def rollback(self) -> None:
        async with self._lock:
            prior, self._prior = self._prior, None
            await self._drop_staged()
            if prior is not None:
                await self._return_to(prior)

    async def restore(self, credentials: WifiCredentials, *, timeout: float) -> JoinOutcome:
        if not self.keeps_unjoined_restore:
            return await super().restore(credentials, timeout=timeout)
        self._require_started()
        if not timeout > 0:
            raise ValueError("the join timeout must be positive")
        async with self._lock:
            if self._prior is not None:
                raise NetworkError("a join is staged: restore only at start")
            prior = await self._forget_earlier_runs()
            outcome = await self._joined(credentials, timeout, keep_failed=True)
            staged = self._staged
            if staged is not None:
                await self._keep(staged, prior, joined=isinstance(outcome, Connected))
                self._end_session()
            else:
                await self._unkept_restore(prior)
            logging.getLogger(type(self).__module__).info(self.restore_log, outcome)
            return outcome

    # -- helpers -----------------------------------------------------------------------

    async def _joined(
        self, credentials: WifiCredentials, timeout: float, *, keep_failed: bool
    ) -> JoinOutcome:
        self._joining = True
        try:
            outcome = await self._join(credentials, timeout, keep_failed=keep_failed)
        finally:
            self._joining = False
        if isinstance(outcome, Connected):
            self._staged_joined = self._staged is not None
        elif not keep_failed:
            await self._drop_staged()
        return outcome

    async def _drop_staged(self) -> None:
        """Undo the staged join, if any."""
        staged, self._staged = self._staged, None
        self._staged_joined = False
        if staged is not None:
            await self._undo_join(staged)

    def _end_session(self) -> None:
        self._prior = None
        self._staged = None
        self._staged_joined = False

    async def _stop_scanning(self, *tasks: asyncio.Task[Any] | None) -> None:
        """Cancel the background scan loop (and the other ``tasks``) and the scan in flight."""
        running = [t for t in (*tasks, self._scans.inflight()) if t is not None]
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, NetworkError):
                await task
