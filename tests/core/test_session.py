"""The session state machines end to end, by hand: every mode, every refusal, no radio."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import DeviceInfo, DeviceState, OobMode
from bleprov.core.attempts import AttemptLimiter, AttemptLimits, ButtonWindow, Credential, LockedOut
from bleprov.core.crypto.spake2plus import ScryptCost, derive_verifier
from bleprov.core.device_secrets import SPAKE_ID_VERIFIER
from bleprov.core.identity import (
    IntermediateCache,
    Manufacturer,
    TrustPolicy,
    UnknownManufacturer,
)
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.common import SessionNotOpen
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import AuthenticationFailed, UserRejected

NOW = datetime(2026, 11, 24, tzinfo=UTC)
CHEAP = ScryptCost(n=1 << 10, r=8, p=1)
SALT = bytes(range(16))
CODE = b"48613702"
MANUFACTURER = Manufacturer.create("Acme Devices", now=NOW)
IDENTITY = MANUFACTURER.issue_device(now=NOW)
LABEL_SECRET = os.urandom(16)
#: A host that knows the manufacturer's intermediate: no fetch (a first contact, which
#: fetches it, is tests/core/test_protocol_v2.py's).
TRUST = hst.Trust(
    (MANUFACTURER.root_certificate.public_bytes(Encoding.DER),),
    TrustPolicy.REFUSE,
    IntermediateCache([MANUFACTURER.intermediate_certificate.public_bytes(Encoding.DER)]),
)
ALL = OobMode.QR | OobMode.CODE | OobMode.COMPARE | OobMode.BUTTON | OobMode.PASSKEY


def info(modes: OobMode = ALL) -> bytes:
    return DeviceInfo(
        protocol_version=2,
        state=DeviceState.VIRGIN,
        modes=modes,
        discriminator=0x123,
        max_message=65536,
        rx_window=16,
        profile_version=1,
        pbkdf_salt=SALT,
        pbkdf_cost=(CHEAP.log2_n, CHEAP.r, CHEAP.p),
    ).encode()


def secrets_(users: dict[bytes, bytes] | None = None) -> dev.DeviceSecrets:
    users = users if users is not None else {b"": CODE}
    records = {
        user: derive_verifier(
            pw, salt=SALT, id_prover=user, id_verifier=SPAKE_ID_VERIFIER, cost=CHEAP
        ).verifier_record()
        for user, pw in users.items()
    }
    return dev.DeviceSecrets(IDENTITY, label_secret=LABEL_SECRET, code_records=records)


def qr_secret() -> hst.QrSecret:
    return hst.QrSecret(IDENTITY.noise_static_public_key, LABEL_SECRET)


@dataclass
class Run:
    host_events: list[hst.HostEvent] = field(default_factory=list)
    device_events: list[dev.DeviceEvent] = field(default_factory=list)
    messages: int = 0
    round_trips: int = 0


def make_device(
    *,
    modes: OobMode = ALL,
    limits: AttemptLimits | None = None,
    button: ButtonWindow | None = None,
    connection: str = "host-a",
    device_confirms: bool = True,
    device_info: bytes | None = None,
) -> dev.DeviceSession:
    """A device with a display and a button (it confirms compared numbers) by default."""
    return dev.DeviceSession(
        secrets=secrets_(),
        policy=modes,
        device_info=device_info or info(modes),
        limits=limits if limits is not None else AttemptLimits(),
        button=button or ButtonWindow(),
        connection=connection,
        now=0.0,
        device_confirms=device_confirms,
    )


def make_host(
    mode: Mode, secret: hst.OutOfBand, *, device_info: bytes | None = None, trust: hst.Trust = TRUST
) -> hst.HostSession:
    return hst.HostSession(
        mode=mode,
        secret=secret,
        device_info=device_info or info(),
        trust=trust,
        wall_clock=NOW,
        now=0.0,
    )


def pump(
    host: hst.HostSession,
    device: dev.DeviceSession,
    first: list[hst.HostEvent],
    *,
    accept: bool = True,
    device_accepts: bool | None = True,
    typed: int | None = None,
    run: Run | None = None,
) -> Run:
    """Deliver messages both ways until quiet; answer compare prompts with ``accept`` on
    the host and ``device_accepts`` on the device (None: its user does nothing), and
    type the device's number in passkey mode (or ``typed``)."""
    run = run or Run()
    to_device = [e.data for e in first if isinstance(e, hst.SendMessage)]
    run.host_events += first
    while to_device:
        run.round_trips += 1
        to_host: list[bytes] = []
        for m in to_device:
            run.messages += 1
            events = device.receive(m, 1.0)
            shown = any(isinstance(e, dev.ShowNumber) for e in events)
            if shown and device.mode is Mode.COMPARE and device_accepts is not None:
                events += device.confirm_number(device_accepts, 1.0)
            run.device_events += events
            to_host += [e.data for e in events if isinstance(e, dev.SendMessage)]
        to_device = []
        for m in to_host:
            run.messages += 1
            events = host.receive(m, 1.0)
            for e in list(events):
                if isinstance(e, hst.CompareNumber):
                    events += host.confirm_number(accept, 1.0)
                if isinstance(e, hst.PasskeyRequested):
                    assert device.number is not None
                    events += host.enter_passkey(typed if typed is not None else device.number, 1.0)
            run.host_events += events
            to_device += [e.data for e in events if isinstance(e, hst.SendMessage)]
    return run


