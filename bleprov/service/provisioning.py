"""The host's enrolment of one device, over an open secure session.

What the laptop owner, the demo and the tests all run once a session is open: show the
device's Wi-Fi scan (unless the user named the network: :class:`PresetWifi`), have the
hub certify the zone key the device sent with its attestation, then send the credentials,
the zone certificate and COMMIT in one flight (docs/protocol.md section 11,
"Pipelining"; new credentials and COMMIT again after a failed join, in the same session),
the device committing everything in one atomic write once the join is proven; then
record the result: the peer pin here, the enrolment confirmed on the hub; or, when the
device refused the commit, the zone certificate revoked.

A COMMIT whose answer is lost does not say whether the device committed. provision()
then reaches the device again (:class:`Redial`: the same link, BLE or the broker) and
asks it, in a session the device accepts after enrolment (the enrolment's receipt:
:mod:`bleprov.core.receipt`), whether it committed this enrolment; only that
authenticated answer confirms (pin, hub record enrolled) or undoes (certificate revoked).
An answer not learnt within the bound leaves the hub's record pending and nothing pinned,
and says what to run later (:class:`EnrolmentOutcomeUnknown`).

The user interface is a :class:`WifiChooser` (pick a network, answer a failure) and a
:class:`Progress` sink; the CLI implements them with prompts, the demo with a script.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from bleprov.core import membership
from bleprov.core.advertising import DeviceState
from bleprov.core.enrolment.messages import (
    Endpoint,
    EnrolmentError,
    Response,
    Status,
    WifiState,
    WifiStatus,
    credentials_body,
)
from bleprov.core.errors import BleprovError
from bleprov.core.peer import PeerPin
from bleprov.core.receipt import EnrolmentReceipt, UnresolvedEnrolment
from bleprov.core.session import host as hst
from bleprov.core.session.device import DeviceOwned, ModeNotAllowed
from bleprov.core.session.modes import AuthenticationFailed
from bleprov.core.wifi import JoinFailure, ScanResult, WifiCredentials
from bleprov.core.window import WindowClosed
from bleprov.core.words import words
from bleprov.service.enrolment import EnrolmentClient, NoAnswer, ok_body
from bleprov.service.host_session import DeviceAuthentication
from bleprov.service.trust import HostTrust
from bleprov.session import SecureHostLink

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    # Imported where a zone is enrolled: the hub's database stack (SQLAlchemy, Alembic,
    # about 0.6 s) is for zone enrolment only, not for every provision or peer binding.
    from bleprov.service.zone_hub import PendingEnrolment, ZoneEnroller


class WifiNotJoined(BleprovError):
    """The device could not join any of the networks given; nothing was committed."""


#: What to do when the device could not join, by the reason the device gives: the same
#: "check the password" for every failure sent people retyping a password that was right.
JOIN_ADVICE: Final[Mapping[JoinFailure, str]] = {
    JoinFailure.WRONG_PASSWORD: "the network refused the password: type it again, "
    "exactly (it is case-sensitive)",
    JoinFailure.NETWORK_NOT_FOUND: "the device does not hear that network: check its name "
    "(SSID) letter by letter, that it is on 2.4 GHz if the device has no 5 GHz radio, and "
    "that the device is in range (a network that hides its name: --wifi-hidden)",
    JoinFailure.DHCP_FAILED: "the device joined but got no IP address: check the router's "
    "DHCP server (on, with addresses left, no MAC filter)",
    JoinFailure.TIMEOUT: "the join timed out: the signal may be too weak; move the device "
    "closer to the access point",
    JoinFailure.OTHER: "the access point refused the device: check the network's security "
    "setting and the router's (MAC filter, client limit)",
}


def join_advice(reason: JoinFailure | None) -> str:
    """What the user should do after a join failed for ``reason``."""
    return JOIN_ADVICE[reason or JoinFailure.OTHER]


class NotCommitted(BleprovError):
    """The COMMIT answer was lost, and the device, asked again, had not committed."""


class EnrolmentOutcomeUnknown(BleprovError):
    """The COMMIT answer was lost and the device could not be asked again in time."""


#: How long provision() keeps trying to reach the device after a lost COMMIT answer.
DEFAULT_REDIAL_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Redial:
    """How provision() reaches the same device again after a lost answer, on the link the
    first session used (BLE, or the broker).

    ``open`` opens an authenticated session with the given authentication (the same
    trust in manufacturers); ``first`` is what opened the first session, tried again only
    where it needs no person (a label, a code); ``within`` bounds the whole attempt."""

    open: Callable[[DeviceAuthentication], Awaitable[SecureHostLink]]
    first: DeviceAuthentication
    within: float = DEFAULT_REDIAL_SECONDS


class UnresolvedStore(Protocol):
    """Where a host keeps enrolments whose outcome it could not learn (HostTrust)."""

    def get_unresolved(self, device_id: str) -> UnresolvedEnrolment | None: ...

    def remember_unresolved(self, enrolment: UnresolvedEnrolment) -> None: ...

    def forget_unresolved(self, device_id: str) -> None: ...


class PeerPinConflict(BleprovError):
    """The device's peer identity cannot be pinned: it names another device, or this host
    already pins a device of that name (with a key that a binding must never replace)."""


class DeviceNotVirgin(BleprovError):
    """The device says it is already enrolled or bound: someone set it up before.

    Provisioning it anyway would "succeed" while an earlier owner (perhaps whoever won a
    button window) keeps it; a host does so only when told explicitly."""


#: States in which a device already has an owner (advertised, and bound by the handshake).
OWNED_STATES = (DeviceState.ENROLLED, DeviceState.PEER_BOUND)


def check_virgin(state: DeviceState, *, allow_owned: bool = False) -> None:
    """Raise :class:`DeviceNotVirgin` for a device that is enrolled or bound, unless
    ``allow_owned`` (the user said so: re-provisioning a device they own)."""
    if state in OWNED_STATES and not allow_owned:
        name = state.name.lower().replace("_", "-")
        raise DeviceNotVirgin(
            f"the device is already set up ({name}): someone else may have set it up first. "
            "If it has an owner, ask them to open a window (--window-code); if it is yours "
            "and has none, say so explicitly (--reprovision); if not, reset it by hand"
        )


class WifiChooser(Protocol):
    """The user's side of the Wi-Fi step."""

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        """Credentials for one of the networks the device sees (None: no Wi-Fi)."""
        ...

    async def retry(self, status: WifiStatus, tried: WifiCredentials) -> WifiCredentials | None:
        """The join failed (``status.reason``): new credentials, or None to give up."""
        ...


