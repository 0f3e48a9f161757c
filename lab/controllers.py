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
from typing import Any

from bumble.controller import Controller
from bumble.core import PhysicalTransport
from bumble.link import LocalLink
from bumble.transport import open_transport


class LabLink(LocalLink):
    """bumble's local link, sending LE data from the connection's own address.

    bumble 0.0.236 sends every LE ACL packet "from" the controller's LE random address.
    A controller that bluetoothd advertises with extended advertising has its address on
    the advertising set only (LE Set Advertising Set Random Address), and its random
    address stays 00:00:00:00:00:00: the central then finds no connection for the data
    ("!!! no connection for 00:00:00:00:00:00") and drops it. Seen in the lab: the
    peripheral's Exchange MTU response never reached the central, which gave up on
    service discovery.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: Any,
        transport: PhysicalTransport,
        data: bytes,
    ) -> None:
        if transport != PhysicalTransport.LE:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        connection = sender_controller.le_connections.get(destination_address)
        destination = self.find_le_controller(destination_address)
        if connection is None or destination is None:
            return
        source = connection.self_address
        asyncio.get_running_loop().call_soon(
            lambda: destination.on_link_acl_data(source, transport, data)
        )


async def serve(port: int) -> None:
    link = LabLink()
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
