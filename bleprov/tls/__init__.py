"""Validated connections over TLS 1.3 (adapter): zone members, pinned peers, the hub.

The core decides who is trusted (:mod:`bleprov.core.zone`, :mod:`bleprov.core.peer`);
this package moves the bytes with asyncio and ``ssl`` and asks the core about every peer
before any application data flows.
"""

from bleprov.tls.connection import (
    MAX_MESSAGE_SIZE,
    BadMessage,
    ConnectFailed,
    ConnectionClosed,
    HandshakeFailed,
    MemberCredentials,
    MessageTooLarge,
    PeerNotTrusted,
    PeerRefused,
    ReceiveTimeout,
    Request,
    RequestFailed,
    UnexpectedPeer,
    ValidatedConnection,
    ValidatedConnectionError,
    open_member_connection,
    open_peer_connection,
    start_member_server,
    start_peer_server,
)
from bleprov.tls.context import TlsSetupError
from bleprov.tls.hub import (
    LocalZoneAuthority,
    RenewalFailed,
    ZoneAuthority,
    fetch_crl,
    renew_membership,
    start_hub_server,
)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "BadMessage",
    "ConnectFailed",
    "ConnectionClosed",
    "HandshakeFailed",
    "LocalZoneAuthority",
    "MemberCredentials",
    "MessageTooLarge",
    "PeerNotTrusted",
    "PeerRefused",
    "ReceiveTimeout",
    "RenewalFailed",
    "Request",
    "RequestFailed",
    "TlsSetupError",
    "UnexpectedPeer",
    "ValidatedConnection",
    "ValidatedConnectionError",
    "ZoneAuthority",
    "fetch_crl",
    "open_member_connection",
    "open_peer_connection",
    "renew_membership",
    "start_hub_server",
    "start_member_server",
    "start_peer_server",
]
