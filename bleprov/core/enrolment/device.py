"""Device role of enrolment, sans-IO: requests in, responses, notifications and effects out.

The machine never touches the network or the disk. It asks its adapter to act through
effects (:class:`StartScan`, :class:`StartJoin`, :class:`Commit`, :class:`Rollback`) and
is told the results (:meth:`scan_done`, :meth:`join_done`, :meth:`commit_done`).

Extensions (zone membership, peer binding: :mod:`bleprov.core.membership`) add endpoints
whose changes are store records; they are staged like the Wi-Fi credentials and written in
the same atomic COMMIT, so a device ends a session with all of them or none.

Who may do what (docs/security.md, "Ownership"): every session carries an
:class:`Authority`, decided from the credential that authenticated it and whether the
device has an owner. A factory credential (label, code, ...) on a device with no owner is
the installer and may do everything; on an owned device it may only read ``info``. A
session authenticated by the owner's commissioning window may bind itself as an admin, or
take the device over (handover), as the owner chose. The machine enforces the rights of
its own endpoints and asks each extension about its own.

A lost answer to COMMIT is not guessed at: every COMMIT also writes which enrolment it
was (its ID) and the verifier of its receipt, a secret of the session's two ends
(:mod:`bleprov.core.receipt`), and ``enrolment/status`` says whether an ID is the
enrolment committed last; its host asks that in a new session (docs/protocol.md,
"Enrolment outcome").

Fail-safe, as Matter's: everything the host sends is staged. The first staging request
arms a timer (default 120 s, extendable by the host up to 900 s). Only COMMIT makes
the staged state durable, in one atomic store write, and only after the credentials were
proven by joining (where the backend can). A lost connection, a fatal error or the timer
expiring rolls the device back to its prior state; a join that fails can be retried with
new credentials in the same session.

Pipelining (docs/protocol.md section 11): a host may send ``wifi/set``, the trust
requests and COMMIT in one flight. Requests are handled and answered in the order they
came; a COMMIT that arrives while its credentials are joining is held until the join is
proven (then written) or fails (then refused, ``not proven``), and the requests behind a
held or written commit wait for its answer. A COMMIT after a request refused since the
last commit's answer is refused: a pipeline never commits half of what its host sent.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from bleprov.core import cbor
from bleprov.core.enrolment.messages import (
    SCAN_CHUNK,
    Endpoint,
    EnrolmentError,
    Notification,
    Request,
    Response,
    Status,
    Topic,
    WifiState,
    credentials_body,
    decode,
    encode,
    parse_credentials,
    scan_entry,
    status_body,
)
from bleprov.core.errors import LocalProtocolError, MalformedData
from bleprov.core.receipt import (
    ENROLMENT_ID_SIZE,
    RECORD_ENROLMENT,
    EnrolmentReceipt,
    decode_record,
    encode_record,
)
from bleprov.core.wifi import Connected, JoinOutcome, ScanResult, WifiCredentials
from bleprov.core.window import WindowPurpose

DEFAULT_FAILSAFE: Final = 120.0
MAX_FAILSAFE: Final = 900.0
DEFAULT_JOIN_ATTEMPTS: Final = 5
DEFAULT_JOIN_TIMEOUT: Final = 30.0
#: Requests that may wait behind a commit (held for its join, or being written); one more
#: is answered busy at once (docs/protocol.md section 11, "Pipelining").
MAX_WAITING: Final = 8

VendorHandler = Callable[[dict[str, Any]], dict[str, Any]]


class Authority(enum.Enum):
    """What a session may change on this device (docs/security.md, "Ownership")."""

    #: A factory credential on a device with no owner: everything (first enrolment).
    INSTALLER = "installer"
    #: The owner's window, purpose handover: everything; the commit replaces the owner,
    #: admins, pins and zone membership with what this session staged.
    HANDOVER = "handover"
    #: The owner's window, purpose admin: bind this host as an additional admin only.
    ADMIN = "admin"
    #: A factory credential on an owned device: the label is dead; ``info`` only.
    OBSERVER = "observer"
    #: An enrolment's host with its receipt (bleprov.core.receipt), asking what became
    #: of it: ``info`` and ``enrolment/status`` only.
    RECEIPT = "receipt"

    @classmethod
    def of(cls, *, owned: bool, window: WindowPurpose | None, receipt: bool = False) -> Authority:
        """The authority of a session: a receipt's, else by its window's purpose, else
        by ownership."""
        if receipt:
            return cls.RECEIPT
        if window is WindowPurpose.HANDOVER:
            return cls.HANDOVER
        if window is WindowPurpose.ADMIN:
            return cls.ADMIN
        return cls.OBSERVER if owned else cls.INSTALLER


#: Built-in endpoints and who may call them (extensions answer for their own).
_RIGHTS: Final[dict[str, frozenset[Authority]]] = {
    Endpoint.INFO: frozenset(Authority),
    Endpoint.WIFI_SCAN: frozenset({Authority.INSTALLER, Authority.HANDOVER}),
    Endpoint.WIFI_SET: frozenset({Authority.INSTALLER, Authority.HANDOVER}),
    Endpoint.FAILSAFE: frozenset({Authority.INSTALLER, Authority.HANDOVER, Authority.ADMIN}),
    Endpoint.COMMIT: frozenset({Authority.INSTALLER, Authority.HANDOVER, Authority.ADMIN}),
    Endpoint.ABORT: frozenset({Authority.INSTALLER, Authority.HANDOVER, Authority.ADMIN}),
    Endpoint.ENROLMENT_STATUS: frozenset(Authority) - {Authority.OBSERVER},
}
#: Authorities that change nothing: no extension serves them.
_READ_ONLY: Final = frozenset({Authority.OBSERVER, Authority.RECEIPT})
#: Vendor endpoints change product configuration: installer or new owner only.
_VENDOR_RIGHTS: Final = frozenset({Authority.INSTALLER, Authority.HANDOVER})


def _not_allowed(endpoint: str, authority: Authority) -> EnrolmentError:
    if authority is Authority.OBSERVER:
        return EnrolmentError(
            Status.NOT_ALLOWED,
            f"{endpoint}: this device has an owner, and its factory label no longer "
            "changes anything; ask the owner to open a window, or reset the device by hand",
        )
    if authority is Authority.RECEIPT:
        return EnrolmentError(
            Status.NOT_ALLOWED,
            f"{endpoint}: a receipt session may only ask what became of its enrolment",
        )
    return EnrolmentError(
        Status.NOT_ALLOWED, f"{endpoint}: not allowed in a window opened for {authority.value}"
    )


class WifiStage(enum.Enum):
    """Where this session's Wi-Fi credentials are: one state instead of separate flags
    (staged, joining, proven, network touched), changed only through :data:`_WIFI_MOVES`."""

    #: Nothing staged: a rollback leaves the network alone.
    NONE = "none"
    #: Credentials staged and not proven: the backend cannot prove them, or their join
    #: failed (a rollback undoes that join).
    STAGED = "staged"
    #: A join is proving the staged credentials.
    JOINING = "joining"
    #: The staged credentials joined: COMMIT may keep them.
    PROVEN = "proven"


class WifiEvent(enum.Enum):
    """What moves :class:`WifiStage`."""

    #: wifi/set staged new credentials.
    STAGE = "stage"
    #: The adapter was asked to join the staged credentials.
    JOIN = "join"
    JOINED = "joined"
    JOIN_FAILED = "join failed"
    #: COMMIT's store write succeeded: the staged credentials are the device's now.
    COMMITTED = "committed"
    #: ABORT, the fail-safe, a lost session or a failed commit undid the staging.
    ROLLED_BACK = "rolled back"


#: The Wi-Fi stage's transition table, in h11's style: a (stage, event) pair missing here
#: is a bug in this machine (requests that cannot move the stage are refused before).
_WIFI_MOVES: Final[dict[tuple[WifiStage, WifiEvent], WifiStage]] = {
    # wifi/set while a join runs is refused (BUSY) before it reaches the table.
    (WifiStage.NONE, WifiEvent.STAGE): WifiStage.STAGED,
    (WifiStage.STAGED, WifiEvent.STAGE): WifiStage.STAGED,
    (WifiStage.PROVEN, WifiEvent.STAGE): WifiStage.STAGED,
    (WifiStage.STAGED, WifiEvent.JOIN): WifiStage.JOINING,
    (WifiStage.JOINING, WifiEvent.JOINED): WifiStage.PROVEN,
    (WifiStage.JOINING, WifiEvent.JOIN_FAILED): WifiStage.STAGED,
    (WifiStage.NONE, WifiEvent.COMMITTED): WifiStage.NONE,
    (WifiStage.STAGED, WifiEvent.COMMITTED): WifiStage.NONE,
    (WifiStage.PROVEN, WifiEvent.COMMITTED): WifiStage.NONE,
    # A wifi/set sent while the commit was written: its join still reports, and its
    # credentials (dropped by the commit) can no longer be committed.
    (WifiStage.JOINING, WifiEvent.COMMITTED): WifiStage.JOINING,
    **{(stage, WifiEvent.ROLLED_BACK): WifiStage.NONE for stage in WifiStage},
}


class EndpointRegistry:
    """Product-specific endpoints (vendor data) without touching the core."""

    def __init__(self) -> None:
        self._handlers: dict[str, VendorHandler] = {}

    def register(self, name: str, handler: VendorHandler) -> None:
        """``name`` must be ``vendor/<something>``: core names stay reserved."""
        if not name.startswith("vendor/") or len(name) > 64 or name in self._handlers:
            raise ValueError("vendor endpoints are named vendor/<name>, once each")
        self._handlers[name] = handler

    def get(self, name: str) -> VendorHandler | None:
        return self._handlers.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)


@dataclass(frozen=True, repr=False)
class SessionContext:
    """What an extension may know of the session it serves."""

    device_id: str
    #: This session's channel binding for a label (:meth:`ChannelHolder.channel_binding`);
    #: None where the transport offers none.
    channel_binding: Callable[[bytes], bytes] | None
    #: The device's wall clock at session start (None: not trustworthy, e.g. no RTC yet).
    wall_clock: datetime | None
    #: The committed store records an extension reads (never the Wi-Fi secrets).
    committed: Mapping[str, bytes]
    #: What this session has staged so far (extensions build on their own earlier steps).
    staged: Mapping[str, bytes | None]
    #: What this session may change (its credential and the device's ownership).
    authority: Authority = Authority.INSTALLER

    def __repr__(self) -> str:
        return f"SessionContext(device_id={self.device_id!r}, staged={sorted(self.staged)})"


@dataclass(frozen=True, repr=False)
class Staged:
    """An extension's answer: the response body, and the records it stages (None = delete)."""

    body: dict[str, Any]
    records: dict[str, bytes | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Staged(records={sorted(self.records)})"


class Extension(Protocol):
    """A core feature with its own endpoints, staged and committed with the session."""

    @property
    def endpoints(self) -> tuple[str, ...]: ...

    @property
    def capabilities(self) -> tuple[str, ...]: ...

    def allowed(self, endpoint: str, authority: Authority) -> bool:
        """Whether a session with ``authority`` may call ``endpoint`` at all."""
        ...

    def handle(self, endpoint: str, body: dict[str, Any], context: SessionContext) -> Staged:
        """Answer one request; raise EnrolmentError or MalformedData to refuse it."""
        ...

    def owns(self, committed: Mapping[str, bytes]) -> bool:
        """Whether the committed records give the device an owner (an installer's
        session is then only an observer: the factory label is dead)."""
        ...

    def finalise(self, context: SessionContext) -> dict[str, bytes | None]:
        """At COMMIT: more changes to write with the staged ones (a handover deletes the
        old owner's records), or EnrolmentError to refuse the commit."""
        ...

    def opened(self, context: SessionContext) -> dict[str, Any]:
        """At the session's start: fields of the ``session`` notification pushed unasked
        in the handshake's answer flight (the zone CSR, so that no round trip asks)."""
        ...


# --------------------------------------------------------------------- effects


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class StartScan:
    refresh: bool


@dataclass(frozen=True, repr=False)
class StartJoin:
    credentials: WifiCredentials
    timeout: float

    def __repr__(self) -> str:
        return f"StartJoin(ssid={self.credentials.ssid!r})"


@dataclass(frozen=True, repr=False)
class Commit:
    """Write these records in one atomic store update, then make the network durable."""

    records: dict[str, bytes | None]

    def __repr__(self) -> str:
        return f"Commit(records={sorted(self.records)})"


@dataclass(frozen=True)
class Rollback:
    """Undo every staged network change: back to the state before this session."""


Effect = Send | StartScan | StartJoin | Commit | Rollback


@dataclass
class DeviceEnrolmentConfig:
    device_id: str
    capabilities: list[str] = field(default_factory=lambda: ["wifi", "wifi-scan", "failsafe"])
    #: The backend can prove credentials by joining before commit.
    can_prove_join: bool = True
    join_attempts: int = DEFAULT_JOIN_ATTEMPTS
    join_timeout: float = DEFAULT_JOIN_TIMEOUT
    default_failsafe: float = DEFAULT_FAILSAFE
    #: Remote factory reset: allowed only to the bound owner (zone/peer layers decide).
    owner_authenticated: bool = False
    #: The session's channel binding by label (filled in by the session adapter).
    channel_binding: Callable[[bytes], bytes] | None = None
    #: The session's secret exporter by label (filled in by the session adapter).
    exporter: Callable[[bytes], bytes] | None = None
    wall_clock: datetime | None = None
    #: Committed records extensions read (zone membership, peer pins); no Wi-Fi secrets.
    committed: Mapping[str, bytes] = field(default_factory=dict)
    extensions: tuple[Extension, ...] = ()
    #: What this session may change (:meth:`Authority.of`); the session adapter sets it.
    authority: Authority = Authority.INSTALLER


class DeviceEnrolment:
    """One authenticated session's enrolment, device side."""

    def __init__(
        self,
        config: DeviceEnrolmentConfig,
        *,
        registry: EndpointRegistry | None = None,
        now: float,
    ) -> None:
        self.config = config
        self.registry = registry or EndpointRegistry()
        self._staged_wifi: WifiCredentials | None = None
        self._staged_records: dict[str, bytes | None] = {}
        self._extensions: dict[str, Extension] = {}
        for extension in config.extensions:
            for name in extension.endpoints:
                if name in self._extensions or name in Endpoint.__members__.values():
                    raise ValueError(f"endpoint {name!r} is claimed twice")
                self._extensions[name] = extension
        if config.authority is Authority.INSTALLER and any(
            extension.owns(config.committed) for extension in config.extensions
        ):
            # Whatever the adapter said: a factory credential never changes an owned device.
            config = dataclasses.replace(config, authority=Authority.OBSERVER)
            self.config = config
        #: This session's enrolment ID and receipt: written by its COMMIT, remembered
        #: by the adapter when it rolls back (None: a session that changes nothing).
        self.receipt: EnrolmentReceipt | None = None
        if (
            config.channel_binding is not None
            and config.exporter is not None
            and config.authority not in _READ_ONLY
        ):
            self.receipt = EnrolmentReceipt.of_session(config.channel_binding, config.exporter)
        self.wifi_stage = WifiStage.NONE
        self._scan_requests: list[int] = []
        #: The COMMIT request being written (its answer waits for :meth:`commit_done`).
        self._commit_request: int | None = None
        #: A COMMIT received while its Wi-Fi was joining: written once the join is proven,
        #: refused if it fails (its answer waits for :meth:`join_done`).
        self._held_commit: int | None = None
        #: Requests received behind a held or written commit, handled after its answer.
        self._waiting: list[Request] = []
        #: A request was refused since the last COMMIT was answered: a COMMIT now (sent
        #: in the same pipelined flight) must not commit the rest without it.
        self._refused_since_commit = False
        self._failsafe_deadline: float | None = None
        self._attempts_left = config.join_attempts
        #: This session's history, for its adapter: whether a COMMIT was written, how
        #: many times staged changes were rolled back.
        self.committed = False
        self.rolled_back = 0

    # ----------------------------------------------------------------- inputs

    def receive(self, raw: bytes, now: float) -> list[Effect]:
        """One APPLICATION record from the host. Malformed input gets a typed error
        response where an id can be recovered; the session survives either way."""
        try:
            message = decode(raw)
        except MalformedData as exc:
            return [self._notify_error(Status.BAD_REQUEST, str(exc))]
        if not isinstance(message, Request):
            return [self._notify_error(Status.BAD_REQUEST, "hosts send requests only")]
        if self._held_commit is not None or self._commit_request is not None:
            # Requests are handled and answered in order: this one waits for the commit.
            if len(self._waiting) >= MAX_WAITING:
                return [self._respond(message.id, Status.BUSY, {"error": "too many requests"})]
            self._waiting.append(message)
            return []
        return self._handle(message, now)

    def start(self, now: float) -> list[Effect]:
        """The session just opened: one ``session`` notification, sent right behind the
        attestation in the handshake's answer flight, with the session's authority and
        what the extensions push unasked (the zone CSR, so that no round trip asks)."""
        body: dict[str, Any] = {"authority": self.config.authority.value}
        if self.config.authority not in _READ_ONLY:
            context = self._context()
            for extension in self.config.extensions:
                body.update(extension.opened(context))
        return [Send(encode(Notification(Topic.SESSION, body)))]

    def _handle(self, request: Request, now: float) -> list[Effect]:
        commit = request.endpoint == Endpoint.COMMIT
        try:
            effects = self._dispatch(request, now)
        except (EnrolmentError, MalformedData) as exc:
            status = exc.status if isinstance(exc, EnrolmentError) else Status.BAD_REQUEST
            # A refused COMMIT is answered: the next pipeline starts afresh.
            self._refused_since_commit = not commit
            return [self._respond(request.id, status, {"error": str(exc)})]
        if commit and self._held_commit is None and self._commit_request is None:
            self._refused_since_commit = False
        return effects

    def _drain(self, now: float) -> list[Effect]:
        """Handle the requests that waited for a commit's answer, in order, until one of
        them is a commit that must wait in its turn."""
        effects: list[Effect] = []
        while self._waiting and self._held_commit is None and self._commit_request is None:
            effects += self._handle(self._waiting.pop(0), now)
        return effects

    def scan_done(self, results: list[ScanResult], now: float) -> list[Effect]:
        """Stream every result, in chunks, then answer each waiting scan request."""
        ordered = sorted(results, key=lambda r: -r.rssi)
        effects: list[Effect] = []
        chunks = [ordered[i : i + SCAN_CHUNK] for i in range(0, len(ordered), SCAN_CHUNK)]
        for index, chunk in enumerate(chunks or [[]]):
            body = {
                "seq": index,
                "last": index == max(len(chunks) - 1, 0),
                "entries": [scan_entry(r) for r in chunk],
            }
            effects.append(Send(encode(Notification(Topic.WIFI_SCAN, body))))
        for request_id in self._scan_requests:
            effects.append(self._respond(request_id, Status.OK, {"count": len(ordered)}))
        self._scan_requests.clear()
        return effects

    def join_done(self, outcome: JoinOutcome, now: float) -> list[Effect]:
        if self.wifi_stage is not WifiStage.JOINING:
            return []  # a join overtaken by a rollback: its result no longer matters
        if isinstance(outcome, Connected):
            self._move(WifiEvent.JOINED)
            body = status_body(
                WifiState.CONNECTED, outcome=outcome, attempts_left=self._attempts_left
            )
        else:
            self._move(WifiEvent.JOIN_FAILED)
            body = status_body(WifiState.FAILED, outcome=outcome, attempts_left=self._attempts_left)
        effects: list[Effect] = [Send(encode(Notification(Topic.WIFI_STATUS, body)))]
        held, self._held_commit = self._held_commit, None
        if held is not None:
            # The commit waited for this join: written now it is proven, refused if not
            # (the staging stays: new credentials and a new COMMIT may follow).
            self._refused_since_commit = False
            try:
                if not isinstance(outcome, Connected):
                    raise EnrolmentError(Status.NOT_PROVEN, "the staged credentials did not join")
                effects += self._start_commit(held)
            except EnrolmentError as exc:
                effects.append(self._respond(held, exc.status, {"error": str(exc)}))
            effects += self._drain(now)
        return effects

    def commit_done(self, error: str | None, now: float) -> list[Effect]:
        request_id, self._commit_request = self._commit_request, None
        if request_id is None:
            return []
        if error is not None:
            # The store write did not happen (it is atomic): roll the network back too.
            effects = [
                *self._rollback(),
                self._respond(request_id, Status.INTERNAL, {"error": error}),
            ]
            return effects + self._drain(now)
        self.committed = True
        self._move(WifiEvent.COMMITTED)
        self._staged_wifi = None
        self._staged_records = {}
        self._failsafe_deadline = None
        return [self._respond(request_id, Status.OK, {}), *self._drain(now)]

    def connection_lost(self, now: float) -> list[Effect]:
        """The session ended before COMMIT: nothing staged survives. A commit already
        under way is the point of no return: it completes, and nothing is undone."""
        if self._commit_request is not None:
            return []
        self._held_commit = None
        self._waiting.clear()
        return self._rollback()

    def next_deadline(self) -> float | None:
        if self._commit_request is not None:
            return None  # past the point of no return: the fail-safe no longer applies
        return self._failsafe_deadline

    def handle_timer(self, now: float) -> list[Effect]:
        if self._failsafe_deadline is None or now < self._failsafe_deadline:
            return []
        if self._commit_request is not None:
            return []  # past the point of no return: a failed commit rolls back itself
        effects = self._rollback()
        effects.append(Send(encode(Notification(Topic.FAILSAFE, {"expired": True}))))
        held, self._held_commit = self._held_commit, None
        if held is not None:
            # A commit still waiting for its join was not under way: it is refused.
            self._refused_since_commit = False
            body = {"error": "the fail-safe expired before the join was proven"}
            effects.append(self._respond(held, Status.FAILSAFE_EXPIRED, body))
            effects += self._drain(now)
        return effects

    # -------------------------------------------------------------- requests

    def _dispatch(self, request: Request, now: float) -> list[Effect]:
        endpoint = request.endpoint
        authority = self.config.authority
        rights = _RIGHTS.get(endpoint)
        extension = self._extensions.get(endpoint)
        if rights is not None:
            allowed = authority in rights
        elif extension is not None:
            allowed = authority not in _READ_ONLY and extension.allowed(endpoint, authority)
        else:
            allowed = endpoint == Endpoint.FACTORY_RESET or authority in _VENDOR_RIGHTS
        if not allowed:
            raise _not_allowed(endpoint, authority)
        if endpoint == Endpoint.INFO:
            return [self._respond(request.id, Status.OK, self._info())]
        if endpoint == Endpoint.WIFI_SCAN:
            refresh = request.body.get("refresh", False)
            if not isinstance(refresh, bool):
                raise MalformedData("field 'refresh' must be a boolean")
            self._scan_requests.append(request.id)
            return [StartScan(refresh)]
        if endpoint == Endpoint.WIFI_SET:
            return self._wifi_set(request, now)
        if endpoint == Endpoint.FAILSAFE:
            seconds = request.body.get("seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise MalformedData("field 'seconds' must be a positive number")
            seconds = min(float(seconds), MAX_FAILSAFE)
            self._failsafe_deadline = now + seconds
            return [self._respond(request.id, Status.OK, {"expires_in": seconds})]
        if endpoint == Endpoint.COMMIT:
            return self._commit(request, now)
        if endpoint == Endpoint.ABORT:
            return [*self._rollback(), self._respond(request.id, Status.OK, {})]
        if endpoint == Endpoint.ENROLMENT_STATUS:
            return [self._respond(request.id, Status.OK, self._enrolment_status(request.body))]
        if endpoint == Endpoint.FACTORY_RESET:
            raise EnrolmentError(
                Status.NOT_ALLOWED,
                "remote factory reset is for the bound owner only; reset the device by hand",
            )
        if extension is not None:
            return self._extension(extension, request, now)
        handler = self.registry.get(endpoint)
        if handler is None:
            raise EnrolmentError(Status.UNKNOWN_ENDPOINT, f"no endpoint {endpoint!r}")
        return [self._respond(request.id, Status.OK, handler(request.body))]

    def _info(self) -> dict[str, Any]:
        return {
            "device_id": self.config.device_id,
            "capabilities": [
                *self.config.capabilities,
                *(c for e in self.config.extensions for c in e.capabilities),
                *self.registry.names,
            ],
            "can_prove_join": self.config.can_prove_join,
            "failsafe_default": self.config.default_failsafe,
        }

    def _enrolment_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """Whether the enrolment ``id`` is the one this device committed last.

        Another session can no longer commit it (the device serves one at a time, and a
        session's staged changes die with it), so "no" is final."""
        enrolment_id = body.get("id")
        if not isinstance(enrolment_id, bytes) or len(enrolment_id) != ENROLMENT_ID_SIZE:
            raise MalformedData(f"field 'id' must be {ENROLMENT_ID_SIZE} bytes")
        raw = self.config.committed.get(RECORD_ENROLMENT)
        committed = raw is not None and decode_record(raw).is_(enrolment_id)
        return {"committed": committed}

    def _wifi_set(self, request: Request, now: float) -> list[Effect]:
        if self.wifi_stage is WifiStage.JOINING:
            raise EnrolmentError(Status.BUSY, "a join is in progress; wait for its status")
        if self._attempts_left <= 0:
            raise EnrolmentError(Status.NOT_ALLOWED, "no join attempts left in this session")
        credentials = parse_credentials(request.body)
        self._staged_wifi = credentials
        self._move(WifiEvent.STAGE)
        self._attempts_left -= 1
        if self._failsafe_deadline is None:
            self._failsafe_deadline = now + self.config.default_failsafe
        effects: list[Effect] = [self._respond(request.id, Status.OK, {})]
        body = status_body(WifiState.CONNECTING, attempts_left=self._attempts_left)
        effects.append(Send(encode(Notification(Topic.WIFI_STATUS, body))))
        if self.config.can_prove_join:
            self._move(WifiEvent.JOIN)
            effects.append(StartJoin(credentials, self.config.join_timeout))
        return effects

    def _context(self) -> SessionContext:
        # A handover starts from a device with no trust at all: the new owner's records
        # are built afresh, and the commit deletes the old ones (Extension.finalise).
        handover = self.config.authority is Authority.HANDOVER
        return SessionContext(
            device_id=self.config.device_id,
            channel_binding=self.config.channel_binding,
            wall_clock=self.config.wall_clock,
            committed={} if handover else self.config.committed,
            staged=dict(self._staged_records),
            authority=self.config.authority,
        )

    def _extension(self, extension: Extension, request: Request, now: float) -> list[Effect]:
        staged = extension.handle(request.endpoint, request.body, self._context())
        if staged.records:
            self._staged_records.update(staged.records)
            if self._failsafe_deadline is None:
                self._failsafe_deadline = now + self.config.default_failsafe
        return [self._respond(request.id, Status.OK, staged.body)]

    def _commit(self, request: Request, now: float) -> list[Effect]:
        if self._commit_request is not None or self._held_commit is not None:
            raise EnrolmentError(Status.BUSY, "wait for the commit in progress")
        if self._staged_wifi is None and not self._staged_records:
            if self.rolled_back:
                raise EnrolmentError(Status.FAILSAFE_EXPIRED, "staged changes were rolled back")
            raise EnrolmentError(Status.NOTHING_TO_COMMIT, "nothing is staged")
        if self._refused_since_commit:
            raise EnrolmentError(
                Status.NOT_ALLOWED,
                "a request sent before this commit was refused: nothing was committed",
            )
        if self.wifi_stage is WifiStage.JOINING:
            # Pipelined behind its wifi/set: answered once the join is proven or failed.
            self._held_commit = request.id
            return []
        return self._start_commit(request.id)

    def _start_commit(self, request_id: int) -> list[Effect]:
        """The point of no return: the staged records go to the store (or EnrolmentError,
        and nothing changed)."""
        if (
            self._staged_wifi is not None
            and self.config.can_prove_join
            and self.wifi_stage is not WifiStage.PROVEN
        ):
            raise EnrolmentError(Status.NOT_PROVEN, "the credentials have not joined yet")
        records = dict(self._staged_records)
        context = self._context()
        for extension in self.config.extensions:
            for name, value in extension.finalise(context).items():
                records.setdefault(name, value)
        self._commit_request = request_id
        if self._staged_wifi is not None:
            records["wifi"] = encode_credentials(self._staged_wifi)
        if self.receipt is not None:
            # Which enrolment this is, and the receipt its host may ask with later.
            records[RECORD_ENROLMENT] = encode_record(self.receipt)
        return [Commit(records)]

    # ------------------------------------------------------------- internals

    def _rollback(self) -> list[Effect]:
        # Staged records live only in this machine: dropping them is their rollback.
        had_records = bool(self._staged_records)
        self._staged_records = {}
        had_network = self._staged_wifi is not None
        self._staged_wifi = None
        self._move(WifiEvent.ROLLED_BACK)
        self._failsafe_deadline = None
        if had_records or had_network:
            self.rolled_back += 1
        if not had_network:
            return []
        return [Rollback()]

    def _move(self, event: WifiEvent) -> None:
        try:
            self.wifi_stage = _WIFI_MOVES[self.wifi_stage, event]
        except KeyError:
            raise LocalProtocolError(
                f"enrolment: {event.value} is not possible while {self.wifi_stage.value}"
            ) from None

    def _respond(self, request_id: int, status: Status, body: dict[str, Any]) -> Send:
        return Send(encode(Response(request_id, int(status), body)))

    def _notify_error(self, status: Status, message: str) -> Send:
        return Send(encode(Notification("error", {"status": int(status), "error": message})))


def encode_credentials(credentials: WifiCredentials) -> bytes:
    """The committed Wi-Fi record as the store keeps it (encrypted at rest by the store)."""
    return cbor.dumps(credentials_body(credentials))
