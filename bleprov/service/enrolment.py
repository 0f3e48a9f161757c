"""Runs the enrolment state machines against real effects.

Device: :class:`EnrolmentService` is the :class:`~bleprov.session.SecureApplication`
of a device. It feeds each authenticated message to a
:class:`~bleprov.core.enrolment.device.DeviceEnrolment` and carries out the effects it
asks for with a :class:`~bleprov.network.base.NetworkBackend` and a store.

Host: :class:`EnrolmentClient` speaks the same protocol over a secure host link.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bleprov.core import membership
from bleprov.core.crypto.spake2plus import VerifierRecord
from bleprov.core.enrolment import device as enr
from bleprov.core.enrolment.messages import (
    Endpoint,
    EnrolmentError,
    Notification,
    Request,
    Response,
    Status,
    Topic,
    WifiState,
    WifiStatus,
    credentials_body,
    decode,
    encode,
    parse_scan_entry,
    parse_status,
)
from bleprov.core.errors import BleprovError, MalformedData
from bleprov.core.peer import PeerIdentity, PeerPin
from bleprov.core.receipt import (
    MAX_ROLLED_BACK,
    RECORD_ENROLMENT,
    EnrolmentReceipt,
    decode_record,
)
from bleprov.core.wifi import ScanResult, WifiCredentials
from bleprov.core.zone import MemberCertificate
from bleprov.network.base import NetworkBackend

logger = logging.getLogger(__name__)


class CommitStore(Protocol):
    """Where committed records go: one atomic write for all of them."""

    def load(self) -> dict[str, bytes]: ...

    def update(self, changes: dict[str, bytes | None]) -> None: ...


#: Committed records the enrolment machine and its extensions may read (never Wi-Fi or
#: factory secrets): the trust records, and the last enrolment's ID and receipt verifier.
TRUST_RECORDS = (
    membership.RECORD_ZONE,
    membership.RECORD_OWNER,
    membership.RECORD_PEER_IDENTITY,
    membership.RECORD_PEER_PINS,
    RECORD_ENROLMENT,
)


class MemoryCommitStore:
    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.writes = 0

    def load(self) -> dict[str, bytes]:
        return dict(self.records)

    def update(self, changes: dict[str, bytes | None]) -> None:
        new = dict(self.records)
        for key, value in changes.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
        self.records = new
        self.writes += 1


class Channel(Protocol):
    """What the service needs of a secure device channel."""

    @property
    def authority(self) -> enr.Authority: ...

    def send(self, data: bytes) -> None: ...

    def channel_binding(self, label: bytes) -> bytes: ...

    def exporter(self, label: bytes) -> bytes: ...


class EnrolmentService:
    """The device's enrolment application, one machine per authenticated session."""

    def __init__(
        self,
        *,
        network: NetworkBackend,
        store: CommitStore,
        config: Callable[[], enr.DeviceEnrolmentConfig],
        registry: enr.EndpointRegistry | None = None,
        extensions: Callable[[], tuple[enr.Extension, ...]] = membership.device_extensions,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.network = network
        self.extensions = extensions
        self.clock = clock
        self.store = store
        self.config = config
        self.registry = registry or enr.EndpointRegistry()
        self.machines: dict[int, enr.DeviceEnrolment] = {}
        self._channels: dict[int, Channel] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._joins: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self.committed: list[dict[str, bytes | None]] = []
        #: Receipt verifiers of the last sessions that ended without committing (RAM
        #: only): their hosts may still ask what became of them (bleprov.core.receipt).
        self.rolled_back: collections.deque[tuple[bytes, VerifierRecord]] = collections.deque(
            maxlen=MAX_ROLLED_BACK
        )
        #: Called after a session's records were committed (the runtime closes the
        #: commissioning window a window session used).
        self.after_commit: Callable[[Channel], None] = lambda channel: None

    def now(self) -> float:
        return self._loop.time()

    # --------------------------------------------------- SecureApplication API

    def opened(self, channel: Channel) -> None:
        key = id(channel)
        stored = self.store.load()
        config = dataclasses.replace(
            self.config(),
            channel_binding=channel.channel_binding,
            exporter=channel.exporter,
            wall_clock=self.clock(),
            committed={name: stored[name] for name in TRUST_RECORDS if name in stored},
            extensions=self.extensions(),
            authority=channel.authority,
        )
        machine = enr.DeviceEnrolment(config, registry=self.registry, now=self.now())
        self.machines[key] = machine
        self._channels[key] = channel
        # Pushed unasked, right behind the attestation: the handshake's answer flight.
        self._run(key, machine.start(self.now()))

    def received(self, channel: Channel, data: bytes) -> None:
        machine = self.machines.get(id(channel))
        if machine is not None:
            self._run(id(channel), machine.receive(data, self.now()))

    def closed(self, channel: Channel, error: BleprovError | None) -> None:
        key = id(channel)
        machine = self.machines.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if machine is not None:
            self._run(key, machine.connection_lost(self.now()), machine=machine)
            self._remember(machine.receipt, committed=machine.committed)
        self._channels.pop(key, None)

    def _remember(self, receipt: EnrolmentReceipt | None, *, committed: bool) -> None:
        """A session ended without committing (yet: a commit under way lands in the
        store, which answers for it): keep its receipt, so its host can learn that."""
        if receipt is not None and not committed:
            self.rolled_back.append((receipt.user, receipt.verifier()))

    def receipt_records(self) -> dict[bytes, VerifierRecord]:
        """The receipts a receipt session may prove, by prover identity: the committed
        enrolment's, and those of the sessions rolled back since the device started."""
        records = dict(self.rolled_back)
        raw = self.store.load().get(RECORD_ENROLMENT)
        if raw is not None:
            try:
                committed = decode_record(raw)
            except MalformedData:
                logger.error("the enrolment record is unreadable: its receipt is not answered")
            else:
                records[committed.user] = committed.verifier
        return records

    async def drain(self) -> None:
        """Wait for the effects in flight (tests, shutdown), and for the effects those
        feed back into the machine."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            # Yield once: a task that has just finished leaves the set in its done-callback,
            # which only the loop runs, and since Python 3.12 awaiting a gather of finished
            # tasks does not yield (without this, drain spun for ever on such a task).
            await asyncio.sleep(0)

    # -------------------------------------------------------------- effects

    def _run(
        self, key: int, effects: list[enr.Effect], machine: enr.DeviceEnrolment | None = None
    ) -> None:
        machine = machine or self.machines.get(key)
        for effect in effects:
            if isinstance(effect, enr.Send):
                channel = self._channels.get(key)
                if channel is not None:
                    try:
                        channel.send(effect.data)
                    except BleprovError as exc:
                        logger.info("could not send (session ending): %s", exc)
            elif isinstance(effect, enr.StartScan):
                self._spawn(key, self._scan(effect.refresh))
            elif isinstance(effect, enr.StartJoin):
                self._joins[key] = self._spawn(key, self._join(effect.credentials, effect.timeout))
            elif isinstance(effect, enr.Commit):
                self._spawn(key, self._commit(effect.records, self._channels.get(key)))
            elif isinstance(effect, enr.Rollback):
                join = self._joins.pop(key, None)
                self._spawn(key, self._rollback(join))
        if machine is not None and key in self.machines:
            self._arm(key, machine)

    def _arm(self, key: int, machine: enr.DeviceEnrolment) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        deadline = machine.next_deadline()
        if deadline is not None:
            self._timers[key] = self._loop.call_at(
                deadline, lambda: self._run(key, machine.handle_timer(self.now()))
            )

    def _spawn(self, key: int, coro: Any) -> asyncio.Task[None]:
        async def run_and_feed() -> None:
            feed = await coro
            machine = self.machines.get(key)
            if feed is not None and machine is not None:
                self._run(key, feed(machine))

        task = self._loop.create_task(run_and_feed())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _scan(self, refresh: bool) -> Callable[[enr.DeviceEnrolment], list[enr.Effect]]:
        # A cached scan serves at once; a fresh one only when asked for, or when nothing
        # has been scanned yet (the background scan is still running at start-up).
        results = [] if refresh else self.network.cached_scan()
        if not results:
            results = await self.network.rescan()
        return lambda m: m.scan_done(results, self.now())

    async def _join(
        self, credentials: WifiCredentials, timeout: float
    ) -> Callable[[enr.DeviceEnrolment], list[enr.Effect]]:
        outcome = await self.network.try_join(credentials, timeout=timeout)
        return lambda m: m.join_done(outcome, self.now())

    async def _commit(
        self, records: dict[str, bytes | None], channel: Channel | None
    ) -> Callable[[enr.DeviceEnrolment], list[enr.Effect]]:
        error: str | None = None
        try:
            # The store is the source of truth: one atomic write; the network's own
            # persistence follows (a crash between the two is repaired at start-up by
            # re-applying the stored credentials).
            # The session's attempt counter (reset by its success) joins that write.
            settle = getattr(channel, "settle_attempts_in", None)
            counters, stored = await settle(self.store) if settle is not None else ({}, None)
            self.store.update({**records, **counters})
            if stored is not None:
                stored()
            self.committed.append(records)
            if channel is not None:
                self.after_commit(channel)
            if "wifi" in records:
                await self.network.commit()
        except BleprovError as exc:
            error = str(exc)
        return lambda m: m.commit_done(error, self.now())

    async def _rollback(self, join: asyncio.Task[None] | None) -> None:
        if join is not None and not join.done():
            join.cancel()  # stop a join in flight before undoing it
            await asyncio.gather(join, return_exceptions=True)
        await self.network.rollback()


# --------------------------------------------------------------------- host side


class HostChannel(Protocol):
    """What the client needs of a secure host link."""

    def send(self, data: bytes) -> None: ...

    async def receive(self, timeout: float | None = None) -> bytes: ...


class NoAnswer(EnrolmentError):
    """The device did not answer a request in time: whether it acted on it is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(Status.INTERNAL, message)


def _ok(response: Response) -> dict[str, Any]:
    """The body of an answer with status ok; EnrolmentError with its status otherwise."""
    if response.status != Status.OK:
        try:
            status = Status(response.status)
        except ValueError:
            status = Status.INTERNAL
        raise EnrolmentError(status, str(response.body.get("error", "refused")))
    return response.body


def ok_body(response: Response) -> dict[str, Any]:
    """:func:`_ok`, for callers of :meth:`EnrolmentClient.answer`."""
    return _ok(response)


def _status_name(status: int) -> str:
    try:
        return Status(status).name.lower()
    except ValueError:
        return f"status {status}"


class EnrolmentClient:
    """Requests over a secure session; notifications routed by topic."""

    def __init__(self, link: HostChannel, *, timeout: float = 60.0) -> None:
        self.link = link
        self.timeout = timeout
        self._next_id = 1
        self._responses: dict[int, Response] = {}
        self._notifications: dict[str, list[dict[str, Any]]] = {}
        #: The device's ``session`` notification (pushed once, behind the attestation).
        self._session: dict[str, Any] | None = None
        self.requests = 0
        self.messages_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    async def _pump_until(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoAnswer("the device did not answer in time")
            raw = await self.link.receive(remaining)
            self.messages_received += 1
            self.bytes_received += len(raw)
            message = decode(raw)
            if isinstance(message, Response):
                logger.debug(
                    "enrolment response %d: %s, %d bytes",
                    message.id,
                    _status_name(message.status),
                    len(raw),
                )
                self._responses[message.id] = message
            elif isinstance(message, Notification):
                logger.debug("enrolment notification %s: %d bytes", message.topic, len(raw))
                # "error" reports a message the device could not even read (so no id):
                # kept for the caller, it does not fail the request being waited for.
                self._notifications.setdefault(message.topic, []).append(message.body)
            else:
                raise MalformedData("devices do not send requests")

    def _send(self, endpoint: str, body: dict[str, Any]) -> int:
        request_id = self._next_id
        self._next_id += 1
        data = encode(Request(request_id, endpoint, body))
        # The endpoint and the size only: a body may hold a Wi-Fi password.
        logger.debug("enrolment request %d %s: %d bytes", request_id, endpoint, len(data))
        self.requests += 1
        self.bytes_sent += len(data)
        self.link.send(data)
        return request_id

    async def request(self, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = self._send(endpoint, body or {})
        await self._pump_until(lambda: request_id in self._responses)
        return _ok(self._responses.pop(request_id))

    def send_all(self, requests: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Send ``requests`` in one flight, without waiting (the device handles and
        answers them in order); their ids, for :meth:`answer`."""
        return [self._send(endpoint, body) for endpoint, body in requests]

    async def answer(self, request_id: int) -> Response:
        """The device's answer to a request sent by :meth:`send_all`, whatever its status
        (NoAnswer if it does not come in time)."""
        await self._pump_until(lambda: request_id in self._responses)
        return self._responses.pop(request_id)

    async def session_notice(self) -> dict[str, Any]:
        """The ``session`` notification the device pushes behind its attestation: the
        session's authority, and what it offers unasked (the zone CSR)."""
        if self._session is None:
            await self._pump_until(lambda: bool(self._notifications.get(Topic.SESSION)))
            self._session = self._notifications[Topic.SESSION].pop(0)
        return self._session

    def statuses(self) -> list[WifiStatus]:
        """The Wi-Fi status notifications received so far (taken)."""
        return [parse_status(body) for body in self._notifications.pop(Topic.WIFI_STATUS, [])]

    def _take(self, topic: str) -> dict[str, Any] | None:
        queue = self._notifications.get(topic)
        return queue.pop(0) if queue else None

    async def info(self) -> dict[str, Any]:
        return await self.request(Endpoint.INFO)

    async def scan(self, *, refresh: bool = False) -> list[ScanResult]:
        """Every access point the device sees, streamed in full."""
        self._notifications.pop(Topic.WIFI_SCAN, None)
        body = await self.request(Endpoint.WIFI_SCAN, {"refresh": refresh})
        chunks = self._notifications.pop(Topic.WIFI_SCAN, [])
        if not chunks or not chunks[-1].get("last"):
            raise MalformedData("scan results ended early")
        results = [parse_scan_entry(e) for c in chunks for e in c.get("entries", [])]
        if len(results) != body.get("count"):
            raise MalformedData("scan result count does not match")
        return results

    async def set_wifi(self, credentials: WifiCredentials) -> WifiStatus:
        """Stage credentials; wait for the pushed outcome (connected or failed)."""
        self._notifications.pop(Topic.WIFI_STATUS, None)
        await self.request(Endpoint.WIFI_SET, credentials_body(credentials))
        while True:
            status = self._take(Topic.WIFI_STATUS)
            if status is None:
                await self._pump_until(lambda: bool(self._notifications.get(Topic.WIFI_STATUS)))
                continue
            parsed = parse_status(status)
            if parsed.state in (WifiState.CONNECTED, WifiState.FAILED):
                return parsed

    @property
    def device_errors(self) -> list[dict[str, Any]]:
        """Errors the device reported for unreadable messages (status, text)."""
        return self._notifications.get("error", [])

    async def extend_failsafe(self, seconds: float) -> float:
        body = await self.request(Endpoint.FAILSAFE, {"seconds": seconds})
        return float(body["expires_in"])

    async def commit(self) -> None:
        await self.request(Endpoint.COMMIT)

    async def zone_key(self) -> tuple[bytes, bytes]:
        """The zone key the device made for this session and its proof of possession,
        bound to the session: pushed in the handshake's answer flight (no round trip),
        else asked for (``zone/key``, which makes a new one)."""
        pushed = await self.session_notice()
        if "zone_key" in pushed:
            body = {"key": pushed.pop("zone_key"), "pop": pushed.pop("zone_pop", None)}
            return membership.parse_key_response(body)
        return membership.parse_key_response(await self.request(membership.ZONE_KEY))

    async def zone_install(self, certificate: MemberCertificate) -> dict[str, Any]:
        """Stage the issued certificate, its chain and the zone root on the device."""
        return await self.request(membership.ZONE_INSTALL, membership.install_body(certificate))

    async def peer_bind(self, identity: PeerIdentity) -> PeerPin:
        """Stage our pin on the device; returns the device's identity to pin here."""
        body = await self.request(membership.PEER_BIND, membership.bind_body(identity))
        return membership.parse_bind_response(body)

    async def abort(self) -> None:
        await self.request(Endpoint.ABORT)

    async def enrolment_status(self, enrolment_id: bytes) -> bool:
        """Whether the enrolment ``enrolment_id`` is the one the device committed last."""
        body = await self.request(Endpoint.ENROLMENT_STATUS, {"id": enrolment_id})
        committed = body.get("committed")
        if not isinstance(committed, bool):
            raise MalformedData("field 'committed' must be a boolean")
        return committed


__all__ = [
    "CommitStore",
    "EnrolmentClient",
    "EnrolmentService",
    "MemoryCommitStore",
    "NoAnswer",
]
