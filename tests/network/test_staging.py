"""StagingBackend: a new Wi-Fi backend is its primitives only; the base runs the staging.

The toy backend below is the whole of what a new backend (iwd, ConnMan, ...) writes: it
keeps a dict of "profiles" as its OS service, and these tests drive the protocol every
backend shares (try_join, commit, rollback, restore) through it.
"""

from __future__ import annotations

import pytest

from bleprov.core.wifi import (
    Connected,
    Failed,
    JoinFailure,
    JoinOutcome,
    ScanResult,
    WifiCredentials,
)
from bleprov.core.wifi import WifiSecurity as Sec
from bleprov.network.base import NetworkError, ScanCache, StagingBackend

RIGHT = "the right passphrase"


def credentials(ssid: bytes, passphrase: str = RIGHT) -> WifiCredentials:
    return WifiCredentials(ssid, Sec.WPA2_PERSONAL, passphrase=passphrase)


#: What a rollback returns to: the active network (a tuple, for None means "no session").
Prior = tuple[bytes | None]


class ToyWifi(StagingBackend[Prior, bytes]):
    """Profiles by SSID; ``active`` is the joined one; the right passphrase joins."""

    def __init__(self, *, keeps_unjoined: bool = False) -> None:
        super().__init__()
        self.keeps_unjoined_restore = keeps_unjoined
        self.started = False
        self.profiles: set[bytes] = set()
        self.kept: bytes | None = None
        self.active: bytes | None = None
        self._scans = ScanCache(
            self._scan_once, timeout=1.0, timeout_error=NetworkError, name="toy"
        )

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        await self._stop_scanning()

    def _require_started(self) -> None:
        if not self.started:
            raise NetworkError("the toy backend is not started")

    async def _scan_once(self) -> list[ScanResult]:
        return []

    async def _snapshot(self) -> Prior:
        return (self.active,)  # never None: None means "no session"

    async def _join(
        self, credentials: WifiCredentials, timeout: float, *, keep_failed: bool = False
    ) -> JoinOutcome:
        self.profiles.add(credentials.ssid)
        self._staged = credentials.ssid
        self.active = None
        if credentials.passphrase != RIGHT:
            return Failed(JoinFailure.WRONG_PASSWORD)
        self.active = credentials.ssid
        return Connected("192.0.2.7")

    async def _undo_join(self, staged: bytes) -> None:
        self.profiles.discard(staged)

    async def _keep(self, staged: bytes, prior: Prior | None, *, joined: bool) -> None:
        if self.kept is not None and self.kept != staged:
            self.profiles.discard(self.kept)
        self.kept = staged

    async def _return_to(self, prior: Prior) -> None:
        (self.active,) = prior


async def started(toy: ToyWifi) -> ToyWifi:
    await toy.start()
    toy.profiles.add(b"Old")
    toy.active = toy.kept = b"Old"
    return toy


async def test_commit_keeps_the_join_and_replaces_the_network_kept_before() -> None:
    toy = await started(ToyWifi())
    assert isinstance(await toy.try_join(credentials(b"Home"), timeout=1.0), Connected)
    await toy.commit()
    assert (toy.kept, toy.active, toy.profiles) == (b"Home", b"Home", {b"Home"})
    await toy.rollback()  # nothing staged any more: nothing moves
    assert (toy.kept, toy.active) == (b"Home", b"Home")


async def test_rollback_undoes_every_join_of_the_session() -> None:
    toy = await started(ToyWifi())
    await toy.try_join(credentials(b"Home", "a wrong one"), timeout=1.0)
    assert toy.profiles == {b"Old"}  # a failed join is undone at once
    await toy.try_join(credentials(b"Home"), timeout=1.0)
    await toy.try_join(credentials(b"Cafe"), timeout=1.0)  # replaces the staged Home
    assert toy.profiles == {b"Old", b"Cafe"}
    await toy.rollback()
    assert (toy.kept, toy.active, toy.profiles) == (b"Old", b"Old", {b"Old"})


async def test_the_common_errors_come_from_the_base() -> None:
    toy = ToyWifi()
    with pytest.raises(NetworkError, match="not started"):
        await toy.try_join(credentials(b"Home"), timeout=1.0)
    await started(toy)
    with pytest.raises(ValueError, match="positive"):
        await toy.try_join(credentials(b"Home"), timeout=0)
    await toy.try_join(credentials(b"Home", "a wrong one"), timeout=1.0)
    with pytest.raises(NetworkError, match="nothing to commit"):
        await toy.commit()


async def test_restore_keeps_only_a_join_unless_the_service_joins_on_its_own() -> None:
    toy = await started(ToyWifi())
    assert isinstance(await toy.restore(credentials(b"Home", "a wrong one"), timeout=1.0), Failed)
    assert toy.kept == b"Old"
    eager = await started(ToyWifi(keeps_unjoined=True))
    assert isinstance(await eager.restore(credentials(b"Home", "a wrong one"), timeout=1.0), Failed)
    assert eager.kept == b"Home"  # kept: the service joins it when it comes into range
    await eager.try_join(credentials(b"Cafe"), timeout=1.0)
    with pytest.raises(NetworkError, match="restore only at start"):
        await eager.restore(credentials(b"Home"), timeout=1.0)
