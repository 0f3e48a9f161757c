"""Tests for bleprov.radio.virtual: byte accounting, connection-interval model, TCP hub."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bumble import data_types
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.gatt_client import CharacteristicProxy
from bumble.transport.common import Transport

from bleprov.radio.virtual import (
    DirectionStats,
    LinkStats,
    VirtualLink,
    VirtualRadioHub,
    air_bytes_for,
    ll_packets_for,
    main,
    make_virtual_device,
    open_hci_device,
)

ROOT = Path(__file__).resolve().parents[2]

SERVICE_UUID = UUID("b1e50001-52a4-4c6e-9d0b-7f3a2c1d0e00")
RX_UUID = UUID("b1e50002-52a4-4c6e-9d0b-7f3a2c1d0e00")
TX_UUID = UUID("b1e50003-52a4-4c6e-9d0b-7f3a2c1d0e00")
PERIPHERAL_ADDRESS = "F0:F0:F0:F0:F0:F0"
CENTRAL_ADDRESS = "F1:F1:F1:F1:F1:F1"
PERIPHERAL_NAME = "VirtPeriph"
ATT_WRITE_OVERHEAD = 3  # opcode + handle
L2CAP_HEADER = 4
INTERVAL = 0.03


# -- helpers ----------------------------------------------------------------------------


class EchoServer:
    """Peripheral GATT service: writable ``rx`` (logs writes), notifiable ``tx``."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.writes: list[tuple[float, bytes]] = []
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.rx: Characteristic[bytes] = Characteristic(
            RX_UUID,
            Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(write=self._on_write),
        )
        self.tx = Characteristic(
            TX_UUID, Characteristic.Properties.NOTIFY, Characteristic.Permissions.READABLE, b""
        )
        device.add_service(Service(SERVICE_UUID, [self.rx, self.tx]))

    def _on_write(self, connection: Connection, value: bytes) -> None:
        self.writes.append((asyncio.get_running_loop().time(), bytes(value)))
        self.received.put_nowait(bytes(value))

    async def start_advertising(self) -> None:
        data = AdvertisingData(
            [
                data_types.Flags(
                    AdvertisingData.LE_GENERAL_DISCOVERABLE_MODE_FLAG
                    | AdvertisingData.BR_EDR_NOT_SUPPORTED_FLAG
                ),
                data_types.CompleteLocalName(PERIPHERAL_NAME),
            ]
        )
        await self.device.start_advertising(
            advertising_data=bytes(data),
            auto_restart=False,
            advertising_interval_min=20,
            advertising_interval_max=20,
        )


@dataclasses.dataclass
class Session:
    central: Device
    peripheral: Device
    server: EchoServer
    connection: Connection
    peripheral_connection: Connection
    peer: Peer
    rx: CharacteristicProxy[bytes]
    tx: CharacteristicProxy[bytes]
    notifications: asyncio.Queue[bytes]


async def scan_for(central: Device, name: str, timeout: float = 5.0) -> str:
    """Scan until an advertisement with the complete local name ``name``; return its address."""
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_advertisement(advertisement: object) -> None:
        data = advertisement.data  # type: ignore[attr-defined]
        if data.get(AdvertisingData.COMPLETE_LOCAL_NAME) == name and not found.done():
            found.set_result(str(advertisement.address))  # type: ignore[attr-defined]

    central.on("advertisement", on_advertisement)
    await central.start_scanning(filter_duplicates=True)
    try:
        return await asyncio.wait_for(found, timeout)
    finally:
        await central.stop_scanning()
        central.remove_listener("advertisement", on_advertisement)


async def open_session(
    central: Device, peripheral: Device, server: EchoServer, *, scan: bool = False
) -> Session:
    """Power both on, advertise, connect, MTU 247, discover, subscribe to ``tx``."""
    await peripheral.power_on()
    await central.power_on()
    await server.start_advertising()
    address = await scan_for(central, PERIPHERAL_NAME) if scan else PERIPHERAL_ADDRESS
    peripheral_connection: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
    peripheral.once("connection", peripheral_connection.set_result)
    connection = await central.connect(address, timeout=5)
    peer = Peer(connection)
    assert await peer.request_mtu(247) == 247
    await peer.discover_services([SERVICE_UUID])
    service = peer.get_services_by_uuid(SERVICE_UUID)[0]
    await service.discover_characteristics()
    rx = service.get_characteristics_by_uuid(RX_UUID)[0]
    tx = service.get_characteristics_by_uuid(TX_UUID)[0]
    notifications: asyncio.Queue[bytes] = asyncio.Queue()
    await peer.subscribe(tx, lambda value: notifications.put_nowait(bytes(value)))
    return Session(
        central=central,
        peripheral=peripheral,
        server=server,
        connection=connection,
        peripheral_connection=await asyncio.wait_for(peripheral_connection, 5),
        peer=peer,
        rx=rx,
        tx=tx,
        notifications=notifications,
    )


