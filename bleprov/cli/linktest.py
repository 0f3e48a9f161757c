"""``bleprov linktest``: the echo link test on any radio (virtual, dongle, BlueZ)."""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from bleprov.cli.output import print_table
from bleprov.core.advertising import describe, format_discriminator
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import HostLink, find_device
from bleprov.radio.linktest import EchoApplication, linktest_info, run_link_test
from bleprov.radio.spec import RadioSpec, open_central, open_peripheral


async def serve(console: Console, radio: str, discriminator: int, name: str) -> None:
    spec = RadioSpec.parse(radio)
    async with open_peripheral(spec, name=name) as peripheral:
        link = DeviceLink(
            peripheral, EchoApplication(), lambda: linktest_info(discriminator), local_name=name
        )
        await link.start()
        console.print(
            f"advertising on {spec}, discriminator {format_discriminator(discriminator)}",
            highlight=False,
        )
        console.print("ready", highlight=False)
        try:
            await asyncio.Event().wait()
        finally:
            await link.close()


async def run_host(
    console: Console,
    radio: str,
    discriminator: int | None,
    sizes: list[int],
    mtu: int,
    timeout: float,
) -> None:
    spec = RadioSpec.parse(radio)
    async with open_central(spec, mtu=mtu) as central:
        found = await find_device(central, discriminator=discriminator, timeout=timeout)
        console.print(f"found {found.device.address}: {describe(found.service_data)}")
        async with HostLink(found.device, central) as link:
            results = await run_link_test(link, sizes)
        table = Table(title=f"link test over {spec}")
        for col in ("bytes", "ATT MTU", "ms", "frames sent", "frames received"):
            table.add_column(col, justify="right")
        for r in results:
            table.add_row(
                str(r.size),
                str(r.mtu),
                f"{r.seconds * 1000:.0f}",
                str(r.frames_sent),
                str(r.frames_received),
            )
        print_table(console, table)
        console.print("linktest ok", highlight=False)
