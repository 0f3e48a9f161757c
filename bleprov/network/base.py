"""The interface every Wi-Fi backend implements.

Enrolment stages credentials: :meth:`NetworkBackend.try_join` proves them by joining
without making anything durable; :meth:`commit` makes the last successful join durable
in one step; :meth:`rollback` puts the network back exactly as it was before the first
``try_join`` of the session. Scans run in the background and are served from a cache,
so a slow rescan never stalls the BLE link.
"""

from __future__ import annotations

import abc

from bleprov.core.errors import BleprovError
from bleprov.core.wifi import JoinOutcome, ScanResult, WifiCredentials


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
        """Make the last successful ``try_join`` durable (survives reboots)."""

    @abc.abstractmethod
    async def rollback(self) -> None:
        """Undo every ``try_join`` since the last commit: the prior network state."""
