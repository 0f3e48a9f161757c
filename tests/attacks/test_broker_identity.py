"""Broker identities: what the example Mosquitto configuration keys on, and who can
borrow a device's.

The device listener keys ACLs on the certificate's CN (``use_identity_as_username``):
only the manufacturer's intermediate issues such certificates, with random upper-case
device IDs, so a CN cannot be chosen by anyone else (docs/cloud-binding.md). The MQTT
*client ID*, though, was the client's choice: a second connection with a device's
client ID (``bleprov-dev-<ID>``) takes the device's connection over, and any owner's
app could do that to any device, over and over. Required: with
``contrib/mosquitto/mosquitto.conf`` as shipped, nobody but the device can use its
client ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from bleprov.broker.client import BrokerConfig
from bleprov.broker.device import BrokerDeviceTransport
from bleprov.core.advertising import OobMode
from bleprov.core.enrolment import device as enr
from bleprov.core.factory import provision_device
from bleprov.network.simulated import SimulatedWifi
from bleprov.service.cloud import device_broker_tls
from bleprov.service.enrolment import EnrolmentService
from bleprov.service.host_session import DeviceAuthentication, open_broker_session
from bleprov.session import SecureDeviceServer
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider
from tests.broker.conftest import Mosquitto, require_mosquitto
from tests.broker.test_broker_tls import HOST_PASSWORD, HOST_USER, _broker_certificate, _host_tls
from tests.rig import CHEAP, ENVIRONMENT, MANUFACTURER, NOW, TRUST

CONTRIB = Path(__file__).parents[2] / "contrib" / "mosquitto"


def contrib_config(directory: Path, passwd: Path) -> str:
    """contrib/mosquitto/mosquitto.conf as shipped, with this test's files and ports."""
    paths = {
        "certfile": directory / "server.crt",
        "keyfile": directory / "server.key",
        "cafile": directory / "manufacturer.pem",
        "password_file": passwd,
        "acl_file": CONTRIB / "acl.conf",
    }
    lines = [f"user {getpass.getuser()}"]  # as root, mosquitto would drop privileges
    for line in (CONTRIB / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in paths:
            line = f"{key} {paths[key]}"
        elif key in ("persistence", "persistence_location"):
            continue
        line = re.sub(r"^listener 8883$", "listener {port} 127.0.0.1", line)
        line = re.sub(r"^listener 8884$", "listener {port2} 127.0.0.1", line)
        lines.append(line)
    return "\n".join([*lines, "persistence false", ""])


@pytest.fixture
def contrib_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, bytes]]:
    require_mosquitto()
    ca_pem = _broker_certificate(tmp_path)
    passwd = tmp_path / "hosts.passwd"
    subprocess.run(
        ["/usr/bin/mosquitto_passwd", "-b", "-c", str(passwd), HOST_USER, HOST_PASSWORD],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o600)
    broker = Mosquitto(tmp_path, contrib_config(tmp_path, passwd))
    broker.start()
    yield broker, ca_pem
    broker.stop()


async def test_nobody_else_can_take_a_devices_client_id(
    tmp_path: Path, contrib_broker: tuple[Mosquitto, bytes]
) -> None:
    broker, ca_pem = contrib_broker
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP
    )
    device_id = device.identity.device_id
    store = DeviceStore(tmp_path / "s", KeyFileProvider(tmp_path / "k"))
    store.put_provisioning(device)
    network = SimulatedWifi.from_config(ENVIRONMENT)
    await network.start()
    service = EnrolmentService(
        network=network,
        store=store,
        config=lambda: enr.DeviceEnrolmentConfig(device_id, join_timeout=5),
    )
    server = SecureDeviceServer(
        secrets=device.secrets(),
        policy=int(device.modes),
        application=service,
        attempts=store.attempt_store(),
    )
    config = BrokerConfig.from_url(
        f"mqtts://127.0.0.1:{broker.port}",
        tls=device_broker_tls(device.identity, broker_ca_pem=ca_pem),
    )
    transport = BrokerDeviceTransport(config, server, device.info, device_id)
    await transport.start()
    try:
        await asyncio.wait_for(transport.connected.wait(), 10)
        host = BrokerConfig.from_url(
            f"mqtts://127.0.0.1:{broker.port2}",
            tls=_host_tls(ca_pem),
            username=HOST_USER,
            password=HOST_PASSWORD,
        )
        # An owner's app (with the old example, any of them: one shared account) borrows
        # the device's client ID, in the device's form and as the bare device ID.
        for borrowed in (f"bleprov-dev-{device_id}", device_id):
            with contextlib.suppress(aiomqtt.MqttError):
                async with host.client(identifier=borrowed):
                    await asyncio.sleep(0.5)
        await asyncio.sleep(0.3)
        assert transport.counters.connects == 1  # never kicked off
        assert transport.connected.is_set()
        # The host's own connections still work.
        async with host.client(identifier="bleprov-host-0123456789abcdef") as client:
            await client.subscribe(transport.topics.info, qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert message.payload == device.info().encode()
                    break
        # And a whole session through the shipped configuration (one connection at a
        # time per account: the announcement lookup, then the session).
        for device_hint in (device_id, None):
            session = await open_broker_session(
                host, DeviceAuthentication.from_qr_text(label.qr_text), TRUST, device_id=device_hint
            )
            assert session.info is not None
            await session.close()
    finally:
        await transport.close()
        await network.close()