@runtime_checkable
class PresetWifi(Protocol):
    """A :class:`WifiChooser` that may already know the network (the user named it and
    its security): then no scan is asked for, and the credentials go in the commit's
    flight (docs/protocol.md section 11, "Pipelining")."""

    def preset(self) -> WifiCredentials | None:
        """The credentials to send without a scan, or None to choose from one."""
        ...


class Progress(Protocol):
    def step(self, text: str) -> None: ...


class _Silent:
    def step(self, text: str) -> None:
        pass


class _Logged:
    """Each step also at INFO (``-v``): what the user's progress shows, in the log."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def step(self, text: str, *, logged: str | None = None) -> None:
        """``logged``: the step's words for the log where ``text`` names the network."""
        logger.info("%s", logged or text)
        self.progress.step(text)


@dataclass(frozen=True)
class ZonePlan:
    """Enrol into a zone: the hub's enroller (an authenticated admin) and the owner."""

    enroller: ZoneEnroller
    owner: str


@dataclass(frozen=True)
class PeerPlan:
    """Bind the device to this host as a peer."""

    host: HostTrust


@dataclass
class StepCost:
    """What one step sent and received at the enrolment layer."""

    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    seconds: float = 0.0


@dataclass
class ProvisionReport:
    device_id: str
    scan: list[ScanResult] = field(default_factory=list)
    wifi: WifiStatus | None = None
    wifi_attempts: int = 0
    zone: PendingEnrolment | None = None
    peer: PeerPin | None = None
    wifi_cost: StepCost = field(default_factory=StepCost)
    trust_cost: StepCost = field(default_factory=StepCost)
    total_cost: StepCost = field(default_factory=StepCost)


