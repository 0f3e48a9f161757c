"""Virtual BLE radio: bumble's software controllers with byte accounting and timing.

The machine that runs the test suite has no Bluetooth adapter, so every radio test runs on
bumble's virtual controllers. They talk over a *link* object that moves link-layer traffic
between them. This module provides:

* :class:`VirtualLink`: a drop-in :class:`bumble.link.LocalLink` that counts every L2CAP
  PDU in :class:`LinkStats` and can optionally model a connection interval (see below).
* :func:`make_virtual_device`: a :class:`bumble.device.Device` whose controller sits on a
  link in this process.
* :class:`VirtualRadioHub`: hosts one link and exposes N virtual controllers as HCI over
  loopback TCP, so other processes attach with bumble's ``tcp-client:127.0.0.1:<port>``
  transport. The command line runs one: ``python -m bleprov.radio.virtual hub --ports
  9100,9101 [--interval-ms 30]`` prints ``controller <index> <transport spec>`` per
  controller, then ``ready``, and exits with status 0 on SIGTERM or SIGINT received after
  ``ready`` (earlier, while Python is still importing bumble, SIGTERM kills it the usual way).
* :func:`open_hci_device`: opens a bumble transport (e.g. a hub's ``tcp-client:`` spec)
  and returns a :class:`~bumble.device.Device` driving that controller.

Traffic model
-------------
A bumble controller reassembles the host's HCI ACL fragments and hands the link whole
L2CAP PDUs (4-byte L2CAP header included). For accounting, each PDU of ``L`` bytes is sent
as ``ceil(L / ll_payload)`` link-layer (LL) data packets, where ``ll_payload`` is 27 (no
data length extension) or 251 (with DLE). Each LL packet costs its payload plus
:data:`LL_PACKET_OVERHEAD` = 10 bytes on air (preamble 1 + access address 4 + LL header 2
+ CRC 3), plus :data:`LL_MIC_SIZE` = 4 bytes once the link is encrypted. Empty packets,
acknowledgements, inter-frame spacing, LE Coded PHY coding and the 2M PHY's longer
preamble are not modelled. The link notices encryption from bumble's LL control PDUs (an
``LL_START_ENC_RSP`` starts it, a new connection or ``LL_TERMINATE_IND`` ends it).

Connection-interval model
-------------------------
With ``connection_interval=None`` a :class:`VirtualLink` delivers like ``LocalLink``: on
the next event-loop tick. With an interval ``I``, connection events ("anchors") happen at
``t0 + k * I``, ``t0`` being the link's creation time on the event loop's clock. A PDU
sent at time ``t`` goes out in the first event strictly after ``t``; each direction carries
at most ``max_ll_packets_per_event`` LL packets per event, a PDU needing more LL packets
than remain spills into later events and is delivered at the anchor of the event that
carries its last LL packet. Order is preserved per direction. LL control PDUs take the
same one-event delay without using capacity (they queue behind data already scheduled in
their direction, so they never overtake it). Advertising is not delayed. Consequences: an
ATT request/response round trip costs about two intervals, and ``N`` single-packet
write-without-response PDUs cost about ``N / max_ll_packets_per_event`` intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Final

from bumble import core, hci, ll
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, PacketParser, Transport

__all__ = [
    "CENTRAL_TO_PERIPHERAL",
    "LL_MIC_SIZE",
    "LL_PACKET_OVERHEAD",
    "LL_PAYLOAD_DLE",
    "LL_PAYLOAD_NO_DLE",
    "PERIPHERAL_TO_CENTRAL",
    "DirectionStats",
    "LinkStats",
    "VirtualController",
    "VirtualLink",
    "VirtualRadioHub",
    "air_bytes_for",
    "ll_packets_for",
    "main",
    "make_virtual_device",
    "open_hci_device",
]

logger = logging.getLogger(__name__)

#: LL data payload without data length extension (Bluetooth 4.0/4.1 maximum).
LL_PAYLOAD_NO_DLE: Final = 27
#: LL data payload with data length extension (Bluetooth 4.2+ maximum).
LL_PAYLOAD_DLE: Final = 251
#: Bytes every LL data packet adds on air: preamble 1 + access address 4 + header 2 + CRC 3.
LL_PACKET_OVERHEAD: Final = 10
#: Message integrity check added to every LL data packet of an encrypted link.
LL_MIC_SIZE: Final = 4

#: Key of :attr:`LinkStats.by_role` for traffic sent by the central.
CENTRAL_TO_PERIPHERAL: Final = "central->peripheral"
#: Key of :attr:`LinkStats.by_role` for traffic sent by the peripheral.
PERIPHERAL_TO_CENTRAL: Final = "peripheral->central"

#: Tolerance when mapping a loop time to a connection-event index (float rounding).
_EVENT_EPSILON: Final = 1e-9


def ll_packets_for(pdu_length: int, ll_payload: int) -> int:
    """Number of LL data packets that carry an L2CAP PDU of ``pdu_length`` bytes."""
    if ll_payload <= 0:
        raise ValueError(f"ll_payload must be positive, got {ll_payload}")
    return max(1, math.ceil(pdu_length / ll_payload))


def air_bytes_for(pdu_length: int, ll_payload: int, *, encrypted: bool = False) -> int:
    """Estimated bytes on air for an L2CAP PDU of ``pdu_length`` bytes (see module doc)."""
    per_packet = LL_PACKET_OVERHEAD + (LL_MIC_SIZE if encrypted else 0)
    return pdu_length + ll_packets_for(pdu_length, ll_payload) * per_packet


def _address_str(address: hci.Address) -> str:
    return str(address.to_string(with_type_qualifier=False))


@dataclasses.dataclass
class DirectionStats:
    """Counters for the traffic one side of a connection sent."""

    #: L2CAP PDUs (ATT, SMP, signalling...) as handed to the link by the controller.
    pdus: int = 0
    #: LL data packets those PDUs need (see :func:`ll_packets_for`).
    ll_packets: int = 0
    #: L2CAP bytes, 4-byte L2CAP header included.
    payload_bytes: int = 0
    #: Estimated bytes on air (see :func:`air_bytes_for`).
    air_bytes: int = 0
    #: LL control PDUs (connection management, encryption start...), counted, not sized.
    control_pdus: int = 0

    def add(self, other: DirectionStats) -> None:
        """Add ``other``'s counters to this one."""
        self.pdus += other.pdus
        self.ll_packets += other.ll_packets
        self.payload_bytes += other.payload_bytes
        self.air_bytes += other.air_bytes
        self.control_pdus += other.control_pdus

    def describe(self) -> str:
        """One-line human-readable rendering."""
        return (
            f"{self.pdus} PDUs, {self.ll_packets} LL packets, {self.payload_bytes} B L2CAP, "
            f"{self.air_bytes} B on air, {self.control_pdus} LL control PDUs"
        )


