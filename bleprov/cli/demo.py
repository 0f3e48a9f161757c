"""``bleprov demo``: bleprov end to end on the virtual radio, in one process.

A manufacturer and a device identity are made, with the device's label; the device starts
on a virtual controller (the same :class:`DeviceRuntime` the device daemon runs); the host
finds it by the label's discriminator, authenticates with the chosen out-of-band mode,
checks the device's attestation against the manufacturer root, and over the secure channel
shows the device's Wi-Fi scan, sends credentials (a typo first, then the right ones),
enrols the device into a hub's zone (CSR bound to the session, certificate from the zone
CA) or, with ``--peer``, binds it as a peer, and commits all of it in one atomic write
(the same :func:`provision` the ``bleprov provision`` command runs). Then the device and
the hub (or the host, for a peer) open a validated connection: mutual TLS 1.3 on loopback.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bleprov.cli.output import print_table
from bleprov.core.advertising import describe, format_discriminator
from bleprov.core.crypto import pki
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment.messages import WifiStatus
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer, TrustPolicy
from bleprov.core.mode_bits import Mode, known_modes, mode_by_name
from bleprov.core.session import host as hst
from bleprov.core.session.modes import registry
from bleprov.core.session.modes.base import OobInput
from bleprov.core.wifi import ScanResult, WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.host_link import CentralRadio, HostLink
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.host_session import DeviceAuthentication, find, open_session
from bleprov.service.provisioning import PeerPlan, ZonePlan, provision
from bleprov.service.trust import HostTrust, member_hello
from bleprov.service.zone_hub import ZoneEnroller, hub_server_credentials, serve_hub
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
    """The device's little display, on the console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.numbers: list[int] = []

    def show_number(self, number: int) -> None:
        self.numbers.append(number)
        self.console.print(f"device display: [bold]{number:06d}[/]")

    def clear(self) -> None:
        pass


