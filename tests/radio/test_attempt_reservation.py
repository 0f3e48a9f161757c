"""The attempt counter off the reply path: a connection reserves an attempt, HELLO uses it.

Most tests run the default (writes on the event loop); those that watch a slow write run
it in a worker thread (both are the same ledger).

docs/protocol.md section 6 ("Attempt counters"): an attempt is durably counted before the
device reveals anything about it. The device stores a reservation when a connection
opens (in a worker thread, while the host sets the link up), its HELLO consumes it with
no write, and the success's reset joins the enrolment commit's one store write. These
tests run the real session server on the virtual radio (and the real encrypted store).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest
import pytest_asyncio

from bleprov.core.attempts import AttemptLimiter, AttemptLimits, Credential
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.radio.host_link import HostLink, find_device
from bleprov.session import MemoryAttemptStore, SecureDeviceServer
from bleprov.session import attempts as attempts_module
from bleprov.store import device_store
from tests.attacks.session_rig import NOW, TRUST, Device, Rig, qr_secret
from tests.radio.test_enrolment_e2e import HOME
from tests.radio.test_enrolment_e2e import Rig as EnrolmentRig
from tests.radio.test_enrolment_e2e import rig as enrolment_rig

__all__ = ["enrolment_rig"]  # the fixture, used by name below

LIMITED = [credential for credential in Credential if credential.limited]


class GatedStore(MemoryAttemptStore):
    """An attempt store whose writes wait for :attr:`release` (a slow flash), and which
    a power cut freezes: what it held then is all a reboot finds."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.release.set()
        self.stored_at: list[tuple[float, bytes]] = []
        self.frozen: bytes | None = None
        self.cut = False

    def save(self, state: bytes) -> None:
        self.release.wait(10)
        if self.cut:
            return
        super().save(state)
        self.stored_at.append((time.monotonic(), state))

    def power_cut(self) -> None:
        self.cut = True


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


async def _reboot(
    rig: Rig, device: Device, store: MemoryAttemptStore, max_failures: int = 20
) -> Device:
    """The same device after a power cut: a new server, its counters from ``store``."""
    await device.link.close()
    return await rig.device(
        attempts=store,
        max_failures=max_failures,
        identity=device.identity,
        label_secret=device.label_secret,
        discriminator=device.discriminator,
    )


async def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def in_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counter writes in a worker thread: a slow write then leaves the loop running, so
    what it does meanwhile (the reply held back) can be watched."""
    monkeypatch.setattr(attempts_module, "WRITE_IN_THREAD", True)


@pytest.mark.usefixtures("in_thread")
async def test_the_reply_to_hello_waits_until_the_attempt_is_durable(rig: Rig) -> None:
    store = GatedStore()
    device = await rig.device(attempts=store)
    store.release.clear()  # the flash is slow: the reservation's write takes a while
    opening = asyncio.create_task(rig.session(device, Mode.QR, qr_secret(device)))
    await asyncio.sleep(1.0)  # connected, discovered, HELLO sent: no reply may come
    assert not opening.done(), "the device replied before the attempt was durable"
    assert store.stored_at == []
    store.release.set()
    session = await asyncio.wait_for(opening, 10)
    replied = time.monotonic()
    first_write, state = store.stored_at[0]
    assert first_write <= replied
    # What was durable when the reply left counts this attempt (a reservation).
    assert all(AttemptLimits.from_bytes(state)[credential].failures == 1 for credential in LIMITED)
    # A power cut right after the reply, before anything settles: the attempt counts.
    store.power_cut()
    await session.close()
    rebooted = await _reboot(rig, device, store)
    assert rebooted.server.limits[Credential.LABEL].failures == 1


async def test_a_wrong_secret_is_counted_through_a_power_cut_after_the_refusal(
    rig: Rig,
) -> None:
    store = GatedStore()
    device = await rig.device(attempts=store, max_failures=1)
    with pytest.raises(hst.DeviceRefused) as refused:
        await rig.session(device, Mode.QR, qr_secret(device, os.urandom(16)))
    assert refused.value.code == 0x43
    store.power_cut()  # before the failure is settled for its one secret
    rebooted = await _reboot(rig, device, store, max_failures=1)
    with pytest.raises(hst.DeviceRefused) as again:
        await rig.session(rebooted, Mode.QR, qr_secret(rebooted))
    assert again.value.code == 0x41  # locked: the failure was durable before the refusal


async def test_a_connection_cut_before_hello_counts_no_failure(rig: Rig) -> None:
    store = GatedStore()
    device = await rig.device(attempts=store)
    radio = await rig.central()
    found = await find_device(radio, discriminator=device.discriminator, timeout=5)
    link = HostLink(found.device, radio)
    await link.connect()
    # The reservation is written as the connection opens, before any HELLO.
    await _wait_for(lambda: store.state is not None and cbor2.loads(store.state)[2] == 1)
    await link.close()
    await device.idle()
    await device.server.settle()
    assert cbor2.loads(store.state)[2] == 0  # released
    rebooted = await _reboot(rig, device, store)
    assert all(rebooted.server.limits[c].failures == 0 for c in LIMITED)


async def test_a_power_cut_with_a_reservation_outstanding_counts_one_failure(
    rig: Rig,
) -> None:
    store = GatedStore()
    device = await rig.device(attempts=store)
    radio = await rig.central()
    found = await find_device(radio, discriminator=device.discriminator, timeout=5)
    link = HostLink(found.device, radio)
    await link.connect()
    await _wait_for(lambda: store.state is not None)
    store.power_cut()  # the device dies with the connection open
    await link.close()
    rebooted = await _reboot(rig, device, store)
    # One failure of every secret (the HELLO may have come, and named any of them)...
    assert all(rebooted.server.limits[c].failures == 1 for c in LIMITED)
    assert not rebooted.server.limits.locked_out
    # ... and a correct secret afterwards forgives its own.
    session = await rig.session(rebooted, Mode.QR, qr_secret(rebooted))
    await session.close()
    assert rebooted.server.limits[Credential.LABEL].failures == 0


async def test_a_device_merely_powered_on_and_off_reserves_nothing(rig: Rig) -> None:
    store = GatedStore()
    device = await rig.device(attempts=store)
    await asyncio.sleep(0.2)
    for _ in range(5):
        device = await _reboot(rig, device, store)
    await device.server.settle()
    assert store.saves == 0  # no connection, no reservation: a reboot costs no failure


async def test_a_connection_flood_reuses_one_stored_reservation(rig: Rig) -> None:
    store = GatedStore()
    device = await rig.device(attempts=store)
    radio = await rig.central()
    found = await find_device(radio, discriminator=device.discriminator, timeout=5)
    for _ in range(4):
        link = HostLink(found.device, radio)
        await link.connect()
        await _wait_for(lambda: store.saves >= 1)
        await link.close()
        await device.idle()
    assert store.saves == 1  # the first connection's reservation stands for the others
    await device.server.settle()
    assert store.saves == 2 and cbor2.loads(store.state)[2] == 0


async def test_a_successful_enrolment_writes_the_store_twice_reservation_and_commit(
    enrolment_rig: EnrolmentRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connection to commit: the reservation (off the reply path) and the commit, whose
    one atomic write also resets the counter. It was four: a count at HELLO, a reset
    after it, the commit."""
    rig = enrolment_rig
    writes: list[Path] = []
    real_write = device_store.write_atomic

    def counting_write(path: Path, data: bytes, **kwargs: int) -> None:
        writes.append(path)
        real_write(path, data, **kwargs)

    monkeypatch.setattr(device_store, "write_atomic", counting_write)
    session, client = await rig.session()
    assert len(writes) == 1  # the reservation, written as the connection opened
    reserved = cbor2.loads(rig.store.get(device_store.ATTEMPTS) or b"")
    assert reserved[2] == 1
    assert await client.set_wifi(HOME)
    await client.commit()
    await rig.service.drain()
    assert len(writes) == 2  # the commit: Wi-Fi, and the counter reset, in one write
    settled = AttemptLimits.from_bytes(rig.store.get(device_store.ATTEMPTS) or b"")
    assert settled.reserved == 0
    assert all(settled[c].failures == 0 for c in LIMITED)
    assert rig.store.get("wifi") is not None
    await session.close()
    await _wait_for(lambda: not rig.server.channels)
    await rig.server.settle()
    assert len(writes) == 2  # nothing left to settle after the session


