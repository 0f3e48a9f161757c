"""Zone membership and peer binding as enrolment extensions, both roles (sans-IO).

Above :mod:`bleprov.core.enrolment` in the core's layering: these plug endpoints into the
device's enrolment machine (:class:`~bleprov.core.enrolment.device.Extension`), so their
changes are staged under the session's fail-safe and written by the same atomic COMMIT
as the Wi-Fi credentials. A device ends a session fully enrolled or as it was.

Zone (webinos personal zone, Matter fabric): at the session's start the device makes a
P-256 key that never leaves it and pushes its public point with a proof of possession
bound to this session and device (:data:`ZONE_KEY_BINDING`), in the handshake's answer
flight; the hub's zone CA checks the proof and issues a member certificate;
``zone/install`` hands the device its certificate, the chain and the zone root, and the
device checks they fit its pending key before staging them.

Peer (no hub): ``peer/bind`` carries the host's long-term peer certificate; the device
pins it, answers with its own (made on first binding), and both sides can then open a
mutually authenticated connection with no CA (:mod:`bleprov.core.peer`).

Store records (inside the encrypted device store): ``zone`` (:class:`ZoneMembership`),
``owner`` (:class:`Owner`), ``peer.identity`` and ``peer.pins``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography import x509

from bleprov.core import cbor
from bleprov.core.crypto import pki
from bleprov.core.crypto.loading import (
    UnreadableCertificate,
    UnreadableKey,
    load_der_certificate,
    load_der_private_key,
)
from bleprov.core.crypto.pki import SigningKey
from bleprov.core.enrolment.device import Authority, SessionContext, Staged
from bleprov.core.enrolment.messages import EnrolmentError, Status
from bleprov.core.errors import MalformedData
from bleprov.core.identity import CLOCK_SKEW_ALLOWANCE
from bleprov.core.peer import (
    FINGERPRINT_SIZE,
    PeerError,
    PeerIdentity,
    PeerPin,
    PeerSetupError,
    PinSet,
)
from bleprov.core.zone import (
    ZONE_KEY_SIZE,
    MemberCertificate,
    MemberIdentity,
    ZoneError,
    ZoneSetupError,
    make_key_proof,
    make_member_key,
    verify_member,
)

ZONE_KEY: Final = "zone/key"
ZONE_INSTALL: Final = "zone/install"
PEER_BIND: Final = "peer/bind"

#: Channel-binding label of the zone key's proof of possession (docs/protocol.md,
#: section 12, "The zone key").
ZONE_KEY_BINDING: Final = b"zone key"

RECORD_ZONE: Final = "zone"
RECORD_OWNER: Final = "owner"
RECORD_PEER_IDENTITY: Final = "peer.identity"
RECORD_PEER_PINS: Final = "peer.pins"

MAX_CERT: Final = 4096
MAX_CHAIN: Final = 2
MAX_RECORD: Final = 32 * 1024
#: Admins an owner may add (each is also a pinned peer; pins are capped at 32).
MAX_ADMINS: Final = 16
#: Records a handover replaces: the new owner's, or none of the old owner's.
TRUST_RECORD_NAMES: Final = (RECORD_ZONE, RECORD_OWNER, RECORD_PEER_IDENTITY, RECORD_PEER_PINS)


class MembershipError(MalformedData):
    """A membership record or message is malformed."""


def _loads_map(raw: bytes, what: str) -> dict[str, Any]:
    if not isinstance(raw, bytes) or not 0 < len(raw) <= MAX_RECORD:
        raise MembershipError(f"{what} must be 1..{MAX_RECORD} bytes")
    try:
        value = cbor.loads(raw, max_size=MAX_RECORD)
    except cbor.CborError as exc:
        raise MembershipError(f"{what}: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise MembershipError(f"{what} must be a map with text keys")
    return value


def _bytes(body: dict[str, Any], key: str, limit: int = MAX_CERT) -> bytes:
    value = body.get(key)
    if not isinstance(value, bytes) or not 0 < len(value) <= limit:
        raise MembershipError(f"field {key!r} must be 1..{limit} bytes")
    return value


def _text(body: dict[str, Any], key: str, limit: int = 64) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise MembershipError(f"field {key!r} must be text of 1..{limit} characters")
    return value


def _chain(body: dict[str, Any]) -> tuple[bytes, ...]:
    value = body.get("chain")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CHAIN:
        raise MembershipError(f"field 'chain' must hold 1..{MAX_CHAIN} certificates")
    if not all(isinstance(c, bytes) and 0 < len(c) <= MAX_CERT for c in value):
        raise MembershipError("chain entries must be DER certificates")
    return tuple(value)


# ------------------------------------------------------------------------- records


@dataclass(frozen=True, repr=False)
class ZoneMembership:
    """What a member device keeps: its key, certificate, chain, the zone root, its owner.

    The certificate is parsed when the membership is made, and must be for ``key``: a
    membership that exists answers :attr:`serial` and :meth:`renew_after` (the renewal
    timer's question) without raising (issue 15, F4).
    """

    key: SigningKey
    cert_der: bytes
    chain_der: tuple[bytes, ...]
    root_der: bytes
    zone_id: str
    owner: str
    _leaf: x509.Certificate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            leaf = load_der_certificate(self.cert_der)
        except UnreadableCertificate:
            raise MembershipError("zone record: the certificate is not DER") from None
        if leaf.public_key() != self.key.public_key():
            raise MembershipError("zone record: the certificate is not for the record's key")
        object.__setattr__(self, "_leaf", leaf)

    def __repr__(self) -> str:
        return f"ZoneMembership(zone_id={self.zone_id!r}, owner={self.owner!r})"

    @property
    def certificate(self) -> MemberCertificate:
        return MemberCertificate(self.cert_der, self.chain_der, self.root_der)

    @property
    def serial(self) -> int:
        return self._leaf.serial_number

    def renew_after(self) -> datetime:
        """When to renew: two thirds into the certificate's validity, so a member keeps
        a third of it (10 days of the default 30) to reach its hub."""
        start, end = self._leaf.not_valid_before_utc, self._leaf.not_valid_after_utc
        return start + (end - start) * 2 / 3

    def _check_profile(self) -> None:
        """The certificate is a member certificate of this record's zone and owner that
        chains to this record's root: checked at the start of its validity, as
        ``zone/install`` checks it on a device without a clock (expiry is every TLS
        peer's to enforce, and a stored certificate outlives its validity until renewed)."""
        try:
            member = verify_member(
                self.cert_der,
                self.chain_der,
                zone_root_der=self.root_der,
                crl_der=None,
                now=self._leaf.not_valid_before_utc + CLOCK_SKEW_ALLOWANCE,
            )
        except (ZoneError, ZoneSetupError) as exc:
            raise MembershipError(f"zone record: the certificate does not verify: {exc}") from None
        if member.zone_id != self.zone_id or member.owner != self.owner:
            raise MembershipError("zone record: the certificate names another zone or owner")

    def encode(self) -> bytes:
        """The ``zone`` record; the key is PKCS#8 DER (the device store encrypts records)."""
        key = pki.pkcs8_der(self.key)
        return cbor.dumps(
            {
                "v": 1,
                "key": key,
                "cert": self.cert_der,
                "chain": list(self.chain_der),
                "root": self.root_der,
                "zone": self.zone_id,
                "owner": self.owner,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> ZoneMembership:
        body = _loads_map(raw, "zone record")
        if body.get("v") != 1:
            raise MembershipError("zone record: unknown version")
        try:
            key = load_der_private_key(_bytes(body, "key"), None)
        except UnreadableKey:
            raise MembershipError("zone record: the key does not load") from None
        if not pki.is_ec_private_key(key):
            raise MembershipError("zone record: the key is not an EC key")
        membership = cls(
            key=key,
            cert_der=_bytes(body, "cert"),
            chain_der=_chain(body),
            root_der=_bytes(body, "root"),
            zone_id=_text(body, "zone", 16),
            owner=_text(body, "owner"),
        )
        membership._check_profile()
        return membership


def spki_fingerprint(cert_der: bytes) -> bytes:
    """SHA-256 of a certificate's SubjectPublicKeyInfo: how owners are compared (never by
    name). MembershipError if the certificate does not parse."""
    try:
        key = load_der_certificate(cert_der).public_key()
    except UnreadableCertificate:
        raise MembershipError("not a DER certificate with a usable key") from None
    return hashlib.sha256(pki.spki_der(key)).digest()


OWNER_KINDS: Final = ("zone", "peer")


@dataclass(frozen=True)
class Owner:
    """Who the device is bound to, by key: a zone (its root's key; the zone's hub acts for
    it) or a peer (its pinned key). ``name`` is a label for people and logs, never what is
    compared. ``admins`` are the fingerprints of pinned peers the owner let in through an
    admin window: they may connect, not reset the device, open windows or see the owner."""

    kind: str
    fingerprint: bytes
    name: str
    zone_id: str | None = None
    admins: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in OWNER_KINDS:
            raise MembershipError("owner kind is zone or peer")
        if len(self.fingerprint) != FINGERPRINT_SIZE:
            raise MembershipError(f"owner fingerprint must be {FINGERPRINT_SIZE} bytes")
        if (self.kind == "zone") != (self.zone_id is not None):
            raise MembershipError("a zone owner names its zone; a peer owner does not")
        if len(self.admins) > MAX_ADMINS or any(len(a) != FINGERPRINT_SIZE for a in self.admins):
            raise MembershipError(f"at most {MAX_ADMINS} admins, by 32-byte fingerprint")

    def is_owner(self, fingerprint: bytes) -> bool:
        """Constant-time: is ``fingerprint`` the owner's key?"""
        return hmac.compare_digest(self.fingerprint, fingerprint)

    def is_admin(self, fingerprint: bytes) -> bool:
        """Constant-time over every admin: is ``fingerprint`` one of them?"""
        found = False
        for admin in self.admins:
            found |= hmac.compare_digest(admin, fingerprint)
        return found

    def with_admin(self, fingerprint: bytes) -> Owner:
        if self.is_admin(fingerprint) or self.is_owner(fingerprint):
            return self
        return replace(self, admins=(*self.admins, fingerprint))

    def without_admin(self, fingerprint: bytes) -> Owner:
        return replace(
            self, admins=tuple(a for a in self.admins if not hmac.compare_digest(a, fingerprint))
        )

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": 2,
            "kind": self.kind,
            "fp": self.fingerprint,
            "name": self.name,
            "admins": list(self.admins),
        }
        if self.zone_id is not None:
            body["zone"] = self.zone_id
        return cbor.dumps(body)

    @classmethod
    def decode(cls, raw: bytes) -> Owner:
        body = _loads_map(raw, "owner record")
        if body.get("v") != 2:
            raise MembershipError("owner record: unknown version")
        kind = _text(body, "kind", 8)
        zone_id = _text(body, "zone", 16) if "zone" in body else None
        admins = body.get("admins")
        if not isinstance(admins, list) or not all(isinstance(a, bytes) for a in admins):
            raise MembershipError("owner record: admins must be a list of fingerprints")
        return cls(
            kind,
            _bytes(body, "fp", FINGERPRINT_SIZE),
            _text(body, "name"),
            zone_id,
            tuple(admins),
        )


def membership_of(records: Mapping[str, bytes]) -> ZoneMembership | None:
    raw = records.get(RECORD_ZONE)
    return None if raw is None else ZoneMembership.decode(raw)


def owner_of(records: Mapping[str, bytes]) -> Owner | None:
    """The device's owner, by key. A version-1 record (owner by name, before keys were
    compared) is read once more and resolved to the key it meant: the pin of that name,
    or the zone's root."""
    raw = records.get(RECORD_OWNER)
    if raw is None:
        return None
    body = _loads_map(raw, "owner record")
    if "v" in body:
        return Owner.decode(raw)
    kind, name = _text(body, "kind", 8), _text(body, "name")
    if kind == "zone":
        membership = membership_of(records)
        if membership is None:
            raise MembershipError("owner record names a zone the device is not a member of")
        fingerprint = spki_fingerprint(membership.root_der)
        return Owner("zone", fingerprint, name, membership.zone_id)
    pins = pins_of(records)
    for pin in pins:
        if pin.name == name:
            return Owner("peer", pin.fingerprint, name)
    raise MembershipError("owner record names a peer that is not pinned")


def peer_identity_of(records: Mapping[str, bytes]) -> PeerIdentity | None:
    raw = records.get(RECORD_PEER_IDENTITY)
    return None if raw is None else PeerIdentity.from_bytes(raw)


def pins_of(records: Mapping[str, bytes]) -> PinSet:
    raw = records.get(RECORD_PEER_PINS)
    return PinSet() if raw is None else PinSet.from_bytes(raw)


# ------------------------------------------------------------------- device role


def _refuse(message: str) -> EnrolmentError:
    return EnrolmentError(Status.NOT_ALLOWED, message)


class ZoneMembershipExtension:
    """Device side of zone enrolment: ``zone/csr`` then ``zone/install``.

    One instance serves one session (it holds the pending key, which dies with it).
    """

    endpoints: tuple[str, ...] = (ZONE_KEY, ZONE_INSTALL)
    capabilities: tuple[str, ...] = ("zone",)

    def __init__(self) -> None:
        self._pending: SigningKey | None = None

    def allowed(self, endpoint: str, authority: Authority) -> bool:
        """Joining a zone makes it the owner: the installer or a handover only."""
        return authority in (Authority.INSTALLER, Authority.HANDOVER)

    def owns(self, committed: Mapping[str, bytes]) -> bool:
        return False

    def finalise(self, context: SessionContext) -> dict[str, bytes | None]:
        return {}

    def opened(self, context: SessionContext) -> dict[str, Any]:
        """A session that may enrol this device gets its zone key and proof unasked, in
        the handshake's answer flight: the hub can issue at once, and no round trip asks."""
        if (
            context.channel_binding is None
            or not self.allowed(ZONE_KEY, context.authority)
            or RECORD_ZONE in context.committed
        ):
            return {}
        body = self._key(context).body
        return {"zone_key": body["key"], "zone_pop": body["pop"]}

    def handle(self, endpoint: str, body: dict[str, Any], context: SessionContext) -> Staged:
        existing = membership_of(context.committed)
        if existing is not None:
            raise _refuse(
                f"already a member of zone {existing.zone_id}: renew over a validated "
                "connection, or factory-reset the device to enrol it elsewhere"
            )
        if endpoint == ZONE_KEY:
            return self._key(context)
        return self._install(body, context)

    def _key(self, context: SessionContext) -> Staged:
        """A new pending key (replacing any), and its proof bound to this session."""
        if context.channel_binding is None:
            raise _refuse("this session offers no channel binding for a zone key")
        binding = context.channel_binding(ZONE_KEY_BINDING)
        self._pending = make_member_key()
        point, proof = make_key_proof(
            self._pending, device_id=context.device_id, session_binding=binding
        )
        return Staged({"key": point, "pop": proof})

    def _install(self, body: dict[str, Any], context: SessionContext) -> Staged:
        key = self._pending
        if key is None:
            raise _refuse("there is no pending key to install for: ask zone/key")
        cert_der = _bytes(body, "cert")
        chain = _chain(body)
        root = _bytes(body, "root")
        try:
            leaf = load_der_certificate(cert_der)
        except UnreadableCertificate:
            raise MembershipError("field 'cert' is not a DER certificate") from None
        if leaf.public_key() != key.public_key():
            raise _refuse("the certificate is not for the key this device made")
        member = self._verify(cert_der, chain, root, leaf, context.wall_clock)
        if not hmac.compare_digest(member.device_id, context.device_id):
            raise _refuse("the certificate names another device")
        owner = member.owner  # the installer chose it; the certificate says it once
        membership = ZoneMembership(key, cert_der, chain, root, member.zone_id, owner)
        records: dict[str, bytes | None] = {RECORD_ZONE: membership.encode()}
        if owner_of(context.committed) is None and RECORD_OWNER not in context.staged:
            records[RECORD_OWNER] = Owner(
                "zone", spki_fingerprint(root), owner, member.zone_id
            ).encode()
        return Staged({}, records)

    @staticmethod
    def _verify(
        cert_der: bytes,
        chain: tuple[bytes, ...],
        root: bytes,
        leaf: x509.Certificate,
        wall_clock: datetime | None,
    ) -> MemberIdentity:
        # A virgin device may have no trustworthy clock (no RTC, no NTP before Wi-Fi): the
        # path is checked at the device's time when that falls inside the certificate's
        # validity, else at its start. Expiry is enforced later, by every TLS peer.
        start = leaf.not_valid_before_utc + CLOCK_SKEW_ALLOWANCE
        when = start
        if wall_clock is not None and start <= wall_clock <= leaf.not_valid_after_utc:
            when = wall_clock
        try:
            return verify_member(cert_der, chain, zone_root_der=root, crl_der=None, now=when)
        except (ZoneError, ZoneSetupError) as exc:
            raise _refuse(f"the certificate does not validate: {exc}") from None


class PeerBindingExtension:
    """Device side of peer binding: ``peer/bind`` pins the host and returns our identity."""

    endpoints: tuple[str, ...] = (PEER_BIND,)
    capabilities: tuple[str, ...] = ("peer",)

    def __init__(self, *, identity_validity: timedelta | None = None) -> None:
        self._validity = identity_validity

    def allowed(self, endpoint: str, authority: Authority) -> bool:
        """The installer, a new owner (handover) or a new admin (admin window)."""
        return authority is not Authority.OBSERVER

    def owns(self, committed: Mapping[str, bytes]) -> bool:
        return False

    def finalise(self, context: SessionContext) -> dict[str, bytes | None]:
        return {}

    def opened(self, context: SessionContext) -> dict[str, Any]:
        return {}

    def handle(self, endpoint: str, body: dict[str, Any], context: SessionContext) -> Staged:
        try:
            pin = PeerPin.from_certificate(_bytes(body, "cert"))
        except PeerError as exc:
            raise _refuse(f"the peer certificate is not acceptable: {exc}") from None
        records: dict[str, bytes | None] = {}
        raw_identity = context.staged.get(RECORD_PEER_IDENTITY) or context.committed.get(
            RECORD_PEER_IDENTITY
        )
        if raw_identity is not None:
            identity = PeerIdentity.from_bytes(raw_identity)
        else:
            if context.wall_clock is None:
                raise _refuse("the device has no clock to make its peer identity with")
            identity = PeerIdentity.create(context.device_id, now=context.wall_clock)
            records[RECORD_PEER_IDENTITY] = identity.to_bytes()
        raw_pins = context.staged.get(RECORD_PEER_PINS) or context.committed.get(RECORD_PEER_PINS)
        pins = PinSet() if raw_pins is None else PinSet.from_bytes(raw_pins)
        fingerprint = pin.fingerprint
        try:
            records[RECORD_PEER_PINS] = pins.add(pin).to_bytes()
        except (PeerError, PeerSetupError) as exc:
            raise _refuse(str(exc)) from None
        raw_owner = context.staged.get(RECORD_OWNER)
        owner = Owner.decode(raw_owner) if raw_owner else owner_of(context.committed)
        if context.authority is Authority.ADMIN:
            if owner is None:
                raise _refuse("an admin window needs an owner; this device has none")
            if owner.is_owner(fingerprint) or owner.is_admin(fingerprint):
                raise _refuse("this host is already the owner or an admin of the device")
            if len(owner.admins) >= MAX_ADMINS:
                raise _refuse(f"the device has {MAX_ADMINS} admins already: remove one first")
            records[RECORD_OWNER] = owner.with_admin(fingerprint).encode()
        elif owner is None:
            records[RECORD_OWNER] = Owner("peer", fingerprint, pin.name).encode()
        return Staged({"cert": identity.cert_der}, records)


class OwnershipRules:
    """No endpoints of its own: at COMMIT, a window session must have done what its
    window was opened for, and a handover replaces the old owner's records.

    A handover's session saw a device with no trust (:class:`SessionContext` gives it
    empty committed records), so what it staged is the new owner's whole state; every
    trust record it did not stage is deleted in the same atomic write."""

    endpoints: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("owner-window",)

    def allowed(self, endpoint: str, authority: Authority) -> bool:
        return False

    def owns(self, committed: Mapping[str, bytes]) -> bool:
        """An owner record makes the device owned (a corrupt one too: fail closed)."""
        return RECORD_OWNER in committed

    def opened(self, context: SessionContext) -> dict[str, Any]:
        return {}

    def handle(self, endpoint: str, body: dict[str, Any], context: SessionContext) -> Staged:
        raise _refuse(f"{endpoint}: no such endpoint")

    def finalise(self, context: SessionContext) -> dict[str, bytes | None]:
        if context.authority is Authority.HANDOVER:
            if RECORD_OWNER not in context.staged:
                raise _refuse(
                    "a handover must bind the new owner: enrol the device in your zone or "
                    "bind it as a peer in this session"
                )
            return dict.fromkeys(TRUST_RECORD_NAMES)
        if context.authority is Authority.ADMIN and RECORD_OWNER not in context.staged:
            raise _refuse("an admin window is for binding this host as a peer: bind it")
        return {}


def device_extensions() -> tuple[ZoneMembershipExtension, PeerBindingExtension, OwnershipRules]:
    """The extensions a device serves, fresh for one session."""
    return ZoneMembershipExtension(), PeerBindingExtension(), OwnershipRules()


# --------------------------------------------------------------------- host role


def install_body(certificate: MemberCertificate) -> dict[str, Any]:
    return {
        "cert": certificate.cert_der,
        "chain": list(certificate.chain_der),
        "root": certificate.root_der,
    }


def parse_key_response(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """A ``zone/key`` answer (or the ``session`` notification's fields renamed to it):
    the key's point and its proof of possession, checked for size only (the hub checks
    the proof)."""
    point, proof = _bytes(body, "key", ZONE_KEY_SIZE), _bytes(body, "pop", 64)
    if len(point) != ZONE_KEY_SIZE or len(proof) != 64:
        raise MembershipError("a zone key is a 65-byte point with a 64-byte proof")
    return point, proof


def bind_body(identity: PeerIdentity) -> dict[str, Any]:
    return {"cert": identity.cert_der}


def parse_bind_response(body: dict[str, Any]) -> PeerPin:
    try:
        return PeerPin.from_certificate(_bytes(body, "cert"))
    except PeerError as exc:
        raise MembershipError(f"the device's peer certificate is not acceptable: {exc}") from None


__all__ = [
    "PEER_BIND",
    "ZONE_INSTALL",
    "ZONE_KEY",
    "ZONE_KEY_BINDING",
    "MembershipError",
    "Owner",
    "OwnershipRules",
    "PeerBindingExtension",
    "ZoneMembership",
    "ZoneMembershipExtension",
    "bind_body",
    "device_extensions",
    "install_body",
    "membership_of",
    "owner_of",
    "parse_bind_response",
    "parse_key_response",
    "peer_identity_of",
    "pins_of",
    "spki_fingerprint",
]
