"""After enrolment: what a device serves over validated connections, and the host's side.

A device that joined a zone serves zone members over mutual TLS with its member
certificate; a device bound to peers serves them with its pinned peer identity (no CA).
Both read their credentials from the device's encrypted store on every connection, so a
renewal, a binding or an unbinding takes effect on the next one.

The host keeps its own peer identity and its pins in an encrypted store too
(:class:`HostTrust`): nothing of it rests on disk in plaintext.

Operations on these connections (docs/protocol.md, "Validated connections"):
``hello`` (who are you, who owns you), ``peer/unbind`` (peer connections only: forget the
caller's pin, on both sides), ``factory-reset`` (only the owner: the pinned peer that owns
the device, or the hub of the device's zone; the enrolment session over BLE cannot, since
it authenticates whoever holds the label, not the owner).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from bleprov.core import membership as mb
from bleprov.core.errors import BleprovError
from bleprov.core.peer import PeerIdentity, PeerPin, PinSet
from bleprov.tls.connection import (
    MemberCredentials,
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
#: Error codes on validated connections (beside the TLS adapter's own).
ERROR_UNKNOWN_OP: Final = 0x70
ERROR_NOT_ALLOWED: Final = 0x71


class TrustStoreError(BleprovError):
    """The store holds no credentials for what was asked (not enrolled, not bound)."""


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
    ) -> None:
        self.store = store
        self.device_id = device_id
        #: Forgets Wi-Fi, zone, owner and pins, keeps the factory identity (DeviceStore's).
        self.factory_reset = factory_reset
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
        server = await start_peer_server(host, port, self.peer_identity(), self.pins, self._handle)
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
            if request.op == OP_HELLO:
                await connection.reply(request, self._hello())
            elif request.op == OP_UNBIND and connection.peer_pin is not None:
                self._unbind(connection.peer_pin.name)
                await connection.reply(request, {})
                return
            elif request.op == OP_UNBIND:
                await connection.reply_error(
                    request, ERROR_NOT_ALLOWED, "unbind is for pinned peers"
                )
            elif request.op == OP_FACTORY_RESET:
                if self.factory_reset is None or not self._is_owner(connection):
                    await connection.reply_error(
                        request, ERROR_NOT_ALLOWED, "only the device's owner may reset it"
                    )
                    continue
                logger.warning("factory reset asked by its owner %s", connection.peer_name)
                self.factory_reset()
                await connection.reply(request, {})
                return
            else:
                await connection.reply_error(request, ERROR_UNKNOWN_OP, "unknown operation")

    def _is_owner(self, connection: ValidatedConnection) -> bool:
        owner = self.owner()
        if owner is None:
            return False
        if owner.kind == "peer" and connection.peer_pin is not None:
            return connection.peer_pin.name == owner.name
        member = connection.peer_member
        if owner.kind == "zone" and member is not None and owner.zone_id is not None:
            # The hub role is in the certificate (only Zone.issue_hub writes it); a device
            # ID proves nothing, since a factory can mint HUB-<zone id> too.
            return member.is_hub and member.zone_id == owner.zone_id
        return False

    def _hello(self) -> dict[str, Any]:
        owner = self.owner()
        body: dict[str, Any] = {"name": self.device_id}
        if owner is not None:
            body["owner"] = owner.name
        return body

    def _unbind(self, name: str) -> None:
        """Forget ``name``'s pin, and the ownership it held, in one store write."""
        records = self.store.load()
        pins = mb.pins_of(records).remove(name)
        changes: dict[str, bytes | None] = {
            mb.RECORD_PEER_PINS: pins.to_bytes() if len(pins) else None
        }
        owner = mb.owner_of(records)
        if owner is not None and owner.kind == "peer" and owner.name == name:
            changes[mb.RECORD_OWNER] = None
        self.store.update(changes)
        logger.info("unbound peer %s", name)

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

    async def connect(self, host: str, port: int, device: str) -> ValidatedConnection:
        """A mutually authenticated connection to a device we bound (no CA)."""
        return await open_peer_connection(
            host, port, self.identity(), self.pins(), expect_name=device
        )

    async def unbind(self, host: str, port: int, device: str) -> None:
        """Remove our pin on the device, then its pin here: afterwards neither trusts the
        other. The device goes first, so a lost reply leaves only a stale pin here."""
        async with await self.connect(host, port, device) as connection:
            await connection.request(OP_UNBIND, {})
        self.unpin(device)


async def member_hello(
    host: str, port: int, credentials: MemberCredentials, *, crl_der: bytes, device: str
) -> dict[str, Any]:
    """Open a validated member connection to ``device`` and ask who it is."""
    async with await open_member_connection(
        host, port, credentials, crl_der=crl_der, expect_device=device
    ) as connection:
        return await connection.request(OP_HELLO, {})