def established(run: Run) -> hst.Established | None:
    return next((e for e in run.host_events if isinstance(e, hst.Established)), None)


def ended(events: list) -> BaseException | None:  # type: ignore[type-arg]
    for e in events:
        if isinstance(e, (hst.SessionEnded, dev.SessionEnded)):
            return e.error
    return None


def exchange_application_data(host: hst.HostSession, device: dev.DeviceSession) -> None:
    [up] = host.send(b"hello device", 2.0)
    assert isinstance(up, hst.SendMessage)
    assert dev.ApplicationData(b"hello device") in device.receive(up.data, 2.0)
    [down] = device.send(b"hello host", 2.0)
    assert isinstance(down, dev.SendMessage)
    assert hst.ApplicationData(b"hello host") in host.receive(down.data, 2.0)


@pytest.mark.parametrize(
    ("mode", "secret"),
    [
        (Mode.QR, "qr"),
        (Mode.CODE, "code"),
        (Mode.COMPARE, None),
        (Mode.BUTTON, None),
        (Mode.PASSKEY, None),
    ],
)
def test_every_mode_completes(mode: Mode, secret: str | None) -> None:
    button = ButtonWindow()
    button.press(0.0)
    device = make_device(button=button)
    oob = qr_secret() if secret == "qr" else hst.CodeSecret(CODE) if secret == "code" else None
    host = make_host(mode, oob)
    run = pump(host, device, host.start(0.0))
    est = established(run)
    assert est is not None, run.host_events
    assert est.attestation.device_id == IDENTITY.device_id
    assert est.attestation.trusted
    assert dev.Authenticated(mode, dev.CREDENTIALS[mode]) in run.device_events
    assert host.is_open and device.is_open
    exchange_application_data(host, device)
    expected_round_trips = {
        Mode.QR: 1,
        Mode.BUTTON: 1,
        Mode.CODE: 2,
        Mode.COMPARE: 3,
        Mode.PASSKEY: 3,
    }
    assert run.round_trips == expected_round_trips[mode]


def test_compare_shows_the_same_number_on_both_sides() -> None:
    device = make_device()
    host = make_host(Mode.COMPARE, None)
    run = pump(host, device, host.start(0.0))
    shown = [e.number for e in run.device_events if isinstance(e, dev.ShowNumber)]
    asked = [e.number for e in run.host_events if isinstance(e, hst.CompareNumber)]
    assert shown == asked
    assert 0 <= shown[0] < 1_000_000


def test_compare_rejected_by_the_user_ends_both_sides() -> None:
    device = make_device()
    host = make_host(Mode.COMPARE, None)
    run = pump(host, device, host.start(0.0), accept=False)
    assert isinstance(ended(run.host_events), UserRejected)
    device_error = ended(run.device_events)
    assert isinstance(device_error, dev.ClosedByPeer)
    assert device_error.code == UserRejected.code
    assert not device.is_open
    assert established(run) is None


