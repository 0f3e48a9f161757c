"""``bleprov demo``: bleprov end to end on the virtual radio, in one process.

Today it shows the foundation: a device advertises its service data on a virtual
controller, the host finds it with bleak's scanner, connects, reads the plaintext info
characteristic, opens the framing channel and moves a large message each way. Later
layers (secure session, Wi-Fi, zone enrolment) plug into the same path.
"""

from __future__ import annotations

import secrets
import time

from rich.console import Console
from rich.table import Table

from bleprov.core.advertising import as_mapping
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio, HostLink, find_device
from bleprov.radio.linktest import EchoApplication, linktest_info, run_link_test
from bleprov.radio.virtual import VirtualLink, make_virtual_device


async def run_demo(console: Console, *, mtu: int, size: int, interval_ms: float) -> None:
    started = time.perf_counter()
    link = VirtualLink(connection_interval=interval_ms / 1000 if interval_ms > 0 else None)
    discriminator = secrets.randbelow(4096)

    console.rule("[bold]bleprov demo[/]: virtual radio, no hardware")
    device = make_virtual_device(link, name="bleprov-device", address="F0:B1:E9:00:00:01")
    app = EchoApplication()
    device_link = DeviceLink(
        BumblePeripheral(device), app, lambda: linktest_info(discriminator), local_name="bleprov"
    )
    await device_link.start()
    console.print(f"device: advertising, discriminator [bold]{discriminator}[/]")

    host = make_virtual_device(link, name="bleprov-host", address="C0:B1:E9:00:00:01")
    await host.power_on()
    radio = CentralRadio.bumble(host, mtu=mtu)
    try:
        with console.status("host: scanning for bleprov devices..."):
            found = await find_device(radio, discriminator=discriminator, timeout=10)
        console.print(f"host: found {found.device.address}: {dict(as_mapping(found.service_data))}")

        link.stats.reset()
        t_connect = time.perf_counter()
        async with HostLink(found.device, radio) as host_link:
            connect_s = time.perf_counter() - t_connect
            info = host_link.info
            assert info is not None
            console.print(
                f"host: connected in {connect_s * 1000:.0f} ms, ATT MTU {host_link.mtu}, "
                f"device info: state={info.state.name.lower()}, max message {info.max_message} B"
            )
            with console.status(f"exchanging {size} bytes each way..."):
                results = await run_link_test(host_link, [size])
        result = results[0]
        table = Table(title="summary")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("message, each way", f"{size} B")
        table.add_row("ATT MTU / frame size", f"{result.mtu} / {min(result.mtu - 3, 512)} B")
        table.add_row("echo time (both ways)", f"{result.seconds * 1000:.0f} ms")
        table.add_row("frames host->device", str(result.frames_sent))
        table.add_row("frames device->host", str(result.frames_received))
        up, down = link.stats.central_to_peripheral, link.stats.peripheral_to_central
        table.add_row("L2CAP PDUs up / down", f"{up.pdus} / {down.pdus}")
        table.add_row("bytes on air up / down", f"{up.air_bytes} / {down.air_bytes}")
        table.add_row("GATT round trips (read info, subscribe)", str(host_link.write_round_trips))
        if interval_ms > 0:
            table.add_row("modelled connection interval", f"{interval_ms:g} ms")
        table.add_row("total demo time", f"{(time.perf_counter() - started) * 1000:.0f} ms")
        console.print(table)
        console.print("[bold green]demo complete[/]")
    finally:
        await device_link.close()
        link.close()
