"""Host and device CPU per handshake and per full enrolment, beside the anchors.

The device (a :class:`DeviceRuntime`) runs on its own event loop in its own thread; the
host (:class:`SecureHostLink`, :class:`EnrolmentClient`, the hub's :class:`ZoneEnroller`)
on the main thread. Whole session messages pass between the two loops in memory: no
radio, no framing, so what is timed is the protocol (cryptography, encoding, state
machines, the device's store writes, the hub's CA and registry). The device's CPU is its
thread's CPU time (``time.thread_time`` in that thread); the host's is the process's CPU
time minus the device's (the hub's registry work runs in worker threads, and is the
host's). Median of ``runs`` enrolments, each with a fresh device identity and store.

In the same run, :mod:`benchmarks.anchors` times SRP-6a 3072/SHA-512 and ESP-IDF
security 1 on this machine, and the report gives the ratios.

Where the device's CPU goes in a handshake (:mod:`benchmarks.device_cpu` measures it
piece by piece, the same way): the session machines (the protocol's cryptography and
encoding), the zone key and its proof pushed behind the attestation, the attempt
reservation (one encrypted store write, fsynced and renamed, before HELLO can be
answered), the attempt ledger's bookkeeping, a few reads of the store (each compares the
file's bytes with the copy last decrypted, and decrypts only a changed file), the info,
and the event loop's wake-ups. The factory secrets are loaded once, when the runtime is
built, not per session. Each enrolment here uses a fresh device, so what a long-running
daemon keeps between sessions (the info's encoding) is not reused: the figures are a
first session's.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from benchmarks import anchors
from benchmarks.common import (
    HOME,
    MODES,
    OWNER,
    PEER,
    ZONE,
    BenchDevice,
    BenchHub,
    Factory,
    RecordingUi,
    host_identity_store,
)
from benchmarks.wifi import environment
from bleprov.core.advertising import DeviceInfo
from bleprov.core.errors import BleprovError
from bleprov.core.profile import GattProfile
from bleprov.core.session.messages import Mode
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.device_link import DeviceSession as LinkSession
from bleprov.radio.peripheral import (
    ConnectionId,
    EventHandler,
    Peripheral,
    PeripheralCapabilities,
)
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.enrolment import EnrolmentClient
from bleprov.session import SecureHostLink
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider

T = TypeVar("T")


class NoRadio(Peripheral):
    """A peripheral that is never on the air: the session runs over memory instead."""

    capabilities = PeripheralCapabilities(reports_mtu=False, advertises_service_data=True)

    async def start(self, profile: GattProfile, on_event: EventHandler) -> None:
        pass

    def set_info(self, value: bytes) -> None:
        pass

    async def start_advertising(self, service_data: bytes, local_name: str) -> None:
        pass

    async def stop_advertising(self) -> None:
        pass

    async def send(self, connection: ConnectionId, frame: bytes) -> None:
        pass

    async def disconnect(self, connection: ConnectionId) -> None:
        pass

    async def close(self) -> None:
        pass


class DeviceThread:
    """An event loop in its own thread: the device's CPU is that thread's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self.submit(coro))

    async def cpu(self) -> float:
        async def now() -> float:
            return time.thread_time()

        return await self.run(now())

    def call(self, function: Callable[..., object], *args: object) -> None:
        self.loop.call_soon_threadsafe(function, *args)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class MemoryDeviceSession:
    """The device link's view of one connection, carrying whole messages to the host."""

    #: Like a BLE link (radio/device_link.py), it offers every mode the device allows.
    allowed_modes = 0xFF

    def __init__(self, runtime: DeviceRuntime, deliver: Callable[[bytes], None]) -> None:
        self.link = runtime.link
        self.connection = "memory"
        self._deliver = deliver

    def send(self, payload: bytes) -> None:
        self._deliver(payload)

    async def disconnect(self) -> None:
        pass


class MemoryHostLink:
    """What :class:`SecureHostLink` needs of a :class:`HostLink`, over memory."""

    def __init__(self, device: DeviceThread, runtime: DeviceRuntime) -> None:
        self._device = device
        self._runtime = runtime
        host_loop = asyncio.get_running_loop()
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()

        def deliver(payload: bytes) -> None:
            host_loop.call_soon_threadsafe(self._inbox.put_nowait, payload)

        self.session = cast(LinkSession, MemoryDeviceSession(runtime, deliver))
        self.info_raw = b""
        self.write_round_trips = 0

    async def connect(self) -> DeviceInfo:
        async def opened() -> DeviceInfo:
            info = self._runtime.link.current_info()
            self._runtime.server.session_opened(self.session)
            return info

        info = await self._device.run(opened())
        self.info_raw = info.encode()
        return info

    def send(self, payload: bytes) -> None:
        self._device.call(self._runtime.server.message_received, self.session, payload)

    async def receive(self, timeout: float | None = None) -> bytes:
        async with asyncio.timeout(timeout):
            return await self._inbox.get()

    async def close(self) -> None:
        error: BleprovError | None = None
        self._device.call(self._runtime.server.session_closed, self.session, error)


@dataclass
class CpuRow:
    what: str
    host_ms: float
    device_ms: float
    runs: int


async def _make_device(factory: Factory, directory: Path) -> BenchDevice:
    provisioning, label = factory.device()
    store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
    store.put_provisioning(provisioning)
    network = SimulatedWifi.from_config(environment(5))
    ui = RecordingUi()
    runtime = DeviceRuntime(store, NoRadio(), network, ui=ui, device_confirms=True)
    ui.accept = runtime.accept_number
    await network.start()
    return BenchDevice(runtime, label, ui)


