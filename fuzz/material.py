"""The fixed keys, certificates and secrets the harnesses decode against.

A harness must accept the seed corpus the way the real peer would: a QR-mode HELLO only
gets past the Noise handshake if it was made for *this* device's static key and label
secret, a member certificate only validates against *this* zone. So the device identity
and the zone CA are made once (:func:`write_fixtures`, run by ``python -m fuzz.capture``)
and committed in ``fuzz/fixtures/``; everything else is derived from fixed values here.

These are fuzzing fixtures, not secrets: nothing outside ``fuzz/`` trusts them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core import identity as identity_module
from bleprov.core import zone as zone_module
from bleprov.core.advertising import ALL_MODES, DeviceInfo, DeviceState
from bleprov.core.crypto.spake2plus import ScryptCost, VerifierRecord, derive_verifier
from bleprov.core.device_secrets import SPAKE_ID_VERIFIER
from bleprov.core.identity import DeviceIdentity, Manufacturer, TrustPolicy
from bleprov.core.membership import Owner
from bleprov.core.peer import PeerIdentity, PinSet
from bleprov.core.session import host as hst
from bleprov.core.window import (
    WindowCode,
    WindowInfo,
    WindowOffer,
    WindowPurpose,
)
from bleprov.core.zone import MemberCertificate, Zone, make_csr

FIXTURES: Final = Path(__file__).resolve().parent / "fixtures"
DEVICE_IDENTITY_FILE: Final = "device.identity"
ZONE_FILE: Final = "zone.bin"

#: Every clock a harness reads: certificates are checked at this time, so a campaign run
#: next year gives the same results as today's.
FIXED_NOW: Final = datetime(2026, 1, 1, tzinfo=UTC)
DEVICE_ID: Final = "FUZZ-DEVICE-0001"
OWNER: Final = "alice"
PASSPHRASE: Final = b"fuzz fixture passphrase"
LABEL_SECRET: Final = bytes(range(16))
CODE: Final = b"48613702"
SALT: Final = bytes(range(100, 116))
#: The cheapest scrypt a device's info may name (log2 N 10): harness runs measure the
#: decoder, not the KDF.
CHEAP: Final = ScryptCost(n=1 << 10, r=8, p=1)
DISCRIMINATOR: Final = 0x123
WINDOW_CODE: Final = WindowCode("123456789012")
WINDOW_SALT: Final = bytes(range(50, 66))
#: The zone key a device makes at zone/csr, fixed in the zone/install harness (see
#: :func:`fixed_member_key`) so that a captured install message fits the pending key.
MEMBER_KEY_SCALAR: Final = 0x5EED_F022_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0001
#: A session's channel binding for a label, as the harnesses fix it.
BINDING_KEY: Final = b"fuzz channel binding"


def channel_binding(label: bytes) -> bytes:
    """The zone/csr binding a fixture session gives (32 bytes, like the real one)."""
    return hashlib.sha256(BINDING_KEY + label).digest()


def member_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(MEMBER_KEY_SCALAR, ec.SECP256R1())


@contextlib.contextmanager
def _replaced(module: ModuleType, name: str, value: object) -> Iterator[None]:
    """``module.name`` is ``value`` inside this block (the module's own global: what its
    functions call)."""
    saved = vars(module)[name]
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def _cheap_stretch(passphrase: bytes, salt: bytes) -> bytes:
    return hashlib.sha256(b"fuzz stretch" + passphrase + salt).digest()


@contextlib.contextmanager
def cheap_stretch() -> Iterator[None]:
    """Zone and manufacturer stores stretch a fixed passphrase with scrypt (N 2^15, a
    constant, not read from the input): 0.1 s an input would leave a harness nothing to
    fuzz. Inside this block both stores use a hash instead; the fixtures and the seeds of
    those two harnesses are written under it too."""
    with (
        _replaced(identity_module, "stretch_passphrase", _cheap_stretch),
        _replaced(zone_module, "stretch_passphrase", _cheap_stretch),
    ):
        yield


@contextlib.contextmanager
def fixed_member_key() -> Iterator[None]:
    """The device's zone key (zone/key) is :func:`member_key` inside this block."""
    from bleprov.core import membership

    with _replaced(membership, "make_member_key", member_key):
        yield