@dataclasses.dataclass
class LinkStats:
    """Per-direction traffic counters of a :class:`VirtualLink`.

    :attr:`directions` is keyed by ``(sender address, receiver address)`` (addresses as
    ``"F0:F0:F0:F0:F0:F0"``); :attr:`by_role` holds the same traffic keyed by
    :data:`CENTRAL_TO_PERIPHERAL` / :data:`PERIPHERAL_TO_CENTRAL`, derived from the sender's
    connection role (traffic whose role cannot be determined only appears in
    :attr:`directions`).
    """

    #: LL payload size used to split PDUs into LL packets (27 or 251).
    ll_payload: int = LL_PAYLOAD_DLE
    directions: dict[tuple[str, str], DirectionStats] = dataclasses.field(default_factory=dict)
    by_role: dict[str, DirectionStats] = dataclasses.field(default_factory=dict)

    def record_pdu(
        self, sender: str, receiver: str, role: str | None, length: int, *, encrypted: bool
    ) -> int:
        """Count one L2CAP PDU of ``length`` bytes; return the LL packets it needs."""
        packets = ll_packets_for(length, self.ll_payload)
        air = air_bytes_for(length, self.ll_payload, encrypted=encrypted)
        for stats in self._targets(sender, receiver, role):
            stats.pdus += 1
            stats.ll_packets += packets
            stats.payload_bytes += length
            stats.air_bytes += air
        return packets

    def record_control_pdu(self, sender: str, receiver: str, role: str | None) -> None:
        """Count one LL control PDU."""
        for stats in self._targets(sender, receiver, role):
            stats.control_pdus += 1

    def _targets(self, sender: str, receiver: str, role: str | None) -> list[DirectionStats]:
        targets = [self.directions.setdefault((sender, receiver), DirectionStats())]
        if role is not None:
            targets.append(self.by_role.setdefault(role, DirectionStats()))
        return targets

    def direction(self, sender: str, receiver: str) -> DirectionStats:
        """Counters for ``sender -> receiver`` (zeros if nothing was sent)."""
        return self.directions.get((sender.upper(), receiver.upper()), DirectionStats())

    @property
    def central_to_peripheral(self) -> DirectionStats:
        """Traffic sent by centrals (zeros if none)."""
        return self.by_role.get(CENTRAL_TO_PERIPHERAL, DirectionStats())

    @property
    def peripheral_to_central(self) -> DirectionStats:
        """Traffic sent by peripherals (zeros if none)."""
        return self.by_role.get(PERIPHERAL_TO_CENTRAL, DirectionStats())

    @property
    def total(self) -> DirectionStats:
        """Sum over all directions."""
        total = DirectionStats()
        for stats in self.directions.values():
            total.add(stats)
        return total

    def reset(self) -> None:
        """Forget all counts."""
        self.directions.clear()
        self.by_role.clear()

    def summary(self) -> str:
        """Multi-line human-readable report."""
        lines = [f"link stats (LL payload {self.ll_payload} B):"]
        for role in (CENTRAL_TO_PERIPHERAL, PERIPHERAL_TO_CENTRAL):
            if role in self.by_role:
                lines.append(f"  {role}: {self.by_role[role].describe()}")
        for (sender, receiver), stats in sorted(self.directions.items()):
            lines.append(f"  {sender} -> {receiver}: {stats.describe()}")
        lines.append(f"  total: {self.total.describe()}")
        return "\n".join(lines)


