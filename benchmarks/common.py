"""The rig the benchmarks share: a factory, a hub, devices and hosts on the virtual radio.

Devices are :class:`DeviceRuntime` stacks (what the daemon runs) on a simulated Wi-Fi;
hosts authenticate with :mod:`bleprov.service.host_session` from what the label gives
them, then enrol with :class:`EnrolmentClient` and, for a zone, :class:`ZoneEnroller`.
:func:`enrol` is one full enrolment (session, attestation, Wi-Fi scan/set/status, CSR,
certificate or peer pin, commit) with everything the radio and the layers counted.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.serialization import Encoding

from benchmarks.wifi import PASSPHRASE, environment
from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.factory import DeviceProvisioning, Label, provision_device
from bleprov.core.identity import IntermediateCache, Manufacturer, TrustPolicy
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import DeviceAuthentication, find, open_session
from bleprov.service.trust import HostTrust
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import KeyFileProvider

#: Cheap KDF costs: the benchmarks measure the protocol, not passphrase hashing (the
#: session benchmark reports scrypt at the default cost on its own).
CHEAP: Final = ScryptCost(1 << 10, 8, 1)
OWNER: Final = "alice"
ALL_MODES: Final = OobMode.QR | OobMode.CODE | OobMode.COMPARE | OobMode.BUTTON
MODES: Final = (Mode.QR, Mode.CODE, Mode.COMPARE, Mode.BUTTON)

#: What is enrolled after the Wi-Fi: a zone certificate, a peer pin, or nothing.
ZONE: Final = "zone"
PEER: Final = "peer"
WIFI: Final = "wifi"


HOME: Final = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSPHRASE)


def device_address(index: int) -> str:
    return f"F0:B1:00:00:{index >> 8:02X}:{index & 0xFF:02X}"


def host_address(index: int) -> str:
    return f"C0:B1:00:00:{index >> 8:02X}:{index & 0xFF:02X}"


@dataclass
class Factory:
    """A manufacturer, and the trust a host puts in its root."""

    manufacturer: Manufacturer
    trust: hst.Trust

    @classmethod
    def create(cls) -> Factory:
        manufacturer = Manufacturer.create("Bench", now=datetime.now(UTC))
        root = manufacturer.root_certificate.public_bytes(Encoding.DER)
        # A host that knows the manufacturer's intermediate: the steady state (a first
        # contact fetches it once, docs/protocol.md section 9).
        intermediate = manufacturer.intermediate_certificate.public_bytes(Encoding.DER)
        trust = hst.Trust((root,), TrustPolicy.REFUSE, IntermediateCache([intermediate]))
        return cls(manufacturer, trust)

    def device(
        self, modes: OobMode = ALL_MODES, *, discriminator: int | None = None
    ) -> tuple[DeviceProvisioning, Label]:
        """A fresh device identity and its label."""
        identity = self.manufacturer.issue_device(now=datetime.now(UTC))
        return provision_device(identity, modes=modes, cost=CHEAP, discriminator=discriminator)


@dataclass
class BenchHub:
    """A zone CA and registry with one admin, who enrols every device for herself."""

    hub: Hub
    enroller: ZoneEnroller

    @classmethod
    def create(cls, directory: Path) -> BenchHub:
        # Throwaway passphrases: the hub lives as long as the benchmark.
        admin_passphrase = secrets.token_urlsafe(16)
        hub = Hub.init(
            directory,
            name="Bench",
            zone_passphrase=secrets.token_bytes(16),
            admin=OWNER,
            admin_passphrase=admin_passphrase,
            now=datetime.now(UTC),
            passphrase_cost=CHEAP,
        )
        return cls(hub, ZoneEnroller(hub, hub.authenticate(OWNER, admin_passphrase)))

    def close(self) -> None:
        self.hub.close()


class RecordingUi:
    """The device's display and button: remembers the numbers it showed; in compare mode
    its user accepts with the button (the host's user is the one who compares)."""

    def __init__(self) -> None:
        self.numbers: list[int] = []
        #: The device's button (``DeviceRuntime.accept_number``), once the runtime exists.
        self.accept: Callable[[], object] | None = None

    def show_number(self, number: int) -> None:
        self.numbers.append(number)
        if self.accept is not None:
            asyncio.get_running_loop().call_soon(self.accept)

    def clear(self) -> None:
        pass


@dataclass
class BenchDevice:
    """A running device and what its owner holds (the label)."""

    runtime: DeviceRuntime
    label: Label
    ui: RecordingUi

    def authentication(self, mode: Mode) -> DeviceAuthentication:
        """What the host makes of the label (or the display, or the button) in ``mode``."""
        discriminator = self.runtime.discriminator
        if mode is Mode.QR:
            return DeviceAuthentication.from_qr_text(self.label.qr_text)
        if mode is Mode.CODE:
            if self.label.manual_code is None:
                raise RuntimeError("this device's label has no manual code")
            return DeviceAuthentication.from_manual_code(self.label.manual_code)
        if mode is Mode.COMPARE:
            return DeviceAuthentication.compare(discriminator=discriminator)
        return DeviceAuthentication.button(discriminator=discriminator)

    async def close(self) -> None:
        await self.runtime.close()


async def start_device(
    link: VirtualLink,
    factory: Factory,
    directory: Path,
    *,
    index: int = 0,
    modes: OobMode = ALL_MODES,
    access_points: int = 5,
    join_delay: float = 0.0,
    discriminator: int | None = None,
) -> BenchDevice:
    """A fresh device, advertising on ``link``, with its store in ``directory``."""
    provisioning, label = factory.device(modes, discriminator=discriminator)
    store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
    store.put_provisioning(provisioning)
    network = SimulatedWifi.from_config(environment(access_points, join_delay=join_delay))
    peripheral = BumblePeripheral(
        make_virtual_device(link, name=f"d{index}", address=device_address(index))
    )
    ui = RecordingUi()
    runtime = DeviceRuntime(
        store, peripheral, network, ui=ui, join_timeout=30.0, device_confirms=True
    )
    ui.accept = runtime.accept_number
    await runtime.start()
    return BenchDevice(runtime, label, ui)


async def start_host(
    link: VirtualLink, *, index: int = 0, mtu: int = 247, **radio_options: Any
) -> CentralRadio:
    """A host radio on ``link``; ``radio_options`` go to :meth:`CentralRadio.bumble`."""
    host = make_virtual_device(link, name=f"h{index}", address=host_address(index))
    await host.power_on()
    return CentralRadio.bumble(host, mtu=mtu, **radio_options)


def host_identity_store(directory: Path) -> HostTrust:
    """The host's peer identity (peer binding), in its own store."""
    return HostTrust(
        DeviceStore(directory / "host", KeyFileProvider(directory / "host.key")), name="bench"
    )


class ClockedLink(VirtualLink):
    """The virtual link, noting when the last connection was made (its CONNECT_IND, on
    the loop's clock): connection-complete, where an enrolment's clock starts."""

    connected_at: float | None = None

    def send_advertising_pdu(self, sender_controller: Any, packet: Any) -> None:
        from bumble import ll

        if isinstance(packet, ll.ConnectInd):
            self.connected_at = asyncio.get_running_loop().time()
        super().send_advertising_pdu(sender_controller, packet)


@dataclass
class Enrolled:
    """What one enrolment cost, from connection to commit."""

    mode: str
    variant: str
    mtu: int
    interval_ms: float
    handshake_sent: int = 0
    handshake_received: int = 0
    requests: int = 0
    device_messages: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    frames_up: int = 0
    frames_down: int = 0
    att_round_trips: int = 0
    pdus: int = 0
    air_bytes: int = 0
    handshake_seconds: float = 0.0
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


async def enrol(
    radio: CentralRadio,
    device: BenchDevice,
    factory: Factory,
    *,
    mode: Mode,
    variant: str,
    hub: BenchHub | None = None,
    host_trust: HostTrust | None = None,
    link: VirtualLink | None = None,
    scan: bool = True,
    mtu: int = 0,
) -> Enrolled:
    """One enrolment of a device in this process, checked against what it committed."""
    if mode is Mode.BUTTON:
        device.runtime.press_button()
    row = await enrol_with(
        radio,
        device.authentication(mode),
        factory.trust,
        variant=variant,
        hub=hub,
        host_trust=host_trust,
        link=link,
        scan=scan,
        mtu=mtu,
        shown=device.ui.numbers,
    )
    await device.runtime.service.drain()
    # The enrolment really happened: what the device committed matches the variant.
    records = device.runtime.store.load()
    if (mb.membership_of(records) is not None) != (variant == ZONE):
        raise RuntimeError(f"{variant}: zone membership committed or missing unexpectedly")
    if (len(mb.pins_of(records)) > 0) != (variant == PEER):
        raise RuntimeError(f"{variant}: peer pin committed or missing unexpectedly")
    return row


async def enrol_with(
    radio: CentralRadio,
    auth: DeviceAuthentication,
    trust: hst.Trust,
    *,
    variant: str,
    hub: BenchHub | None = None,
    host_trust: HostTrust | None = None,
    link: VirtualLink | None = None,
    scan: bool = True,
    mtu: int = 0,
    shown: list[int] | None = None,
) -> Enrolled:
    """Find the device, then connect -> session -> (scan) -> Wi-Fi -> zone/peer -> commit.

    The counters start once the device is found (scanning for it is not the
    protocol's; the link's are reset then if ``link`` is given); the clock at
    connection-complete on a :class:`ClockedLink`, else once the device is found. ``shown``
    is the device's display (compare mode).
    """
    if variant == ZONE and hub is None:
        raise ValueError("a zone enrolment needs a hub")
    if variant == PEER and host_trust is None:
        raise ValueError("peer binding needs the host's identity")
    found = await find(radio, auth, timeout=10)

    async def user_compares(number: int) -> bool:
        return shown is not None and len(shown) > 0 and shown[-1] == number

    interval = link.connection_interval if link is not None else None
    row = Enrolled(auth.mode.label, variant, mtu, (interval or 0.0) * 1000)
    if link is not None:
        link.stats.reset()
    start = time.perf_counter()
    session = await open_session(radio, auth, trust, found=found, confirm_number=user_compares)
    row.handshake_seconds = time.perf_counter() - start
    try:
        assert session.info is not None
        client = EnrolmentClient(session, timeout=120)
        if scan:
            await client.scan()
        status = await client.set_wifi(HOME)
        if status.ip is None:
            raise RuntimeError(f"the simulated Wi-Fi did not connect: {status}")
        if variant == ZONE:
            assert hub is not None
            await hub.enroller.stage(
                client, session, device_id=session.info.attestation.device_id, owner=OWNER
            )
        if variant == PEER:
            assert host_trust is not None
            pin = await client.peer_bind(host_trust.identity())
            if pin.name != session.info.attestation.device_id:
                raise RuntimeError("the device pinned this host under another name")
        await client.commit()
        row.seconds = time.perf_counter() - start
        if isinstance(link, ClockedLink) and link.connected_at is not None:
            # From connection-complete, not from when the device was heard.
            row.seconds = asyncio.get_running_loop().time() - link.connected_at
        row.handshake_sent = session.handshake_sent
        row.handshake_received = session.handshake_received
        row.requests, row.device_messages = client.requests, client.messages_received
        row.bytes_up, row.bytes_down = client.bytes_sent, client.bytes_received
        channel = session.link.channel.stats
        row.frames_up, row.frames_down = channel.frames_sent, channel.frames_received
        row.att_round_trips = session.link.write_round_trips
        if link is not None:
            row.pdus, row.air_bytes = link.stats.total.pdus, link.stats.total.air_bytes
    finally:
        await session.close()
    return row