def device_info(*, window: WindowInfo | None = None, owned: bool = False) -> bytes:
    """The fixture device's info value: every mode, code-mode KDF inputs, CHEAP cost."""
    return DeviceInfo(
        protocol_version=2,
        state=DeviceState.ENROLLED if owned else DeviceState.VIRGIN,
        modes=ALL_MODES,
        discriminator=DISCRIMINATOR,
        max_message=65536,
        rx_window=16,
        profile_version=1,
        pbkdf_salt=SALT,
        pbkdf_cost=(CHEAP.log2_n, CHEAP.r, CHEAP.p),
        window=window,
    ).encode()


@dataclass(frozen=True)
class Material:
    """What the harnesses share, loaded once per process."""

    identity: DeviceIdentity
    zone: Zone
    code_records: dict[bytes, VerifierRecord]
    window_offer: WindowOffer
    member: MemberCertificate
    crl: bytes
    host_identity: PeerIdentity
    device_peer_identity: PeerIdentity
    peer_records: dict[str, bytes]

    @property
    def manufacturer_root(self) -> bytes:
        return self.identity.chain[-1].public_bytes(Encoding.DER)

    @property
    def trust(self) -> hst.Trust:
        return hst.Trust((self.manufacturer_root,), TrustPolicy.REFUSE)

    @property
    def qr_secret(self) -> hst.QrSecret:
        return hst.QrSecret(self.identity.noise_static_public_key, LABEL_SECRET)


def window_offer() -> WindowOffer:
    return WindowOffer.create(
        WINDOW_CODE, purpose=WindowPurpose.ADMIN, cost=CHEAP, salt=WINDOW_SALT, seconds=600
    )


def issue_member(zone: Zone) -> MemberCertificate:
    """The fixture device's member certificate, for :func:`member_key`."""
    csr = make_csr(member_key(), device_id=DEVICE_ID, session_binding=channel_binding(b"zone csr"))
    return zone.issue_member(
        csr,
        device_id=DEVICE_ID,
        owner=OWNER,
        expected_binding=channel_binding(b"zone csr"),
        now=FIXED_NOW,
    )


@functools.cache
def material() -> Material:
    """Load the committed fixtures and derive the rest (about 50 ms, once)."""
    identity = DeviceIdentity.from_bytes((FIXTURES / DEVICE_IDENTITY_FILE).read_bytes(), None)
    with cheap_stretch():
        zone = Zone.from_bytes((FIXTURES / ZONE_FILE).read_bytes(), PASSPHRASE)
    code = derive_verifier(
        CODE, salt=SALT, id_prover=b"", id_verifier=SPAKE_ID_VERIFIER, cost=CHEAP
    ).verifier_record()
    host = PeerIdentity.create("fuzz-host", now=FIXED_NOW)
    device_peer = PeerIdentity.create(DEVICE_ID, now=FIXED_NOW)
    pins = PinSet([host.pin])
    owner = Owner("peer", host.fingerprint, host.name)
    return Material(
        identity=identity,
        zone=zone,
        code_records={b"": code},
        window_offer=window_offer(),
        member=issue_member(zone),
        crl=zone.crl(now=FIXED_NOW, next_update=timedelta(days=3650)),
        host_identity=host,
        device_peer_identity=device_peer,
        peer_records={
            "peer.identity": device_peer.to_bytes(),
            "peer.pins": pins.to_bytes(),
            "owner": owner.encode(),
        },
    )


def write_fixtures(directory: Path = FIXTURES) -> None:
    """Make the fixture device identity and zone CA (run once by fuzz.capture)."""
    directory.mkdir(parents=True, exist_ok=True)
    manufacturer = Manufacturer.create("Fuzz Devices", now=FIXED_NOW)
    identity = manufacturer.issue_device(DEVICE_ID, now=FIXED_NOW)
    (directory / DEVICE_IDENTITY_FILE).write_bytes(identity.to_bytes(None))
    zone = Zone.create("Fuzz Home", now=FIXED_NOW)
    with cheap_stretch():
        (directory / ZONE_FILE).write_bytes(zone.to_bytes(PASSPHRASE))
    material.cache_clear()


__all__ = [
    "CHEAP",
    "CODE",
    "DEVICE_ID",
    "FIXED_NOW",
    "LABEL_SECRET",
    "OWNER",
    "PASSPHRASE",
    "SALT",
    "Material",
    "channel_binding",
    "cheap_stretch",
    "device_info",
    "fixed_member_key",
    "material",
    "member_key",
    "write_fixtures",
]