@dataclasses.dataclass
class _Lane:
    """Ordered in-flight traffic of one direction of one connection."""

    #: (connection-event index, delivery callback), event indices non-decreasing.
    queue: deque[tuple[int, Callable[[], None]]] = dataclasses.field(default_factory=deque)
    timer: asyncio.TimerHandle | None = None
    #: Latest event holding data of this lane, and LL packets already used in it.
    cursor_event: int = -1
    cursor_used: int = 0


class VirtualLink(LocalLink):
    """A :class:`bumble.link.LocalLink` that counts traffic and can model a connection interval.

    Every LE ACL PDU is counted in :attr:`stats`. With ``connection_interval`` (seconds) set,
    delivery follows the connection-event model described in the module documentation;
    with ``None`` it is immediate (next loop tick) like ``LocalLink``. ``ll_payload`` (27 to
    251) sizes LL packets for accounting and for event capacity. Classic (BR/EDR) traffic
    and advertising are passed to ``LocalLink`` unchanged.

    The event origin ``t0`` is taken on the running loop's clock when the link is created
    inside a running loop, otherwise on the first PDU it carries.
    """

    def __init__(
        self,
        *,
        connection_interval: float | None = None,
        max_ll_packets_per_event: int = 6,
        ll_payload: int = LL_PAYLOAD_DLE,
    ) -> None:
        if connection_interval is not None and not connection_interval > 0:
            raise ValueError(f"connection_interval must be > 0, got {connection_interval}")
        if max_ll_packets_per_event < 1:
            raise ValueError(
                f"max_ll_packets_per_event must be >= 1, got {max_ll_packets_per_event}"
            )
        if not LL_PAYLOAD_NO_DLE <= ll_payload <= LL_PAYLOAD_DLE:
            raise ValueError(
                f"ll_payload must be in [{LL_PAYLOAD_NO_DLE}, {LL_PAYLOAD_DLE}], got {ll_payload}"
            )
        super().__init__()  # type: ignore[no-untyped-call]
        self.connection_interval: Final = connection_interval
        self.max_ll_packets_per_event: Final = max_ll_packets_per_event
        self.ll_payload: Final = ll_payload
        self.stats = LinkStats(ll_payload=ll_payload)
        self._t0: float | None = None
        with contextlib.suppress(RuntimeError):
            self._t0 = asyncio.get_running_loop().time()
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._last_fired_event = -1
        self._encrypted: set[frozenset[str]] = set()

    # -- model ------------------------------------------------------------------------

    def anchor_time(self, event: int) -> float:
        """Loop time of connection event ``event`` (requires an interval and a started link)."""
        if self.connection_interval is None or self._t0 is None:
            raise RuntimeError("this link has no connection-event clock")
        return self._t0 + event * self.connection_interval

    def is_encrypted(self, address_a: str, address_b: str) -> bool:
        """Whether the link between the two addresses is currently encrypted."""
        return frozenset((address_a.upper(), address_b.upper())) in self._encrypted

    def close(self) -> None:
        """Drop all in-flight traffic and cancel its timers (for shutdown)."""
        for lane in self._lanes.values():
            if lane.timer is not None:
                lane.timer.cancel()
        self._lanes.clear()

    def _next_event(self, loop: asyncio.AbstractEventLoop) -> int:
        """Index of the first connection event strictly after now."""
        assert self.connection_interval is not None
        if self._t0 is None:
            self._t0 = loop.time()
        elapsed = (loop.time() - self._t0) / self.connection_interval
        # Anything sent while (or after) event k is being delivered goes out in k + 1 at
        # the earliest, even if the loop fired the timer a hair before the anchor.
        return max(math.floor(elapsed + _EVENT_EPSILON) + 1, self._last_fired_event + 1)

    def _dispatch(self, key: tuple[str, str], ll_packets: int, deliver: Callable[[], None]) -> None:
        """Deliver now-ish (no interval) or at the event that carries the last LL packet."""
        loop = asyncio.get_running_loop()
        if self.connection_interval is None:
            loop.call_soon(deliver)
            return
        lane = self._lanes.setdefault(key, _Lane())
        first = self._next_event(loop)
        if ll_packets == 0:
            event = max(first, lane.cursor_event)
        else:
            capacity = self.max_ll_packets_per_event
            if lane.cursor_event >= first:
                event, used = lane.cursor_event, lane.cursor_used
            else:
                event, used = first, 0
            remaining = ll_packets - (capacity - used)
            if remaining <= 0:
                used = capacity + remaining
            else:
                extra_events = math.ceil(remaining / capacity)
                event += extra_events
                used = remaining - (extra_events - 1) * capacity
            lane.cursor_event, lane.cursor_used = event, used
        lane.queue.append((event, deliver))
        if lane.timer is None:
            lane.timer = loop.call_at(self.anchor_time(event), self._fire, lane, event)

    def _fire(self, lane: _Lane, event: int) -> None:
        lane.timer = None
        self._last_fired_event = max(self._last_fired_event, event)
        while lane.queue and lane.queue[0][0] <= event:
            _, deliver = lane.queue.popleft()
            try:
                deliver()
            except Exception:
                logger.exception("virtual link: delivery failed")
        if lane.queue:
            next_event = lane.queue[0][0]
            lane.timer = asyncio.get_running_loop().call_at(
                self.anchor_time(next_event), self._fire, lane, next_event
            )

    @staticmethod
    def _role_view(role: int | None) -> str | None:
        if role == hci.Role.CENTRAL:
            return CENTRAL_TO_PERIPHERAL
        if role == hci.Role.PERIPHERAL:
            return PERIPHERAL_TO_CENTRAL
        return None

    # -- LocalLink overrides ---------------------------------------------------------------

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: core.PhysicalTransport,
        data: bytes,
    ) -> None:
        """Count an LE L2CAP PDU and deliver it per the connection-event model."""
        if transport != core.PhysicalTransport.LE:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        destination = self.find_le_controller(destination_address)
        if destination is None:
            return
        connection = sender_controller.le_connections.get(destination_address)
        if connection is not None:
            source_address: hci.Address = connection.self_address
            role = self._role_view(connection.role)
        else:
            source_address = sender_controller.random_address
            role = None
        sender = _address_str(source_address)
        receiver = _address_str(destination_address)
        packets = self.stats.record_pdu(
            sender, receiver, role, len(data), encrypted=self.is_encrypted(sender, receiver)
        )

        def deliver() -> None:
            if destination in self.controllers:
                destination.on_link_acl_data(source_address, transport, data)

        self._dispatch((sender, receiver), packets, deliver)

    def send_ll_control_pdu(
        self,
        sender_address: hci.Address,
        receiver_address: hci.Address,
        packet: ll.ControlPdu,
    ) -> None:
        """Count an LL control PDU and deliver it one connection event later."""
        receiver_controller = self.find_le_controller(receiver_address)
        if receiver_controller is None:
            raise core.InvalidArgumentError(
                f"Unable to find controller for address {receiver_address}"
            )
        sender = _address_str(sender_address)
        receiver = _address_str(receiver_address)
        pair = frozenset((sender, receiver))
        if isinstance(packet, ll.StartEncRsp):
            self._encrypted.add(pair)
        elif isinstance(packet, ll.TerminateInd):
            self._encrypted.discard(pair)
        role: str | None = None
        sender_controller = self.find_le_controller(sender_address)
        if sender_controller is not None:
            connection = sender_controller.le_connections.get(receiver_address)
            if connection is not None:
                role = self._role_view(connection.role)
        self.stats.record_control_pdu(sender, receiver, role)

        def deliver() -> None:
            if receiver_controller in self.controllers:
                receiver_controller.on_ll_control_pdu(sender_address, packet)

        self._dispatch((sender, receiver), 0, deliver)

    def send_advertising_pdu(
        self, sender_controller: Controller, packet: ll.AdvertisingPdu
    ) -> None:
        """Broadcast immediately (not delayed); a CONNECT_IND clears the pair's encryption.
        An advertisement carries its advertiser's scan response to each scanner
        (:class:`VirtualController`)."""
        if isinstance(packet, ll.ConnectInd):
            self._encrypted.discard(
                frozenset(
                    (
                        _address_str(packet.initiator_address),
                        _address_str(packet.advertiser_address),
                    )
                )
            )
        if not isinstance(packet, ll.AdvInd | ll.AdvExtInd):
            super().send_advertising_pdu(sender_controller, packet)
            return
        scan_response = _scan_response_of(sender_controller, packet)
        loop = asyncio.get_running_loop()
        for controller in self.controllers:
            if controller is sender_controller:
                continue
            if isinstance(controller, VirtualController):
                loop.call_soon(controller.hear_advertisement, packet, scan_response)
            else:
                loop.call_soon(controller.on_ll_advertising_pdu, packet)

    def remove_controller(self, controller: Controller) -> None:
        """Detach ``controller`` (no-op if it is not on the link)."""
        if controller in self.controllers:
            super().remove_controller(controller)


