"""Protocol v2: the version a device speaks, and the refusal of any other."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import PROTOCOL_VERSION, DeviceInfo, DeviceState, OobMode
from bleprov.core.errors import UnsupportedVersion
from bleprov.core.identity import (
    AttestationError,
    DeviceIdentity,
    IdentityError,
    IntermediateCache,
    Manufacturer,
    TrustPolicy,
    UnknownManufacturer,
    encode_chain,
)
from bleprov.core.profile import default_profile
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.common import ATTESTATION_CONTEXT
from bleprov.core.session.messages import Inner, InnerKind, Mode
from bleprov.core.session.modes import UnexpectedMessage, prologue
from bleprov.core.session.modes.qr import QrSecret
from tests.core.test_session import (
    IDENTITY,
    MANUFACTURER,
    NOW,
    Run,
    ended,
    established,
    make_device,
    make_host,
    pump,
    qr_secret,
)


def _info(version: int) -> bytes:
    return DeviceInfo(
        protocol_version=version,
        state=DeviceState.VIRGIN,
        modes=OobMode.QR,
        discriminator=0x123,
        max_message=65536,
        rx_window=16,
        profile_version=1,
    ).encode()


def test_v2_is_what_the_device_says_and_binds() -> None:
    assert PROTOCOL_VERSION == 2
    assert default_profile().protocol_version == PROTOCOL_VERSION
    assert prologue(Mode.QR, b"").startswith(b"bleprov/2")
    assert ATTESTATION_CONTEXT == b"bleprov/2 session"


@pytest.mark.parametrize("version", [1, 3])
def test_a_host_refuses_a_device_of_another_version(version: int) -> None:
    with pytest.raises(UnsupportedVersion) as info:
        hst.HostSession(
            mode=Mode.QR,
            secret=QrSecret(bytes(32), bytes(16)),
            device_info=_info(version),
            trust=hst.Trust((), TrustPolicy.WARN),
            wall_clock=NOW,
            now=0.0,
        )
    message = str(info.value)
    assert "\n" not in message
    assert f"protocol {version}" in message
    assert "update" in message


# ------------------------------------------------------- attestation by reference


def _trust(
    *, cached: bool, roots: bool = True, policy: TrustPolicy = TrustPolicy.REFUSE
) -> hst.Trust:
    intermediates = [_der(MANUFACTURER.intermediate_certificate)] if cached else []
    return hst.Trust(
        (_der(MANUFACTURER.root_certificate),) if roots else (),
        policy,
        IntermediateCache(intermediates),
    )


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def _qr_session(trust: hst.Trust) -> tuple[hst.HostSession, dev.DeviceSession, Run]:
    host = make_host(Mode.QR, qr_secret(), trust=trust)
    device = make_device()
    return host, device, pump(host, device, host.start(0.0))


def test_the_attestation_carries_no_root_and_the_intermediate_by_hash() -> None:
    """Bytes before (v1: device certificate, intermediate and root) and after (v2: device
    certificate, the intermediate's SHA-256)."""
    resolved = IDENTITY.attestation(bytes(32), context=ATTESTATION_CONTEXT)
    v2 = resolved.record().encode()
    v1 = cbor2.dumps([1, resolved.device_certificate, list(resolved.chain), resolved.signature])
    intermediate, root = resolved.chain
    assert root not in v2 and intermediate not in v2
    # v1 carried both certificates (each with a 3-byte bstr head, in a 1-byte array head);
    # v2 a 32-byte hash (2-byte head) in their place.
    assert len(v1) - len(v2) == (len(intermediate) + 3) + (len(root) + 3) + 1 - (32 + 2)
    print(f"attestation record: v1 {len(v1)} B, v2 {len(v2)} B")
    assert len(v2) < 700 < 1400 < len(v1)


def test_a_known_intermediate_verifies_without_a_fetch() -> None:
    host, _, run = _qr_session(_trust(cached=True))
    result = established(run)
    assert result is not None and result.attestation.trusted
    assert result.attestation.device_id == IDENTITY.device_id
    assert not host.fetched_chain
    assert run.round_trips == 1  # qr: one flight, no fetch


def test_a_miss_fetches_the_intermediate_then_verifies_and_caches_it() -> None:
    trust = _trust(cached=False)
    first, _, run = _qr_session(trust)
    result = established(run)
    assert result is not None and result.attestation.trusted
    assert first.fetched_chain
    assert run.round_trips == 2  # the fetch: one more round trip, first contact only
    assert len(trust.intermediates) == 1
    # The second device of the same manufacturer costs no fetch.
    second, _, again = _qr_session(trust)
    assert established(again) is not None
    assert not second.fetched_chain
    assert again.round_trips == 1


def test_a_wrong_intermediate_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The device answers the fetch with an intermediate other than the one its signed
    record names (here one that does chain to a trusted root): refused, not cached."""
    other = Manufacturer.create("Other", now=NOW)
    wrong = encode_chain([_der(other.intermediate_certificate)])
    monkeypatch.setattr(DeviceIdentity, "chain_for", lambda self, request: wrong)
    trust = hst.Trust(
        (_der(MANUFACTURER.root_certificate), _der(other.root_certificate)),
        TrustPolicy.REFUSE,
    )
    host, _, run = _qr_session(trust)
    assert established(run) is None
    error = ended(run.host_events)
    assert isinstance(error, AttestationError)
    assert "does not match" in str(error)
    assert len(trust.intermediates) == 0


def test_a_cached_intermediate_whose_root_is_no_longer_trusted_is_refused() -> None:
    """The cache is a lookup aid, not a trust anchor: the root was removed from the trust
    roots, so the cached intermediate proves nothing and is dropped."""
    trust = _trust(cached=True, roots=False)
    host, _, run = _qr_session(trust)
    assert established(run) is None
    assert isinstance(ended(run.host_events), UnknownManufacturer)
    assert not host.fetched_chain
    assert len(trust.intermediates) == 0


def test_warn_fetches_the_root_to_show_its_fingerprint_and_caches_nothing() -> None:
    trust = _trust(cached=False, roots=False, policy=TrustPolicy.WARN)
    host, _, run = _qr_session(trust)
    result = established(run)
    assert result is not None and not result.attestation.trusted
    assert result.attestation.manufacturer_root_fingerprint == MANUFACTURER.root_fingerprint
    assert host.fetched_chain
    assert len(trust.intermediates) == 0


def test_the_device_answers_one_chain_request_per_session() -> None:
    host, device, run = _qr_session(_trust(cached=False))
    assert established(run) is not None
    again = host._seal(Inner(InnerKind.CHAIN_REQUEST, 1), 2.0)
    assert isinstance(again, hst.SendMessage)
    events = device.receive(again.data, 2.0)
    assert isinstance(ended(events), UnexpectedMessage)


def test_a_chain_with_a_root_nobody_asked_for_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A REFUSE host asks for the intermediate only; a root it did not ask for is refused
    (it could otherwise turn an unknown manufacturer into a 'presented root')."""
    full = encode_chain([_der(c) for c in IDENTITY.chain])
    monkeypatch.setattr(DeviceIdentity, "chain_for", lambda self, request: full)
    host, _, run = _qr_session(_trust(cached=False))
    assert established(run) is None
    assert "more certificates" in str(ended(run.host_events))


def test_the_host_keeps_validated_intermediates_in_its_trust_store(tmp_path: Path) -> None:
    """One fetch per manufacturer per host, across runs: the cache lives in the host's
    encrypted store, written as it learns."""
    from bleprov import DeviceStore, HostTrust, KeyFileProvider

    def host_store() -> HostTrust:
        store = DeviceStore(tmp_path / "store", KeyFileProvider(tmp_path / "store.key"))
        return HostTrust(store, name="laptop")

    roots = (_der(MANUFACTURER.root_certificate),)
    first_run = replace(_trust(cached=False), intermediates=host_store().intermediates())
    host, _, run = _qr_session(first_run)
    assert established(run) is not None and host.fetched_chain
    second_run = hst.Trust(roots, TrustPolicy.REFUSE, host_store().intermediates())
    assert len(second_run.intermediates) == 1
    again, _, run = _qr_session(second_run)
    assert established(run) is not None and not again.fetched_chain
    # Dropped from the store too once its root is no longer trusted.
    distrusting = hst.Trust((), TrustPolicy.REFUSE, host_store().intermediates())
    _, _, run = _qr_session(distrusting)
    assert isinstance(ended(run.host_events), UnknownManufacturer)
    assert len(host_store().intermediates()) == 0


def test_the_cache_record_round_trips_and_refuses_junk() -> None:
    cache = IntermediateCache([_der(MANUFACTURER.intermediate_certificate)])
    assert len(IntermediateCache.from_bytes(cache.to_bytes())) == 1
    for junk in [b"", cbor2.dumps(["bleprov intermediates", 2, []]), cbor2.dumps([1, 2, 3])]:
        with pytest.raises(IdentityError):
            IntermediateCache.from_bytes(junk)


def test_application_data_behind_the_attestation_waits_for_the_fetched_intermediate() -> None:
    """The device speaks right behind its ATTESTATION (its `session` notice) while a host
    that missed the intermediate is still fetching it: the host holds that record and
    delivers it after Established, in order (it failed "application data before
    attestation" when the v2 attestation met the v2 enrolment flight)."""
    host = make_host(Mode.QR, qr_secret(), trust=_trust(cached=False))
    device = make_device()
    hello = [e.data for e in host.start(0.0) if isinstance(e, hst.SendMessage)]
    replies = [e.data for e in device.receive(hello[0], 1.0) if isinstance(e, dev.SendMessage)]
    replies += [e.data for e in device.send(b"notice", 1.0) if isinstance(e, dev.SendMessage)]
    to_device: list[bytes] = []
    for message in replies:
        events = host.receive(message, 1.0)
        assert not any(isinstance(e, hst.ApplicationData) for e in events)
        to_device += [e.data for e in events if isinstance(e, hst.SendMessage)]
    assert len(to_device) == 1  # the chain request
    chain = [e.data for e in device.receive(to_device[0], 1.0) if isinstance(e, dev.SendMessage)]
    events = host.receive(chain[0], 1.0)
    kinds = [type(e) for e in events if not isinstance(e, hst.SendMessage)]
    assert kinds == [hst.Established, hst.ApplicationData]
    assert events[-1] == hst.ApplicationData(b"notice")


def test_a_host_store_it_cannot_write_costs_only_the_fetch() -> None:
    """A read-only home (the lab's VM, a locked-down laptop): the intermediate cache is an
    aid, so a store that cannot be read or written leaves the session to fetch, never
    fails it (the lab's zone scenario failed on 'read-only file system' when it did)."""
    from bleprov import HostTrust

    class ReadOnlyStore:
        def load(self) -> dict[str, bytes]:
            raise OSError(30, "Read-only file system")

        def update(self, changes: dict[str, bytes | None]) -> None:
            raise OSError(30, "Read-only file system")

    class WriteOnlyFails(ReadOnlyStore):
        def load(self) -> dict[str, bytes]:
            return {}

    for store in (ReadOnlyStore(), WriteOnlyFails()):
        cache = HostTrust(store, name="laptop").intermediates()  # type: ignore[arg-type]
        roots = (_der(MANUFACTURER.root_certificate),)
        host, _, run = _qr_session(hst.Trust(roots, TrustPolicy.REFUSE, cache))
        assert established(run) is not None and host.fetched_chain