async def close_session(session: Session) -> None:
    """Disconnect, stop advertising and let in-flight HCI traffic land."""
    if session.connection.handle in session.central.connections:
        await session.connection.disconnect()
    await session.peripheral.stop_advertising()
    await asyncio.sleep(0.02)


async def session_on(link: VirtualLink) -> Session:
    peripheral = make_virtual_device(link, name=PERIPHERAL_NAME, address=PERIPHERAL_ADDRESS)
    central = make_virtual_device(link, name="Central", address=CENTRAL_ADDRESS)
    return await open_session(central, peripheral, EchoServer(peripheral))


@pytest.fixture
async def link() -> AsyncIterator[VirtualLink]:
    link = VirtualLink()
    yield link
    link.close()


@pytest.fixture
async def session(link: VirtualLink) -> AsyncIterator[Session]:
    session = await session_on(link)
    yield session
    await close_session(session)


@pytest.fixture
async def interval_link() -> AsyncIterator[VirtualLink]:
    link = VirtualLink(connection_interval=INTERVAL, max_ll_packets_per_event=6)
    yield link
    link.close()


@pytest.fixture
async def interval_session(interval_link: VirtualLink) -> AsyncIterator[Session]:
    session = await session_on(interval_link)
    yield session
    await close_session(session)


async def sync_to_anchor(session: Session) -> None:
    """Return just after a connection event (a response just arrived); forget old writes."""
    await session.peer.write_value(session.rx, b"sync", with_response=True)
    session.server.writes.clear()
    while not session.server.received.empty():
        session.server.received.get_nowait()


def write_stats(value_length: int, ll_payload: int, *, encrypted: bool = False) -> DirectionStats:
    pdu = value_length + ATT_WRITE_OVERHEAD + L2CAP_HEADER
    return DirectionStats(
        pdus=1,
        ll_packets=ll_packets_for(pdu, ll_payload),
        payload_bytes=pdu,
        air_bytes=air_bytes_for(pdu, ll_payload, encrypted=encrypted),
    )


# -- accounting model ---------------------------------------------------------------------


def test_ll_packet_and_air_byte_model() -> None:
    assert ll_packets_for(107, 251) == 1
    assert ll_packets_for(251, 251) == 1
    assert ll_packets_for(252, 251) == 2
    assert ll_packets_for(107, 27) == 4
    assert ll_packets_for(27, 27) == 1
    assert ll_packets_for(0, 27) == 1
    assert air_bytes_for(107, 251) == 117
    assert air_bytes_for(107, 27) == 107 + 4 * 10
    assert air_bytes_for(107, 27, encrypted=True) == 107 + 4 * 14


def test_link_stats_totals_reset_and_summary() -> None:
    stats = LinkStats(ll_payload=27)
    assert stats.record_pdu("AA", "BB", "central->peripheral", 60, encrypted=False) == 3
    stats.record_pdu("BB", "AA", "peripheral->central", 5, encrypted=True)
    stats.record_control_pdu("AA", "BB", "central->peripheral")
    assert stats.central_to_peripheral == DirectionStats(1, 3, 60, 90, 1)
    assert stats.peripheral_to_central == DirectionStats(1, 1, 5, 19, 0)
    assert stats.direction("aa", "bb") == stats.central_to_peripheral
    assert stats.total == DirectionStats(2, 4, 65, 109, 1)
    text = stats.summary()
    assert "central->peripheral: 1 PDUs, 3 LL packets, 60 B L2CAP, 90 B on air" in text
    assert "AA -> BB" in text
    stats.reset()
    assert stats.total == DirectionStats()
    assert stats.central_to_peripheral == DirectionStats()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connection_interval": 0.0},
        {"connection_interval": -1.0},
        {"max_ll_packets_per_event": 0},
        {"ll_payload": 26},
        {"ll_payload": 252},
    ],
)
def test_virtual_link_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        VirtualLink(**kwargs)  # type: ignore[arg-type]


