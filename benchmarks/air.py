"""Every PDU of an enrolment, traced at the link between bumble's virtual controllers.

:class:`TracingLink` is the virtual radio's link with a tap on it: each L2CAP PDU a
controller hands the link (ATT, SMP, signalling; 4-byte L2CAP header included) is recorded
with its direction and with what caused it (the last PDU its sender had received when it
sent it). Nothing is counted in bleprov's own code: round trips, flights and bytes come
from these PDUs. What the protocol's records *mean* is looked up afterwards: our frames
are parsed out of the ATT values, whole session messages reassembled, and an encrypted
record's plaintext found by its ciphertext in a log of every seal (:class:`SealLog`), so
its bytes can be put in a category (certificates, handshake, Wi-Fi, ...).

:func:`trace_enrolment` runs one enrolment the way the CLI does (`provision()` from
``bleprov.service.provisioning``, after ``open_session``) on a link without a modelled
interval (fast), then :func:`analyse` derives:

- ATT round trips: request/response pairs (and indication/confirmation), those begun
  before the host's first frame being the set-up;
- protocol flights: runs of host messages each answered by the device (pipelined
  messages in one run are one flight), read from the host's framing (:class:`FlightLog`);
- bytes on air by category;
- connected -> committed under :class:`LinkModel` (see :func:`schedule`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bumble import core, hci, ll
from bumble.controller import Controller
from cryptography import x509

from benchmarks.common import (
    ALL_MODES,
    HOME,
    OWNER,
    PEER,
    ZONE,
    BenchDevice,
    BenchHub,
    ClockedLink,
    Factory,
    host_identity_store,
    start_device,
    start_host,
)
from bleprov.core import cbor
from bleprov.core import membership as mb
from bleprov.core.enrolment.messages import WifiStatus
from bleprov.core.frames import FrameKind
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import ScanResult, WifiCredentials
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.virtual import (
    LL_PACKET_OVERHEAD,
    LL_PAYLOAD_DLE,
    LL_PAYLOAD_NO_DLE,
    air_bytes_for,
    ll_packets_for,
)
from bleprov.service.host_session import DeviceAuthentication, find, open_session
from bleprov.service.provisioning import PeerPlan, ZonePlan, provision

#: Every mode the CLI enrols in, and every trust step (wifi: Wi-Fi only).
TRACE_MODES: Final = (Mode.QR, Mode.CODE, Mode.COMPARE, Mode.PASSKEY, Mode.BUTTON)
WIFI_ONLY: Final = "wifi"
VARIANTS: Final = (WIFI_ONLY, ZONE, PEER)

L2CAP_HEADER: Final = 4
CID_ATT: Final = 0x0004
CID_SIGNALLING: Final = 0x0005
CID_SMP: Final = 0x0006

ATT_OPCODES: Final = {
    0x01: "Error Response",
    0x02: "Exchange MTU Request",
    0x03: "Exchange MTU Response",
    0x04: "Find Information Request",
    0x05: "Find Information Response",
    0x06: "Find By Type Value Request",
    0x07: "Find By Type Value Response",
    0x08: "Read By Type Request",
    0x09: "Read By Type Response",
    0x0A: "Read Request",
    0x0B: "Read Response",
    0x0C: "Read Blob Request",
    0x0D: "Read Blob Response",
    0x0E: "Read Multiple Request",
    0x0F: "Read Multiple Response",
    0x10: "Read By Group Type Request",
    0x11: "Read By Group Type Response",
    0x12: "Write Request",
    0x13: "Write Response",
    0x16: "Prepare Write Request",
    0x17: "Prepare Write Response",
    0x18: "Execute Write Request",
    0x19: "Execute Write Response",
    0x1B: "Handle Value Notification",
    0x1D: "Handle Value Indication",
    0x1E: "Handle Value Confirmation",
    0x20: "Read Multiple Variable Request",
    0x21: "Read Multiple Variable Response",
    0x23: "Multiple Handle Value Notification",
    0x52: "Write Command",
}
#: ATT PDUs that wait for an answer (Core spec Vol 3 Part F 3.3: requests and
#: indications; the answer is the response, an Error Response, or the confirmation).
ATT_WAITS: Final = frozenset(
    {0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x10, 0x12, 0x16, 0x18, 0x1D, 0x20}
)
#: ATT PDUs whose value may be one of our frames (on rx written, on tx notified).
FRAME_OPCODES: Final = frozenset({0x12, 0x1B, 0x1D, 0x52})
#: ATT PDUs with a handle in bytes 1-2 (for the trace).
HANDLE_OPCODES: Final = frozenset(
    {0x0A, 0x0C, 0x12, 0x16, 0x1B, 0x1D, 0x52, 0x04, 0x06, 0x08, 0x10}
)

# Byte categories (bytes on air).
SETUP: Final = "GATT set-up"
CERTS: Final = "certificates"
HANDSHAKE: Final = "handshake"
WIFI: Final = "Wi-Fi"
OTHER: Final = "other"
FRAMING: Final = "framing/ATT overhead"
CATEGORIES: Final = (CERTS, HANDSHAKE, WIFI, OTHER, FRAMING, SETUP)


# ------------------------------------------------------------------ the tap


@dataclass
class TracedPdu:
    """One L2CAP PDU as a controller handed it to the link."""

    index: int
    #: Host (central) to device (peripheral).
    up: bool
    data: bytes
    #: Index of the last PDU its sender had received when it sent this one (None: none
    #: since the connection): what the time model makes it wait for.
    cause: int | None

    @property
    def cid(self) -> int:
        return int.from_bytes(self.data[2:4], "little") if len(self.data) >= 4 else -1

    @property
    def payload(self) -> bytes:
        return self.data[L2CAP_HEADER:]

    @property
    def opcode(self) -> int | None:
        return self.payload[0] if self.cid == CID_ATT and self.payload else None

    @property
    def handle(self) -> int | None:
        if self.opcode in HANDLE_OPCODES and len(self.payload) >= 3:
            return int.from_bytes(self.payload[1:3], "little")
        return None

    @property
    def is_cccd_write(self) -> bool:
        """A Write Request of a 2-byte CCCD value (notify 01 00 or indicate 02 00)."""
        return self.opcode == 0x12 and self.payload[3:] in (b"\x01\x00", b"\x02\x00")

    @property
    def frame(self) -> bytes | None:
        """Our frame, if this PDU carries one (the ATT value of a write or notification)."""
        if self.opcode in FRAME_OPCODES and not self.is_cccd_write and len(self.payload) > 3:
            return self.payload[3:]
        return None


class TracingLink(ClockedLink):
    """The virtual link, recording every LE L2CAP PDU of the current connection.

    The trace restarts at each CONNECT_IND (connection-complete: scanning and
    advertising are not the connection's). ``committed_at``: set by the caller to the
    number of PDUs traced when the host had the commit's answer.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pdus: list[TracedPdu] = []
        self.committed_at: int | None = None
        self._received: dict[str, int] = {}
        self._tagging: int | None = None
        self._receiver = ""

    def send_advertising_pdu(
        self, sender_controller: Controller, packet: ll.AdvertisingPdu
    ) -> None:
        if isinstance(packet, ll.ConnectInd):
            self.pdus.clear()
            self._received.clear()
            self.committed_at = None
        super().send_advertising_pdu(sender_controller, packet)

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: core.PhysicalTransport,
        data: bytes,
    ) -> None:
        connection = sender_controller.le_connections.get(destination_address)
        if transport != core.PhysicalTransport.LE or connection is None:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        sender = str(connection.self_address.to_string(with_type_qualifier=False))
        receiver = str(destination_address.to_string(with_type_qualifier=False))
        pdu = TracedPdu(
            len(self.pdus),
            connection.role == hci.Role.CENTRAL,
            bytes(data),
            self._received.get(sender),
        )
        self.pdus.append(pdu)
        self._tagging = pdu.index
        self._receiver = receiver
        try:
            super().send_acl_data(sender_controller, destination_address, transport, data)
        finally:
            self._tagging = None

    def _dispatch(self, key: tuple[str, str], ll_packets: int, deliver: Callable[[], None]) -> None:
        if self._tagging is None:
            super()._dispatch(key, ll_packets, deliver)
            return
        index, receiver, trace = self._tagging, self._receiver, self.pdus

        def delivered() -> None:
            # Only the connection this trace is about (a new CONNECT_IND clears it).
            if index < len(trace) and trace[index].index == index:
                self._received[receiver] = index
            deliver()

        super()._dispatch(key, ll_packets, delivered)


