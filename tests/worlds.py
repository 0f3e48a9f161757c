"""A small world for end-to-end tests of enrolment and ownership: a hub with an admin,
devices as the daemon runs them on one virtual radio, hosts that open sessions with a
device's label, and validated connections on loopback."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest_asyncio

from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.factory import Label, provision_device
from bleprov.core.session import host as hst
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.peripheral import Peripheral
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.enrolment import EnrolmentClient, EnrolmentService
from bleprov.service.host_session import DeviceAuthentication, open_session
from bleprov.service.trust import HostTrust
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.session import SecureHostLink
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import KeyFileProvider
from bleprov.store.registry import Role
from tests.rig import CHEAP, ENVIRONMENT, HOME, MANUFACTURER, NOW, TRUST

if TYPE_CHECKING:  # imported where used, so that attack tests also run on older code
    from bleprov.core.window import WindowCode

LOOPBACK = "127.0.0.1"
_addresses = itertools.count(1)


def _address(prefix: str, index: int) -> str:
    """A virtual radio address, unique for the first 2**24 devices of a test run."""
    return f"{prefix}:{index >> 16 & 0xFF:02X}:{index >> 8 & 0xFF:02X}:{index & 0xFF:02X}:01"


@dataclass
class VirginDevice:
    runtime: DeviceRuntime
    network: SimulatedWifi
    label_qr: str
    label: Label | None = None
    #: The device's radio as the runtime uses it (a test's wrapper, if it gave one).
    peripheral: Peripheral | None = None

    @property
    def device_id(self) -> str:
        return self.runtime.device_id

    @property
    def store(self) -> DeviceStore:
        return self.runtime.store

    @property
    def service(self) -> EnrolmentService:
        return self.runtime.service

    @property
    def link(self) -> DeviceLink:
        return self.runtime.link


@dataclass
class World:
    tmp: Path
    radio: VirtualLink
    hub: Hub
    admin: Any
    devices: list[VirginDevice] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def new_device(
        self,
        device_id: str | None = None,
        *,
        environment: dict[str, Any] | None = None,
        join_timeout: float = 5,
        modes: OobMode = OobMode.QR,
        device_confirms: bool = False,
        peripheral: Callable[[Peripheral], Peripheral] | None = None,
        cost: ScryptCost = CHEAP,
    ) -> VirginDevice:
        """A virgin device as the daemon runs it: factory record in its store, on a radio;
        its Wi-Fi is ``environment`` (simulated; default: one network, rig.HOME).
        ``peripheral`` wraps its radio (e.g. tests.cuts.CuttingPeripheral)."""
        index = next(_addresses)
        device, label = provision_device(
            MANUFACTURER.issue_device(device_id, now=NOW), modes=modes, cost=cost
        )
        directory = self.tmp / f"device-{index}"
        store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
        store.put_provisioning(device)
        network = SimulatedWifi.from_config(environment or ENVIRONMENT)
        bumble = make_virtual_device(self.radio, name="dev", address=_address("F0:B1", index))
        radio: Peripheral = BumblePeripheral(bumble)
        if peripheral is not None:
            radio = peripheral(radio)
        runtime = DeviceRuntime(
            store, radio, network, join_timeout=join_timeout, device_confirms=device_confirms
        )
        await runtime.start()
        self.closers.append(runtime.close)
        virgin = VirginDevice(runtime, network, label.qr_text, label, radio)
        self.devices.append(virgin)
        return virgin

    async def retire(self, target: VirginDevice) -> None:
        """Switch a device off (its radio too): later devices are the only ones heard."""
        self.closers.remove(target.runtime.close)
        self.devices.remove(target)
        await target.runtime.close()

    async def session(
        self, target: VirginDevice, trust: hst.Trust = TRUST
    ) -> tuple[SecureHostLink, EnrolmentClient]:
        index = next(_addresses)
        host = make_virtual_device(self.radio, name="host", address=_address("C0:B1", index))
        await host.power_on()
        radio = CentralRadio.bumble(host, mtu=247)
        auth = DeviceAuthentication.from_qr_text(target.label_qr)
        session = await open_session(radio, auth, trust, timeout=5)
        return session, EnrolmentClient(session, timeout=10)

    async def enrol(self, target: VirginDevice, *, owner: str = "alice") -> mb.ZoneMembership:
        """Wi-Fi and zone certificate in one session, one commit."""
        session, client = await self.session(target)
        assert session.info is not None
        enroller = ZoneEnroller(self.hub, self.admin)
        status = await client.set_wifi(HOME)
        assert status.ip is not None
        pending = await enroller.stage(
            client, session, device_id=session.info.attestation.device_id, owner=owner
        )
        try:
            await client.commit()
        except BaseException:
            await enroller.abandon(pending)
            raise
        await enroller.confirm(pending)
        await session.close()
        await target.service.drain()
        membership = mb.membership_of(target.store.load())
        assert membership is not None
        return membership

    def crl(self) -> bytes:
        return self.hub.crl(now=datetime.now(UTC))

    def host(self, name: str, *, directory: str | None = None) -> HostTrust:
        """A host named ``name`` with its own encrypted store and peer identity."""
        directory_path = self.tmp / f"host-{directory or name}"
        return HostTrust(
            DeviceStore(directory_path / "store", KeyFileProvider(directory_path / "key")),
            name=name,
        )

    async def window_session(
        self,
        code: WindowCode | str,
        *,
        discriminator: int | None = None,
        device: VirginDevice | None = None,
    ) -> SecureHostLink:
        """A new host with an owner's window code. With ``device``: connect to it even when
        it advertises no window (to hear the device's own refusal)."""
        index = next(_addresses)
        central = make_virtual_device(self.radio, name="new-host", address=_address("C0:B2", index))
        await central.power_on()
        radio = CentralRadio.bumble(central, mtu=247)
        text = code if isinstance(code, str) else code.formatted()
        auth = DeviceAuthentication.window(text, discriminator=discriminator)
        if device is not None:
            auth = DeviceAuthentication(auth.mode, auth.secret, device.runtime.discriminator)
        return await open_session(radio, auth, TRUST, timeout=5)

    async def bind_in_window(self, code: WindowCode, target: VirginDevice, host: HostTrust) -> None:
        """Peer binding of ``host`` through the owner's window, one commit."""
        from bleprov.service.provisioning import PeerPlan, provision

        session = await self.window_session(code, discriminator=target.runtime.discriminator)
        try:
            await provision(session, peer=PeerPlan(host))
        finally:
            await session.close()
            await target.service.drain()

    async def bind(self, target: VirginDevice, host: HostTrust) -> None:
        """Peer binding in one label session, one commit; the host pins only afterwards."""
        session, client = await self.session(target)
        try:
            pin = await client.peer_bind(host.identity())
            await client.commit()
            host.pin(pin)
        finally:
            await session.close()
            await target.service.drain()


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    hub = Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=b"zone passphrase",
        admin="admin",
        admin_passphrase="admin passphrase",
        now=NOW,
        passphrase_cost=CHEAP,
    )
    admin = hub.authenticate("admin", "admin passphrase")
    hub.registry.add_user("alice", Role.MEMBER, passphrase="alice passphrase", actor=admin)
    radio = VirtualLink()
    world = World(tmp_path, radio, hub, admin)
    yield world
    for close in reversed(world.closers):
        await close()
    radio.close()
    hub.close()
    await asyncio.sleep(0.02)