def test_compare_waits_for_the_device_button_when_it_has_one() -> None:
    device = make_device(device_confirms=True)
    host = make_host(Mode.COMPARE, None)
    run = pump(host, device, host.start(0.0), device_accepts=None)
    assert established(run) is None  # the device has not confirmed yet
    events = device.confirm_number(True, 2.0)
    for e in events:
        if isinstance(e, dev.SendMessage):
            run.host_events += host.receive(e.data, 2.0)
    assert established(run) is not None


def test_wrong_code_fails_and_is_counted() -> None:
    limits = AttemptLimits()
    device = make_device(limits=limits)
    host = make_host(Mode.CODE, hst.CodeSecret(b"11111112"))
    run = pump(host, device, host.start(0.0))
    assert isinstance(ended(run.host_events), AuthenticationFailed)
    assert limits[Credential.CODE].failures == 1
    persisted = [e for e in run.device_events if isinstance(e, dev.PersistAttempts)]
    assert AttemptLimits.from_bytes(persisted[0].state)[Credential.CODE].failures == 1
    # The count was stored before the device's reply left.
    kinds = [type(e) for e in run.device_events]
    assert kinds.index(dev.PersistAttempts) < kinds.index(dev.SendMessage)


def test_scratch_card_user_and_password() -> None:
    device = dev.DeviceSession(
        secrets=secrets_({b"ABCD2345": b"JKMN-PQRS-TVWX"}),
        policy=ALL,
        device_info=info(),
        limits=AttemptLimits(),
        button=ButtonWindow(),
        connection="c",
        now=0.0,
    )
    good = make_host(Mode.CODE, hst.CodeSecret(b"JKMN-PQRS-TVWX", user=b"ABCD2345"))
    assert established(pump(good, device, good.start(0.0))) is not None
    device2 = dev.DeviceSession(
        secrets=secrets_({b"ABCD2345": b"JKMN-PQRS-TVWX"}),
        policy=ALL,
        device_info=info(),
        limits=AttemptLimits(),
        button=ButtonWindow(),
        connection="c",
        now=0.0,
    )
    wrong_user = make_host(Mode.CODE, hst.CodeSecret(b"JKMN-PQRS-TVWX", user=b"ABCD2346"))
    run = pump(wrong_user, device2, wrong_user.start(0.0))
    # As a wrong password fails: no REFUSED at HELLO that would tell users apart.
    assert isinstance(ended(run.host_events), AuthenticationFailed)


def test_wrong_label_secret_fails_and_the_count_is_stored_before_the_refusal() -> None:
    limits = AttemptLimits()
    device = make_device(limits=limits)
    host = make_host(Mode.QR, hst.QrSecret(IDENTITY.noise_static_public_key, os.urandom(16)))
    run = pump(host, device, host.start(0.0))
    error = ended(run.host_events)
    assert isinstance(error, hst.DeviceRefused)
    assert isinstance(error.reason, AuthenticationFailed)
    assert limits[Credential.LABEL].failures == 1
    kinds = [type(e) for e in run.device_events]
    assert kinds[:2] == [dev.PersistAttempts, dev.SendMessage]  # stored, then refused
    persisted = run.device_events[0]
    assert isinstance(persisted, dev.PersistAttempts)
    assert AttemptLimits.from_bytes(persisted.state)[Credential.LABEL].failures == 1


def test_wrong_device_key_fails_on_the_host() -> None:
    other = MANUFACTURER.issue_device(now=NOW)
    device = make_device()
    host = make_host(Mode.QR, hst.QrSecret(other.noise_static_public_key, LABEL_SECRET))
    run = pump(host, device, host.start(0.0))
    assert ended(run.host_events) is not None
    assert established(run) is None


