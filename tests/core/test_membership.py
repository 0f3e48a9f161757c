"""Zone membership and peer binding as enrolment extensions, by hand (sans-IO).

The device machine with both extensions: CSR bound to the session, install checked against
the pending key and the zone root, everything staged and committed in one write with the
Wi-Fi credentials, or dropped by the fail-safe.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from bleprov.core import membership as mb
from bleprov.core.enrolment import device as enr
from bleprov.core.enrolment.messages import (
    Notification,
    Request,
    Response,
    Status,
    credentials_body,
    decode,
    encode,
)
from bleprov.core.peer import PeerIdentity, PinSet
from bleprov.core.wifi import Connected, Failed, JoinFailure, WifiCredentials, WifiSecurity
from bleprov.core.zone import BadCsr, MemberCertificate, Zone, verify_member

NOW = datetime.now(UTC)
DEVICE_ID = "DEV-0001"
ZONE = Zone.create("Home", now=NOW)
OTHER_ZONE = Zone.create("Elsewhere", now=NOW)
GOOD = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase="correct horse")


def binding_of(session: bytes) -> Any:
    return lambda label: hashlib.sha256(session + label).digest()


class Device:
    """One session's machine with both extensions; decodes what it answers."""

    def __init__(
        self,
        *,
        session: bytes = b"session-1",
        committed: dict[str, bytes] | None = None,
        wall_clock: datetime | None = NOW,
        authority: enr.Authority = enr.Authority.INSTALLER,
    ) -> None:
        self.binding = binding_of(session)
        self.m = enr.DeviceEnrolment(
            enr.DeviceEnrolmentConfig(
                DEVICE_ID,
                channel_binding=self.binding,
                wall_clock=wall_clock,
                committed=committed or {},
                extensions=mb.device_extensions(),
                authority=authority,
            ),
            now=0.0,
        )
        self.next_id = 1
        self.effects: list[enr.Effect] = []

    def ask(self, endpoint: str, body: dict[str, Any] | None = None, now: float = 1.0) -> Response:
        rid = self.next_id
        self.next_id += 1
        self.effects = self.m.receive(encode(Request(rid, endpoint, body or {})), now)
        for effect in self.effects:
            if isinstance(effect, enr.Send):
                message = decode(effect.data)
                if isinstance(message, Response) and message.id == rid:
                    return message
        raise AssertionError("no response")

    def ok(self, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.ask(endpoint, body)
        assert response.status == Status.OK, response.body
        return response.body

    def refused(self, endpoint: str, body: dict[str, Any] | None = None) -> Status:
        response = self.ask(endpoint, body)
        assert response.status != Status.OK
        assert isinstance(response.body.get("error"), str)
        return Status(response.status)

    def commit(self) -> dict[str, bytes | None]:
        """COMMIT answers once the store write is done: take the effect, report success."""
        rid = self.next_id
        self.next_id += 1
        effects = self.m.receive(encode(Request(rid, "commit", {})), 1.0)
        [commit] = [e for e in effects if isinstance(e, enr.Commit)]
        [reply] = [e for e in self.m.commit_done(None, 2.0) if isinstance(e, enr.Send)]
        response = decode(reply.data)
        assert isinstance(response, Response) and response.status == Status.OK
        return commit.records

    def enrol(self, zone: Zone = ZONE, owner: str = "alice") -> dict[str, Any]:
        issued = issue(zone, self.ok(mb.ZONE_KEY), self.binding, owner)
        return self.ok(mb.ZONE_INSTALL, mb.install_body(issued))


def issue(
    zone: Zone, answer: dict[str, Any], binding: Any, owner: str = "alice"
) -> MemberCertificate:
    """What the hub does with a zone key and its proof (a ``zone/key`` answer)."""
    point, proof = mb.parse_key_response(answer)
    return zone.issue_member_key(
        point,
        proof,
        device_id=DEVICE_ID,
        owner=owner,
        expected_binding=binding(mb.ZONE_KEY_BINDING),
        now=NOW,
    )


def test_info_announces_zone_and_peer() -> None:
    capabilities = Device().ok("info")["capabilities"]
    assert "zone" in capabilities and "peer" in capabilities


def test_zone_enrolment_commits_key_certificate_chain_root_and_owner_in_one_write() -> None:
    device = Device()
    assert device.enrol() == {}  # the host knows what it installed
    records = device.commit()
    assert set(records) == {mb.RECORD_ZONE, mb.RECORD_OWNER}
    membership = mb.ZoneMembership.decode(records[mb.RECORD_ZONE] or b"")
    assert membership.zone_id == ZONE.zone_id and membership.owner == "alice"
    leaf = x509.load_der_x509_certificate(membership.cert_der)
    assert leaf.public_key() == membership.key.public_key()  # the key never left the device
    member = verify_member(
        membership.cert_der,
        membership.chain_der,
        zone_root_der=membership.root_der,
        crl_der=ZONE.crl(now=NOW),
        now=NOW,
    )
    assert member.device_id == DEVICE_ID and member.serial == membership.serial
    owner = mb.Owner.decode(records[mb.RECORD_OWNER] or b"")
    assert owner == mb.Owner("zone", mb.spki_fingerprint(ZONE.root_der), "alice", ZONE.zone_id)


def test_wifi_and_zone_commit_together() -> None:
    device = Device()
    device.enrol()
    device.ok("wifi/set", credentials_body(GOOD))
    # Pipelined: the commit waits for the join, then is refused: never the zone without
    # the Wi-Fi (and the zone stays staged for new credentials).
    assert device.m.receive(encode(Request(99, "commit", {})), 1.2) == []
    held = [
        decode(e.data)
        for e in device.m.join_done(Failed(JoinFailure.WRONG_PASSWORD), 1.5)
        if isinstance(e, enr.Send)
    ]
    assert [(m.id, m.status) for m in held if isinstance(m, Response)] == [(99, Status.NOT_PROVEN)]
    assert device.refused("commit") is Status.NOT_PROVEN
    device.ok("wifi/set", credentials_body(GOOD))
    device.m.join_done(Connected("192.0.2.9"), 1.5)
    records = device.commit()
    assert set(records) == {"wifi", mb.RECORD_ZONE, mb.RECORD_OWNER}


def test_a_zone_key_from_another_session_is_refused_by_the_hub() -> None:
    device = Device(session=b"session-1")
    answer = device.ok(mb.ZONE_KEY)
    with pytest.raises(BadCsr, match="not made in this session"):
        issue(ZONE, answer, binding_of(b"session-2"))
    point, proof = mb.parse_key_response(answer)
    with pytest.raises(BadCsr, match="not made in this session"):  # nor for another device
        ZONE.issue_member_key(
            point,
            proof,
            device_id="OTHER1",
            owner="alice",
            expected_binding=device.binding(mb.ZONE_KEY_BINDING),
            now=NOW,
        )
    issue(ZONE, answer, device.binding)  # its own session's


def test_install_needs_a_pending_key_and_a_certificate_for_it() -> None:
    device = Device()
    foreign = issue(ZONE, Device(session=b"x").ok(mb.ZONE_KEY), binding_of(b"x"))
    assert device.refused(mb.ZONE_INSTALL, mb.install_body(foreign)) is Status.NOT_ALLOWED
    device.ok(mb.ZONE_KEY)
    assert device.refused(mb.ZONE_INSTALL, mb.install_body(foreign)) is Status.NOT_ALLOWED
    assert device.refused("commit") is Status.NOTHING_TO_COMMIT


def test_install_refuses_a_chain_from_another_zone() -> None:
    device = Device()
    issued = issue(ZONE, device.ok(mb.ZONE_KEY), device.binding)
    body = mb.install_body(issued)
    assert (
        device.refused(mb.ZONE_INSTALL, {**body, "root": OTHER_ZONE.root_der}) is Status.NOT_ALLOWED
    )
    assert (
        device.refused(mb.ZONE_INSTALL, {**body, "chain": [OTHER_ZONE.issuer_der]})
        is Status.NOT_ALLOWED
    )
    device.ok(mb.ZONE_INSTALL, body)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"cert": "text", "chain": [], "root": b"x", "owner": "a"},
        {"cert": b"\x30\x00", "chain": [b"x"], "root": b"x", "owner": "a"},
        {"cert": b"x" * 5000, "chain": [b"x"], "root": b"x", "owner": "a"},
        {"cert": b"x", "chain": [b"x", b"x", b"x"], "root": b"x", "owner": "a"},
        {"cert": b"x", "chain": [b"x"], "root": b""},
    ],
)
def test_malformed_install_bodies_get_typed_errors(body: dict[str, Any]) -> None:
    device = Device()
    device.ok(mb.ZONE_KEY)
    assert device.refused(mb.ZONE_INSTALL, body) in (Status.BAD_REQUEST, Status.NOT_ALLOWED)
    device.enrol()  # and the session goes on