async def test_backing_off_secrets_make_no_reservation(rig: Rig) -> None:
    """While every counted secret waits (backoff), a connection writes nothing: a flood
    of connections then costs no flash."""
    store = GatedStore()
    device = await rig.device(attempts=store)
    for credential in LIMITED:
        device.server.limits.limiters[credential] = AttemptLimiter(
            failures=10, free_failures=3, last_failure=device.server.now()
        )
    await device.server.settle()
    before = store.saves
    radio = await rig.central()
    found = await find_device(radio, discriminator=device.discriminator, timeout=5)
    link = HostLink(found.device, radio)
    await link.connect()
    await asyncio.sleep(0.3)
    await link.close()
    await device.idle()
    await device.server.settle()
    assert store.saves == before


class RemoteSession:
    """A broker session as the session server sees it: it opens with its HELLO."""

    remote = True
    allowed_modes = int(Mode.QR)

    def __init__(self, device: Device) -> None:
        self.link = device.link
        self.connection = "mqtt:test"
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    async def disconnect(self) -> None:
        pass


@pytest.mark.usefixtures("in_thread")
async def test_a_broker_session_takes_the_same_path_on_its_own_counter(rig: Rig) -> None:
    """Through a broker the session opens with its HELLO: the reservation is written
    then, on the remote counter, and the reply waits for it; BLE's counter is untouched."""
    local, remote = GatedStore(), GatedStore()
    device = await rig.device(attempts=local)
    server = SecureDeviceServer(
        secrets=device.server.secrets,
        policy=int(Mode.QR),
        application=device.app,
        attempts=local,
        remote_attempts=remote,
    )
    host = hst.HostSession(
        mode=Mode.QR,
        secret=qr_secret(device),
        device_info=device.link.current_info().encode(),
        trust=TRUST,
        wall_clock=NOW,
        now=0.0,
    )
    [hello] = [e for e in host.start(0.0) if isinstance(e, hst.SendMessage)]
    remote.release.clear()
    session = RemoteSession(device)
    server.session_opened(session)  # type: ignore[arg-type]
    server.message_received(session, hello.data)  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    assert session.sent == []  # computed, held until the reservation is durable
    remote.release.set()
    await _wait_for(lambda: len(session.sent) >= 2)  # the reply and the attestation
    assert cbor2.loads(remote.stored_at[0][1])[2] == 1  # the reservation came first
    assert local.saves == 0
    server.session_closed(session, None)  # type: ignore[arg-type]
    await server.settle()
    assert AttemptLimits.from_bytes(remote.state or b"")[Credential.LABEL].failures == 0