def test_lockout_after_repeated_guesses_and_typed_error() -> None:
    limits = AttemptLimits(template=lambda: AttemptLimiter(max_failures=3, free_failures=10))
    for _ in range(3):
        device = make_device(limits=limits)
        host = make_host(Mode.CODE, hst.CodeSecret(b"11111112"))
        pump(host, device, host.start(0.0))
    device = make_device(limits=limits)
    host = make_host(Mode.CODE, hst.CodeSecret(CODE))  # even the right code
    run = pump(host, device, host.start(0.0))
    error = ended(run.host_events)
    assert isinstance(error, hst.DeviceRefused)
    assert isinstance(error.reason, LockedOut)
    assert error.code == 0x41
    limits.physical_reset()
    device = make_device(limits=limits)
    host = make_host(Mode.CODE, hst.CodeSecret(CODE))
    assert established(pump(host, device, host.start(0.0))) is not None


def test_backoff_is_reported_with_retry_after() -> None:
    limits = AttemptLimits(template=lambda: AttemptLimiter(max_failures=20, free_failures=1))
    for _ in range(2):
        device = make_device(limits=limits)
        host = make_host(Mode.CODE, hst.CodeSecret(b"11111112"))
        pump(host, device, host.start(0.0))
    device = make_device(limits=limits)
    host = make_host(Mode.CODE, hst.CodeSecret(CODE))
    run = pump(host, device, host.start(0.0))
    error = ended(run.host_events)
    assert isinstance(error, hst.DeviceRefused)
    assert error.code == 0x42
    assert error.reason.retry_after >= 1  # type: ignore[attr-defined]


def test_mode_disabled_by_policy_is_refused_by_the_device() -> None:
    """Even if a host ignores the advertised policy, the device never runs the mode."""
    device = make_device(modes=OobMode.QR, device_info=info(ALL))
    host = make_host(Mode.COMPARE, None)
    run = pump(host, device, host.start(0.0))
    error = ended(run.host_events)
    assert isinstance(error, hst.DeviceRefused)
    assert isinstance(error.reason, dev.ModeNotAllowed)


def test_host_refuses_a_mode_the_device_does_not_offer() -> None:
    with pytest.raises(dev.ModeNotAllowed):
        make_host(Mode.BUTTON, None, device_info=info(OobMode.QR))


@pytest.mark.parametrize(
    ("mode", "secret"), [(Mode.QR, "qr"), (Mode.CODE, "code"), (Mode.COMPARE, None)]
)
def test_downgrade_altered_info_breaks_the_handshake(mode: Mode, secret: str | None) -> None:
    """A man in the middle rewrites the info the host reads (say, to hide the qr mode):
    the device binds its own info, the host the altered one, and the handshake fails."""
    device = make_device()
    altered = info(ALL & ~OobMode.BUTTON)
    oob = qr_secret() if secret == "qr" else hst.CodeSecret(CODE) if secret == "code" else None
    host = make_host(mode, oob, device_info=altered)
    run = pump(host, device, host.start(0.0))
    assert established(run) is None
    assert ended(run.host_events) is not None or ended(run.device_events) is not None


def test_advertisement_and_info_must_agree() -> None:
    raw = DeviceInfo.decode(info())
    sd = raw.service_data()
    hst.check_advertisement(sd, raw)
    with pytest.raises(hst.Downgrade):
        hst.check_advertisement(replace(sd, modes=OobMode.BUTTON), raw)


def test_button_needs_a_press() -> None:
    device = make_device()
    host = make_host(Mode.BUTTON, None)
    run = pump(host, device, host.start(0.0))
    error = ended(run.host_events)
    assert isinstance(error, hst.DeviceRefused)
    assert error.code == 0x44


def test_button_overlap_refuses_the_second_host_and_aborts_the_first() -> None:
    button = ButtonWindow()
    button.press(0.0)
    first = make_device(button=button, connection="host-a")
    host_a = make_host(Mode.BUTTON, None)
    assert established(pump(host_a, first, host_a.start(0.0))) is not None
    second = make_device(button=button, connection="host-b")
    host_b = make_host(Mode.BUTTON, None)
    run = pump(host_b, second, host_b.start(0.0))
    assert ended(run.host_events).code == 0x45  # type: ignore[union-attr]
    [up] = host_a.send(b"creds", 2.0)
    assert isinstance(up, hst.SendMessage)
    events = first.receive(up.data, 2.0)
    assert not any(isinstance(e, dev.ApplicationData) for e in events)
    assert ended(events).code == 0x45  # type: ignore[union-attr]