def test_a_member_refuses_a_second_zone() -> None:
    first = Device()
    first.enrol()
    committed = {k: v for k, v in first.commit().items() if v is not None}
    again = Device(committed=committed)
    assert again.refused(mb.ZONE_KEY) is Status.NOT_ALLOWED


def test_disconnect_drops_everything_staged() -> None:
    device = Device()
    device.enrol()
    device.m.connection_lost(3.0)
    assert device.m.rolled_back == 1
    assert device.refused("commit") is Status.FAILSAFE_EXPIRED


def test_failsafe_expiry_drops_staged_zone_records() -> None:
    device = Device()
    device.enrol()
    deadline = device.m.next_deadline()
    assert deadline is not None
    device.m.handle_timer(deadline + 1)
    assert device.refused("commit") is Status.FAILSAFE_EXPIRED


def test_device_clock_before_the_certificate_still_installs() -> None:
    # A virgin device without an RTC may think it is 1970.
    device = Device(wall_clock=datetime(1970, 1, 2, tzinfo=UTC))
    device.enrol()
    assert mb.RECORD_ZONE in device.commit()


def test_peer_binding_pins_the_host_and_returns_the_device_identity() -> None:
    host = PeerIdentity.create("laptop-alice", now=NOW)
    device = Device()
    answer = device.ok(mb.PEER_BIND, mb.bind_body(host))
    device_pin = mb.parse_bind_response(answer)
    assert device_pin.name == DEVICE_ID
    records = device.commit()
    identity = PeerIdentity.from_bytes(records[mb.RECORD_PEER_IDENTITY] or b"")
    assert identity.pin == device_pin
    pins = PinSet.from_bytes(records[mb.RECORD_PEER_PINS] or b"")
    assert pins.match(host.cert_der).name == "laptop-alice"
    owner = mb.Owner.decode(records[mb.RECORD_OWNER] or b"")
    assert owner == mb.Owner("peer", host.fingerprint, "laptop-alice")