class VirtualController(Controller):
    """bumble's software controller, answering a scan with the advertiser's scan response.

    bumble's own (0.0.236) reports its advertising data a second time as the scan
    response, so nothing in a scan response (bleprov's local name) ever reached a
    scanner on the virtual radio. :class:`VirtualLink` hands each scanner the
    advertiser's scan response data beside the advertising PDU; this controller puts it
    into the SCAN_RSP report it sends its host.
    """

    _scan_response: bytes | None = None

    def hear_advertisement(self, packet: ll.AdvertisingPdu, scan_response: bytes | None) -> None:
        """``packet`` heard on air; ``scan_response``: what its advertiser answers a scan
        request with (None: leave bumble's report as it is)."""
        self._scan_response = scan_response
        try:
            self.on_ll_advertising_pdu(packet)
        finally:
            self._scan_response = None

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if self._scan_response is not None:
            packet = _with_scan_response(packet, self._scan_response)
        super().send_hci_packet(packet)


def _with_scan_response(packet: hci.HCI_Packet, data: bytes) -> hci.HCI_Packet:
    """An advertising report whose scan-response entries carry ``data``."""
    if isinstance(packet, hci.HCI_LE_Advertising_Report_Event):
        scan_rsp = hci.HCI_LE_Advertising_Report_Event.EventType.SCAN_RSP
        return hci.HCI_LE_Advertising_Report_Event(
            [
                dataclasses.replace(r, data=data) if r.event_type == scan_rsp else r
                for r in packet.reports
            ]
        )
    if isinstance(packet, hci.HCI_LE_Extended_Advertising_Report_Event):
        flag = hci.HCI_LE_Extended_Advertising_Report_Event.EventType.SCAN_RESPONSE
        return hci.HCI_LE_Extended_Advertising_Report_Event(
            [
                dataclasses.replace(r, data=data) if r.event_type & flag else r
                for r in packet.reports
            ]
        )
    return packet