def test_unknown_manufacturer_is_refused_by_policy() -> None:
    rogue = Manufacturer.create("Rogue", now=NOW)
    rogue_device = rogue.issue_device(now=NOW)
    device = dev.DeviceSession(
        secrets=dev.DeviceSecrets(rogue_device, label_secret=LABEL_SECRET),
        policy=ALL,
        device_info=info(),
        limits=AttemptLimits(),
        button=ButtonWindow(),
        connection="c",
        now=0.0,
    )
    host = make_host(Mode.QR, hst.QrSecret(rogue_device.noise_static_public_key, LABEL_SECRET))
    run = pump(host, device, host.start(0.0))
    assert isinstance(ended(run.host_events), UnknownManufacturer)
    warn = make_host(
        Mode.QR,
        hst.QrSecret(rogue_device.noise_static_public_key, LABEL_SECRET),
        trust=hst.Trust(TRUST.roots, TrustPolicy.WARN),
    )
    device2 = dev.DeviceSession(
        secrets=dev.DeviceSecrets(rogue_device, label_secret=LABEL_SECRET),
        policy=ALL,
        device_info=info(),
        limits=AttemptLimits(),
        button=ButtonWindow(),
        connection="c",
        now=0.0,
    )
    est = established(pump(warn, device2, warn.start(0.0)))
    assert est is not None
    assert not est.attestation.trusted


def test_handshake_timeout() -> None:
    device = make_device()
    host = make_host(Mode.COMPARE, None)
    [hello] = host.start(0.0)
    assert isinstance(hello, hst.SendMessage)
    device.receive(hello.data, 1.0)
    deadline = device.next_deadline()
    assert deadline is not None
    events = device.handle_timer(deadline)
    assert isinstance(ended(events), dev.HandshakeTimeout)


def test_hello_is_due_long_before_the_handshake_deadline() -> None:
    """A host that opens a session and never says HELLO spends no attempt, so it must
    not hold the device for the handshake deadline (60 s, for people comparing or typing
    numbers after HELLO): HELLO is due within 15 s (issue 15, flood). A HELLO in time
    gets the whole handshake deadline."""
    silent = make_device()
    assert silent.next_deadline() == dev.DEFAULT_HELLO_TIMEOUT < dev.DEFAULT_HANDSHAKE_TIMEOUT
    events = silent.handle_timer(dev.DEFAULT_HELLO_TIMEOUT)
    assert isinstance(ended(events), dev.HandshakeTimeout)
    assert not any(isinstance(e, dev.PersistAttempts) for e in events)

    talking = make_device()
    [hello] = make_host(Mode.COMPARE, None).start(0.0)
    assert isinstance(hello, hst.SendMessage)
    talking.receive(hello.data, 1.0)
    assert talking.next_deadline() == dev.DEFAULT_HANDSHAKE_TIMEOUT
    assert talking.handle_timer(dev.DEFAULT_HELLO_TIMEOUT) == []


def test_malformed_messages_get_typed_errors_and_end_the_session() -> None:
    for raw in [b"", b"\xff", b"\x80", b"\x83\x01\x63\x40", b"\x82\x04\x41\x00"]:
        device = make_device()
        events = device.receive(raw, 0.0)
        err = ended(events)
        assert err is not None
        assert getattr(err, "code", 0) > 0


