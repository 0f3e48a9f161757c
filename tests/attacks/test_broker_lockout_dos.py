"""Lockout denial of service through the broker.

Anyone allowed to publish to a device's session topics (with the example ACL: every
owner's app, one shared account) can start handshakes with a wrong label secret. Each
one counts on the device's failed-attempt limiter; after ``DEFAULT_MAX_FAILURES`` the
device is locked until someone presses its reset button. If that counter is the one BLE
uses, a stranger on the internet locks the owner out of enrolling the device in their
own hands. Required: failures through the broker lock the broker path only; the owner,
next to the device with its label, still gets in over BLE.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from bleprov.broker.client import BrokerConfig
from bleprov.core.advertising import DeviceState, OobMode
from bleprov.core.attempts import DEFAULT_MAX_FAILURES, AttemptLimiter, LockedOut
from bleprov.core.errors import BleprovError
from bleprov.core.factory import provision_device
from bleprov.core.session import host as hst
from bleprov.core.session.host import DeviceRefused
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.host_session import DeviceAuthentication, open_broker_session, open_session
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider
from tests.broker.conftest import Mosquitto, mosquitto  # noqa: F401 (fixture)
from tests.rig import CHEAP, ENVIRONMENT, MANUFACTURER, NOW, TRUST


async def test_failed_broker_attempts_do_not_lock_the_device_out_of_ble(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The backoff only stretches the attack over hours; it does not stop it.
    monkeypatch.setattr(AttemptLimiter, "backoff", lambda self: 0.0)
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP
    )
    device_id = device.identity.device_id
    store = DeviceStore(tmp_path / "store", KeyFileProvider(tmp_path / "store.key"))
    store.put_provisioning(device)
    radio = VirtualLink()
    bumble = make_virtual_device(radio, name="dev", address="F0:C3:00:00:00:01")
    config = BrokerConfig.from_url(mosquitto.url)
    runtime = DeviceRuntime(
        store,
        BumblePeripheral(bumble),
        SimulatedWifi.from_config(ENVIRONMENT),
        join_timeout=5,
        broker=config,
    )
    await runtime.start()
    try:
        assert runtime.broker is not None
        await asyncio.wait_for(runtime.broker.connected.wait(), 10)
        owner = DeviceAuthentication.from_qr_text(label.qr_text)
        real = cast(hst.QrSecret, owner.secret)
        stranger = DeviceAuthentication(
            owner.mode,
            hst.QrSecret(real.device_static_public, bytes(len(real.label_secret))),
            owner.discriminator,
        )
        for _ in range(DEFAULT_MAX_FAILURES):
            with pytest.raises(BleprovError):
                await open_broker_session(mosquitto.url, stranger, TRUST, device_id=device_id)
        # The broker path is now locked, even for the label's holder...
        with pytest.raises(DeviceRefused) as refused:
            await open_broker_session(mosquitto.url, owner, TRUST, device_id=device_id)
        assert refused.value.code == LockedOut.code

        # ...but the device does not say it is locked, and over BLE its owner gets in.
        assert runtime.state() is not DeviceState.LOCKED_OUT
        host = make_virtual_device(radio, name="host", address="C0:C3:00:00:00:01")
        await host.power_on()
        try:
            session = await open_session(
                CentralRadio.bumble(host, mtu=247), owner, TRUST, timeout=5
            )
        except DeviceRefused as exc:
            pytest.fail(f"BLE refused the label's holder after broker failures: {exc}")
        assert session.info is not None
        await session.close()
    finally:
        await runtime.close()
        radio.close()