class SealLog:
    """Every record sealed in this process, ciphertext -> plaintext, while it is active.

    Wraps ``bleprov.core.channel.SecureChannel.seal`` (both ends run here). If the
    session layer seals elsewhere, nothing is logged and records stay unclassified
    (their bytes are counted under "other")."""

    def __init__(self) -> None:
        self.plaintexts: dict[bytes, bytes] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[SealLog]:
        try:
            from bleprov.core.channel import SecureChannel
        except ImportError:
            yield self
            return
        original = getattr(SecureChannel, "seal", None)
        if original is None:
            yield self
            return

        def seal(channel: Any, plaintext: bytes, *args: Any, **kwargs: Any) -> bytes:
            sealed: bytes = original(channel, plaintext, *args, **kwargs)
            self.plaintexts[bytes(sealed)] = bytes(plaintext)
            return sealed

        SecureChannel.seal = seal  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            SecureChannel.seal = original  # type: ignore[method-assign]


class FlightLog:
    """The host's side of the conversation, in order: each message it hands its framing
    (``FrameChannel.send_message``, role host) and each whole message its framing hands
    back (``receive_frame`` returning a message). Flights are read from this order: a
    message the host queues behind others (credits, a long message before it) is in the
    same flight however late its frames go out; one it sends only once the device
    answered opens a new one. Empty if the framing moved (flights then come from the
    PDUs, :func:`flights`)."""

    def __init__(self) -> None:
        #: True: the host sent a message; False: it received one.
        self.events: list[bool] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[FlightLog]:
        from bleprov.core import frames

        channel = getattr(frames, "FrameChannel", None)
        send = getattr(channel, "send_message", None)
        receive = getattr(channel, "receive_frame", None)
        if channel is None or send is None or receive is None:
            yield self
            return
        log = self.events

        def send_message(ch: Any, *args: Any, **kwargs: Any) -> Any:
            result = send(ch, *args, **kwargs)
            if getattr(ch, "role", None) is frames.Role.HOST:
                log.append(True)
            return result

        def receive_frame(ch: Any, *args: Any, **kwargs: Any) -> Any:
            events = receive(ch, *args, **kwargs)
            if getattr(ch, "role", None) is frames.Role.HOST:
                log.extend(False for e in events if isinstance(e, frames.MessageReceived))
            return events

        channel.send_message = send_message
        channel.receive_frame = receive_frame
        try:
            yield self
        finally:
            channel.send_message = send
            channel.receive_frame = receive