@pytest.mark.parametrize(("mode", "secret"), [(Mode.QR, "qr"), (Mode.CODE, "code")])
def test_channel_binding_is_shared_by_both_ends_and_unique_to_the_session(
    mode: Mode, secret: str
) -> None:
    """The CSR binding: both roles derive it alike; another session or label differs."""
    bindings = []
    for _ in range(2):
        device = make_device()
        oob = qr_secret() if secret == "qr" else hst.CodeSecret(CODE)
        host = make_host(mode, oob)
        with pytest.raises(SessionNotOpen):
            host.channel_binding(b"zone csr")
        assert established(pump(host, device, host.start(0.0))) is not None
        binding = host.channel_binding(b"zone csr")
        assert len(binding) == 32
        assert binding == device.channel_binding(b"zone csr")
        assert binding != host.channel_binding(b"another use")
        bindings.append(binding)
    assert bindings[0] != bindings[1]
    with pytest.raises(ValueError, match="label"):
        host.channel_binding(b"")


# ------------------------------------------- compare needs the device, per-secret counters


def test_a_device_that_cannot_confirm_refuses_compare() -> None:
    """H2 in the core: the device's policy offers compare, but without its own button it
    neither offers nor runs it, whatever CONFIRMED the "host" sends."""
    assert dev.offered_modes(ALL, device_confirms=False) == int(ALL & ~OobMode.COMPARE)
    assert dev.offered_modes(ALL, device_confirms=True) == int(ALL)
    device = make_device(device_confirms=False)
    host = make_host(Mode.COMPARE, None)
    run = pump(host, device, host.start(0.0))
    error = ended(run.host_events)
    assert isinstance(error, hst.DeviceRefused)
    assert isinstance(error.reason, dev.ModeNotAllowed)
    assert not any(isinstance(e, dev.Authenticated) for e in run.device_events)


def test_a_success_forgives_only_its_own_secret() -> None:
    limits = AttemptLimits(template=lambda: AttemptLimiter(free_failures=10))
    for _ in range(5):
        device = make_device(limits=limits)
        host = make_host(Mode.CODE, hst.CodeSecret(b"11111112"))
        pump(host, device, host.start(0.0))
        for mode, secret in ((Mode.COMPARE, None), (Mode.QR, qr_secret())):
            device = make_device(limits=limits)
            host = make_host(mode, secret)
            assert established(pump(host, device, host.start(0.0))) is not None
    assert limits[Credential.CODE].failures == 5
    assert limits[Credential.COMPARE].failures == limits[Credential.LABEL].failures == 0


def test_the_authenticated_event_names_the_credential() -> None:
    device = make_device()
    host = make_host(Mode.QR, qr_secret())
    run = pump(host, device, host.start(0.0))
    [auth] = [e for e in run.device_events if isinstance(e, dev.Authenticated)]
    assert auth == dev.Authenticated(Mode.QR, Credential.LABEL)
    assert device.credential is Credential.LABEL


# ---------------------------------------------------------------------------- passkey


def test_passkey_shows_a_fresh_number_per_attempt_and_the_host_types_it() -> None:
    numbers, salts = [], []
    for _ in range(3):
        device = make_device()
        host = make_host(Mode.PASSKEY, None)
        run = pump(host, device, host.start(0.0))
        assert established(run) is not None
        [shown] = [e.number for e in run.device_events if isinstance(e, dev.ShowNumber)]
        assert 0 <= shown < 10**6
        numbers.append(shown)
        salts.append(device.channel_binding(b"x"))
    assert len(set(salts)) == 3  # independent sessions
    assert len(set(numbers)) >= 2  # drawn afresh (three equal draws: p = 1e-12)


def test_passkey_wrong_number_fails_and_counts_on_its_own_counter() -> None:
    limits = AttemptLimits()
    device = make_device(limits=limits)
    host = make_host(Mode.PASSKEY, None)
    [hello] = host.start(0.0)
    assert isinstance(hello, hst.SendMessage)
    persist, salt, show = device.receive(hello.data, 1.0)
    assert isinstance(persist, dev.PersistAttempts)  # counted before the number is shown
    assert isinstance(salt, dev.SendMessage) and isinstance(show, dev.ShowNumber)
    assert [type(e) for e in host.receive(salt.data, 1.0)] == [hst.PasskeyRequested]
    wrong = (show.number + 1) % 10**6
    run = pump(host, device, host.enter_passkey(f"{wrong:06d}", 1.0))
    assert isinstance(ended(run.host_events), AuthenticationFailed)
    assert established(run) is None and not device.is_open
    assert limits[Credential.PASSKEY].failures == 1
    assert limits[Credential.CODE].failures == 0


