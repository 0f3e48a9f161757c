"""After enrolment: what a device serves over validated connections, and the host's side.

A device that joined a zone serves zone members over mutual TLS with its member
certificate; a device bound to peers serves them with its pinned peer identity (no CA).
Both read their credentials from the device's encrypted store on every connection, so a
renewal, a binding or an unbinding takes effect on the next one.

The host keeps its own peer identity and its pins in an encrypted store too
(:class:`HostTrust`): nothing of it rests on disk in plaintext.

Operations on these connections (docs/protocol.md, "Validated connections"), and who may
call them (docs/security.md, "Ownership"). The owner is a key, never a name: the pinned
peer whose key fingerprint the owner record holds, or the hub of the owning zone.

- ``hello``: the device's name and the caller's role; the owner's identity only to the owner.
- ``peer/unbind``: a pinned peer forgets itself on both sides (an admin stops being one;
  the owner releasing the device leaves it with no owner, its label alive again).
- ``window/open``, ``window/close``: the owner only; opens or closes a commissioning window
  (:mod:`bleprov.core.window`) for a new admin or a new owner.
- ``factory-reset``: the owner only (the BLE session cannot: it authenticates whoever
  holds the label, not the owner).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from bleprov.core import membership as mb
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError, MalformedData
from bleprov.core.identity import IdentityError, IntermediateCache
from bleprov.core.peer import PeerIdentity, PeerPin, PinSet
from bleprov.core.receipt import (
    MAX_UNRESOLVED,
    UnresolvedEnrolment,
    decode_unresolved,
    encode_unresolved,
)
from bleprov.core.window import (
    DEFAULT_WINDOW_SECONDS,
    WindowCode,
    WindowError,
    WindowOffer,
    WindowPurpose,
)
from bleprov.core.wire_codes import DeviceOpCode
from bleprov.tls.connection import (
    MemberCredentials,
    PeerNotTrusted,
    ValidatedConnection,
    ValidatedConnectionError,
    open_member_connection,
    open_peer_connection,
    start_member_server,
    start_peer_server,
)
from bleprov.tls.hub import fetch_crl, renew_membership

logger = logging.getLogger(__name__)

OP_HELLO: Final = "hello"
OP_UNBIND: Final = "peer/unbind"
OP_FACTORY_RESET: Final = "factory-reset"
OP_WINDOW_OPEN: Final = "window/open"
OP_WINDOW_CLOSE: Final = "window/close"
#: Error codes on validated connections (beside the TLS adapter's own).
#: v2: 0x60, 0x63 and 0x4D, distinct from the zone's codes in the same field.
ERROR_UNKNOWN_OP: Final = DeviceOpCode.UNKNOWN_OP
ERROR_NOT_ALLOWED: Final = DeviceOpCode.NOT_ALLOWED
ERROR_BAD_WINDOW: Final = DeviceOpCode.BAD_WINDOW


class _Refused(Exception):
    """An operation refused with a code (answered, the connection goes on)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class TrustStoreError(BleprovError):
    """The store holds no credentials for what was asked (not enrolled, not bound)."""


class WindowControl(Protocol):
    """The device runtime's commissioning window (one at a time, RAM only)."""

    async def open_window(self, offer: WindowOffer, *, opened_by: bytes) -> None:
        """Open it and advertise it before returning (the owner then hands the code on)."""
        ...

    async def close_window(self) -> bool:
        """Close the open window; False if none was open."""
        ...


class RecordStore(Protocol):
    """The device store's interface, as far as trust needs it."""

    def load(self) -> dict[str, bytes]: ...

    def update(self, changes: dict[str, bytes | None]) -> None: ...


def member_credentials(records: dict[str, bytes]) -> MemberCredentials:
    membership = mb.membership_of(records)
    if membership is None:
        raise TrustStoreError("this device is not a zone member: enrol it first")
    return MemberCredentials(
        membership.key, membership.cert_der, membership.chain_der, membership.root_der
    )


