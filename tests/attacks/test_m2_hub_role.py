"""M2: the hub's role is in its certificate, not in a device ID a factory can mint.

A factory issues a device the ID ``HUB-<ZONE ID>`` (any manufacturer can: device IDs are
theirs to choose). Enrolled into the zone it gets an ordinary member certificate, and it
is no more than a member: it cannot factory-reset another member, and members do not take
it for the hub when they fetch CRLs. A device whose attestation does not chain to a
trusted manufacturer root gets no zone certificate at all.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.factory import provision_device
from bleprov.core.identity import TrustPolicy
from bleprov.core.session import host as hst
from bleprov.core.zone import verify_member
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.secure_link import SecureHostLink
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import DeviceAuthentication, open_session
from bleprov.service.trust import DeviceTrust
from bleprov.service.zone_hub import (
    EnrolmentRefused,
    ZoneEnroller,
    hub_server_credentials,
    serve_hub,
)
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import KeyFileProvider
from bleprov.store.registry import Role, UnknownDevice
from bleprov.tls.connection import (
    ConnectionClosed,
    ReceiveTimeout,
    RequestFailed,
    ValidatedConnection,
    ValidatedConnectionError,
    open_member_connection,
    start_member_server,
)
from tests.rig import CHEAP, ENVIRONMENT, MANUFACTURER, NOW, TRUST

LOOPBACK = "127.0.0.1"
_addresses = itertools.count(1)


@dataclass
class Rig:
    tmp: Path
    radio: VirtualLink
    hub: Hub
    runtimes: list[DeviceRuntime]

    async def device(self, device_id: str | None = None) -> tuple[DeviceRuntime, str]:
        """A virgin device from the factory (``device_id`` as the factory chose it)."""
        index = next(_addresses)
        identity = MANUFACTURER.issue_device(device_id, now=NOW)
        record, label = provision_device(identity, modes=OobMode.QR, cost=CHEAP)
        directory = self.tmp / f"device-{index}"
        store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
        store.put_provisioning(record)
        bumble = make_virtual_device(self.radio, name="dev", address=f"F0:B2:00:00:01:{index:02X}")
        runtime = DeviceRuntime(
            store, BumblePeripheral(bumble), SimulatedWifi.from_config(ENVIRONMENT)
        )
        await runtime.start()
        self.runtimes.append(runtime)
        return runtime, label.qr_text

    async def session(
        self, qr_text: str, trust: hst.Trust = TRUST
    ) -> tuple[SecureHostLink, EnrolmentClient]:
        index = next(_addresses)
        host = make_virtual_device(self.radio, name="host", address=f"C0:B2:00:00:01:{index:02X}")
        await host.power_on()
        radio = CentralRadio.bumble(host, mtu=247)
        session = await open_session(radio, DeviceAuthentication.from_qr_text(qr_text), trust)
        return session, EnrolmentClient(session, timeout=10)

    async def enrol(self, runtime: DeviceRuntime, qr_text: str) -> None:
        """Zone certificate in one session, one commit, as an admin of the hub."""
        admin = self.hub.authenticate("admin", "admin passphrase")
        session, client = await self.session(qr_text)
        assert session.info is not None
        await ZoneEnroller(self.hub, admin).stage(
            client, session, device_id=session.info.attestation.device_id, owner="alice"
        )
        await client.commit()
        await session.close()
        await runtime.service.drain()

    def crl(self) -> bytes:
        return self.hub.crl(now=datetime.now(UTC))


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    hub = Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=b"zone passphrase",
        admin="admin",
        admin_passphrase="admin passphrase",
        now=NOW,
        passphrase_cost=CHEAP,
    )
    admin = hub.authenticate("admin", "admin passphrase")
    hub.registry.add_user("alice", Role.MEMBER, passphrase="alice passphrase", actor=admin)
    rig = Rig(tmp_path, VirtualLink(), hub, [])
    yield rig
    for runtime in reversed(rig.runtimes):
        await runtime.close()
    rig.radio.close()
    hub.close()
    await asyncio.sleep(0.02)


async def test_a_device_named_hub_zone_is_a_member_and_not_the_hub(rig: Rig) -> None:
    impostor_id = f"HUB-{rig.hub.zone.zone_id.upper()}"
    impostor, impostor_qr = await rig.device(impostor_id)
    victim, victim_qr = await rig.device()
    await rig.enrol(impostor, impostor_qr)
    await rig.enrol(victim, victim_qr)
    # The factory's name is certified as it is: an ordinary member certificate.
    impostor_trust = DeviceTrust(impostor.store, device_id=impostor_id)
    credentials = impostor_trust.credentials()
    member = verify_member(
        credentials.cert_der,
        credentials.chain_der,
        zone_root_der=credentials.root_der,
        crl_der=rig.crl(),
        now=datetime.now(UTC),
    )
    assert member.device_id == impostor_id

    # 1. It cannot factory-reset another member (only the zone's hub may).
    victim_trust = DeviceTrust(
        victim.store, device_id=victim.device_id, factory_reset=victim.store.factory_reset
    )
    server = await victim_trust.serve_members(LOOPBACK, 0, crl_provider=rig.crl)
    port = server.sockets[0].getsockname()[1]
    try:
        async with await open_member_connection(
            LOOPBACK, port, credentials, crl_der=rig.crl(), expect_device=victim.device_id
        ) as connection:
            with pytest.raises(RequestFailed) as refused:
                await connection.request("factory-reset", {})
        assert refused.value.code == 0x71
        assert mb.RECORD_ZONE in victim.store.load()

        # 2. Members do not take it for the hub: no CRL (nor renewal) from it.
        seen: list[str] = []

        async def pose_as_hub(connection: ValidatedConnection) -> None:
            while True:
                try:
                    request = await connection.next_request(5)
                except (ConnectionClosed, ReceiveTimeout):
                    return
                seen.append(request.op)
                await connection.reply(request, {"crl": rig.crl()})

        fake = await start_member_server(
            LOOPBACK, 0, credentials, crl_provider=rig.crl, handler=pose_as_hub
        )
        try:
            fake_port = fake.sockets[0].getsockname()[1]
            with pytest.raises(ValidatedConnectionError):
                await victim_trust.fetch_crl(LOOPBACK, fake_port)
            with pytest.raises(ValidatedConnectionError):
                await victim_trust.renew(LOOPBACK, fake_port)
            assert seen == []  # refused before a single request
        finally:
            fake.close()
            await fake.wait_closed()

        # The certificate says what it is: a member, not the hub.
        assert member.is_hub is False

        # The real hub is both.
        hub_server = await serve_hub(rig.hub, LOOPBACK, 0)
        try:
            await victim_trust.fetch_crl(LOOPBACK, hub_server.sockets[0].getsockname()[1])
        finally:
            hub_server.close()
            await hub_server.wait_closed()
        hub = hub_server_credentials(rig.hub, now=datetime.now(UTC))
        async with await open_member_connection(
            LOOPBACK, port, hub, crl_der=rig.crl(), expect_device=victim.device_id
        ) as connection:
            await connection.request("factory-reset", {})
        assert mb.RECORD_ZONE not in victim.store.load()
    finally:
        await victim_trust.close()


async def test_an_unattested_device_gets_no_zone_certificate(rig: Rig) -> None:
    device, qr_text = await rig.device()
    # The host does not trust the manufacturer: --allow-unknown-manufacturer's WARN policy.
    untrusting = hst.Trust((), TrustPolicy.WARN)
    session, client = await rig.session(qr_text, untrusting)
    assert session.info is not None and not session.info.attestation.trusted
    admin = rig.hub.authenticate("admin", "admin passphrase")
    try:
        with pytest.raises(EnrolmentRefused, match="trusted manufacturer"):
            await ZoneEnroller(rig.hub, admin).stage(
                client, session, device_id=session.info.attestation.device_id, owner="alice"
            )
        assert client.requests == 0  # refused before the device was asked for a CSR
    finally:
        await session.close()
    with pytest.raises(UnknownDevice):
        rig.hub.registry.device(device.device_id)

    # Attested, it is enrolled, and the registry records the root it chained to.
    await rig.enrol(device, qr_text)
    record = rig.hub.registry.device(device.device_id)
    assert record.manufacturer_root == MANUFACTURER.root_fingerprint.hex()