def test_passkey_typed_text_must_be_six_digits() -> None:
    from bleprov.core.errors import LocalProtocolError
    from bleprov.core.session.modes import parse_passkey

    assert parse_passkey(" 012 345 ") == 12345
    assert parse_passkey("012-345") == 12345
    for bad in ("12345", "1234567", "12a456", "١٢٣٤٥٦", ""):
        with pytest.raises(LocalProtocolError):
            parse_passkey(bad)


def test_passkey_hello_with_a_body_is_malformed() -> None:
    from bleprov.core.session.messages import Hello, encode

    device = make_device()
    events = device.receive(encode(Hello(Mode.PASSKEY, b"guess")), 0.0)
    error = ended(events)
    assert error is not None and error.code == 0x02  # type: ignore[attr-defined]
    assert not any(isinstance(e, dev.ShowNumber) for e in events)


# ---------------------------------------------------------------------- button window


def test_a_used_button_window_has_its_own_refusal() -> None:
    button = ButtonWindow()
    button.press(0.0)
    first = make_device(button=button, connection="attacker")
    host = make_host(Mode.BUTTON, None)
    assert established(pump(host, first, host.start(0.0))) is not None
    first.close(2.0)  # the attacker is done
    owner = make_device(button=button, connection="owner")
    host = make_host(Mode.BUTTON, None)
    error = ended(pump(host, owner, host.start(3.0)).host_events)
    assert isinstance(error, hst.DeviceRefused)
    assert error.code == 0x4B
    assert "already used by another host" in str(error.reason)
    button.press(10.0)  # a new press: a fresh, unused window
    again = make_device(button=button, connection="owner")
    host = make_host(Mode.BUTTON, None)
    assert established(pump(host, again, host.start(11.0))) is not None


# -------------------------------------------------------- exporter and enrolment receipts


def test_the_exporter_is_secret_shared_by_both_ends_and_unique_to_the_session() -> None:
    """Unlike the channel binding (public: from the transcript), an export comes from the
    session keys; both ends derive it alike, another session or label gives another."""
    exports = []
    for _ in range(2):
        device = make_device()
        host = make_host(Mode.QR, qr_secret())
        with pytest.raises(SessionNotOpen):
            host.exporter(b"enrolment receipt")
        assert established(pump(host, device, host.start(0.0))) is not None
        export = host.exporter(b"enrolment receipt")
        assert export == device.exporter(b"enrolment receipt") and len(export) == 32
        assert export != host.exporter(b"another use")
        assert export != host.channel_binding(b"enrolment receipt")
        exports.append(export)
    assert exports[0] != exports[1]


