"""The device's enrolment machine by hand: staging, proof, commit, fail-safe, errors."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.enrolment import device as enr
from bleprov.core.enrolment.messages import (
    Endpoint,
    Notification,
    Request,
    Response,
    Status,
    Topic,
    credentials_body,
    decode,
    encode,
    parse_scan_entry,
    parse_status,
)
from bleprov.core.errors import LocalProtocolError
from bleprov.core.wifi import (
    Connected,
    Failed,
    JoinFailure,
    ScanResult,
    WifiCredentials,
    WifiSecurity,
)

GOOD = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase="correct horse")
BAD = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase="wrong horse!")


class Host:
    """Drives a machine and decodes what it sends."""

    def __init__(self, **config: Any) -> None:
        self.m = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("DEV1", **config), now=0.0)
        self.next_id = 1
        self.effects: list[enr.Effect] = []

    def ask(self, endpoint: str, body: dict[str, Any] | None = None, now: float = 1.0) -> int:
        rid = self.next_id
        self.next_id += 1
        self.effects = self.m.receive(encode(Request(rid, endpoint, body or {})), now)
        return rid

    def sent(self) -> list[Response | Notification]:
        out = []
        for e in self.effects:
            if isinstance(e, enr.Send):
                msg = decode(e.data)
                assert isinstance(msg, Response | Notification)
                out.append(msg)
        return out

    def response(self, rid: int) -> Response:
        return next(m for m in self.sent() if isinstance(m, Response) and m.id == rid)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]


def test_info_lists_capabilities_and_vendor_endpoints() -> None:
    registry = enr.EndpointRegistry()
    registry.register("vendor/led", lambda body: {"on": body.get("on", False)})
    host = Host()
    host.m.registry = registry
    rid = host.ask(Endpoint.INFO)
    body = host.response(rid).body
    assert body["device_id"] == "DEV1"
    assert "vendor/led" in body["capabilities"]
    rid = host.ask("vendor/led", {"on": True})
    assert host.response(rid).body == {"on": True}


def test_vendor_names_are_namespaced() -> None:
    with pytest.raises(ValueError, match="vendor/"):
        enr.EndpointRegistry().register("commit", lambda b: {})


def test_scan_streams_every_result_in_chunks() -> None:
    host = Host()
    rid = host.ask(Endpoint.WIFI_SCAN)
    assert host.of(enr.StartScan) == [enr.StartScan(False)]
    results = [
        ScanResult(
            f"ap{i}".encode(),
            f"00:00:00:00:00:{i:02x}",
            -30 - i % 60,
            1 + i % 11,
            WifiSecurity.WPA2_PERSONAL,
        )
        for i in range(100)
    ]
    host.effects = host.m.scan_done(results, 2.0)
    chunks = [m for m in host.sent() if isinstance(m, Notification)]
    assert len(chunks) == 7
    assert [c.body["last"] for c in chunks] == [False] * 6 + [True]
    got = [parse_scan_entry(e) for c in chunks for e in c.body["entries"]]
    assert sorted(got, key=lambda r: r.ssid) == sorted(results, key=lambda r: r.ssid)
    assert host.response(rid).body == {"count": 100}
    assert all(len(encode(c)) < 2000 for c in chunks)


def test_wrong_password_then_right_one_in_one_session_then_commit() -> None:
    host = Host()
    rid = host.ask(Endpoint.WIFI_SET, credentials_body(BAD))
    assert host.response(rid).status == Status.OK
    [join] = host.of(enr.StartJoin)
    assert join.credentials == BAD
    host.effects = host.m.join_done(Failed(JoinFailure.WRONG_PASSWORD), 2.0)
    [status] = host.sent()
    assert isinstance(status, Notification)
    parsed = parse_status(status.body)
    assert parsed.reason is JoinFailure.WRONG_PASSWORD
    assert parsed.attempts_left == 4
    rid = host.ask(Endpoint.COMMIT)
    assert host.response(rid).status == Status.NOT_PROVEN
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    host.effects = host.m.join_done(Connected("192.168.1.23"), 3.0)
    assert parse_status(host.sent()[0].body).ip == "192.168.1.23"
    rid = host.ask(Endpoint.COMMIT)
    [commit] = host.of(enr.Commit)
    assert set(commit.records) == {"wifi"}
    assert b"correct horse" in (commit.records["wifi"] or b"")  # the store encrypts it
    host.effects = host.m.commit_done(None, 4.0)
    assert host.response(rid).status == Status.OK
    assert host.m.committed
    assert host.m.next_deadline() is None
    assert host.m.connection_lost(5.0) == []  # committed: nothing to roll back


def test_busy_while_joining() -> None:
    host = Host()
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    rid = host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    assert host.response(rid).status == Status.BUSY


def test_attempts_run_out() -> None:
    host = Host(join_attempts=1)
    host.ask(Endpoint.WIFI_SET, credentials_body(BAD))
    host.m.join_done(Failed(JoinFailure.WRONG_PASSWORD), 2.0)
    rid = host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    assert host.response(rid).status == Status.NOT_ALLOWED


def test_disconnect_before_commit_rolls_back() -> None:
    host = Host()
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    host.m.join_done(Connected("10.0.0.2"), 2.0)
    assert host.m.connection_lost(3.0) == [enr.Rollback()]


def test_failsafe_timer_rolls_back_and_tells_the_host() -> None:
    host = Host(default_failsafe=120.0)
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD), now=10.0)
    assert host.m.next_deadline() == 130.0
    assert host.m.handle_timer(129.0) == []
    host.effects = host.m.handle_timer(130.0)
    assert enr.Rollback() in host.effects
    [note] = [m for m in host.sent() if isinstance(m, Notification)]
    assert note.topic == Topic.FAILSAFE
    rid = host.ask(Endpoint.COMMIT, now=131.0)
    assert host.response(rid).status == Status.FAILSAFE_EXPIRED
    # The join that was running when the timer fired reports late: ignored.
    assert host.m.join_done(Connected("10.0.0.9"), 132.0) == []


def test_host_extends_the_failsafe_up_to_a_cap() -> None:
    host = Host()
    rid = host.ask(Endpoint.FAILSAFE, {"seconds": 5000}, now=0.0)
    assert host.response(rid).body == {"expires_in": enr.MAX_FAILSAFE}
    assert host.m.next_deadline() == enr.MAX_FAILSAFE


def test_commit_failure_rolls_back() -> None:
    host = Host()
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    host.m.join_done(Connected("10.0.0.2"), 2.0)
    rid = host.ask(Endpoint.COMMIT)
    host.effects = host.m.commit_done("disk full", 3.0)
    assert enr.Rollback() in host.effects
    assert host.response(rid).status == Status.INTERNAL
    assert not host.m.committed


def test_abort_rolls_back() -> None:
    host = Host()
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    rid = host.ask(Endpoint.ABORT)
    assert enr.Rollback() in host.effects
    assert host.response(rid).status == Status.OK


def test_remote_factory_reset_is_refused_without_an_owner() -> None:
    host = Host()
    rid = host.ask(Endpoint.FACTORY_RESET)
    assert host.response(rid).status == Status.NOT_ALLOWED


def test_unknown_endpoint_and_bad_bodies_get_typed_errors_and_the_session_goes_on() -> None:
    host = Host()
    rid = host.ask("no/such")
    assert host.response(rid).status == Status.UNKNOWN_ENDPOINT
    rid = host.ask(Endpoint.WIFI_SET, {"ssid": "not bytes", "security": 1})
    assert host.response(rid).status == Status.BAD_REQUEST
    rid = host.ask(Endpoint.WIFI_SET, {"ssid": b"x", "security": 1, "passphrase": "short"})
    assert host.response(rid).status == Status.BAD_REQUEST
    rid = host.ask(Endpoint.FAILSAFE, {"seconds": -1})
    assert host.response(rid).status == Status.BAD_REQUEST
    rid = host.ask(Endpoint.INFO)
    assert host.response(rid).status == Status.OK


def test_malformed_message_gets_an_error_notification() -> None:
    host = Host()
    host.effects = host.m.receive(b"\xff\x00", 1.0)
    [note] = host.sent()
    assert isinstance(note, Notification)
    assert note.body["status"] == Status.BAD_REQUEST


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda i, e, b: cbor2.dumps([0, i, e, b], canonical=True),
            st.integers(0, 2**32),
            st.text(max_size=20),
            st.dictionaries(
                st.text(max_size=8),
                st.one_of(st.integers(), st.binary(max_size=40), st.text(max_size=70)),
                max_size=5,
            ),
        ),
    )
)
def test_fuzzed_messages_only_ever_produce_replies(raw: bytes) -> None:
    host = Host()
    effects = host.m.receive(raw, 1.0)
    assert all(isinstance(e, enr.Send | enr.StartScan | enr.StartJoin) for e in effects)
    for e in effects:
        if isinstance(e, enr.Send):
            decode(e.data)


def test_a_commit_under_way_is_not_undone_by_a_disconnect() -> None:
    host = Host()
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    host.m.join_done(Connected("10.0.0.2"), 2.0)
    host.ask(Endpoint.COMMIT)
    assert host.of(enr.Commit)
    assert host.m.connection_lost(3.0) == []


def _commit_under_way(host: Host) -> int:
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD), now=1.0)
    host.m.join_done(Connected("10.0.0.2"), 2.0)
    rid = host.ask(Endpoint.COMMIT, now=3.0)
    assert host.of(enr.Commit)
    return rid


def test_the_failsafe_does_not_undo_a_commit_under_way() -> None:
    """A commit is the point of no return: the fail-safe expiring while the store writes
    must not roll the network back under it (the device would keep a committed record of
    a network it left)."""
    host = Host(default_failsafe=120.0)
    rid = _commit_under_way(host)
    # No deadline while the commit is written: a timer armed at the passed deadline would
    # fire again at once, for as long as the store takes (a busy loop).
    assert host.m.next_deadline() is None
    assert host.m.handle_timer(500.0) == []
    host.effects = host.m.commit_done(None, 501.0)
    assert host.response(rid).status == Status.OK
    assert host.m.committed and not host.m.rolled_back


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (Endpoint.ABORT, {}),
        (Endpoint.WIFI_SET, credentials_body(BAD)),
        (Endpoint.FAILSAFE, {"seconds": 10}),
    ],
)
def test_a_commit_under_way_ends_as_it_began_and_what_follows_waits_for_its_answer(
    endpoint: str, body: dict[str, Any]
) -> None:
    """ABORT, another wifi/set or a new fail-safe sent while the commit writes wait (in
    order) for the commit's answer, not half-applied: the commit ends as it began, and
    they are handled after it."""
    host = Host()
    commit_id = _commit_under_way(host)
    rid = host.ask(endpoint, body, now=3.5)
    assert host.effects == []  # waits: neither answered nor applied
    host.effects = host.m.commit_done(None, 4.0)
    sent = host.sent()
    assert [m.id for m in sent if isinstance(m, Response)] == [commit_id, rid]
    assert host.response(commit_id).status == Status.OK
    assert host.response(rid).status == Status.OK
    assert host.m.committed and not host.m.rolled_back
    assert not host.of(enr.Rollback)


# -------------------------------------------------------------- enrolment receipts


def _session_keys() -> dict[str, Any]:
    """What a session adapter gives the machine: a binding and an exporter by label."""
    import hashlib

    return {
        "channel_binding": lambda label: hashlib.sha256(b"binding " + label).digest(),
        "exporter": lambda label: hashlib.sha256(b"export " + label).digest(),
    }


def test_every_commit_writes_which_enrolment_it_was_and_its_receipt() -> None:
    from bleprov.core.receipt import RECORD_ENROLMENT, EnrolmentReceipt, decode_record

    keys = _session_keys()
    host = Host(can_prove_join=False, **keys)
    receipt = EnrolmentReceipt.of_session(keys["channel_binding"], keys["exporter"])
    assert host.m.receipt == receipt
    host.ask(Endpoint.WIFI_SET, credentials_body(GOOD))
    host.ask(Endpoint.COMMIT)
    [commit] = host.of(enr.Commit)
    record = decode_record(commit.records[RECORD_ENROLMENT])
    assert record.enrolment_id == receipt.enrolment_id
    assert record.verifier == receipt.verifier()  # the verifier only, never the secret
    assert receipt.secret not in commit.records[RECORD_ENROLMENT]
    # A later session, on the committed records, says which enrolment it was.
    later = Host(committed={RECORD_ENROLMENT: commit.records[RECORD_ENROLMENT]})
    rid = later.ask(Endpoint.ENROLMENT_STATUS, {"id": receipt.enrolment_id})
    assert later.response(rid).body == {"committed": True}
    rid = later.ask(Endpoint.ENROLMENT_STATUS, {"id": bytes(16)})
    assert later.response(rid).body == {"committed": False}
    rid = later.ask(Endpoint.ENROLMENT_STATUS, {"id": b"short"})
    assert later.response(rid).status == Status.BAD_REQUEST
    virgin = Host()  # nothing committed yet
    rid = virgin.ask(Endpoint.ENROLMENT_STATUS, {"id": receipt.enrolment_id})
    assert virgin.response(rid).body == {"committed": False}


def test_a_receipt_session_may_only_ask_what_became_of_its_enrolment() -> None:
    host = Host(authority=enr.Authority.RECEIPT, **_session_keys())
    assert host.m.receipt is None  # it changes nothing, so it makes no receipt
    rid = host.ask(Endpoint.INFO)
    assert host.response(rid).status == Status.OK
    rid = host.ask(Endpoint.ENROLMENT_STATUS, {"id": bytes(16)})
    assert host.response(rid).body == {"committed": False}
    for endpoint, body in [
        (Endpoint.WIFI_SCAN, {}),
        (Endpoint.WIFI_SET, credentials_body(GOOD)),
        (Endpoint.FAILSAFE, {"seconds": 10}),
        (Endpoint.COMMIT, {}),
        (Endpoint.ABORT, {}),
        ("vendor/led", {}),
    ]:
        rid = host.ask(endpoint, body)
        response = host.response(rid)
        assert response.status == Status.NOT_ALLOWED, endpoint
        assert "receipt" in response.body["error"]
    assert enr.Authority.of(owned=True, window=None, receipt=True) is enr.Authority.RECEIPT


def test_the_wifi_stage_moves_only_through_its_table() -> None:
    """Every stage can be rolled back; a move the table lacks is this machine's bug."""
    moves = enr._WIFI_MOVES
    assert all((stage, enr.WifiEvent.ROLLED_BACK) in moves for stage in enr.WifiStage)
    assert (enr.WifiStage.JOINING, enr.WifiEvent.STAGE) not in moves  # refused as BUSY
    machine = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("dev-1"), now=0.0)
    assert machine.wifi_stage is enr.WifiStage.NONE
    with pytest.raises(LocalProtocolError, match="joined is not possible while none"):
        machine._move(enr.WifiEvent.JOINED)
    assert machine.wifi_stage is enr.WifiStage.NONE