def _owned_by(host: PeerIdentity) -> dict[str, bytes]:
    device = Device()
    device.ok(mb.PEER_BIND, mb.bind_body(host))
    return {k: v for k, v in device.commit().items() if v is not None}


def test_a_factory_session_on_an_owned_device_may_only_read_info() -> None:
    committed = _owned_by(PeerIdentity.create("laptop-alice", now=NOW))
    # Whatever authority the adapter claims for a factory credential, the core demotes it.
    device = Device(committed=committed, session=b"session-2")
    assert device.ok("info")["device_id"] == DEVICE_ID
    stranger = PeerIdentity.create("laptop-alice", now=NOW)
    assert device.refused(mb.PEER_BIND, mb.bind_body(stranger)) is Status.NOT_ALLOWED
    assert device.refused(mb.ZONE_KEY) is Status.NOT_ALLOWED
    for endpoint in ("wifi/set", "wifi/scan", "commit", "failsafe"):
        assert device.refused(endpoint) is Status.NOT_ALLOWED


def test_an_admin_window_binds_one_admin_and_nothing_else() -> None:
    first_host = PeerIdentity.create("laptop-alice", now=NOW)
    committed = _owned_by(first_host)
    identity = mb.peer_identity_of(committed)
    assert identity is not None
    later = Device(committed=committed, session=b"session-2", authority=enr.Authority.ADMIN)
    assert later.refused("wifi/set") is Status.NOT_ALLOWED
    assert later.refused(mb.ZONE_KEY) is Status.NOT_ALLOWED
    assert later.refused("commit") is Status.NOTHING_TO_COMMIT
    second_host = PeerIdentity.create("tv-remote", now=NOW)
    second_pin = mb.parse_bind_response(later.ok(mb.PEER_BIND, mb.bind_body(second_host)))
    assert second_pin == identity.pin  # one long-term identity
    records = later.commit()
    assert mb.RECORD_PEER_IDENTITY not in records
    assert PinSet.from_bytes(records[mb.RECORD_PEER_PINS] or b"").names() == sorted(
        ["laptop-alice", "tv-remote"]
    )
    owner = mb.Owner.decode(records[mb.RECORD_OWNER] or b"")
    assert owner.is_owner(first_host.fingerprint) and not owner.is_owner(second_host.fingerprint)
    assert owner.admins == (second_host.fingerprint,)
    again = Device(
        committed={**committed, **{k: v for k, v in records.items() if v}},
        authority=enr.Authority.ADMIN,
    )
    assert again.refused(mb.PEER_BIND, mb.bind_body(second_host)) is Status.NOT_ALLOWED


