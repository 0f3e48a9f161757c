"""The host's enrolment of one device, over an open secure session.

What the laptop owner, the demo and the tests all run once a session is open: show the
device's Wi-Fi scan, send credentials (and new ones after a failed join, in the same
session), enrol the device into a zone or bind it as a peer, commit everything in the
device's one atomic write, then record the result on the host (the peer pin) or undo it
on the hub (a zone certificate whose commit was not confirmed is revoked).

The user interface is a :class:`WifiChooser` (pick a network, answer a failure) and a
:class:`Progress` sink; the CLI implements them with prompts, the demo with a script.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from bleprov.core.advertising import DeviceState
from bleprov.core.enrolment.messages import WifiState, WifiStatus
from bleprov.core.errors import BleprovError
from bleprov.core.peer import PeerPin
from bleprov.core.wifi import JoinFailure, ScanResult, WifiCredentials
from bleprov.core.words import words
from bleprov.radio.secure_link import SecureHostLink
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.trust import HostTrust

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
    "that the device is in range",
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
) -> ProvisionReport:
    """Wi-Fi, then zone or peer trust, then one commit. Raises on any failure, after which
    the device has rolled back (or will, when the session ends) and the hub has revoked
    what it issued.

    A device whose info says it is enrolled or peer-bound is refused
    (:class:`DeviceNotVirgin`) before anything is sent, unless ``allow_owned``: the info
    is bound by the handshake, so this is what the authenticated device says."""
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
    meter = _Meter(client)
    report = ProvisionReport(device_id)
    start = meter.mark()
    if wifi is not None:
        mark = meter.mark()
        steps.step("asking the device which Wi-Fi networks it sees")
        report.scan = await client.scan()
        logger.info("the device sees %d Wi-Fi network(s)", len(report.scan))
        credentials = await wifi.choose(report.scan)
        while credentials is not None:
            report.wifi_attempts += 1
            steps.step(
                f"sending credentials for {credentials.ssid.decode(errors='replace')}",
                # The log names no network (the device's journal neither: a keyed tag).
                logged=f"sending Wi-Fi credentials (attempt {report.wifi_attempts})",
            )
            status = await client.set_wifi(credentials)
            logger.info(
                "Wi-Fi: %s%s",
                words(status.state),
                f" ({words(status.reason)})" if status.reason is not None else "",
            )
            report.wifi = status
            if status.state is WifiState.CONNECTED:
                break
            credentials = await wifi.retry(status, credentials) if status.attempts_left else None
        report.wifi_cost = meter.since(mark)
        if report.wifi is not None and report.wifi.state is not WifiState.CONNECTED:
            await client.abort()
            reason = report.wifi.reason or JoinFailure.OTHER
            raise WifiNotJoined(
                f"the device could not join the network ({words(reason)}); nothing was "
                f"changed on it: {join_advice(reason)}"
            )
    mark = meter.mark()
    pending: PendingEnrolment | None = None
    if zone is not None:
        steps.step("enrolling into the zone: the device makes its key and a CSR")
        pending = await zone.enroller.stage(client, session, device_id=device_id, owner=zone.owner)
        report.zone = pending
        logger.info(
            "zone certificate %x issued for %s, staged on the device", pending.serial, zone.owner
        )
    if peer is not None:
        steps.step("binding as peers: exchanging long-term keys")
        pin = await client.peer_bind(peer.host.identity())
        if pin.name != device_id:
            # The attested ID is the only name a device's pin may carry: anything else
            # could overwrite our trust in another device. Nothing is committed.
            await client.abort()
            raise PeerPinConflict(
                f"the device (attested as {device_id}) presented a peer identity for "
                "another name; nothing was committed"
            )
        report.peer = pin
    report.trust_cost = meter.since(mark)
    steps.step("committing on the device (one atomic write)")
    try:
        await client.commit()
    except BaseException:
        if pending is not None and zone is not None:
            await zone.enroller.abandon(pending)
        raise
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