# ------------------------------------------------------------------- pipelining


def _answers(effects: list[enr.Effect]) -> list[tuple[int, int]]:
    out = []
    for effect in effects:
        if isinstance(effect, enr.Send):
            message = decode(effect.data)
            if isinstance(message, Response):
                out.append((message.id, message.status))
    return out


def test_a_pipelined_commit_waits_for_the_join_and_everything_is_answered_in_order() -> None:
    """wifi/set, COMMIT and a request behind it in one flight: the commit is held until
    the join is proven (not refused as not proven), written, answered; then the rest."""
    machine = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("DEV1"), now=0.0)
    first = machine.receive(encode(Request(1, Endpoint.WIFI_SET, credentials_body(GOOD))), 1.0)
    assert _answers(first) == [(1, Status.OK)]
    assert machine.receive(encode(Request(2, Endpoint.COMMIT, {})), 1.0) == []
    assert machine.receive(encode(Request(3, Endpoint.INFO, {})), 1.0) == []  # waits its turn
    assert machine.next_deadline() is not None  # held, not yet the point of no return
    joined = machine.join_done(Connected("10.0.0.9"), 2.0)
    [commit] = [e for e in joined if isinstance(e, enr.Commit)]
    assert set(commit.records) == {"wifi"}
    assert _answers(joined) == []
    assert machine.next_deadline() is None  # written now: the point of no return
    assert _answers(machine.commit_done(None, 3.0)) == [(2, Status.OK), (3, Status.OK)]
    assert machine.committed