def _receipt_device(
    receipts: dict[bytes, object], *, owned: bool = True, limits: AttemptLimits | None = None
) -> dev.DeviceSession:
    return dev.DeviceSession(
        secrets=secrets_(),
        policy=OobMode.QR,  # code mode is not even in the policy
        device_info=info(OobMode(0)),  # what an owned device offers: nothing
        limits=limits if limits is not None else AttemptLimits(),
        button=ButtonWindow(),
        connection="host-a",
        now=0.0,
        owned=owned,
        receipts=receipts,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("owned", [True, False])
def test_a_device_answers_the_receipt_it_holds_whatever_its_owner_and_policy(
    owned: bool,
) -> None:
    from bleprov.core.receipt import EnrolmentReceipt

    receipt = EnrolmentReceipt(os.urandom(16), os.urandom(32))
    limits = AttemptLimits()
    device = _receipt_device({receipt.user: receipt.verifier()}, owned=owned, limits=limits)
    host = make_host(Mode.CODE, receipt, device_info=info(OobMode(0)))
    run = pump(host, device, host.start(0.0))
    assert established(run) is not None
    assert device.credential is Credential.RECEIPT
    authenticated = [e for e in run.device_events if isinstance(e, dev.Authenticated)]
    assert authenticated == [dev.Authenticated(Mode.CODE, Credential.RECEIPT)]
    # No counter is touched: the secret is 256 bits, nothing to guard.
    assert not any(isinstance(e, dev.PersistAttempts) for e in run.device_events)
    assert limits.to_bytes() == AttemptLimits().to_bytes()


def test_a_receipt_the_device_does_not_hold_fails_like_a_wrong_code() -> None:
    from bleprov.core.receipt import EnrolmentReceipt

    held = EnrolmentReceipt(os.urandom(16), os.urandom(32))
    device = _receipt_device({held.user: held.verifier()})
    for receipt in (
        EnrolmentReceipt(held.enrolment_id, os.urandom(32)),  # its ID, another secret
        EnrolmentReceipt(os.urandom(16), held.secret),  # another enrolment
    ):
        device = _receipt_device({held.user: held.verifier()})
        host = make_host(Mode.CODE, receipt, device_info=info(OobMode(0)))
        run = pump(host, device, host.start(0.0))
        assert established(run) is None
        assert isinstance(ended(run.host_events), AuthenticationFailed)


def test_an_owned_device_still_refuses_its_label_and_code() -> None:
    """Receipts open nothing else: the factory credentials stay dead on an owned device."""
    for mode, secret in ((Mode.QR, qr_secret()), (Mode.CODE, hst.CodeSecret(CODE))):
        device = dev.DeviceSession(
            secrets=secrets_(),
            policy=ALL,
            device_info=info(),
            limits=AttemptLimits(),
            button=ButtonWindow(),
            connection="host-a",
            now=0.0,
            owned=True,
            receipts={},
        )
        host = make_host(mode, secret)
        error = ended(pump(host, device, host.start(0.0)).host_events)
        assert isinstance(error, hst.DeviceRefused) and error.code == dev.DeviceOwned.code


def test_a_session_reserves_an_attempt_that_hello_consumes_without_a_write_of_its_own() -> None:
    limits = AttemptLimits()
    device = dev.DeviceSession(
        secrets=secrets_(),
        policy=ALL,
        device_info=info(ALL),
        limits=limits,
        button=ButtonWindow(),
        connection="host-a",
        now=0.0,
        device_confirms=True,
        reserve=True,
    )
    assert device.holds_reservation and limits.reserved == 1
    stored = AttemptLimits.from_bytes(limits.to_bytes())  # what the adapter writes
    host = make_host(Mode.QR, qr_secret())
    run = pump(host, device, host.start(0.0))
    assert established(run) is not None
    assert not device.holds_reservation and limits.reserved == 0
    persisted = [e for e in run.device_events if isinstance(e, dev.PersistAttempts)]
    assert persisted, "the count is still announced, for the adapter's gate"
    # The first snapshot (the count at HELLO) is covered by the stored reservation.
    assert stored.covers(AttemptLimits.from_bytes(persisted[0].state))
    assert limits[Credential.LABEL].failures == 0  # success


def test_a_reservation_no_hello_used_is_released_and_an_owned_device_reserves_none() -> None:
    limits = AttemptLimits()
    silent = dev.DeviceSession(
        secrets=secrets_(),
        policy=ALL,
        device_info=info(ALL),
        limits=limits,
        button=ButtonWindow(),
        connection="host-a",
        now=0.0,
        reserve=True,
    )
    assert limits.reserved == 1
    silent.close(1.0)
    assert limits.reserved == 0 and all(lim.failures == 0 for lim in limits.limiters.values())
    owned = dev.DeviceSession(
        secrets=secrets_(),
        policy=ALL,
        device_info=info(ALL),
        limits=limits,
        button=ButtonWindow(),
        connection="host-a",
        now=0.0,
        reserve=True,
        owned=True,
    )
    assert not owned.holds_reservation and limits.reserved == 0
    button_only = dev.DeviceSession(
        secrets=secrets_(),
        policy=OobMode.BUTTON,
        device_info=info(OobMode.BUTTON),
        limits=limits,
        button=ButtonWindow(),
        connection="host-a",
        now=0.0,
        reserve=True,
    )
    assert not button_only.holds_reservation  # no counter to reserve for