class _Meter:
    def __init__(self, client: EnrolmentClient) -> None:
        self.client = client

    def mark(self) -> tuple[int, int, int, float]:
        c = self.client
        return c.requests, c.bytes_sent, c.bytes_received, time.perf_counter()

    def since(self, mark: tuple[int, int, int, float]) -> StepCost:
        now = self.mark()
        return StepCost(now[0] - mark[0], now[1] - mark[1], now[2] - mark[2], now[3] - mark[3])


async def provision(
    session: SecureHostLink,
    *,
    wifi: WifiChooser | None = None,
    zone: ZonePlan | None = None,
    peer: PeerPlan | None = None,
    progress: Progress | None = None,
    allow_owned: bool = False,
    redial: Redial | None = None,
    unresolved: UnresolvedStore | None = None,
) -> ProvisionReport:
    """Wi-Fi, then zone or peer trust, then one commit. Raises on any failure, after which
    the device has rolled back (or will, when the session ends) and the hub has revoked
    what it issued; or, the COMMIT answer lost, :class:`EnrolmentOutcomeUnknown` (the
    device may have committed: the hub keeps the enrolment pending, ``unresolved`` keeps
    what a later run needs to ask it). An enrolment of this device that ``unresolved``
    keeps from an earlier run is settled first, from the device's answer in this session.

    A device whose info says it is enrolled or peer-bound is refused
    (:class:`DeviceNotVirgin`) before anything is sent, unless ``allow_owned``: the info
    is bound by the handshake, so this is what the authenticated device says. Without
    ``redial`` a lost COMMIT answer is never asked about (the outcome stays unknown)."""
    steps = _Logged(progress or _Silent())
    if session.info is None:
        raise BleprovError("the session is not open: call open() first")
    # A session through the owner's window is how an owned device is meant to be reached.
    check_virgin(session.info.device_info.state, allow_owned=allow_owned or session.through_window)
    device_id = session.info.attestation.device_id
    if peer is not None and device_id in peer.host.pins():
        raise PeerPinConflict(
            f"this host already pins a device named {device_id} from an earlier binding; "
            "if the device was reset, forget that pin first "
            f"(bleprov peer unbind --local-only {device_id})"
        )
    if zone is not None:
        from bleprov.service.zone_hub import attested

        attested(session, device_id)  # an unattested device: refused before anything changes
    client = EnrolmentClient(session)
    earlier = None if unresolved is None else unresolved.get_unresolved(device_id)
    if earlier is not None and unresolved is not None:
        await _settle_earlier(client, earlier, unresolved, zone, peer, steps)
    meter = _Meter(client)
    report = ProvisionReport(device_id)
    # Derived now, while the session has its keys: the device derives the same.
    receipt = EnrolmentReceipt.of_session(session.channel_binding, session.exporter)
    start = meter.mark()
    credentials: WifiCredentials | None = None
    if wifi is not None:
        credentials = wifi.preset() if isinstance(wifi, PresetWifi) else None
        if credentials is None:
            # The interactive case: the person picks from what the device sees.
            steps.step("asking the device which Wi-Fi networks it sees")
            report.scan = await client.scan()
            logger.info("the device sees %d Wi-Fi network(s)", len(report.scan))
            credentials = await wifi.choose(report.scan)
    report.wifi_cost = meter.since(start)
    mark = meter.mark()
    pending: PendingEnrolment | None = None
    trust: list[tuple[str, dict[str, Any]]] = []
    if zone is not None:
        steps.step("enrolling into the zone: the hub certifies the key the device made")
        pending = await zone.enroller.issue(client, session, device_id=device_id, owner=zone.owner)
        report.zone = pending
        logger.info("zone certificate %x issued for %s", pending.serial, zone.owner)
        trust.append((membership.ZONE_INSTALL, membership.install_body(pending.certificate)))
    try:
        await _stage_and_commit(client, credentials, trust, peer, wifi, report, steps)
    except _CommitSent as sent:
        # COMMIT is on its way and its answer did not come: the device may have committed.
        cause = sent.lost
        if not isinstance(cause, BleprovError):
            # Interrupted: nothing is revoked; the next run asks the device.
            _remember(unresolved, session, receipt, report)
            raise cause from None
        await _commit_answer_lost(cause, session, receipt, report, zone, redial, unresolved, steps)
    except BaseException:
        # The device answered (it refused, and committed nothing) or nothing was sent
        # that could commit: what the hub issued is revoked.
        if pending is not None and zone is not None:
            await zone.enroller.abandon(pending)
        raise
    report.trust_cost = meter.since(mark)
    if pending is not None and zone is not None:
        await zone.enroller.confirm(pending)
    if peer is not None and report.peer is not None:
        peer.host.pin(report.peer)  # only once the device holds our pin too
        logger.info("pinned the device's key %s", report.peer.fingerprint.hex())
    report.total_cost = meter.since(start)
    logger.info(
        "device %s provisioned: %d round trips, %d bytes up, %d down",
        device_id,
        report.total_cost.requests,
        report.total_cost.bytes_up,
        report.total_cost.bytes_down,
    )
    return report