def test_a_held_commit_dies_with_its_session_and_with_the_fail_safe() -> None:
    """Held for its join, a commit has not begun: a lost session or the fail-safe rolls
    everything back, and nothing is written when the join then succeeds."""
    lost = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("DEV1"), now=0.0)
    lost.receive(encode(Request(1, Endpoint.WIFI_SET, credentials_body(GOOD))), 1.0)
    lost.receive(encode(Request(2, Endpoint.COMMIT, {})), 1.0)
    assert lost.connection_lost(1.5) == [enr.Rollback()]
    assert lost.join_done(Connected("10.0.0.9"), 2.0) == []
    assert not lost.committed

    expired = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("DEV1"), now=0.0)
    expired.receive(encode(Request(1, Endpoint.WIFI_SET, credentials_body(GOOD))), 1.0)
    expired.receive(encode(Request(2, Endpoint.COMMIT, {})), 1.0)
    deadline = expired.next_deadline()
    assert deadline is not None
    effects = expired.handle_timer(deadline)
    assert enr.Rollback() in effects
    assert _answers(effects) == [(2, Status.FAILSAFE_EXPIRED)]
    assert not [
        e for e in expired.join_done(Connected("10.0.0.9"), 200.0) if isinstance(e, enr.Commit)
    ]


def test_a_commit_behind_a_refused_request_commits_nothing() -> None:
    """A pipeline never commits half of what its host sent: a request refused since the
    last commit's answer makes the commit refused; the next commit starts afresh."""
    machine = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("DEV1", can_prove_join=False), now=0.0)
    machine.receive(encode(Request(1, Endpoint.WIFI_SET, credentials_body(GOOD))), 1.0)
    assert _answers(machine.receive(encode(Request(2, "vendor/none", {})), 1.0)) == [
        (2, Status.UNKNOWN_ENDPOINT)
    ]
    effects = machine.receive(encode(Request(3, Endpoint.COMMIT, {})), 1.0)
    assert _answers(effects) == [(3, Status.NOT_ALLOWED)]
    assert not [e for e in effects if isinstance(e, enr.Commit)]
    again = machine.receive(encode(Request(4, Endpoint.COMMIT, {})), 1.0)
    assert [e for e in again if isinstance(e, enr.Commit)]


def test_the_session_notification_goes_first_with_the_authority() -> None:
    machine = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("DEV1"), now=0.0)
    [sent] = machine.start(0.0)
    assert isinstance(sent, enr.Send)
    assert decode(sent.data) == Notification(Topic.SESSION, {"authority": "installer"})
