"""Cloud binding end to end through a real Mosquitto on loopback.

The same session server, enrolment service and zone enroller as over the radio; only the
link is the broker. An eavesdropper subscribed to ``#`` records everything and sees no
secret; replayed and injected messages are rejected; a broker restart mid-enrolment rolls
back and the device, reconnecting by itself, is then enrolled; two devices at once; a
device in a BLE session refuses the broker and the other way round.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from hypothesis import given
from hypothesis import strategies as st

from bleprov.broker.client import BrokerConfig
from bleprov.broker.device import BrokerDeviceTransport
from bleprov.broker.host import BrokerHostLink
from bleprov.broker.wire import CloseReason, Envelope, Kind, Topics, close
from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.attempts import DeviceBusy
from bleprov.core.enrolment import device as enr
from bleprov.core.errors import BleprovError
from bleprov.core.factory import DeviceProvisioning, provision_device
from bleprov.core.onboarding import parse_qr
from bleprov.core.session import host as hst
from bleprov.core.session.host import DeviceRefused
from bleprov.core.session.messages import Mode
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio, HostLink, find_device
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.enrolment import EnrolmentClient, EnrolmentService
from bleprov.service.host_session import DeviceAuthentication, open_broker_session
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.session import SecureDeviceServer, SecureHostLink
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import KeyFileProvider
from bleprov.store.registry import DeviceStatus, Role
from tests.broker.conftest import Mosquitto
from tests.rig import CHEAP, ENVIRONMENT, HOME, MANUFACTURER, NOW, PASSWORD, TRUST

ADMIN_PASSPHRASE = "admin passphrase"
ZONE_PASSPHRASE = b"zone passphrase"
_index = itertools.count(1)


@dataclass
class CloudDevice:
    device: DeviceProvisioning
    label_qr: str
    store: DeviceStore
    service: EnrolmentService
    server: SecureDeviceServer
    transport: BrokerDeviceTransport
    link: DeviceLink | None = None

    @property
    def device_id(self) -> str:
        return self.device.identity.device_id

    def secrets(self) -> list[bytes]:
        """Every secret of this device a broker must never see."""
        identity = self.device.identity
        found = [
            self.device.label_secret,
            identity.attestation_key.private_bytes(
                Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
            ),
            identity.noise_static_key.private_bytes(
                Encoding.Raw, PrivateFormat.Raw, NoEncryption()
            ),
        ]
        membership = mb.membership_of(self.store.load())
        if membership is not None:
            key = membership.key
            found.append(key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()))
            found.append(key.private_numbers().private_value.to_bytes(32, "big"))
        return found


@dataclass
class Cloud:
    tmp: Path
    broker: Mosquitto
    hub: Hub
    admin: Any
    radio: VirtualLink = field(default_factory=VirtualLink)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def config(self) -> BrokerConfig:
        return BrokerConfig.from_url(self.broker.url)

    async def new_device(self, *, ble: bool = False) -> CloudDevice:
        index = next(_index)
        device, label = provision_device(
            MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP
        )
        directory = self.tmp / f"device-{index}"
        store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
        store.put_provisioning(device)
        network = SimulatedWifi.from_config(ENVIRONMENT)
        await network.start()
        service = EnrolmentService(
            network=network,
            store=store,
            config=lambda: enr.DeviceEnrolmentConfig(device.identity.device_id, join_timeout=5),
        )
        server = SecureDeviceServer(
            secrets=device.secrets(),
            policy=int(device.modes),
            application=service,
            attempts=store.attempt_store(),
        )
        transport = BrokerDeviceTransport(
            self.config,
            server,
            device.info,
            device.identity.device_id,
            backoff_initial=0.05,
            backoff_max=0.5,
        )
        await transport.start()
        await asyncio.wait_for(transport.connected.wait(), 10)
        self.closers += [transport.close, network.close]
        cloud_device = CloudDevice(device, label.qr_text, store, service, server, transport)
        if ble:
            bumble = make_virtual_device(
                self.radio, name="dev", address=f"F0:C1:00:00:01:{index:02X}"
            )
            cloud_device.link = DeviceLink(BumblePeripheral(bumble), server, device.info)
            await cloud_device.link.start()
            self.closers.append(cloud_device.link.close)
        return cloud_device

    async def session(
        self, target: CloudDevice, *, by_id: bool = True
    ) -> tuple[SecureHostLink, EnrolmentClient]:
        auth = DeviceAuthentication.from_qr_text(target.label_qr)
        session = await open_broker_session(
            self.broker.url,
            auth,
            TRUST,
            device_id=target.device_id if by_id else None,
            timeout=10,
        )
        return session, EnrolmentClient(session, timeout=10)

    async def ble_session(self, target: CloudDevice) -> SecureHostLink:
        index = next(_index)
        host = make_virtual_device(self.radio, name="host", address=f"C0:C1:00:00:01:{index:02X}")
        await host.power_on()
        radio = CentralRadio.bumble(host, mtu=247)
        payload = parse_qr(target.label_qr)
        found = await find_device(radio, discriminator=payload.discriminator, timeout=5)
        session = SecureHostLink(
            HostLink(found.device, radio),
            mode=Mode.QR,
            secret=hst.QrSecret(payload.device_public_key, payload.label_secret),
            trust=TRUST,
            advertised=found.service_data,
        )
        return session

    async def enrol(self, target: CloudDevice, *, by_id: bool = True) -> mb.ZoneMembership:
        """Wi-Fi and a zone certificate in one session and one commit, through the broker."""
        session, client = await self.session(target, by_id=by_id)
        assert session.info is not None
        enroller = ZoneEnroller(self.hub, self.admin)
        status = await client.set_wifi(HOME)
        assert status.ip is not None
        pending = await enroller.stage(
            client, session, device_id=session.info.attestation.device_id, owner="alice"
        )
        try:
            await client.commit()
        except BaseException:
            await enroller.abandon(pending)
            raise
        await enroller.confirm(pending)
        await session.close()
        await target.service.drain()
        membership = mb.membership_of(target.store.load())
        assert membership is not None
        return membership


class Eavesdropper:
    """A subscriber on ``#``: everything the broker relays, as anyone allowed to read it."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.seen: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)

    async def _run(self) -> None:
        async with self.config.client() as client:
            await client.subscribe("#", qos=1)
            self.ready.set()
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    self.seen.append((message.topic.value, bytes(payload)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task

    def everything(self) -> bytes:
        return b"\n".join(topic.encode() + b" " + payload for topic, payload in self.seen)

    def data(self, kind: Kind) -> list[tuple[str, bytes]]:
        return [(t, p) for t, p in self.seen if p[:1] == bytes([kind])]


@pytest_asyncio.fixture
async def cloud(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Cloud]:
    hub = Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=ZONE_PASSPHRASE,
        admin="admin",
        admin_passphrase=ADMIN_PASSPHRASE,
        now=NOW,
        passphrase_cost=CHEAP,
    )
    admin = hub.authenticate("admin", ADMIN_PASSPHRASE)
    hub.registry.add_user("alice", Role.MEMBER, passphrase="alice passphrase", actor=admin)
    world = Cloud(tmp_path, mosquitto, hub, admin)
    yield world
    for closer in reversed(world.closers):
        await closer()
    world.radio.close()
    hub.close()
    await asyncio.sleep(0.02)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (polls state owned by other objects)
            await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------- tests


async def test_full_enrolment_through_the_broker_shows_the_eavesdropper_only_ciphertext(
    cloud: Cloud,
) -> None:
    spy = Eavesdropper(cloud.config)
    await spy.start()
    device = await cloud.new_device()
    membership = await cloud.enrol(device, by_id=False)  # found by the label's discriminator
    assert membership.owner == "alice"
    records = device.store.load()
    assert mb.RECORD_ZONE in records
    assert cloud.hub.registry.device(device.device_id).status is DeviceStatus.ENROLLED
    # The device announces its new state.
    await _until(lambda: device.server.channels == {})
    await spy.stop()

    seen = spy.everything()
    assert spy.data(Kind.DATA_UP) and spy.data(Kind.DATA_DOWN)  # it did see the session
    secrets = [
        PASSWORD.encode(),
        ADMIN_PASSPHRASE.encode(),
        ZONE_PASSPHRASE,
        *device.secrets(),
    ]
    for secret in secrets:
        assert secret not in seen
    # Nor the Wi-Fi password in any encoding a slip could put it in.
    assert PASSWORD.encode().hex().encode() not in seen
    assert PASSWORD.encode("utf-16-le") not in seen


async def test_replayed_and_injected_messages_are_rejected(cloud: Cloud) -> None:
    spy = Eavesdropper(cloud.config)
    await spy.start()
    device = await cloud.new_device()
    session, client = await cloud.session(device)
    await client.set_wifi(HOME)
    await _until(lambda: len(spy.data(Kind.DATA_UP)) >= 2)
    # An attacker with publish rights replays the host's last record into the session.
    topic, replayed = spy.data(Kind.DATA_UP)[-1]
    async with cloud.config.client() as attacker:
        await attacker.publish(topic, replayed, qos=1)
    # The device's channel rejects it and ends the session; nothing was committed.
    await _until(lambda: device.server.ended != [])
    assert isinstance(device.server.ended[-1], BleprovError)
    with pytest.raises(BleprovError):
        await client.commit()
    await session.close()
    await device.service.drain()
    assert mb.RECORD_ZONE not in device.store.load()
    assert "wifi" not in " ".join(device.store.load())

    # An injected (forged) record in a fresh session: rejected the same way.
    session, client = await cloud.session(device)
    link = session.link
    assert isinstance(link, BrokerHostLink)
    forged = Envelope(Kind.DATA_UP, bytes.fromhex("8203") + b"\x00" * 40).encode()
    async with cloud.config.client() as attacker:
        await attacker.publish(link.topics.up(link.session_id), forged, qos=1)
    await _until(lambda: len(device.server.ended) >= 2)
    assert device.server.ended[-1] is not None
    with pytest.raises(BleprovError):
        await client.set_wifi(HOME)
    await session.close()

    # A whole old session replayed under a new suffix gets nowhere: the handshake fails.
    ups = [(t, p) for t, p in spy.seen if t.endswith("/up")]
    first_topic = ups[0][0]
    old = [p for t, p in ups if t == first_topic]
    replay_link = BrokerHostLink(cloud.config, device.device_id)
    await replay_link.connect()
    ended_before = len(device.server.ended)
    for payload in old[1:]:
        envelope = Envelope.decode(payload, allowed=frozenset(Kind), max_body=1 << 17)
        if envelope.kind is Kind.DATA_UP:
            replay_link.send(envelope.body)
    await _until(lambda: len(device.server.ended) > ended_before)
    assert device.server.ended[-1] is not None
    await replay_link.close()
    await spy.stop()

    # And the device still serves an honest host.
    await device.service.drain()
    await cloud.enrol(device)


async def test_a_broker_restart_mid_enrolment_rolls_back_then_enrolment_succeeds(
    cloud: Cloud,
) -> None:
    device = await cloud.new_device()
    session, client = await cloud.session(device)
    assert session.info is not None
    enroller = ZoneEnroller(cloud.hub, cloud.admin)
    await client.set_wifi(HOME)
    pending = await enroller.stage(client, session, device_id=device.device_id, owner="alice")
    connects = device.transport.counters.connects
    cloud.broker.restart()  # before COMMIT
    with pytest.raises(BleprovError):
        await client.commit()
    await session.close()
    await enroller.abandon(pending)
    await device.service.drain()
    assert mb.RECORD_ZONE not in device.store.load()  # rolled back
    assert mb.RECORD_OWNER not in device.store.load()
    assert cloud.hub.registry.device(device.device_id).status is DeviceStatus.REVOKED
    # The device reconnects by itself (backoff) and announces again.
    await _until(lambda: device.transport.counters.connects > connects)
    await asyncio.wait_for(device.transport.connected.wait(), 10)
    membership = await cloud.enrol(device)
    assert membership.serial != pending.serial


async def test_two_devices_are_enrolled_at_once(cloud: Cloud) -> None:
    first, second = await cloud.new_device(), await cloud.new_device()
    one, two = await asyncio.gather(cloud.enrol(first), cloud.enrol(second))
    assert one.serial != two.serial
    for device in (first, second):
        assert cloud.hub.registry.device(device.device_id).status is DeviceStatus.ENROLLED


async def test_a_device_in_a_ble_session_refuses_the_broker_and_the_other_way_round(
    cloud: Cloud,
) -> None:
    device = await cloud.new_device(ble=True)
    ble = await cloud.ble_session(device)
    await ble.open()
    # Busy on BLE: the broker host is told so before any handshake.
    with pytest.raises(DeviceRefused) as refused:
        await cloud.session(device)
    assert isinstance(refused.value.reason, DeviceBusy)
    assert device.transport.counters.refused_busy == 1
    await ble.close()
    await _until(lambda: not device.server.busy)

    # Busy on the broker: the BLE host is refused by the session server.
    session, client = await cloud.session(device)
    ble = await cloud.ble_session(device)
    with pytest.raises(DeviceRefused) as refused:
        await ble.open()
    assert isinstance(refused.value.reason, DeviceBusy)
    assert device.server.refused_busy == 1
    # The broker session was not disturbed.
    status = await client.set_wifi(HOME)
    assert status.ip is not None
    await session.close()


async def test_a_second_broker_host_is_refused_while_one_is_in_session(cloud: Cloud) -> None:
    device = await cloud.new_device()
    session, _client = await cloud.session(device)
    with pytest.raises(DeviceRefused):
        await cloud.session(device)
    await session.close()


async def test_the_announcement_is_retained_and_cleared_by_the_last_will(cloud: Cloud) -> None:
    device = await cloud.new_device()
    topics = Topics(device.device_id)

    async def announced() -> bytes:
        async with cloud.config.client() as client:
            await client.subscribe(topics.info, qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload
        raise AssertionError("unreachable")

    assert await announced() == device.transport.current_info().encode()
    # Drop the transport's connection without a clean DISCONNECT (as a crash or power cut
    # would): another client takes its client ID over, and the broker publishes the
    # device's will, which clears the announcement. The transport is kept from coming back.
    device.transport._closing = True
    async with cloud.config.client(identifier=f"bleprov-dev-{device.device_id}"):
        pass
    async with asyncio.timeout(10):
        while await announced_or_empty(cloud.config, topics.info) != b"":  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def announced_or_empty(config: BrokerConfig, topic: str) -> bytes:
    """The retained announcement on ``topic``, or b"" if there is none."""
    async with config.client() as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(0.3):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload
        except TimeoutError:
            pass
    return b""


async def test_a_lost_commit_answer_is_asked_about_again_through_the_broker(
    cloud: Cloud,
) -> None:
    """S1 over the broker: the device commits and its answer never reaches the host; the
    same provision() reaches the device again through the broker, with the enrolment's
    receipt, and confirms the enrolment instead of revoking it."""
    from bleprov.core.enrolment.messages import Endpoint, Request, decode
    from bleprov.service.provisioning import ZonePlan, provision
    from bleprov.session import SecureDeviceChannel

    try:
        from bleprov.service.provisioning import Redial  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        Redial = None  # noqa: N806 (the old code: no way back to the device)
    device = await cloud.new_device()
    service = device.service
    original = service.received

    def received(channel: SecureDeviceChannel, data: bytes) -> None:
        original(channel, data)
        message = decode(data)
        if isinstance(message, Request) and message.endpoint == Endpoint.COMMIT:
            service.received = original  # type: ignore[method-assign]
            link: Any = channel.link
            link.send = lambda payload: None  # the answer is lost on its way ...
            asyncio.get_running_loop().create_task(link.disconnect())  # ... and the link

    service.received = received  # type: ignore[method-assign]

    async def reach(auth: DeviceAuthentication) -> SecureHostLink:
        return await open_broker_session(
            cloud.broker.url, auth, TRUST, device_id=device.device_id, timeout=10
        )

    class Home:
        async def choose(self, results: list[Any]) -> Any:
            return HOME

        async def retry(self, status: Any, tried: Any) -> Any:
            return None

    auth = DeviceAuthentication.from_qr_text(device.label_qr)
    session = await reach(auth)
    extra: dict[str, Any] = {} if Redial is None else {"redial": Redial(reach, auth)}
    try:
        await provision(
            session,
            wifi=Home(),
            zone=ZonePlan(ZoneEnroller(cloud.hub, cloud.admin), "alice"),
            **extra,
        )
    except BleprovError:
        pass
    finally:
        await session.close()
    await device.service.drain()
    membership = mb.membership_of(device.store.load())
    assert membership is not None  # it committed
    record = cloud.hub.registry.device(device.device_id)
    assert record.status is DeviceStatus.ENROLLED
    assert record.certificate_serial == membership.serial


async def test_a_host_that_vanishes_leaves_its_will_and_the_device_rolls_back(
    cloud: Cloud,
) -> None:
    device = await cloud.new_device()
    session, client = await cloud.session(device)
    await client.set_wifi(HOME)
    link = session.link
    assert isinstance(link, BrokerHostLink)
    # The host's will (CLOSE error) reaches the device when its connection dies uncleanly
    # (here: another client takes its client ID over).
    async with cloud.config.client(identifier=f"bleprov-host-{link.session_id[:16]}"):
        pass
    await _until(lambda: not device.server.busy)
    await device.service.drain()
    assert mb.RECORD_ZONE not in device.store.load()
    await session.close()


def test_wire_rejects_malformed_envelopes() -> None:
    from bleprov.broker.wire import UP_KINDS, MalformedEnvelope, check_session_id

    for raw in (b"", b"\x7f", b"\x01x", b"\x02", b"\x03", b"\x03\x00\x00", b"\x12abc"):
        with pytest.raises(MalformedEnvelope):
            Envelope.decode(raw, allowed=UP_KINDS, max_body=16)
    with pytest.raises(MalformedEnvelope):
        Envelope.decode(b"\x02" + b"x" * 17, allowed=UP_KINDS, max_body=16)
    assert Envelope.decode(b"\x02" + b"x" * 16, allowed=UP_KINDS, max_body=16).body == b"x" * 16
    assert Envelope.decode(close(Kind.CLOSE_UP, CloseReason.BUSY), allowed=UP_KINDS, max_body=1)
    for bad in ("", "ABCDEF" * 6, "0" * 31, "g" * 32, "0" * 31 + "/"):
        with pytest.raises(MalformedEnvelope):
            check_session_id(bad)
    topics = Topics("ABCD-1234")
    with pytest.raises(MalformedEnvelope):
        topics.session_of("bleprov/v1/dev/OTHER/s/" + "0" * 32 + "/up")
    assert topics.session_of(topics.up("a" * 32)) == "a" * 32
    with pytest.raises(BleprovError):
        Topics("bad/id")
    assert aiomqtt  # the client library is importable where the tests run


def test_broker_urls() -> None:
    from bleprov.broker.client import BrokerUrlError

    config = BrokerConfig.from_url("mqtt://broker.example:1884", password="pw")
    assert (config.host, config.port, config.tls) == ("broker.example", 1884, None)
    assert "pw" not in repr(config)
    assert BrokerConfig.from_url("mqtts://broker.example").port == 8883
    for bad in (
        "http://x",
        "mqtt://",
        "mqtt://user:secret@host",
        "mqtt://host:99999",
        "mqtt://host/path",
    ):
        with pytest.raises(BrokerUrlError) as error:
            BrokerConfig.from_url(bad)
        assert "secret" not in str(error.value)


async def test_device_runtime_serves_ble_and_the_broker_and_both_show_the_new_state(
    cloud: Cloud,
) -> None:
    from bleprov.broker.host import find_broker_device
    from bleprov.core.advertising import DeviceState
    from bleprov.service.device_runtime import DeviceRuntime

    index = next(_index)
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP
    )
    store = DeviceStore(cloud.tmp / "rt" / "s", KeyFileProvider(cloud.tmp / "rt" / "k"))
    store.put_provisioning(device)
    bumble = make_virtual_device(cloud.radio, name="dev", address=f"F0:C2:00:00:01:{index:02X}")
    runtime = DeviceRuntime(
        store,
        BumblePeripheral(bumble),
        SimulatedWifi.from_config(ENVIRONMENT),
        join_timeout=5,
        broker=cloud.config,
    )
    await runtime.start()
    cloud.closers.append(runtime.close)
    assert runtime.broker is not None
    await asyncio.wait_for(runtime.broker.connected.wait(), 10)
    target = CloudDevice(
        device, label.qr_text, store, runtime.service, runtime.server, runtime.broker
    )
    await cloud.enrol(target)
    assert runtime.state() is DeviceState.ENROLLED
    # The broker announcement and the BLE advertisement both say so now (the device
    # re-publishes when it has processed the host's CLOSE).
    async with asyncio.timeout(10):
        while True:
            found = await find_broker_device(cloud.config, device_id=device.identity.device_id)
            if found.info.state is DeviceState.ENROLLED:
                break
            await asyncio.sleep(0.05)
    host = make_virtual_device(cloud.radio, name="host", address=f"C0:C2:00:00:01:{index:02X}")
    await host.power_on()
    heard = await find_device(
        CentralRadio.bumble(host), discriminator=device.discriminator, timeout=5
    )
    assert heard.service_data.state is DeviceState.ENROLLED


@given(st.binary(max_size=64))
def test_envelope_decoding_never_raises_anything_but_its_typed_error(raw: bytes) -> None:
    from bleprov.broker.wire import DOWN_KINDS, UP_KINDS, MalformedEnvelope

    for allowed in (UP_KINDS, DOWN_KINDS):
        try:
            envelope = Envelope.decode(raw, allowed=allowed, max_body=32)
        except MalformedEnvelope:
            continue
        assert envelope.kind in allowed and len(envelope.body) <= 32
        assert envelope.encode() == raw