class _CommitSent(Exception):
    """COMMIT was sent and its answer did not come (``lost`` says why)."""

    def __init__(self, lost: BaseException) -> None:
        super().__init__(str(lost))
        self.lost = lost


def _refusal(endpoint: str, response: Response) -> EnrolmentError:
    try:
        ok_body(response)
    except EnrolmentError as exc:
        return EnrolmentError(exc.status, f"{endpoint}: {exc}")
    raise AssertionError("not a refusal")


async def _stage_and_commit(
    client: EnrolmentClient,
    credentials: WifiCredentials | None,
    trust: list[tuple[str, dict[str, Any]]],
    peer: PeerPlan | None,
    wifi: WifiChooser | None,
    report: ProvisionReport,
    steps: _Logged,
) -> None:
    """The staging requests and COMMIT in one flight (docs/protocol.md section 11,
    "Pipelining"); again with new credentials after a failed join. A peer binding's
    answer (the device's key, pinned here once it committed) is awaited before COMMIT is
    sent: a lost answer must never leave the device committed to a pin this host lacks.
    Raises _CommitSent (caused by what went wrong) when COMMIT's answer did not come."""
    requests = list(trust)
    if peer is not None:
        steps.step("binding as peers: exchanging long-term keys")
        flight = [*_wifi_set(credentials, report, steps), *requests]
        requests = []
        ids = client.send_all(
            [*flight, (membership.PEER_BIND, membership.bind_body(peer.host.identity()))]
        )
        bound = [await client.answer(i) for i in ids]
        for (endpoint, _), answer in zip([*flight, (membership.PEER_BIND, {})], bound, strict=True):
            if answer.status != Status.OK:
                await client.abort()
                raise _refusal(endpoint, answer)
        pin = membership.parse_bind_response(bound[-1].body)
        device_id = report.device_id
        if pin.name != device_id:
            # The attested ID is the only name a device's pin may carry: anything else
            # could overwrite our trust in another device. Nothing is committed.
            await client.abort()
            raise PeerPinConflict(
                f"the device (attested as {device_id}) presented a peer identity for "
                "another name; nothing was committed"
            )
        report.peer = pin
    else:
        requests = [*_wifi_set(credentials, report, steps), *requests]
    while True:
        steps.step("committing on the device (one atomic write)")
        ids = client.send_all([*requests, (Endpoint.COMMIT, {})])
        answers: list[Response] = []
        try:
            for request_id in ids:
                answers.append(await client.answer(request_id))
        except BaseException as lost:
            raise _CommitSent(lost) from lost
        statuses = client.statuses()
        if statuses:
            report.wifi = statuses[-1]
            for status in statuses:
                logger.info(
                    "Wi-Fi: %s%s",
                    words(status.state),
                    f" ({words(status.reason)})" if status.reason is not None else "",
                )
        *staging, commit = answers
        for (endpoint, _), answer in zip(requests, staging, strict=True):
            if answer.status != Status.OK:
                raise _refusal(endpoint, answer)  # and the device refused the commit
        if commit.status == Status.OK:
            return
        joined = report.wifi is not None and report.wifi.state is WifiState.CONNECTED
        if commit.status != Status.NOT_PROVEN or joined or report.wifi is None or wifi is None:
            raise _refusal(Endpoint.COMMIT, commit)
        # The join failed: the rest stays staged; new credentials and COMMIT again.
        tried = credentials
        retry = None
        if report.wifi.attempts_left and tried is not None:
            retry = await wifi.retry(report.wifi, tried)
        if retry is None:
            await client.abort()
            reason = report.wifi.reason or JoinFailure.OTHER
            raise WifiNotJoined(
                f"the device could not join the network ({words(reason)}); nothing was "
                f"changed on it: {join_advice(reason)}"
            )
        credentials = retry
        requests = _wifi_set(credentials, report, steps)