class _ScriptedUser:
    """The person at the laptop: picks Home, mistypes the password, then types it right."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        shown = ", ".join(f"{r.ssid.decode(errors='replace')} ({r.rssi} dBm)" for r in results[:4])
        self.console.print(f"device's Wi-Fi scan: {len(results)} access points: {shown}, ...")
        return WifiCredentials(HOME_SSID, WifiSecurity.WPA2_WPA3_PERSONAL, passphrase=TYPO)

    async def retry(self, status: WifiStatus, tried: WifiCredentials) -> WifiCredentials | None:
        reason = status.reason.name.lower().replace("_", " ") if status.reason else "?"
        self.console.print(f"wifi: {reason} ({status.attempts_left} attempts left): retrying")
        return WifiCredentials(
            HOME_SSID, WifiSecurity.WPA2_WPA3_PERSONAL, passphrase=HOME_PASSPHRASE
        )


class _Steps:
    def __init__(self, console: Console) -> None:
        self.console = console

    def step(self, text: str) -> None:
        self.console.print(f"host: {text}")


def _authentication(mode: Mode, label_qr: str, manual_code: str | None) -> DeviceAuthentication:
    oob = registry.engine(mode).oob
    if oob is OobInput.LABEL:
        return DeviceAuthentication.from_qr_text(label_qr)
    discriminator = DeviceAuthentication.from_qr_text(label_qr).discriminator
    if oob is OobInput.CODE:
        assert manual_code is not None
        return DeviceAuthentication.from_manual_code(manual_code)
    return DeviceAuthentication.without_secret(mode, discriminator=discriminator)


async def run_demo(
    console: Console, *, mode: str, mtu: int, interval_ms: float, peer: bool = False
) -> None:
    started = time.perf_counter()
    chosen = mode_by_name(mode)
    variant = "peer binding" if peer else "zone enrolment"
    console.rule(f"[bold]bleprov demo[/]: {chosen.label} mode, {variant}, on the virtual radio")

    now = datetime.now(UTC)
    manufacturer = Manufacturer.create("Demo Devices", now=now)
    identity = manufacturer.issue_device(now=now)
    modes = known_modes()
    device_data, label = provision_device(identity, modes=modes, cost=DEMO_COST)
    console.print(f"factory: manufacturer root {manufacturer.root_fingerprint.hex()[:16]}...")
    console.print(f"factory: device {identity.device_id}, label QR [dim]{label.qr_text[:24]}...[/]")
    if label.manual_code:
        console.print(f"factory: manual code {label.manual_code}")

    workdir = tempfile.TemporaryDirectory(prefix="bleprov-demo-")
    work = Path(workdir.name)
    link = VirtualLink(connection_interval=interval_ms / 1000 if interval_ms > 0 else None)
    ui = _ConsoleUi(console)
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
    host_trust = HostTrust(
        DeviceStore(work / "host", KeyFileProvider(work / "host.key")), name="demo-laptop"
    )
    runtime = DeviceRuntime(
        store,
        BumblePeripheral(
            make_virtual_device(link, name="bleprov-device", address="F0:B1:E9:00:00:01")
        ),
        SimulatedWifi.from_file(EXAMPLE_NETWORK),
        ui=ui,
        # The demo's device has a display and a button: it may offer compare.
        device_confirms=True,
        local_name="bleprov-device",
        join_timeout=10,
    )
    try:
        if not peer:
            admin = hub.authenticate(OWNER, admin_passphrase)
            console.print(f"hub: zone {hub.ca.zone_id} created; {OWNER} signed in as admin")
        await runtime.start()
        if registry.engine(chosen).button_window:
            runtime.press_button()
            console.print("device: button pressed, window open for 120 s")
        console.print(
            f"device: advertising, discriminator {format_discriminator(runtime.discriminator)}",
            highlight=False,
        )

        host = make_virtual_device(link, name="bleprov-host", address="C0:B1:E9:00:00:01")
        await host.power_on()
        radio = CentralRadio.bumble(host, mtu=mtu)
        trust = hst.Trust((pki.der(manufacturer.root_certificate),), TrustPolicy.REFUSE)
        auth = _authentication(chosen, label.qr_text, label.manual_code)

        async def user_compares(number: int) -> bool:
            same = bool(ui.numbers) and ui.numbers[-1] == number
            console.print(
                f"host display: [bold]{number:06d}[/]: user says "
                f"{'they match' if same else 'they differ'}"
            )
            if same:
                console.print("device: the user presses its button to accept the number too")
                runtime.server.confirm_number(True)
            return same

        async def user_types_the_number() -> str:
            for _ in range(100):  # the display shows it once the device's reply is out
                if ui.numbers:
                    break
                await asyncio.sleep(0.01)
            typed = f"{ui.numbers[-1]:06d}" if ui.numbers else ""
            console.print(f"host: the user types the number the device shows, {typed}")
            return typed

        with console.status("host: scanning..."):
            found = await find(radio, auth, timeout=10)
        console.print(f"host: found {found.device.address}: {describe(found.service_data)}")
        link.stats.reset()
        t0 = time.perf_counter()
        session = await open_session(
            radio,
            auth,
            trust,
            found=found,
            confirm_number=user_compares,
            enter_passkey=user_types_the_number,
        )
        handshake_s = time.perf_counter() - t0
        assert session.info is not None
        attestation = session.info.attestation
        console.print(
            f"host: session open in {handshake_s * 1000:.0f} ms; attestation: device "
            f"{attestation.device_id} by {attestation.manufacturer!r}, trusted"
        )
        report = await provision(
            session,
            wifi=_ScriptedUser(console),
            zone=None if peer else ZonePlan(ZoneEnroller(hub, admin), OWNER),
            peer=PeerPlan(host_trust) if peer else None,
            progress=_Steps(console),
        )
        assert report.wifi is not None
        console.print(f"wifi: connected to Home, IP {report.wifi.ip}")
        if report.zone is not None:
            console.print(
                f"zone: key and proof of {report.zone.key_bytes} bytes bound to this session; "
                f"certificate for {report.zone.device_id}, owner {OWNER}, valid to "
                f"{report.zone.not_after:%Y-%m-%d}"
            )
        if report.peer is not None:
            console.print(
                f"peer: device {report.peer.name} pinned this host; its key "
                f"{report.peer.fingerprint.hex()[:16]}... is pinned here"
            )
        console.print("device: committed Wi-Fi and trust in one atomic write (encrypted store)")
        await session.close()
        await runtime.service.drain()
        up, down = link.stats.central_to_peripheral, link.stats.peripheral_to_central

        t_tls = time.perf_counter()
        if peer:
            server = await runtime.trust.serve_peers(LOOPBACK, 0)
            port = server.sockets[0].getsockname()[1]
            async with await host_trust.connect(LOOPBACK, port, identity.device_id) as conn:
                hello = await conn.request("hello", {})
            console.print(
                f"validated connection: host -> device {hello['name']} (pinned keys, no CA), "
                f"device owned by {hello.get('owner')}"
            )
        else:
            hub_server = await serve_hub(hub, LOOPBACK, 0)
            try:
                hub_port = hub_server.sockets[0].getsockname()[1]
                crl = await runtime.trust.fetch_crl(LOOPBACK, hub_port)
                console.print(
                    f"validated connection: device -> hub, CRL of {len(crl)} bytes fetched"
                )
                server = await runtime.trust.serve_members(LOOPBACK, 0, crl_provider=lambda: crl)
                hello = await member_hello(
                    LOOPBACK,
                    server.sockets[0].getsockname()[1],
                    hub_server_credentials(hub, now=datetime.now(UTC)),
                    crl_der=crl,
                    device=identity.device_id,
                )
                console.print(
                    f"validated connection: hub -> device {hello['name']} (zone chain + CRL), "
                    f"owner {hello.get('owner')}"
                )
            finally:
                hub_server.close()
                await hub_server.wait_closed()
        tls_s = time.perf_counter() - t_tls

        table = Table(title="summary")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("mode", chosen.label)
        assert isinstance(session.link, HostLink)  # the demo runs over the radio
        assert isinstance(session.link, HostLink)  # the demo runs over the radio
        table.add_row("ATT MTU", str(session.link.mtu))
        table.add_row(
            "handshake messages host->device / device->host",
            f"{session.handshake_sent} / {session.handshake_received}",
        )
        table.add_row("connect + handshake + attestation", f"{handshake_s * 1000:.0f} ms")
        wifi, trust_cost, total = report.wifi_cost, report.trust_cost, report.total_cost
        table.add_row(
            "Wi-Fi: round trips / bytes up / down",
            f"{wifi.requests} / {wifi.bytes_up} / {wifi.bytes_down}",
        )
        what = "peer binding" if peer else "zone certificate step"
        table.add_row(
            f"{what}: round trips / bytes up / down",
            f"{trust_cost.requests} / {trust_cost.bytes_up} / {trust_cost.bytes_down}",
        )
        table.add_row(
            "enrolment total: round trips / bytes up / down",
            f"{total.requests} / {total.bytes_up} / {total.bytes_down}",
        )
        table.add_row(
            f"enrolment time ({report.wifi_attempts} simulated joins)",
            f"{total.seconds * 1000:.0f} ms",
        )
        table.add_row("L2CAP PDUs up / down", f"{up.pdus} / {down.pdus}")
        table.add_row("bytes on air up / down", f"{up.air_bytes} / {down.air_bytes}")
        table.add_row("validated connection(s) over TLS 1.3", f"{tls_s * 1000:.0f} ms")
        if interval_ms > 0:
            table.add_row("modelled connection interval", f"{interval_ms:g} ms")
        table.add_row("total demo time", f"{(time.perf_counter() - started) * 1000:.0f} ms")
        print_table(console, table)
        console.print("[bold green]demo complete[/]")
    finally:
        await runtime.close()
        hub.close()
        link.close()
        workdir.cleanup()