def _scan_response_of(sender: Controller, packet: ll.AdvertisingPdu) -> bytes | None:
    """The scan response data the advertiser of ``packet`` set (legacy or extended)."""
    if isinstance(packet, ll.AdvInd):
        legacy = sender.le_legacy_advertiser
        if legacy.enabled and legacy.address == packet.advertiser_address:
            return bytes(legacy.scan_response_data)
    elif isinstance(packet, ll.AdvExtInd):
        for advertising_set in sender.advertising_sets.values():
            if advertising_set.enabled and advertising_set.address == packet.advertiser_address:
                return bytes(advertising_set.scan_response_data)
    return None


def make_virtual_device(link: LocalLink, *, name: str, address: str) -> Device:
    """A powered-off bumble :class:`Device` whose virtual controller sits on ``link``.

    Must be called inside a running event loop: bumble's ``Controller`` and
    ``AsyncPipeSink`` capture ``asyncio.get_running_loop()`` when constructed. ``address``
    is the device's (random static) address, e.g. ``"F0:F0:F0:F0:F0:F0"``. The caller
    powers it on with ``await device.power_on()``.
    """
    controller = VirtualController(name, link=link)
    host = Host(controller, AsyncPipeSink(controller))
    return Device(name=name, address=hci.Address(address), host=host)