def _wifi_set(
    credentials: WifiCredentials | None, report: ProvisionReport, steps: _Logged
) -> list[tuple[str, dict[str, Any]]]:
    if credentials is None:
        return []
    report.wifi_attempts += 1
    steps.step(
        f"sending credentials for {credentials.ssid.decode(errors='replace')}",
        # The log names no network (the device's journal neither: a keyed tag).
        logged=f"sending Wi-Fi credentials (attempt {report.wifi_attempts})",
    )
    return [(Endpoint.WIFI_SET, credentials_body(credentials))]


# ------------------------------------------------------------- a lost COMMIT answer


async def _commit_answer_lost(
    lost: BleprovError,
    session: SecureHostLink,
    receipt: EnrolmentReceipt,
    report: ProvisionReport,
    zone: ZonePlan | None,
    redial: Redial | None,
    unresolved: UnresolvedStore | None,
    steps: _Logged,
) -> None:
    """Learn whether the device committed; return if it did, raise if not or unknown."""
    device_id = report.device_id
    logger.warning("no answer to COMMIT (%s): asking the device what it committed", lost)
    assert session.info is not None
    discriminator = session.info.device_info.discriminator
    committed: bool | None = None
    if redial is not None:
        steps.step("the device's answer was lost: reaching it again to ask what it committed")
        committed = await learn_outcome(redial, receipt, device_id, discriminator=discriminator)
    if committed:
        logger.info("device %s says it committed enrolment %s", device_id, receipt)
        steps.step("the device had committed")
        return
    if committed is False:
        revoked = ""
        if report.zone is not None and zone is not None:
            await zone.enroller.abandon(report.zone)
            revoked = " (and the hub revoked the certificate it had issued)"
        raise NotCommitted(
            f"the connection to {device_id} was lost before the device committed: it is as "
            f"it was{revoked}; run the same command again"
        ) from None
    _remember(unresolved, session, receipt, report)
    kept = " (the hub keeps its enrolment pending)" if report.zone is not None else ""
    raise EnrolmentOutcomeUnknown(
        f"the answer of {device_id} to COMMIT was lost and the device could not be asked "
        f"whether it committed{kept}: with the device in range, run the same command again "
        "to find out and finish"
    ) from None


def _remember(
    unresolved: UnresolvedStore | None,
    session: SecureHostLink,
    receipt: EnrolmentReceipt,
    report: ProvisionReport,
) -> None:
    """Keep what the next run needs to learn this enrolment's outcome and finish it."""
    if unresolved is None or session.info is None:
        return
    unresolved.remember_unresolved(
        UnresolvedEnrolment(
            report.device_id,
            session.info.device_info.discriminator,
            receipt,
            report.peer,
            None if report.zone is None else report.zone.serial,
        )
    )


def _needs_no_person(auth: DeviceAuthentication) -> bool:
    """A credential provision() holds itself: a label's secret, a code, a window code."""
    return isinstance(auth.secret, hst.QrSecret | hst.CodeSecret | hst.WindowSecret)


class _Refused(Exception):
    """This credential gets no authenticated answer from the device (another may)."""