async def one_enrolment(
    device: DeviceThread,
    factory: Factory,
    hub: BenchHub,
    directory: Path,
    *,
    mode: Mode,
    variant: str,
) -> tuple[float, float, float, float]:
    """(host, device) CPU seconds of the handshake, then of the whole enrolment."""
    bench = await device.run(_make_device(factory, directory))
    runtime = bench.runtime
    auth = bench.authentication(mode)
    if mode is Mode.BUTTON:
        device.call(runtime.press_button)

    session = SecureHostLink(
        MemoryHostLink(device, runtime),
        mode=mode,
        secret=auth.secret,
        trust=factory.trust,
        confirm_number=_match(bench.ui),
    )
    host_trust = host_identity_store(directory) if variant == PEER else None
    identity = host_trust.identity() if host_trust is not None else None

    p0, d0 = time.process_time(), await device.cpu()
    info = await session.open()
    p1, d1 = time.process_time(), await device.cpu()
    client = EnrolmentClient(session, timeout=60)
    await client.scan()
    status = await client.set_wifi(HOME)
    if status.ip is None:
        raise RuntimeError(f"the simulated Wi-Fi did not connect: {status}")
    if variant == ZONE:
        await hub.enroller.stage(client, session, device_id=info.attestation.device_id, owner=OWNER)
    elif identity is not None:
        await client.peer_bind(identity)
    await client.commit()
    p2, d2 = time.process_time(), await device.cpu()
    await session.close()
    await device.run(_close(runtime))
    hs_device, all_device = d1 - d0, d2 - d0
    return (p1 - p0) - hs_device, hs_device, (p2 - p0) - all_device, all_device


async def _close(runtime: DeviceRuntime) -> None:
    await runtime.service.drain()
    # The attempt counters a session settles are written a little after it ends: store
    # them now, before the benchmark deletes the device's directory.
    await runtime.server.settle()
    await runtime.network.close()


def _match(ui: RecordingUi) -> Callable[[int], Awaitable[bool]]:
    async def confirm(number: int) -> bool:
        # The device shows its number after sending its message: wait for the display.
        for _ in range(1000):
            if ui.numbers:
                break
            await asyncio.sleep(0.001)
        return bool(ui.numbers) and ui.numbers[-1] == number

    return confirm


CASES = [(mode, ZONE) for mode in MODES] + [(Mode.QR, PEER)]


async def run_enrolments(runs: int) -> tuple[list[CpuRow], list[CpuRow]]:
    """Per mode (and qr peer binding): handshake rows, full enrolment rows."""
    factory = Factory.create()
    device = DeviceThread()
    handshakes, enrolments = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="bleprov-bench-") as name:
            work = Path(name)
            hub = BenchHub.create(work / "hub")
            try:
                for mode, variant in CASES:
                    samples = []
                    for _ in range(runs + 1):  # the first run warms caches and imports
                        directory = Path(tempfile.mkdtemp(dir=work))
                        samples.append(
                            await one_enrolment(
                                device,
                                factory,
                                hub,
                                directory,
                                mode=mode,
                                variant=variant,
                            )
                        )
                    samples = samples[1:]
                    med = [statistics.median(s[i] for s in samples) * 1000 for i in range(4)]
                    what = (
                        f"{mode.label}, {'zone enrolment' if variant == ZONE else 'peer binding'}"
                    )
                    if variant == ZONE:
                        handshakes.append(CpuRow(f"bleprov {mode.label}", med[0], med[1], runs))
                    enrolments.append(CpuRow(f"bleprov {what}", med[2], med[3], runs))
                    print(f"  cpu {what}: {runs} runs", flush=True)
            finally:
                hub.close()
    finally:
        device.stop()
    return handshakes, enrolments


def render(
    handshakes: Sequence[CpuRow],
    enrolments: Sequence[CpuRow],
    anchor_rows: Sequence[anchors.AnchorRow],
) -> str:
    srp_row = anchor_rows[0]
    sec1 = anchor_rows[1]

    def ratios(host: float, device: float) -> str:
        return (
            f"{host / srp_row.host_ms:.2f} / {device / srp_row.device_ms:.2f} "
            f"| {host / sec1.host_ms:.0f} / {device / sec1.device_ms:.0f}"
        )

    lines = [
        "| exchange | host CPU | device CPU | host/device vs SRP-6a 3072 "
        "| host/device vs security 1 |",
        "|---|---|---|---|---|",
    ]
    for a in anchor_rows:
        lines.append(
            f"| {a.name} | {a.host_ms:.2f} ms | {a.device_ms:.2f} ms "
            f"| {ratios(a.host_ms, a.device_ms)} |"
        )
    for r in handshakes:
        lines.append(
            f"| {r.what} handshake + attestation | {r.host_ms:.2f} ms | {r.device_ms:.2f} ms "
            f"| {ratios(r.host_ms, r.device_ms)} |"
        )
    for r in enrolments:
        lines.append(
            f"| {r.what} (full) | {r.host_ms:.2f} ms | {r.device_ms:.2f} ms "
            f"| {ratios(r.host_ms, r.device_ms)} |"
        )
    return "\n".join(lines)


def anchor_runs(runs: int) -> int:
    """The anchors are cheap: time more of them than of enrolments."""
    return max(runs, 5) * 4


async def run_all(runs: int) -> tuple[list[CpuRow], list[CpuRow], list[anchors.AnchorRow]]:
    handshakes, enrolments = await run_enrolments(runs)
    return handshakes, enrolments, anchors.run(anchor_runs(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    print(render(*asyncio.run(run_all(args.runs))))


if __name__ == "__main__":
    main()
