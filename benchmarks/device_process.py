"""A device daemon for the memory benchmark: a DeviceRuntime on a virtual controller.

``python -m benchmarks.device_process TRANSPORT DIRECTORY`` opens the store in DIRECTORY
(made by the parent: encrypted records, 0600 key file), attaches to the virtual radio hub
at TRANSPORT (``tcp-client:127.0.0.1:PORT``), advertises, prints ``ready`` and serves
until its standard input closes. Nothing secret passes on the command line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from benchmarks.wifi import environment
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.virtual import open_hci_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider


async def serve(transport: str, directory: Path) -> None:
    store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
    device, hci = await open_hci_device(transport, name="bench-device", address="F0:B1:EE:00:00:01")
    runtime = DeviceRuntime(
        store, BumblePeripheral(device), SimulatedWifi.from_config(environment(5))
    )
    await runtime.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    try:
        # Serve until the parent closes our stdin.
        await loop.run_in_executor(None, sys.stdin.read)
    finally:
        await runtime.close()
        await hci.close()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))


if __name__ == "__main__":
    main()