async def learn_outcome(
    redial: Redial, receipt: EnrolmentReceipt, device_id: str, *, discriminator: int
) -> bool | None:
    """Whether device ``device_id`` committed the enrolment ``receipt`` names, as it says
    in a new authenticated session; None if no such answer came within ``redial.within``.

    The receipt first (a device that committed, or lately rolled back, answers it), then
    the first session's credential where it needs no person (a device that did not commit
    still takes its label). A refusal is no answer: only what the attested device says in
    a session decides (a stranger could refuse anything)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + redial.within
    tries = [DeviceAuthentication.receipt(receipt, discriminator=discriminator)]
    if _needs_no_person(redial.first):
        tries.append(redial.first)
    delay = 0.25
    while True:
        unreachable = False
        for auth in tries:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    return await _ask(redial, auth, receipt, device_id, timeout=remaining)
            except _Refused as refused:
                logger.info("%s: %s", auth, refused)
            except (BleprovError, TimeoutError) as exc:
                logger.info("could not reach the device with %s: %s", auth, exc)
                unreachable = True
        remaining = deadline - loop.time()
        if not unreachable or remaining <= 0:
            return None
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 2.0)


async def _ask(
    redial: Redial,
    auth: DeviceAuthentication,
    receipt: EnrolmentReceipt,
    device_id: str,
    *,
    timeout: float,
) -> bool:
    try:
        session = await redial.open(auth)
    except (AuthenticationFailed, DeviceOwned, ModeNotAllowed, WindowClosed) as exc:
        raise _Refused(f"refused ({exc})") from None
    try:
        info = session.info
        if info is None or info.attestation.device_id != device_id:
            raise _Refused("another device answered")
        client = EnrolmentClient(session, timeout=timeout)
        try:
            return await client.enrolment_status(receipt.enrolment_id)
        except EnrolmentError as exc:
            if isinstance(exc, NoAnswer):
                raise
            raise _Refused(f"the device cannot say ({exc})") from None
    finally:
        await session.close()


async def finish_unresolved(
    earlier: UnresolvedEnrolment,
    committed: bool,
    *,
    zone: ZonePlan | None,
    peer: PeerPlan | None,
) -> bool:
    """Act on the device's answer about an earlier enrolment: pin it or confirm it on the
    hub (committed), or revoke its pending certificate (not committed). False where this
    run lacks what that needs (a zone enrolment without the hub): keep it for later."""
    device_id = earlier.device_id
    enrolment_id = earlier.receipt.enrolment_id.hex()
    if earlier.zone_serial is not None:
        if zone is None:
            return False
        if committed:
            await zone.enroller.confirm_id(device_id, enrolment_id, how="asked again later")
        else:
            await zone.enroller.revoke_pending(device_id, enrolment_id)
    if earlier.peer is not None and committed:
        if peer is None:
            return False
        if device_id not in peer.host.pins():
            peer.host.pin(earlier.peer)
    return True


async def _settle_earlier(
    client: EnrolmentClient,
    earlier: UnresolvedEnrolment,
    unresolved: UnresolvedStore,
    zone: ZonePlan | None,
    peer: PeerPlan | None,
    steps: _Logged,
) -> None:
    """An earlier run lost this device's COMMIT answer: ask in this session."""
    steps.step("an earlier enrolment of this device was not finished: asking what became of it")
    try:
        committed = await client.enrolment_status(earlier.receipt.enrolment_id)
    except EnrolmentError as exc:
        if isinstance(exc, NoAnswer):
            raise
        logger.warning("the device cannot say what became of %s: %s", earlier, exc)
        return
    logger.info("earlier enrolment %s: %s", earlier, "committed" if committed else "not committed")
    if await finish_unresolved(earlier, committed, zone=zone, peer=peer):
        unresolved.forget_unresolved(earlier.device_id)


async def resolve_unresolved(
    redial: Redial,
    earlier: UnresolvedEnrolment,
    unresolved: UnresolvedStore,
    *,
    zone: ZonePlan | None,
    peer: PeerPlan | None,
) -> bool | None:
    """Ask the device an earlier run could not (its receipt, over ``redial``) and finish
    that enrolment: True if it had committed, False if not, None if it gave no answer."""
    committed = await learn_outcome(
        redial, earlier.receipt, earlier.device_id, discriminator=earlier.discriminator
    )
    if committed is not None and await finish_unresolved(earlier, committed, zone=zone, peer=peer):
        unresolved.forget_unresolved(earlier.device_id)
    return committed