def test_a_handover_replaces_the_owner_and_everything_that_was_theirs() -> None:
    old_owner = PeerIdentity.create("laptop-alice", now=NOW)
    committed = _owned_by(old_owner)
    handover = Device(committed=committed, authority=enr.Authority.HANDOVER)
    assert handover.refused("commit") is Status.NOTHING_TO_COMMIT
    new_owner = PeerIdentity.create("laptop-bob", now=NOW)
    new_pin = mb.parse_bind_response(handover.ok(mb.PEER_BIND, mb.bind_body(new_owner)))
    old_identity = mb.peer_identity_of(committed)
    assert old_identity is not None and new_pin.cert_der != old_identity.cert_der
    records = handover.commit()
    merged = {k: v for k, v in {**committed, **records}.items() if v is not None}
    owner = mb.owner_of(merged)
    assert owner is not None and owner.is_owner(new_owner.fingerprint) and owner.admins == ()
    assert mb.pins_of(merged).names() == ["laptop-bob"]


def test_a_handover_must_bind_the_new_owner() -> None:
    committed = _owned_by(PeerIdentity.create("laptop-alice", now=NOW))
    handover = Device(committed=committed, authority=enr.Authority.HANDOVER)
    handover.ok("wifi/set", credentials_body(GOOD))  # the new owner's Wi-Fi, but no owner
    handover.m.join_done(Connected("192.0.2.9"), 1.5)
    assert handover.refused("commit") is Status.NOT_ALLOWED


def test_peer_bind_refuses_a_bad_certificate() -> None:
    device = Device()
    assert device.refused(mb.PEER_BIND, {"cert": b"\x30\x03\x02\x01\x01"}) is Status.NOT_ALLOWED
    assert device.refused(mb.PEER_BIND, {"cert": 5}) is Status.BAD_REQUEST
    assert device.refused(mb.PEER_BIND, {}) is Status.BAD_REQUEST


def test_records_reject_garbage_with_typed_errors() -> None:
    for raw in (b"", b"\xff", b"\xa1\x61v\x02", b"x" * 40000):
        with pytest.raises(mb.MembershipError):
            mb.ZoneMembership.decode(raw)
        with pytest.raises(mb.MembershipError):
            mb.Owner.decode(raw)


def test_zone_record_round_trips_and_hides_nothing_it_should_not_print() -> None:
    device = Device()
    device.enrol()
    raw = device.commit()[mb.RECORD_ZONE] or b""
    membership = mb.ZoneMembership.decode(raw)
    assert mb.ZoneMembership.decode(membership.encode()).cert_der == membership.cert_der
    assert "PRIVATE" not in repr(membership) and "key" not in repr(membership)
    assert membership.serial > 0
    assert membership.certificate.root_der == ZONE.root_der
    _ = timedelta  # validity is the zone's business


def test_the_zone_key_is_pushed_unasked_to_a_session_that_may_enrol_and_installs() -> None:
    """The handshake's answer flight carries the zone key and its proof: no round trip
    asks for them, and the certificate issued for it installs (it is the pending key)."""
    device = Device()
    [sent] = device.m.start(0.0)
    assert isinstance(sent, enr.Send)
    notice = decode(sent.data)
    assert isinstance(notice, Notification) and notice.topic == "session"
    assert notice.body["authority"] == "installer"
    pushed = {"key": notice.body["zone_key"], "pop": notice.body["zone_pop"]}
    issued = issue(ZONE, pushed, device.binding)
    device.ok(mb.ZONE_INSTALL, mb.install_body(issued))
    assert set(device.commit()) == {mb.RECORD_ZONE, mb.RECORD_OWNER}


def test_no_zone_key_is_pushed_to_a_session_that_may_not_enrol() -> None:
    host = PeerIdentity.create("laptop", now=NOW)
    observer = Device(committed=_owned_by(host))
    [sent] = observer.m.start(0.0)
    assert isinstance(sent, enr.Send)
    assert decode(sent.data) == Notification("session", {"authority": "observer"})
    admin = Device(committed=_owned_by(host), authority=enr.Authority.ADMIN)
    [sent] = admin.m.start(0.0)
    assert isinstance(sent, enr.Send)
    assert decode(sent.data) == Notification("session", {"authority": "admin"})