# ------------------------------------------------------------------ one enrolment


@dataclass
class Trace:
    """One traced enrolment: the PDUs from connection-complete, and what sealed them."""

    mode: str
    variant: str
    mtu: int
    ll_payload: int
    pdus: list[TracedPdu]
    committed_at: int
    plaintexts: dict[bytes, bytes]
    #: The hub registry's work during the enrolment: SQL statements and transactions.
    registry_statements: int = 0
    registry_transactions: int = 0
    #: The host's sends (True) and receptions (False) of whole messages, in order.
    conversation: list[bool] = field(default_factory=list)


class RegistryMeter:
    """SQL statements and committed transactions of every SQLAlchemy engine in this
    process (the hub's registry is the only one), while active."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0

    def _statement(self, *args: Any, **kwargs: Any) -> None:
        self.statements += 1

    def _commit(self, *args: Any, **kwargs: Any) -> None:
        self.transactions += 1

    @contextlib.contextmanager
    def active(self) -> Iterator[RegistryMeter]:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)
        try:
            yield self
        finally:
            event.remove(Engine, "before_cursor_execute", self._statement)
            event.remove(Engine, "commit", self._commit)


class _FirstNetwork:
    """The user picks the home network from the device's scan; a failed join is not
    retried."""

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        return HOME

    async def retry(self, status: WifiStatus, tried: WifiCredentials) -> WifiCredentials | None:
        return None


class _NamedNetwork(_FirstNetwork):
    """The user named the home network and its security (``--wifi-ssid``,
    ``--wifi-security``): no scan; its credentials go in the commit's flight."""

    def preset(self) -> WifiCredentials | None:
        return HOME


def host_gatt_cache(directory: Path) -> dict[str, Any]:
    """A fresh, empty GATT cache for the host, as the CLI keeps one, where the host has
    one (``bleprov.radio.gatt_cache``, ``CentralRadio.bumble(gatt_cache=...)``); else no
    option. Fresh: each trace's first connection is a first contact."""
    if "gatt_cache" not in inspect.signature(CentralRadio.bumble).parameters:
        return {}
    try:
        module = importlib.import_module("bleprov.radio.gatt_cache")
    except ImportError:
        return {}
    return {"gatt_cache": module.GattCache(directory / "gatt-cache.json")}


