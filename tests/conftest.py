"""Shared fixtures: a virtual radio with one bleprov device and one bleak host."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from bumble.device import Device

from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceApplication, DeviceLink
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.linktest import EchoApplication, linktest_info
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from tests.worlds import world  # noqa: F401  (the hub-and-devices fixture, for every test)

_addresses = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    """No test reads the developer's bleprov defaults (bleprov help config): no config
    file, no BLEPROV_RADIO/TRUST/ZONE/USER; the child processes inherit this too. A test
    that wants a config sets its own."""
    os.environ["BLEPROV_CONFIG"] = os.devnull
    # Nor writes the developer's GATT cache (bleprov.radio.gatt_cache): one of the run's own.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bleprov-test-cache-")
    for name in ("BLEPROV_RADIO", "BLEPROV_TRUST", "BLEPROV_ZONE", "BLEPROV_USER"):
        os.environ.pop(name, None)


def next_address(prefix: str) -> str:
    n = next(_addresses)
    return f"{prefix}:00:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"


@dataclass
class VirtualDevice:
    """A bleprov device on the virtual radio."""

    bumble: Device
    link: DeviceLink
    app: DeviceApplication
    discriminator: int


@dataclass
class VirtualRadio:
    link: VirtualLink
    make_device: Callable[..., Awaitable[VirtualDevice]]
    make_host: Callable[..., Awaitable[CentralRadio]]


@pytest_asyncio.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    """A virtual link; factories for devices (echo by default) and bleak hosts on it."""
    link = VirtualLink()
    devices: list[DeviceLink] = []
    discriminators = itertools.count(0x100)

    async def make_device(
        app: DeviceApplication | None = None,
        *,
        discriminator: int | None = None,
        **link_options: object,
    ) -> VirtualDevice:
        disc = next(discriminators) if discriminator is None else discriminator
        bumble = make_virtual_device(link, name="bleprov-dev", address=next_address("F0:B1"))
        application = app or EchoApplication()
        device_link = DeviceLink(
            BumblePeripheral(bumble),
            application,
            lambda: linktest_info(disc),
            **link_options,  # type: ignore[arg-type]
        )
        await device_link.start()
        devices.append(device_link)
        return VirtualDevice(bumble, device_link, application, disc)

    async def make_host(*, mtu: int = 517) -> CentralRadio:
        host = make_virtual_device(link, name="bleprov-host", address=next_address("C0:B1"))
        await host.power_on()
        return CentralRadio.bumble(host, mtu=mtu)

    yield VirtualRadio(link, make_device, make_host)
    for device_link in devices:
        await device_link.close()
    link.close()
    await asyncio.sleep(0.02)


@pytest.fixture
def system_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private dbus-daemon that dbus-fast and dbus-next take for the system bus (the
    BlueZ and NetworkManager tests serve their doubles, tests/dbus_doubles, on it).

    The daemon is a packaged binary, not something the tests build; without it the tests
    that need a bus skip and say what to install."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("needs dbus-daemon (Debian package dbus)")
    # A socket path must stay under 108 bytes; pytest's tmp_path may not.
    directory = tempfile.mkdtemp(prefix="bleprov-dbus-", dir="/tmp")
    address = f"unix:path={directory}/system_bus_socket"
    proc = subprocess.Popen(
        [
            daemon,
            "--session",
            "--nofork",
            "--nopidfile",
            f"--address={address}",
            "--print-address=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline().strip()
        if not printed:
            stderr = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"dbus-daemon did not start: {stderr}")
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", printed)
        yield printed
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        shutil.rmtree(directory, ignore_errors=True)
