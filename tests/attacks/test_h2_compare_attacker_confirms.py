"""H2: on a device that cannot confirm a number itself, compare mode authenticated nobody.

The attacker plays the host, "accepts" whatever number it computes, and sends CONFIRMED:
a device without its own button used to open the session for it. Now a device that
cannot confirm neither offers nor accepts compare (the core session machine refuses it
with 0x40, and the info it serves no longer lists it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.factory import provision_device
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider
from tests.attacks.session_rig import CLASSIC, MANUFACTURER, Rig

EXAMPLE_NETWORK = Path(__file__).resolve().parents[2] / "bleprov/network/simulated_example.toml"


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


async def test_attacker_sends_confirmed_to_a_device_without_a_button(rig: Rig) -> None:
    device = await rig.device(modes=CLASSIC, device_confirms=False)

    async def attacker_accepts(number: int) -> bool:
        return True  # it sees no display: it accepts whatever it computed

    with pytest.raises(hst.DeviceRefused) as refused:
        await rig.session(device, Mode.COMPARE, confirm=attacker_accepts)
    assert refused.value.code == 0x40  # mode not allowed
    assert device.app.opened_modes == []
    assert device.app.messages == []


async def test_a_device_that_cannot_confirm_does_not_advertise_compare(tmp_path: Path) -> None:
    """The advertised/served modes derive from the policy *and* what the device can do."""
    now = datetime.now(UTC)
    record, _ = provision_device(
        MANUFACTURER.issue_device(now=now), modes=CLASSIC, cost=ScryptCost(n=16, r=1, p=1)
    )
    store = DeviceStore(tmp_path / "store", KeyFileProvider(tmp_path / "store.key"))
    store.put_provisioning(record)
    link = VirtualLink()
    runtimes = []
    try:
        for confirms in (False, True):
            peripheral = BumblePeripheral(
                make_virtual_device(link, name="d", address=f"F0:B1:E9:00:0A:0{int(confirms)}")
            )
            runtime = DeviceRuntime(
                store, peripheral, SimulatedWifi.from_file(EXAMPLE_NETWORK),
                device_confirms=confirms,
            )  # fmt: skip
            runtimes.append(runtime)
            offered = runtime.current_info().modes
            assert (OobMode.COMPARE in offered) is confirms, offered
            assert OobMode.QR in offered and OobMode.CODE in offered
    finally:
        for runtime in runtimes:
            await runtime.close()
        link.close()