# -- in-process exchange ------------------------------------------------------------------


@pytest.mark.parametrize("ll_payload", [251, 27])
async def test_in_process_exchange_counts_pdus_and_bytes(ll_payload: int) -> None:
    link = VirtualLink(ll_payload=ll_payload)
    session = await session_on(link)
    try:
        stats = link.stats
        assert stats.central_to_peripheral.pdus > 0  # setup traffic (MTU, discovery) counted
        stats.reset()

        await session.peer.write_value(session.rx, b"a" * 100, with_response=False)
        assert await asyncio.wait_for(session.server.received.get(), 1) == b"a" * 100
        assert stats.central_to_peripheral == write_stats(100, ll_payload)
        assert stats.peripheral_to_central == DirectionStats()
        assert stats.direction(CENTRAL_ADDRESS, PERIPHERAL_ADDRESS) == write_stats(100, ll_payload)

        stats.reset()
        await session.peer.write_value(session.rx, b"b" * 100, with_response=True)
        assert session.server.writes[-1][1] == b"b" * 100
        assert stats.central_to_peripheral == write_stats(100, ll_payload)
        # ATT Write Response: 1-byte opcode in a 4-byte L2CAP header.
        assert stats.peripheral_to_central == DirectionStats(1, 1, 5, 15, 0)

        stats.reset()
        await session.peripheral.notify_subscribers(session.server.tx, b"n" * 50)
        assert await asyncio.wait_for(session.notifications.get(), 1) == b"n" * 50
        assert stats.peripheral_to_central == write_stats(50, ll_payload)  # opcode+handle too
        assert stats.central_to_peripheral == DirectionStats()
        assert stats.direction(PERIPHERAL_ADDRESS, CENTRAL_ADDRESS) == write_stats(50, ll_payload)
    finally:
        await close_session(session)
        link.close()


async def test_encrypted_link_adds_mic(link: VirtualLink, session: Session) -> None:
    assert not link.is_encrypted(CENTRAL_ADDRESS, PERIPHERAL_ADDRESS)
    await asyncio.wait_for(session.connection.pair(), 5)
    assert session.connection.is_encrypted
    assert link.is_encrypted(CENTRAL_ADDRESS, PERIPHERAL_ADDRESS)
    link.stats.reset()
    await session.peer.write_value(session.rx, b"s" * 100, with_response=False)
    assert await asyncio.wait_for(session.server.received.get(), 1) == b"s" * 100
    assert link.stats.central_to_peripheral == write_stats(100, 251, encrypted=True)
    assert link.stats.central_to_peripheral.air_bytes == 107 + 10 + 4


async def test_disconnect_is_seen_by_peer_and_counted(link: VirtualLink, session: Session) -> None:
    disconnected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    session.peripheral_connection.once("disconnection", disconnected.set_result)
    link.stats.reset()
    await session.connection.disconnect()
    await asyncio.wait_for(disconnected, 1)
    assert link.stats.central_to_peripheral.control_pdus == 1  # LL_TERMINATE_IND


# -- connection-interval model ------------------------------------------------------------


async def test_write_with_response_round_trip_costs_two_intervals(
    interval_session: Session,
) -> None:
    loop = asyncio.get_running_loop()
    peer, rx = interval_session.peer, interval_session.rx
    await sync_to_anchor(interval_session)
    elapsed = []
    for i in range(3):
        start = loop.time()
        await peer.write_value(rx, bytes([i]) * 20, with_response=True)
        elapsed.append((loop.time() - start) / INTERVAL)
    # Never under two events; two events when the loop keeps up (a loaded 2-core CI
    # machine may miss an event now and then: the best of three is the model's figure).
    assert min(elapsed) >= 1.5, elapsed
    assert min(elapsed) <= 2.5, elapsed