class DeviceTrust:
    """The validated-connection side of an enrolled or bound device."""

    def __init__(
        self,
        store: RecordStore,
        *,
        device_id: str,
        factory_reset: Callable[[], None] | None = None,
        windows: WindowControl | None = None,
    ) -> None:
        self.store = store
        self.device_id = device_id
        #: Forgets Wi-Fi, zone, owner and pins, keeps the factory identity (DeviceStore's).
        self.factory_reset = factory_reset
        self.windows = windows
        self.servers: list[asyncio.Server] = []

    # ---------------------------------------------------------------- state

    def owner(self) -> mb.Owner | None:
        return mb.owner_of(self.store.load())

    def credentials(self) -> MemberCredentials:
        return member_credentials(self.store.load())

    def peer_identity(self) -> PeerIdentity:
        identity = mb.peer_identity_of(self.store.load())
        if identity is None:
            raise TrustStoreError("this device is bound to no peer")
        return identity

    def pins(self) -> PinSet:
        return mb.pins_of(self.store.load())

    # --------------------------------------------------------------- serving

    async def serve_members(
        self, host: str, port: int, *, crl_provider: Callable[[], bytes]
    ) -> asyncio.Server:
        server = await start_member_server(
            host, port, self.credentials(), crl_provider=crl_provider, handler=self._handle
        )
        self.servers.append(server)
        return server

    async def serve_peers(self, host: str, port: int) -> asyncio.Server:
        self.peer_identity()  # fails now, not per connection, if the device is bound to none
        server = await start_peer_server(host, port, self.peer_identity, self.pins, self._handle)
        self.servers.append(server)
        return server

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()

    async def _handle(self, connection: ValidatedConnection) -> None:
        while not connection.closed:
            try:
                request = await connection.next_request()
            except ValidatedConnectionError:
                return
            try:
                reply, last = await self._answer(connection, request.op, request.body)
            except _Refused as refused:
                await connection.reply_error(request, refused.code, str(refused))
                continue
            await connection.reply(request, reply)
            if last:
                return

    async def _answer(
        self, connection: ValidatedConnection, op: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """One operation's reply and whether the connection ends after it."""
        if op == OP_HELLO:
            return self._hello(connection), False
        if op == OP_UNBIND:
            if connection.peer_pin is None:
                raise _Refused(ERROR_NOT_ALLOWED, "unbind is for pinned peers")
            self._unbind(connection.peer_pin)
            return {}, True
        if op in (OP_WINDOW_OPEN, OP_WINDOW_CLOSE, OP_FACTORY_RESET):
            caller = self._owner_fingerprint(connection)
            if caller is None:
                raise _Refused(ERROR_NOT_ALLOWED, f"only the device's owner may {op}")
            if op == OP_FACTORY_RESET:
                if self.factory_reset is None:
                    raise _Refused(ERROR_NOT_ALLOWED, "this device cannot be reset remotely")
                logger.warning("factory reset asked by its owner (key %s)", caller.hex()[:16])
                self.factory_reset()
                return {}, True
            if self.windows is None:
                raise _Refused(ERROR_NOT_ALLOWED, "this device opens no commissioning windows")
            if op == OP_WINDOW_CLOSE:
                return {"closed": await self.windows.close_window()}, False
            try:
                offer = WindowOffer.from_body(body)
            except WindowError as exc:
                raise _Refused(ERROR_BAD_WINDOW, str(exc)) from None
            await self.windows.open_window(offer, opened_by=caller)
            logger.info(
                "commissioning window (%s, %d s) opened by the owner (key %s)",
                offer.purpose.label,
                offer.seconds,
                caller.hex()[:16],
            )
            return {"purpose": offer.purpose.label, "expires_in": offer.seconds}, False
        raise _Refused(ERROR_UNKNOWN_OP, "unknown operation")

    def _owner_fingerprint(self, connection: ValidatedConnection) -> bytes | None:
        """The caller's key fingerprint if the caller is the owner, else None."""
        owner = self.owner()
        if owner is None:
            return None
        if owner.kind == "peer" and connection.peer_pin is not None:
            fingerprint = connection.peer_pin.fingerprint
            return fingerprint if owner.is_owner(fingerprint) else None
        member = connection.peer_member
        if owner.kind == "zone" and member is not None and owner.zone_id is not None:
            # The hub role is in the certificate (only Zone.issue_hub writes it); a device
            # ID proves nothing, since a factory can mint HUB-<zone id> too.
            is_hub = member.is_hub and member.zone_id == owner.zone_id
            return owner.fingerprint if is_hub else None
        return None

    def _is_owner(self, connection: ValidatedConnection) -> bool:
        return self._owner_fingerprint(connection) is not None

    def _hello(self, connection: ValidatedConnection) -> dict[str, Any]:
        """Who we are and what the caller is to us; who owns us only to the owner."""
        owner = self.owner()
        body: dict[str, Any] = {"name": self.device_id}
        if owner is not None and self._is_owner(connection):
            body["role"] = "owner"
            body["owner"] = {"kind": owner.kind, "name": owner.name, "admins": len(owner.admins)}
        elif (
            owner is not None
            and connection.peer_pin is not None
            and owner.is_admin(connection.peer_pin.fingerprint)
        ):
            body["role"] = "admin"
        else:
            body["role"] = "peer" if connection.peer_pin is not None else "member"
        return body

    def _unbind(self, pin: PeerPin) -> None:
        """Forget ``pin``, and the ownership or admin role its key held, in one write."""
        records = self.store.load()
        pins = mb.pins_of(records).remove(pin.name)
        changes: dict[str, bytes | None] = {
            mb.RECORD_PEER_PINS: pins.to_bytes() if len(pins) else None
        }
        owner = mb.owner_of(records)
        fingerprint = pin.fingerprint
        if owner is not None and owner.is_owner(fingerprint):
            # The owner releases the device: no owner, no admins; its label works again.
            changes[mb.RECORD_OWNER] = None
        elif owner is not None and owner.is_admin(fingerprint):
            changes[mb.RECORD_OWNER] = owner.without_admin(fingerprint).encode()
        self.store.update(changes)
        logger.info("unbound peer (key %s)", fingerprint.hex()[:16])

    # -------------------------------------------------------------- renewal

    async def renew(self, hub_host: str, hub_port: int) -> None:
        """Renew the zone certificate over a validated connection to the hub.

        The new key and certificate replace the old in one store write; the old key is
        gone with it. A revoked member is refused by the hub (and cannot connect)."""
        records = self.store.load()
        membership = mb.membership_of(records)
        if membership is None:
            raise TrustStoreError("this device is not a zone member: enrol it first")
        new_credentials, issued = await renew_membership(
            hub_host, hub_port, member_credentials(records)
        )
        renewed = mb.ZoneMembership(
            new_credentials.key,
            issued.cert_der,
            tuple(issued.chain_der),
            issued.root_der,
            membership.zone_id,
            membership.owner,
        )
        self.store.update({mb.RECORD_ZONE: renewed.encode()})

    async def fetch_crl(self, hub_host: str, hub_port: int) -> bytes:
        return await fetch_crl(hub_host, hub_port, self.credentials())


# ------------------------------------------------------------------ host side

RECORD_HOST_IDENTITY: Final = "host.peer-identity"
RECORD_HOST_PINS: Final = "host.peer-pins"
#: Enrolments whose COMMIT answer was lost and not learnt yet (bleprov.core.receipt).
RECORD_HOST_UNRESOLVED: Final = "host.unresolved"
#: Manufacturer intermediates validated against the trusted roots (protocol section 9).
RECORD_HOST_INTERMEDIATES: Final = "host.intermediates"


class HostTrust:
    """The host's peer identity and the devices it pinned, in its encrypted store."""

    def __init__(
        self,
        store: RecordStore,
        *,
        name: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.name = name
        self.clock = clock

    def identity(self) -> PeerIdentity:
        """Our long-term peer identity, made (and stored) on first use."""
        raw = self.store.load().get(RECORD_HOST_IDENTITY)
        if raw is not None:
            return PeerIdentity.from_bytes(raw)
        identity = PeerIdentity.create(self.name, now=self.clock())
        self.store.update({RECORD_HOST_IDENTITY: identity.to_bytes()})
        return identity

    def pins(self) -> PinSet:
        raw = self.store.load().get(RECORD_HOST_PINS)
        return PinSet() if raw is None else PinSet.from_bytes(raw)

    def pin(self, pin: PeerPin) -> None:
        self.store.update({RECORD_HOST_PINS: self.pins().add(pin).to_bytes()})

    def unpin(self, name: str) -> None:
        pins = self.pins().remove(name)
        self.store.update({RECORD_HOST_PINS: pins.to_bytes() if len(pins) else None})

    # ------------------------------------------- enrolments whose outcome is not known

    def intermediates(self) -> IntermediateCache:
        """The manufacturer intermediates this host validated before, kept in its store
        as they are learnt: the next device of a known manufacturer costs no fetch. An
        unreadable record is logged and read as none (it is only a cache), and a store
        that cannot be read or written (a read-only home) costs only the fetches."""
        try:
            raw = self.store.load().get(RECORD_HOST_INTERMEDIATES)
        except (OSError, BleprovError) as exc:
            logger.warning("validated intermediates are not remembered this run: %s", exc)
            return IntermediateCache()
        cache = IntermediateCache()
        if raw is not None:
            try:
                cache = IntermediateCache.from_bytes(raw)
            except IdentityError as exc:
                logger.error("the host's intermediate cache is unreadable: %s", exc)

        def save(changed: IntermediateCache) -> None:
            try:
                self.store.update({RECORD_HOST_INTERMEDIATES: changed.to_bytes()})
            except (OSError, BleprovError) as exc:
                logger.warning("a validated intermediate is not remembered: %s", exc)

        cache.on_change = save
        return cache

    def unresolved(self) -> list[UnresolvedEnrolment]:
        """Enrolments whose COMMIT answer was lost, to ask their devices about later.

        An unreadable record is logged and read as none: it only ever held questions."""
        raw = self.store.load().get(RECORD_HOST_UNRESOLVED)
        if raw is None:
            return []
        try:
            return decode_unresolved(raw)
        except MalformedData as exc:
            logger.error("the host's unresolved enrolments are unreadable: %s", exc)
            return []

    def get_unresolved(self, device_id: str) -> UnresolvedEnrolment | None:
        return next((e for e in self.unresolved() if e.device_id == device_id), None)

    def remember_unresolved(self, enrolment: UnresolvedEnrolment) -> None:
        """Keep it (replacing an earlier one of the same device) until it is learnt."""
        kept = [e for e in self.unresolved() if e.device_id != enrolment.device_id]
        self._save_unresolved([*kept, enrolment])

    def forget_unresolved(self, device_id: str) -> None:
        kept = [e for e in self.unresolved() if e.device_id != device_id]
        self._save_unresolved(kept)

    def _save_unresolved(self, entries: list[UnresolvedEnrolment]) -> None:
        entries = entries[-MAX_UNRESOLVED:]  # the newest: the oldest are the least likely
        self.store.update({RECORD_HOST_UNRESOLVED: encode_unresolved(entries) if entries else None})

    async def connect(self, host: str, port: int, device: str) -> ValidatedConnection:
        """A mutually authenticated connection to a device we bound (no CA)."""
        try:
            return await open_peer_connection(
                host, port, self.identity(), self.pins(), expect_name=device
            )
        except PeerNotTrusted as exc:
            # What a person needs to know: the device is not the one we pinned any more.
            raise PeerNotTrusted(
                f"the device at {host}:{port} did not present the key this host pinned for "
                f"{device}: it was handed over or reset, or it is another device. If it is "
                f"no longer yours, forget it here: bleprov peer unbind --local-only {device}",
                exc.reason,
            ) from None

    async def open_window(
        self,
        host: str,
        port: int,
        device: str,
        *,
        purpose: WindowPurpose,
        seconds: int = DEFAULT_WINDOW_SECONDS,
        cost: ScryptCost | None = None,
    ) -> WindowCode:
        """As the device's owner: open a commissioning window; returns its one-time code,
        which is for the person who will set up the new host (it never leaves this host
        otherwise)."""
        async with await self.connect(host, port, device) as connection:
            return await open_window(connection, purpose=purpose, seconds=seconds, cost=cost)

    async def unbind(self, host: str, port: int, device: str) -> None:
        """Remove our pin on the device, then its pin here: afterwards neither trusts the
        other. The device goes first, so a lost reply leaves only a stale pin here."""
        async with await self.connect(host, port, device) as connection:
            await connection.request(OP_UNBIND, {})
        self.unpin(device)


async def open_window(
    connection: ValidatedConnection,
    *,
    purpose: WindowPurpose,
    seconds: int = DEFAULT_WINDOW_SECONDS,
    cost: ScryptCost | None = None,
) -> WindowCode:
    """Open a window over an owner's validated connection (a peer's or the zone hub's)."""
    code = WindowCode.generate()
    offer = WindowOffer.create(code, purpose=purpose, seconds=seconds, cost=cost)
    await connection.request(OP_WINDOW_OPEN, offer.to_body())
    return code


async def member_hello(
    host: str, port: int, credentials: MemberCredentials, *, crl_der: bytes, device: str
) -> dict[str, Any]:
    """Open a validated member connection to ``device`` and ask who it is."""
    async with await open_member_connection(
        host, port, credentials, crl_der=crl_der, expect_device=device
    ) as connection:
        return await connection.request(OP_HELLO, {})
