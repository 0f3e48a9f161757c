"""Hardware-in-the-loop tests: real Bluetooth adapters, opt-in by environment variables.

Set ``BLEPROV_HW_HOST_RADIO`` to the radio this machine's host side uses: ``system``
(bleak on BlueZ, CoreBluetooth or WinRT) or ``bumble:<transport>`` (an HCI dongle driven
by bumble, e.g. ``bumble:usb:0``). Then name the device under test, one of:

- ``BLEPROV_HW_PEER_DISCRIMINATOR``: a device already running
  ``bleprov linktest serve --radio bluez --discriminator N`` (for example a Raspberry Pi);
- ``BLEPROV_HW_DEVICE_RADIO``: a second local adapter on which the tests start the device
  themselves, e.g. ``bumble:usb:1`` (two dongles on one CI runner).

Without them every test here is skipped, and says what to set.

Device-side tests (``test_hw_device.py``, marked ``device_hw``) run the daemon itself on
this machine's adapter and GPIO, and have their own switches (see that module); this
hook leaves them to it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.linktest import EchoApplication, linktest_info
from bleprov.radio.spec import RadioSpec, open_central, open_peripheral

HOST_RADIO = os.environ.get("BLEPROV_HW_HOST_RADIO") or None
PEER_DISCRIMINATOR = os.environ.get("BLEPROV_HW_PEER_DISCRIMINATOR") or None
DEVICE_RADIO = os.environ.get("BLEPROV_HW_DEVICE_RADIO") or None

HOW_TO = (
    "hardware not declared: set BLEPROV_HW_HOST_RADIO (system | bumble:<transport>) and "
    "either BLEPROV_HW_PEER_DISCRIMINATOR (a device running `bleprov linktest serve`) or "
    "BLEPROV_HW_DEVICE_RADIO (a second local adapter, e.g. bumble:usb:1)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HOST_RADIO and (PEER_DISCRIMINATOR or DEVICE_RADIO):
        return
    skip = pytest.mark.skip(reason=HOW_TO)
    for item in items:
        # These declare their own rigs and skip themselves, naming what is missing.
        if not {"device_hw", "provision_hw"} & {m.name for m in item.iter_markers()}:
            item.add_marker(skip)


@dataclass
class HardwareSetup:
    host: CentralRadio
    discriminator: int
    #: The device link when the tests run the device on a local adapter, else None.
    device: DeviceLink | None


@pytest_asyncio.fixture
async def hardware() -> AsyncIterator[HardwareSetup]:
    assert HOST_RADIO is not None
    async with open_central(RadioSpec.parse(HOST_RADIO)) as host:
        if PEER_DISCRIMINATOR is not None:
            yield HardwareSetup(host, int(PEER_DISCRIMINATOR, 0), None)
            return
        assert DEVICE_RADIO is not None
        discriminator = secrets.randbelow(4096)
        async with open_peripheral(RadioSpec.parse(DEVICE_RADIO), name="bleprov-hw") as per:
            link = DeviceLink(per, EchoApplication(), lambda: linktest_info(discriminator))
            await link.start()
            try:
                yield HardwareSetup(host, discriminator, link)
            finally:
                await link.close()