async def test_write_without_response_throughput_is_capacity_bound(
    interval_link: VirtualLink, interval_session: Session
) -> None:
    loop = asyncio.get_running_loop()
    session = interval_session
    await sync_to_anchor(session)
    interval_link.stats.reset()
    values = [bytes([i]) * 20 for i in range(12)]  # 27-byte PDUs: one LL packet each
    start = loop.time()
    for value in values:
        await session.peer.write_value(session.rx, value, with_response=False)
    assert loop.time() - start < 0.5 * INTERVAL  # all queued well before the next anchor
    for _ in values:
        await asyncio.wait_for(session.server.received.get(), 1)
    times = [when for when, _ in session.server.writes]
    assert [value for _, value in session.server.writes] == values  # order preserved
    assert 1.5 * INTERVAL <= times[-1] - start <= 2.5 * INTERVAL
    assert times[5] - times[0] < 0.25 * INTERVAL  # first event carries 6 packets
    assert times[11] - times[6] < 0.25 * INTERVAL  # second event carries the other 6
    assert 0.75 * INTERVAL <= times[6] - times[5] <= 1.25 * INTERVAL
    assert interval_link.stats.central_to_peripheral.ll_packets == 12


async def test_large_pdu_spills_into_later_events() -> None:
    # The event timing is judged on the best of three tries: a loaded 2-core CI machine
    # may miss an event now and then (the packet counts are checked every time).
    misses = []
    for _ in range(3):
        link = VirtualLink(connection_interval=INTERVAL, max_ll_packets_per_event=6, ll_payload=27)
        session = await session_on(link)
        try:
            loop = asyncio.get_running_loop()
            await sync_to_anchor(session)
            link.stats.reset()
            start = loop.time()
            big = b"B" * 200  # 207-byte PDU: 8 LL packets of 27 bytes
            smalls = [bytes([i]) * 10 for i in range(5)]  # 17-byte PDUs: 1 LL packet each
            for value in [big, *smalls]:
                await session.peer.write_value(session.rx, value, with_response=False)
            for _ in range(6):
                await asyncio.wait_for(session.server.received.get(), 1)
            assert [value for _, value in session.server.writes] == [big, *smalls]
            assert link.stats.central_to_peripheral.ll_packets == 8 + 5
            assert link.stats.central_to_peripheral.air_bytes == 207 + 8 * 10 + 5 * (17 + 10)
            t_big, *t_smalls = (when for when, _ in session.server.writes)
            # Event 1 carries 6 packets of the big PDU, event 2 its last 2 plus 4 small
            # PDUs, event 3 the fifth small PDU.
            timing = (
                1.5 * INTERVAL <= t_big - start <= 2.5 * INTERVAL,
                max(t_smalls[:4]) - t_big < 0.25 * INTERVAL,
                0.75 * INTERVAL <= t_smalls[4] - t_big <= 1.25 * INTERVAL,
            )
        finally:
            await close_session(session)
            link.close()
        if all(timing):
            return
        misses.append(timing)
    raise AssertionError(f"the events never matched the model: {misses}")


async def test_ll_control_pdu_takes_one_event(
    interval_link: VirtualLink, interval_session: Session
) -> None:
    loop = asyncio.get_running_loop()
    session = interval_session
    await sync_to_anchor(session)
    disconnected: asyncio.Future[float] = loop.create_future()
    session.peripheral_connection.once(
        "disconnection", lambda reason: disconnected.set_result(loop.time())
    )
    start = loop.time()
    await session.connection.disconnect()
    elapsed = await asyncio.wait_for(disconnected, 1) - start
    assert 0.5 * INTERVAL <= elapsed <= 1.25 * INTERVAL


# -- TCP hub in this process --------------------------------------------------------------


async def test_hub_local_and_remote_devices_share_the_radio() -> None:
    hub = await VirtualRadioHub.start([0, 0])
    transports: list[Transport] = []
    try:
        assert len(set(hub.ports)) == 2
        assert all(port > 0 for port in hub.ports)
        assert hub.transport_specs == [f"tcp-client:127.0.0.1:{port}" for port in hub.ports]

        peripheral = make_virtual_device(hub.link, name=PERIPHERAL_NAME, address=PERIPHERAL_ADDRESS)
        central, transport = await open_hci_device(
            hub.transport_specs[1], name="Central", address=CENTRAL_ADDRESS
        )
        transports.append(transport)
        session = await open_session(central, peripheral, EchoServer(peripheral), scan=True)
        await session.peer.write_value(session.rx, b"over tcp", with_response=True)
        assert session.server.writes[-1][1] == b"over tcp"
        assert hub.link.stats.central_to_peripheral.pdus > 0

        # A second host on an occupied controller takes it over: the first host's
        # controller leaves the link, which its peer sees as a lost connection.
        disconnected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        session.peripheral_connection.once("disconnection", disconnected.set_result)
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.ports[1])
        await asyncio.wait_for(disconnected, 2)
        # ... and the first host's socket is closed by the hub.
        await transports.pop().close()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)

        # The controller slot is free again; the next host gets a fresh controller.
        central, transport = await open_hci_device(
            hub.transport_specs[1], name="Central2", address="F2:F2:F2:F2:F2:F2"
        )
        transports.append(transport)
        await central.power_on()
        await session.server.start_advertising()
        connection = await central.connect(PERIPHERAL_ADDRESS, timeout=5)
        await connection.disconnect()
        await peripheral.stop_advertising()
        await asyncio.sleep(0.02)
    finally:
        for transport in transports:
            await transport.close()
        await hub.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", hub.ports[0])


