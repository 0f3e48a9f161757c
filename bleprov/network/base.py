"""The interface every Wi-Fi backend implements.

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
from collections.abc import Awaitable, Callable

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
