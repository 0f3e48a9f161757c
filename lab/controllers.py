"""The lab's Bluetooth controllers: bumble controllers on one virtual link, two attached
to the kernel through ``/dev/vhci`` (hci0 for the device, hci1 for the host, both run by
bluetoothd) and one served on a loopback TCP port for a bumble host (a central that keeps
the ATT MTU at 23, which BlueZ 5.66 cannot be made to do: its ExchangeMTU below 48 makes
the kernel refuse the ATT socket's options, and bluetoothd drops every adapter).

``python -m lab.controllers PORT`` (bumble's own ``apps.controllers`` takes exactly two).
"""

from __future__ import annotations

import asyncio
import sys

from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport


async def serve(port: int) -> None:
    link = LocalLink()
    names = ["vhci", "vhci", f"tcp-server:127.0.0.1:{port}"]
    transports = []
    controllers = []
    for index, name in enumerate(names):
        transport = await open_transport(name)
        transports.append(transport)
        controllers.append(
            Controller(
                f"C{index}", host_source=transport.source, host_sink=transport.sink, link=link
            )
        )
        print(f"controller {index}: {name}", flush=True)
    print("ready", flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        for transport in transports:
            await transport.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