async def test_hub_reports_bind_failure_and_leaves_nothing_listening() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    async with await VirtualRadioHub.start([0]) as first:
        with pytest.raises(OSError, match="in use"):
            await VirtualRadioHub.start([free_port, first.ports[0]])
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", free_port)


# -- hub CLI in another process -----------------------------------------------------------


async def start_hub_process(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bleprov.radio.virtual",
        "hub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    specs: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()
            if line == "ready":
                return process, specs
            assert line, "hub exited before 'ready'"
            word, index, spec = line.split()
            assert (word, int(index)) == ("controller", len(specs))
            specs.append(spec)
    except BaseException:
        process.kill()
        await process.wait()
        raise


async def stop_hub_process(process: asyncio.subprocess.Process, signum: int) -> str:
    process.send_signal(signum)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode()
    return stderr.decode()


@pytest.mark.multiprocess
async def test_hub_cli_serves_controllers_to_another_process() -> None:
    process, specs = await start_hub_process("--ports", "0,0")
    transports: list[Transport] = []
    try:
        assert len(specs) == 2
        assert all(spec.startswith("tcp-client:127.0.0.1:") for spec in specs)
        peripheral, transport = await open_hci_device(
            specs[0], name=PERIPHERAL_NAME, address=PERIPHERAL_ADDRESS
        )
        transports.append(transport)
        central, transport = await open_hci_device(
            specs[1], name="Central", address=CENTRAL_ADDRESS
        )
        transports.append(transport)
        session = await open_session(central, peripheral, EchoServer(peripheral), scan=True)
        await session.peer.write_value(session.rx, b"hello hub", with_response=True)
        assert session.server.writes[-1][1] == b"hello hub"
        await session.peer.write_value(session.rx, b"no response", with_response=False)
        assert await asyncio.wait_for(session.server.received.get(), 2) == b"hello hub"
        assert await asyncio.wait_for(session.server.received.get(), 2) == b"no response"
        await session.peripheral.notify_subscribers(session.server.tx, b"notified")
        assert await asyncio.wait_for(session.notifications.get(), 2) == b"notified"
        await close_session(session)
    finally:
        for transport in transports:
            await transport.close()
        if process.returncode is None:
            stderr = await stop_hub_process(process, signal.SIGTERM)
            assert "Traceback" not in stderr, stderr


@pytest.mark.multiprocess
async def test_hub_cli_exits_cleanly_on_sigint() -> None:
    process, specs = await start_hub_process("--ports", "0", "--interval-ms", "7.5")
    assert len(specs) == 1
    stderr = await stop_hub_process(process, signal.SIGINT)
    assert "Traceback" not in stderr, stderr


def test_cli_rejects_bad_ports(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["hub", "--ports", "9100,x"])
    assert exit_info.value.code == 2
    assert "ports" in capsys.readouterr().err


# -- cleanup ------------------------------------------------------------------------------


def test_session_leaves_no_tasks_or_loop_errors(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> set[asyncio.Task[object]]:
        link = VirtualLink(connection_interval=0.0075)
        session = await session_on(link)
        await session.peer.write_value(session.rx, b"x", with_response=True)
        await session.peripheral.notify_subscribers(session.server.tx, b"y")
        await asyncio.wait_for(session.notifications.get(), 1)
        await close_session(session)
        link.close()
        return asyncio.all_tasks() - {asyncio.current_task()}

    with caplog.at_level(logging.WARNING):
        leftover = asyncio.run(scenario())
    assert leftover == set()
    problems = [r.getMessage() for r in caplog.records if r.name.startswith(("asyncio", "bumble"))]
    assert problems == []