async def open_hci_device(
    transport_spec: str, *, name: str, address: str
) -> tuple[Device, Transport]:
    """Open the bumble HCI transport ``transport_spec`` and build a device on it.

    ``transport_spec`` is any bumble transport name, typically one of
    :attr:`VirtualRadioHub.transport_specs` (``"tcp-client:127.0.0.1:9100"``). Returns the
    device, still powered off, and the transport. The caller must ``await
    device.power_on()`` before use and ``await transport.close()`` when done.
    """
    transport = await open_transport(transport_spec)
    try:
        device = Device.with_hci(name, hci.Address(address), transport.source, transport.sink)
    except BaseException:
        await transport.close()
        raise
    return device, transport


def _retire_controller(link: LocalLink, controller: Controller) -> None:
    """Take a controller off the air as if it were switched off.

    Advertising stops, and every peer of its LE connections receives an
    ``LL_TERMINATE_IND`` (reason: connection timeout), as it would notice a supervision
    timeout on real radios.
    """
    controller.le_legacy_advertiser.stop()
    for advertising_set in controller.advertising_sets.values():
        advertising_set.stop()
    for peer_address, connection in list(controller.le_connections.items()):
        with contextlib.suppress(core.InvalidArgumentError):
            link.send_ll_control_pdu(
                sender_address=connection.self_address,
                receiver_address=peer_address,
                packet=ll.TerminateInd(hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR),
            )
    controller.le_connections.clear()
    if controller in link.controllers:
        link.remove_controller(controller)


