"""``bleprov demo``: bleprov end to end on the virtual radio, in one process.

A manufacturer and a device identity are made, with the device's label; the device starts
on a virtual controller; the host finds it by the label's discriminator, authenticates
with the chosen out-of-band mode, checks the device's attestation against the
manufacturer root, and over the secure channel shows the device's Wi-Fi scan, sends
credentials (a typo first, then the right ones), enrols the device into a hub's zone
(CSR bound to the session, certificate from the zone CA) or, with ``--peer``, binds it as a
peer, and commits all of it in one atomic write. Then the device and the hub (or the host,
for a peer) open a validated connection: mutual TLS 1.3 on loopback.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from rich.console import Console
from rich.table import Table

from bleprov.core.advertising import OobMode, as_mapping
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment.device import DeviceEnrolmentConfig
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer, TrustPolicy
from bleprov.core.onboarding import parse_manual_code, parse_qr, passcode_password
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio, HostLink, find_device
from bleprov.radio.secure_link import SecureDeviceServer, SecureHostLink
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.enrolment import EnrolmentClient, EnrolmentService
from bleprov.service.trust import DeviceTrust, HostTrust, member_hello
from bleprov.service.zone_hub import (
    PendingEnrolment,
    ZoneEnroller,
    hub_server_credentials,
    serve_hub,
)
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import KeyFileProvider

#: The demo derives code-mode verifiers at a lower scrypt cost to start quickly; real
#: labels use the default (N=2^15).
DEMO_COST = ScryptCost(n=1 << 12, r=8, p=1)
LOOPBACK = "127.0.0.1"
OWNER = "alice"


EXAMPLE_NETWORK = Path(__file__).resolve().parents[1] / "network" / "simulated_example.toml"
HOME_SSID = b"Home"
#: The simulated network's password (bleprov/network/simulated_example.toml); not a secret.
HOME_PASSPHRASE = "correct horse battery staple"  # noqa: S105
TYPO = "correct horse battery stapel"


class _ConsoleUi:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.numbers: list[int] = []

    def show_number(self, number: int) -> None:
        self.numbers.append(number)
        self.console.print(f"device display: [bold]{number:06d}[/]")

    def clear(self) -> None:
        pass


async def run_demo(
    console: Console, *, mode: str, mtu: int, interval_ms: float, peer: bool = False
) -> None:
    started = time.perf_counter()
    chosen = Mode[mode.upper()]
    variant = "peer binding" if peer else "zone enrolment"
    console.rule(f"[bold]bleprov demo[/]: {chosen.label} mode, {variant}, on the virtual radio")

    now = datetime.now(UTC)
    manufacturer = Manufacturer.create("Demo Devices", now=now)
    identity = manufacturer.issue_device(now=now)
    modes = OobMode.QR | OobMode.CODE | OobMode.COMPARE | OobMode.BUTTON
    device_data, label = provision_device(identity, modes=modes, cost=DEMO_COST)
    console.print(f"factory: manufacturer root {manufacturer.root_fingerprint.hex()[:16]}...")
    console.print(f"factory: device {identity.device_id}, label QR [dim]{label.qr_text[:24]}...[/]")
    if label.manual_code:
        console.print(f"factory: manual code {label.manual_code}")

    link = VirtualLink(connection_interval=interval_ms / 1000 if interval_ms > 0 else None)
    ui = _ConsoleUi(console)
    network = SimulatedWifi.from_file(EXAMPLE_NETWORK)
    await network.start()
    workdir = tempfile.TemporaryDirectory(prefix="bleprov-demo-")
    work = Path(workdir.name)
    store = DeviceStore(work / "store", KeyFileProvider(work / "key"))
    store.put_provisioning(device_data)
    # The hub: a zone CA and its registry, with one admin who enrols devices for herself.
    # The demo makes throwaway passphrases; a real hub reads them from the environment.
    admin_passphrase = secrets.token_urlsafe(16)
    hub = Hub.init(
        work / "hub",
        name="Demo Home",
        zone_passphrase=secrets.token_bytes(16),
        admin=OWNER,
        admin_passphrase=admin_passphrase,
        now=now,
        passphrase_cost=DEMO_COST,
    )
    admin = hub.authenticate(OWNER, admin_passphrase)
    host_trust = HostTrust(
        DeviceStore(work / "host", KeyFileProvider(work / "host.key")), name="demo-laptop"
    )
    if not peer:
        console.print(f"hub: zone {hub.zone.zone_id} created; {OWNER} signed in as admin")
    service = EnrolmentService(
        network=network,
        store=store,
        config=lambda: DeviceEnrolmentConfig(identity.device_id, join_timeout=10),
    )
    server = SecureDeviceServer(
        secrets=device_data.secrets(),
        policy=int(modes),
        application=service,
        attempts=store.attempt_store(),
        ui=ui,
    )
    device = make_virtual_device(link, name="bleprov-device", address="F0:B1:E9:00:00:01")
    device_link = DeviceLink(BumblePeripheral(device), server, device_data.info)
    device_link.keep_advertising = server.button_window_open
    await device_link.start()
    if chosen is Mode.BUTTON:
        server.press_button()
        console.print("device: button pressed, window open for 120 s")
    console.print(f"device: advertising, discriminator {device_data.discriminator}")

    host = make_virtual_device(link, name="bleprov-host", address="C0:B1:E9:00:00:01")
    await host.power_on()
    radio = CentralRadio.bumble(host, mtu=mtu)
    trust = hst.Trust(
        (manufacturer.root_certificate.public_bytes(Encoding.DER),), TrustPolicy.REFUSE
    )
    payload = parse_qr(label.qr_text)
    secret: hst.OutOfBand = None
    if chosen is Mode.QR:
        secret = hst.QrSecret(payload.device_public_key, payload.label_secret)
    elif chosen is Mode.CODE:
        assert label.manual_code is not None
        secret = hst.CodeSecret(passcode_password(parse_manual_code(label.manual_code).passcode))

    async def user_compares(number: int) -> bool:
        same = bool(ui.numbers) and ui.numbers[-1] == number
        console.print(
            f"host display: [bold]{number:06d}[/]: user says "
            f"{'they match' if same else 'they differ'}"
        )
        return same

    try:
        with console.status("host: scanning..."):
            found = await find_device(radio, discriminator=payload.discriminator, timeout=10)
        console.print(f"host: found {found.device.address}: {dict(as_mapping(found.service_data))}")
        link.stats.reset()
        t0 = time.perf_counter()
        session = SecureHostLink(
            found.device,
            radio,
            mode=chosen,
            secret=secret,
            trust=trust,
            advertised=found.service_data,
            confirm_number=user_compares,
        )
        info = await session.open()
        handshake_s = time.perf_counter() - t0
        console.print(
            f"host: session open in {handshake_s * 1000:.0f} ms; attestation: device "
            f"{info.attestation.device_id} by {info.attestation.manufacturer!r}, trusted"
        )
        client = EnrolmentClient(session, timeout=60)
        t1 = time.perf_counter()
        results = await client.scan()
        shown = ", ".join(f"{r.ssid.decode(errors='replace')} ({r.rssi} dBm)" for r in results[:4])
        console.print(f"device's Wi-Fi scan: {len(results)} access points: {shown}, ...")
        typo = WifiCredentials(HOME_SSID, WifiSecurity.WPA2_WPA3_PERSONAL, passphrase=TYPO)
        status = await client.set_wifi(typo)
        reason = status.reason.name.lower().replace("_", " ") if status.reason else "?"
        console.print(f"wifi: {reason} ({status.attempts_left} attempts left): retrying")
        right = WifiCredentials(
            HOME_SSID, WifiSecurity.WPA2_WPA3_PERSONAL, passphrase=HOME_PASSPHRASE
        )
        status = await client.set_wifi(right)
        console.print(f"wifi: connected to Home, IP {status.ip}")
        before = (client.requests, client.bytes_sent, client.bytes_received, link.stats.total)
        before_pdus, before_air = link.stats.total.pdus, link.stats.total.air_bytes
        t_trust = time.perf_counter()
        pending: PendingEnrolment | None = None
        enroller = ZoneEnroller(hub, admin)
        if peer:
            device_pin = await client.peer_bind(host_trust.identity())
            console.print(
                f"peer: device {device_pin.name} pinned this host; its key "
                f"{device_pin.fingerprint.hex()[:16]}... is pinned here once it commits"
            )
        else:
            pending = await enroller.stage(
                client, session, device_id=info.attestation.device_id, owner=OWNER
            )
            console.print(
                f"zone: CSR of {pending.csr_bytes} bytes bound to this session; certificate "
                f"for {pending.device_id}, owner {OWNER}, valid to {pending.not_after:%Y-%m-%d}"
                f", serial {pending.serial:x}"[:120]
            )
        trust_s = time.perf_counter() - t_trust
        trust_requests = client.requests - before[0]
        trust_up, trust_down = client.bytes_sent - before[1], client.bytes_received - before[2]
        trust_pdus = link.stats.total.pdus - before_pdus
        trust_air = link.stats.total.air_bytes - before_air
        try:
            await client.commit()
        except BaseException:
            if pending is not None:
                await enroller.abandon(pending)
            raise
        if peer:
            host_trust.pin(device_pin)
        enrol_s = time.perf_counter() - t1
        console.print(
            "device: committed Wi-Fi and trust in one atomic write to its encrypted store"
        )
        await session.close()
        await service.drain()
        t_tls = time.perf_counter()
        device_trust = DeviceTrust(store, device_id=identity.device_id)
        if peer:
            tls_server = await device_trust.serve_peers(LOOPBACK, 0)
            port = tls_server.sockets[0].getsockname()[1]
            async with await host_trust.connect(LOOPBACK, port, identity.device_id) as conn:
                hello = await conn.request("hello", {})
            console.print(
                f"validated connection: host -> device {hello['name']} (pinned keys, no CA), "
                f"device owned by {hello.get('owner')}"
            )
        else:
            hub_server = await serve_hub(hub, LOOPBACK, 0)
            hub_port = hub_server.sockets[0].getsockname()[1]
            crl = await device_trust.fetch_crl(LOOPBACK, hub_port)
            console.print(f"validated connection: device -> hub, CRL of {len(crl)} bytes fetched")
            tls_server = await device_trust.serve_members(LOOPBACK, 0, crl_provider=lambda: crl)
            port = tls_server.sockets[0].getsockname()[1]
            hello = await member_hello(
                LOOPBACK,
                port,
                hub_server_credentials(hub, now=datetime.now(UTC)),
                crl_der=crl,
                device=identity.device_id,
            )
            console.print(
                f"validated connection: hub -> device {hello['name']} (zone chain + CRL), "
                f"owner {hello.get('owner')}"
            )
            hub_server.close()
            await hub_server.wait_closed()
        await device_trust.close()
        tls_s = time.perf_counter() - t_tls
        table = Table(title="summary")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("mode", chosen.label)
        assert isinstance(session.link, HostLink)  # the demo runs over the radio
        table.add_row("ATT MTU", str(session.link.mtu))
        table.add_row(
            "handshake messages host->device / device->host",
            f"{session.handshake_sent} / {session.handshake_received}",
        )
        table.add_row("connect + handshake + attestation", f"{handshake_s * 1000:.0f} ms")
        table.add_row(
            "enrolment requests / messages from device",
            f"{client.requests} / {client.messages_received}",
        )
        table.add_row(
            "enrolment bytes host->device / device->host",
            f"{client.bytes_sent} / {client.bytes_received}",
        )
        what = "peer binding" if peer else "zone certificate step"
        table.add_row(f"{what}: requests (round trips)", str(trust_requests))
        table.add_row(f"{what}: bytes host->device / device->host", f"{trust_up} / {trust_down}")
        table.add_row(f"{what}: L2CAP PDUs / bytes on air", f"{trust_pdus} / {trust_air}")
        table.add_row(f"{what}: time", f"{trust_s * 1000:.0f} ms")
        table.add_row(
            "scan + 2 joins + trust + commit (incl. simulated Wi-Fi)", f"{enrol_s * 1000:.0f} ms"
        )
        table.add_row("validated connection(s) over TLS 1.3", f"{tls_s * 1000:.0f} ms")
        up, down = link.stats.central_to_peripheral, link.stats.peripheral_to_central
        table.add_row("L2CAP PDUs up / down", f"{up.pdus} / {down.pdus}")
        table.add_row("bytes on air up / down", f"{up.air_bytes} / {down.air_bytes}")
        if interval_ms > 0:
            table.add_row("modelled connection interval", f"{interval_ms:g} ms")
        table.add_row("total demo time", f"{(time.perf_counter() - started) * 1000:.0f} ms")
        console.print(table)
        console.print("[bold green]demo complete[/]")
    finally:
        await device_link.close()
        await network.close()
        hub.close()
        link.close()
        workdir.cleanup()