def _authentication(device: BenchDevice, mode: Mode) -> DeviceAuthentication:
    if mode is Mode.PASSKEY:
        return DeviceAuthentication.passkey(discriminator=device.runtime.discriminator)
    return device.authentication(mode)


async def trace_enrolment(
    mode: Mode,
    variant: str,
    *,
    mtu: int,
    factory: Factory,
    hub: BenchHub,
    work: Path,
    known: bool = False,
    named: bool = True,
) -> Trace:
    """One fresh device enrolled by ``provision()`` as the CLI runs it, traced.

    ``known``: the same host connected to the device once before (a qr session opened
    and closed), so whatever the host may keep of a device it has met counts.
    ``named``: the user named the network and its security (no scan), as a script or
    ``--wifi-ssid`` with ``--wifi-security`` does; else the user picks it from a scan."""
    ll_payload = LL_PAYLOAD_DLE if mtu > 23 else LL_PAYLOAD_NO_DLE
    link = TracingLink(ll_payload=ll_payload)
    directory = Path(tempfile.mkdtemp(dir=work))
    device = await start_device(link, factory, directory, modes=ALL_MODES | Mode.PASSKEY)
    log = SealLog()
    registry = RegistryMeter()
    conversation = FlightLog()
    try:
        radio = await start_host(link, mtu=mtu, **host_gatt_cache(directory))
        auth = _authentication(device, mode)
        if mode is Mode.BUTTON:
            device.runtime.press_button()
        if known:
            first = await open_session(radio, device.authentication(Mode.QR), factory.trust)
            await first.close()
            await asyncio.sleep(0.05)
        found = await find(radio, auth, timeout=10)

        async def user_compares(number: int) -> bool:
            return bool(device.ui.numbers) and device.ui.numbers[-1] == number

        async def user_types() -> str:
            return f"{device.ui.numbers[-1]:06d}"

        with log.active(), registry.active(), conversation.active():
            session = await open_session(
                radio,
                auth,
                factory.trust,
                found=found,
                confirm_number=user_compares,
                enter_passkey=user_types,
            )
            try:
                host_trust = host_identity_store(directory) if variant == PEER else None
                await provision(
                    session,
                    wifi=_NamedNetwork() if named else _FirstNetwork(),
                    zone=ZonePlan(hub.enroller, OWNER) if variant == ZONE else None,
                    peer=PeerPlan(host_trust) if host_trust is not None else None,
                )
                committed_at = len(link.pdus)
                spoken = list(conversation.events)
            finally:
                await session.close()
        await device.runtime.service.drain()
        records = device.runtime.store.load()
        if (mb.membership_of(records) is not None) != (variant == ZONE):
            raise RuntimeError(f"{mode.label}/{variant}: zone membership not as enrolled")
        return Trace(
            mode.label
            + (" (known device)" if known else "")
            + ("" if named else " (network from a scan)"),
            variant,
            mtu,
            ll_payload,
            list(link.pdus[:committed_at]),
            committed_at,
            log.plaintexts,
            registry.statements,
            registry.transactions,
            spoken,
        )
    finally:
        await device.close()
        link.close()


# ------------------------------------------------------------------ what the PDUs carry


@dataclass
class Message:
    """One session message reassembled from frames."""

    up: bool
    raw: bytes
    #: Indices of the PDUs that carried its frames.
    pdus: list[int]
    label: str = ""
    bytes_by: dict[str, int] = field(default_factory=dict)