class _HciSession(asyncio.Protocol):
    """One TCP client driving one fresh virtual controller over H4-framed HCI."""

    def __init__(self, endpoint: _HciEndpoint) -> None:
        self._endpoint = endpoint
        self._transport: asyncio.Transport | None = None
        self._parser: PacketParser | None = None
        self.controller: Controller | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._endpoint.session is not None:
            # The newest host takes the slot over. A host that reconnects usually does so
            # before the hub has seen its old socket close (both land in one loop turn);
            # refusing it would leave it waiting for an HCI reset that never completes.
            logger.info(
                "controller %d: host %s takes over from the attached host",
                self._endpoint.index,
                transport.get_extra_info("peername"),
            )
            self._endpoint.session.detach()
        self._transport = transport
        self._endpoint.session = self
        self.controller = VirtualController(
            f"hub-{self._endpoint.index}", host_sink=self, link=self._endpoint.link
        )
        self._parser = PacketParser(self.controller)
        logger.debug("controller %d: host attached", self._endpoint.index)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            return
        try:
            self._parser.feed_data(data)
        except core.InvalidPacketError:
            logger.warning("controller %d: invalid HCI data, dropping host", self._endpoint.index)
            self.detach()

    def on_packet(self, packet: bytes) -> None:
        """HCI packet from the controller to the host."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        self.detach()

    def detach(self) -> None:
        """Retire this session's controller and close its TCP connection."""
        if self._endpoint.session is self:
            self._endpoint.session = None
            if self.controller is not None:
                _retire_controller(self._endpoint.link, self.controller)
            logger.debug("controller %d: host detached", self._endpoint.index)
        self._parser = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None


@dataclasses.dataclass
class _HciEndpoint:
    """A listening socket exposing one virtual controller slot of a hub."""

    index: int
    link: VirtualLink
    port: int = 0
    server: asyncio.Server | None = None
    session: _HciSession | None = None