def certificate_bytes(value: object, depth: int = 0) -> int:
    """DER X.509 certificates anywhere in a CBOR value (also inside nested CBOR)."""
    if depth > 8:
        return 0
    if isinstance(value, bytes):
        if len(value) > 100 and value[0] == 0x30:
            with contextlib.suppress(ValueError):
                x509.load_der_x509_certificate(value)
                return len(value)
        try:
            inner = cbor.loads(value, max_size=1 << 20)
        except Exception:
            return 0
        return certificate_bytes(inner, depth + 1)
    if isinstance(value, list | tuple):
        return sum(certificate_bytes(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return sum(certificate_bytes(v, depth + 1) for v in value.values())
    return 0


def _endpoint_category(name: str) -> str:
    return WIFI if name.startswith("wifi") else OTHER


def classify(message: Message, plaintexts: dict[bytes, bytes], endpoints: dict[int, str]) -> None:
    """Fill ``label`` and ``bytes_by`` (summing to the message's length)."""
    from bleprov.core.enrolment import messages as em
    from bleprov.core.session import messages as sm

    raw = message.raw
    side = "host" if message.up else "device"
    try:
        session_message = sm.decode(raw)
    except Exception:
        message.label, message.bytes_by = f"unreadable ({side})", {OTHER: len(raw)}
        return
    if not isinstance(session_message, sm.Secure):
        kind = type(session_message).__name__.upper()
        certs = certificate_bytes(cbor.loads(raw, max_size=1 << 20))
        message.label = f"{kind} ({side})" + (f", certificates {certs} B" if certs else "")
        message.bytes_by = {CERTS: certs, HANDSHAKE: len(raw) - certs}
        return
    plaintext = plaintexts.get(session_message.ciphertext)
    if plaintext is None:
        message.label, message.bytes_by = f"SECURE record ({side}), unclassified", {OTHER: len(raw)}
        return
    by = {FRAMING: len(raw) - len(plaintext)}
    inner = sm.decode_inner(plaintext)
    body = inner.body if isinstance(inner.body, bytes) else b""
    by[FRAMING] += len(plaintext) - len(body)
    what = inner.kind.name
    category = OTHER
    if inner.kind in (sm.InnerKind.ATTESTATION, sm.InnerKind.CONFIRMED):
        category = HANDSHAKE
    elif inner.kind is sm.InnerKind.APPLICATION:
        try:
            app = em.decode(body)
        except Exception:
            app = None
        if isinstance(app, em.Request):
            endpoints[app.id] = app.endpoint
            what, category = f"request {app.endpoint}", _endpoint_category(app.endpoint)
        elif isinstance(app, em.Response):
            name = endpoints.get(app.id, "?")
            what, category = f"response {name}", _endpoint_category(name)
        elif isinstance(app, em.Notification):
            what, category = f"notification {app.topic}", _endpoint_category(app.topic)
    certs = certificate_bytes(body)
    by[CERTS] = certs
    by[category] = by.get(category, 0) + len(body) - certs
    message.label = f"SECURE {what} ({side})" + (f", certificates {certs} B" if certs else "")
    message.bytes_by = by


def frame_header(frame: bytes) -> tuple[int, str]:
    """(header bytes, description) of one of our frames (docs/protocol.md, Framing)."""
    kind, first = frame[0] >> 6, bool(frame[0] & 0x20)
    if kind == FrameKind.DATA:
        seq = frame[1] if len(frame) > 1 else -1
        if first and len(frame) >= 5:
            total = int.from_bytes(frame[2:5], "big")
            return 5, f"DATA seq {seq}, first of {total} B"
        return 2, f"DATA seq {seq}"
    names = {FrameKind.CREDIT: "CREDIT", FrameKind.OPEN: "OPEN", FrameKind.RESET: "RESET"}
    return len(frame), names.get(FrameKind(kind), "?")


def reassemble(trace: Trace) -> tuple[list[Message], dict[int, list[int]]]:
    """Session messages from the frames, and for each PDU the messages it carries."""
    messages: list[Message] = []
    carried: dict[int, list[int]] = {}
    building: dict[bool, tuple[Message, int] | None] = {True: None, False: None}
    endpoints: dict[int, str] = {}
    for pdu in trace.pdus:
        frame = pdu.frame
        if frame is None or frame[0] >> 6 != FrameKind.DATA:
            continue
        header, _ = frame_header(frame)
        current = building[pdu.up]
        if frame[0] & 0x20:
            total = int.from_bytes(frame[2:5], "big")
            current = (Message(pdu.up, b"", []), total)
            messages.append(current[0])
        if current is None:
            continue
        message, total = current
        message.raw += frame[header:]
        message.pdus.append(pdu.index)
        carried.setdefault(pdu.index, []).append(messages.index(message))
        if len(message.raw) >= total:
            classify(message, trace.plaintexts, endpoints)
            building[pdu.up] = None
        else:
            building[pdu.up] = (message, total)
    return messages, carried


# ------------------------------------------------------------------ the link model


@dataclass(frozen=True)
class LinkModel:
    """Connection events every ``interval_ms``; each direction carries at most
    ``packets_per_event`` LL data packets of ``ll_payload`` bytes per event."""

    interval_ms: float = 30.0
    packets_per_event: int = 6
    ll_payload: int = LL_PAYLOAD_DLE


def schedule(pdus: list[TracedPdu], model: LinkModel) -> list[int]:
    """The connection event in which each PDU's last LL packet goes.

    Event 0 is the first connection event (connection-complete). A PDU goes no earlier
    than the event after the one that delivered its cause (a host cannot answer in the
    event that brought the request: it goes up over HCI and back), and after the PDUs
    its side sent before it; PDUs of one side share events up to the packet bound, a
    PDU longer than what is left spills into the next events.
    """
    events: list[int] = []
    cursor = {True: (0, 0), False: (0, 0)}
    for pdu in pdus:
        earliest = 0 if pdu.cause is None else events[pdu.cause] + 1
        event, used = cursor[pdu.up]
        if event < earliest:
            event, used = earliest, 0
        remaining = ll_packets_for(len(pdu.data), model.ll_payload)
        while remaining > model.packets_per_event - used:
            remaining -= model.packets_per_event - used
            event, used = event + 1, 0
        used += remaining
        cursor[pdu.up] = (event, used)
        events.append(event)
    return events


# ------------------------------------------------------------------ what one trace cost


@dataclass
class Cost:
    """One enrolment's figures, derived from its PDUs."""

    mode: str
    variant: str
    mtu: int
    pdus: int
    setup_round_trips: int
    att_round_trips: int
    flights: int
    air_bytes: int
    bytes_by: dict[str, int]
    #: Connection-complete -> the host has the commit's answer, and -> the first frame.
    seconds: float
    setup_seconds: float
    model: LinkModel
    unclassified: int = 0
    registry_statements: int = 0
    registry_transactions: int = 0


def round_trips(pdus: list[TracedPdu], before: int | None = None) -> int:
    """ATT PDUs that wait for an answer (requests, indications), answered, begun before
    PDU ``before``."""
    waits = [p for p in pdus if p.opcode in ATT_WAITS]
    return sum(1 for p in waits if before is None or p.index < before)


def flights_of(directions: list[bool]) -> int:
    """Runs of host messages (True) each followed by a device message (False)."""
    count, host_run = 0, False
    for up in directions:
        if up:
            host_run = True
        elif host_run:
            count, host_run = count + 1, False
    return count


def flights(messages: list[Message]) -> int:
    """Protocol flights: runs of host messages, pipelined ones together, each answered by
    the device (a host run with no answer, the CLOSE after the commit, is no flight)."""
    return flights_of([m.up for m in sorted(messages, key=lambda m: m.pdus[0])])


def first_frame(pdus: list[TracedPdu]) -> int | None:
    return next((p.index for p in pdus if p.up and p.frame is not None), None)


def analyse(trace: Trace, model: LinkModel | None = None) -> Cost:
    model = model or LinkModel(ll_payload=trace.ll_payload)
    pdus = trace.pdus
    messages, _ = reassemble(trace)
    start = first_frame(pdus)
    by = dict.fromkeys(CATEGORIES, 0)
    in_messages = 0
    for message in messages:
        if not message.bytes_by:
            continue  # not complete before the commit's answer: its bytes stay framing
        for category, size in message.bytes_by.items():
            by[category] += size
        in_messages += len(message.raw)
    total = 0
    for pdu in pdus:
        air = air_bytes_for(len(pdu.data), model.ll_payload)
        total += air
        if pdu.frame is None and (start is None or pdu.index < start):
            by[SETUP] += air
        else:
            by[FRAMING] += air
    # Message bytes were counted in the PDUs' air bytes too: keep them only once.
    by[FRAMING] -= in_messages
    events = schedule(pdus, model)
    device_frames = [p.index for p in pdus if not p.up and p.frame is not None]
    end = events[device_frames[-1]] if device_frames else 0
    setup_end = events[start] if start is not None else end
    unclassified = sum(len(m.raw) for m in messages if "unclassified" in m.label)
    return Cost(
        trace.mode,
        trace.variant,
        trace.mtu,
        len(pdus),
        round_trips(pdus, start),
        round_trips(pdus),
        flights_of(trace.conversation) if trace.conversation else flights(messages),
        total,
        by,
        end * model.interval_ms / 1000,
        setup_end * model.interval_ms / 1000,
        model,
        unclassified,
        trace.registry_statements,
        trace.registry_transactions,
    )


__all__ = [
    "CATEGORIES",
    "LL_PACKET_OVERHEAD",
    "Cost",
    "LinkModel",
    "Message",
    "Trace",
    "TracedPdu",
    "TracingLink",
    "analyse",
    "reassemble",
    "schedule",
    "trace_enrolment",
]