def _bind_listening_socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only for sockets whose
    # proto says TCP; with proto 0 every small HCI packet could wait ~40 ms for an ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class VirtualRadioHub:
    """One :class:`VirtualLink` whose virtual controllers other processes reach over TCP.

    Each port exposes one controller as H4-framed HCI (what bumble's ``tcp-server:``
    transport speaks), so a process attaches with ``open_transport("tcp-client:...")`` and
    ``Device.with_hci(...)`` or :func:`open_hci_device`. The hub does not use bumble's
    ``tcp-server`` transport: that one feeds every client into one shared HCI parser,
    answers only the latest client and never closes its listening socket. Here each port
    accepts one host at a time (a second one is refused), every attached host gets a fresh
    controller, and when the host goes away its controller leaves the link (its peers see a
    disconnection). Port 0 picks a free port, bound immediately, so :attr:`ports` is final
    as soon as :meth:`start` returns. The hosting process may put local devices on the same
    radio with ``make_virtual_device(hub.link, ...)``.
    """

    def __init__(self, link: VirtualLink, host: str, endpoints: list[_HciEndpoint]) -> None:
        """Use :meth:`start`."""
        self.link = link
        self.host = host
        self._endpoints = endpoints
        self._closed = False

    @classmethod
    async def start(
        cls,
        ports: Sequence[int],
        *,
        host: str = "127.0.0.1",
        connection_interval: float | None = None,
        max_ll_packets_per_event: int = 6,
        ll_payload: int = LL_PAYLOAD_DLE,
    ) -> VirtualRadioHub:
        """Listen on ``host`` at each of ``ports`` (0 = any free port), one controller each.

        The link options are those of :class:`VirtualLink`. Raises :class:`OSError` if a
        port cannot be bound (nothing is left listening then).
        """
        loop = asyncio.get_running_loop()
        link = VirtualLink(
            connection_interval=connection_interval,
            max_ll_packets_per_event=max_ll_packets_per_event,
            ll_payload=ll_payload,
        )
        hub = cls(link, host, [])
        try:
            for index, port in enumerate(ports):
                endpoint = _HciEndpoint(index=index, link=link)
                sock = _bind_listening_socket(host, port)
                endpoint.port = int(sock.getsockname()[1])
                try:
                    endpoint.server = await loop.create_server(
                        functools.partial(_HciSession, endpoint), sock=sock
                    )
                except BaseException:
                    sock.close()
                    raise
                hub._endpoints.append(endpoint)
        except BaseException:
            await hub.close()
            raise
        return hub

    @property
    def ports(self) -> list[int]:
        """The TCP port of each controller, in the order given to :meth:`start`."""
        return [endpoint.port for endpoint in self._endpoints]

    @property
    def transport_specs(self) -> list[str]:
        """bumble transport names to reach each controller, e.g. ``tcp-client:127.0.0.1:9100``."""
        return [f"tcp-client:{self.host}:{port}" for port in self.ports]

    async def close(self) -> None:
        """Stop listening, drop attached hosts, retire their controllers, cancel traffic."""
        if self._closed:
            return
        self._closed = True
        for endpoint in self._endpoints:
            if endpoint.server is not None:
                endpoint.server.close()
            if endpoint.session is not None:
                endpoint.session.detach()
        for endpoint in self._endpoints:
            if endpoint.server is not None:
                await endpoint.server.wait_closed()
        self.link.close()
        # Let the transports' connection_lost callbacks run.
        await asyncio.sleep(0)

    async def __aenter__(self) -> VirtualRadioHub:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# -- command line ----------------------------------------------------------------------


def parse_ports(text: str) -> list[int]:
    """``--ports``: comma-separated TCP ports, 0 for any free one."""
    try:
        ports = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ports: {text!r}") from None
    if not ports or any(not 0 <= port <= 65535 for port in ports):
        raise argparse.ArgumentTypeError(f"ports must be 0..65535: {text!r}")
    return ports


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bleprov.radio.virtual", description="Virtual BLE radio (bumble)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    hub = commands.add_parser(
        "hub",
        help="expose virtual controllers on one link as HCI over TCP",
        description=(
            "Prints 'controller <index> <transport spec>' per controller, then 'ready', and "
            "runs until SIGTERM or SIGINT."
        ),
    )
    hub.add_argument(
        "--ports", type=parse_ports, required=True, help="comma-separated, 0 = any free port"
    )
    hub.add_argument("--host", default="127.0.0.1", help="IPv4 address to listen on")
    hub.add_argument(
        "--interval-ms", type=float, default=None, help="model this connection interval"
    )
    hub.add_argument("--max-packets-per-event", type=int, default=6)
    hub.add_argument("--ll-payload", type=int, default=LL_PAYLOAD_DLE, help="27 or 251")
    hub.add_argument(
        "--log-level",
        type=str.upper,
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return parser


async def _run_hub(args: argparse.Namespace) -> int:
    interval = None if args.interval_ms is None else args.interval_ms / 1000.0
    try:
        hub = await VirtualRadioHub.start(
            args.ports,
            host=args.host,
            connection_interval=interval,
            max_ll_packets_per_event=args.max_packets_per_event,
            ll_payload=args.ll_payload,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        for index, spec in enumerate(hub.transport_specs):
            print(f"controller {index} {spec}")
        print("ready", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await hub.close()
    return 0


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    # Until the loop installs its handlers, SIGTERM and SIGINT end the process quietly (also
    # when SIGINT was inherited as ignored, as in background jobs of non-interactive shells).
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(_run_hub(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
