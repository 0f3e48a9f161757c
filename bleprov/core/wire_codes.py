"""Every code (and coded name) bleprov puts on the air, the broker or the TLS link.

A *namespace* is one field on the wire (the framing control byte's kind bits, a RESET
frame's code, an enrolment response's status, a validated connection's error code, a
broker envelope's kind...). Within a namespace a value should mean one thing; the codes
modules send come from here (the error-code enums below) or are checked against here by
tests/core/test_wire_codes.py (the modules' own IntEnums), so a new code has one room.

No value means two things in one field (tests/core/test_wire_codes.py fails on any
collision). Protocol v2 renumbered the three v1 collisions of the validated connection's
``code`` field (a device's refusals had 0x70-0x72, the zone errors' values) and renamed
the server's greeting op (v1 ``hello``, a device's operation too) to ``welcome``.

docs/protocol.md's code tables are rendered from this module (``make docs``;
``python -m bleprov.core.wire_codes --update docs/protocol.md``).
"""

from __future__ import annotations

import argparse
import enum
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final


class ErrorCode(enum.IntEnum):
    """A :class:`bleprov.core.errors.ProtocolError`'s code, one per error class: a RESET
    frame's code, a REFUSED message's code, a CLOSE record's body (section 5); the zone
    and peer codes (0x70-0x7A) go in a validated connection's ``code`` (section 13)."""

    PROTOCOL = 0x01
    MALFORMED_DATA = 0x02
    FRAMING = 0x10
    MALFORMED_FRAME = 0x11
    OVERSIZED_MESSAGE = 0x12
    SEQUENCE = 0x13
    TRUNCATED_MESSAGE = 0x14
    MESSAGE_TIMEOUT = 0x15
    CREDIT_VIOLATION = 0x16
    PEER_RESET = 0x17
    CHANNEL_CLOSED = 0x18
    UNSUPPORTED_VERSION = 0x19
    OPEN_TIMEOUT = 0x1A
    CHANNEL = 0x30
    SECURE_CHANNEL_CLOSED = 0x31
    IDLE_TIMEOUT = 0x32
    MODE_NOT_ALLOWED = 0x40
    LOCKED_OUT = 0x41
    TRY_LATER = 0x42
    AUTHENTICATION_FAILED = 0x43
    BUTTON_NOT_PRESSED = 0x44
    SESSION_OVERLAP = 0x45
    USER_REJECTED = 0x46
    UNEXPECTED_MESSAGE = 0x47
    HANDSHAKE_TIMEOUT = 0x48
    DOWNGRADE = 0x49
    DEVICE_BUSY = 0x4A
    BUTTON_WINDOW_USED = 0x4B
    DEVICE_OWNED = 0x4C
    BAD_WINDOW = 0x4D
    WINDOW_CLOSED = 0x4E
    ATTESTATION = 0x50
    UNKNOWN_MANUFACTURER = 0x51
    MALFORMED_ATTESTATION = 0x52
    ZONE = 0x70
    NOT_A_ZONE_MEMBER = 0x71
    REVOKED = 0x72
    CERTIFICATE_EXPIRED = 0x73
    WRONG_ZONE = 0x74
    BAD_CSR = 0x75
    BAD_CRL = 0x76
    PEER = 0x78
    NOT_PINNED = 0x79
    BAD_PEER_IDENTITY = 0x7A


class EnrolmentStatus(enum.IntEnum):
    """An enrolment response's ``status`` (section 11); also an EnrolmentError's code."""

    OK = 0
    UNKNOWN_ENDPOINT = 0x60
    BAD_REQUEST = 0x61
    BUSY = 0x62
    NOT_ALLOWED = 0x63
    NOTHING_TO_COMMIT = 0x64
    NOT_PROVEN = 0x65
    INTERNAL = 0x66
    FAILSAFE_EXPIRED = 0x67


class ConnectionCode(enum.IntEnum):
    """The TLS adapter's, the hub's and a device's own codes in a validated connection's
    ``code`` (``error`` and ``refused`` bodies, section 13), besides the ErrorCode ones;
    the same values as the enrolment statuses of the same meaning."""

    UNKNOWN_OP = 0x60
    BAD_REQUEST = 0x61
    NOT_ALLOWED = 0x63
    INTERNAL = 0x66


class DeviceOpCode(enum.IntEnum):
    """A device's refusals of an operation on a validated connection
    (:mod:`bleprov.service.trust`). v2: the values of the same meaning elsewhere (v1 had
    0x70-0x72, which the zone errors also use in this field)."""

    UNKNOWN_OP = ConnectionCode.UNKNOWN_OP
    NOT_ALLOWED = ConnectionCode.NOT_ALLOWED
    BAD_WINDOW = 0x4D  # ErrorCode.BAD_WINDOW


class EnrolmentKind(enum.IntEnum):
    """An enrolment message's first element (section 11)."""

    REQUEST = 0
    RESPONSE = 1
    NOTIFICATION = 2


#: The framing control byte: bits 7-6 the kind, bit 5 FIRST on a DATA frame (section 4).
FRAME_KIND_SHIFT: Final = 6
FRAME_FIRST_BIT: Final = 0x20

#: Bluetooth SIG AD types bleprov writes (Core Supplement, part A) and the Flags bits.
AD_FLAGS: Final = 0x01
AD_COMPLETE_128_BIT_UUIDS: Final = 0x07
AD_SHORTENED_LOCAL_NAME: Final = 0x08
AD_SERVICE_DATA_128: Final = 0x21
AD_FLAG_BITS: Final = {"le-general-discoverable": 0x02, "br-edr-not-supported": 0x04}


@dataclass(frozen=True)
class WireCode:
    """One value of one namespace: its name in the code, what it means, who uses it.
    Most fields hold numbers; the names of endpoints, topics and operations are text."""

    value: int | str
    name: str
    meaning: str
    #: The modules (``module`` or ``module:Class``) that define or send it.
    where: tuple[str, ...]


@dataclass(frozen=True)
class Namespace:
    """One field on the wire and every value bleprov puts in it."""

    key: str
    title: str
    #: Where the field sits on the wire (the docs' section).
    field: str
    codes: tuple[WireCode, ...]

    def collisions(self) -> dict[int | str, tuple[str, ...]]:
        """Values given two different names in this field."""
        names: dict[int | str, list[str]] = {}
        for code in self.codes:
            if code.name not in names.setdefault(code.value, []):
                names[code.value].append(code.name)
        return {value: tuple(n) for value, n in names.items() if len(n) > 1}

    def value(self, name: str) -> int | str:
        """The value registered under ``name`` (KeyError if none)."""
        for code in self.codes:
            if code.name == name:
                return code.value
        raise KeyError(name)


def _text_codes(where: str, rows: Iterable[tuple[str, str, str]]) -> tuple[WireCode, ...]:
    return tuple(WireCode(value, name, meaning, (where,)) for value, name, meaning in rows)


def _codes(rows: Iterable[tuple[int, str, str, str]]) -> tuple[WireCode, ...]:
    return tuple(
        WireCode(value, name, meaning, tuple(where.split())) for value, name, meaning, where in rows
    )


_E = ErrorCode
_ERRORS = "bleprov.core.errors"
_SESSION = "bleprov.core.session"
#: (code, words for the docs, meaning, who defines it): docs/protocol.md section 5.
ERROR_ROWS: Final[tuple[tuple[ErrorCode, str, str, str], ...]] = (
    (_E.PROTOCOL, "protocol", "unspecified protocol violation", f"{_ERRORS}:ProtocolError"),
    (
        _E.MALFORMED_DATA,
        "malformed data",
        "a structure failed to decode",
        f"{_ERRORS}:MalformedData",
    ),
    (_E.FRAMING, "framing", "unspecified framing error", f"{_ERRORS}:FramingError"),
    (
        _E.MALFORMED_FRAME,
        "malformed frame",
        "length, control bits, or frame out of place",
        f"{_ERRORS}:MalformedFrame",
    ),
    (
        _E.OVERSIZED_MESSAGE,
        "oversized message",
        "`total_length` above the receiver's bound",
        f"{_ERRORS}:OversizedMessage",
    ),
    (
        _E.SEQUENCE,
        "sequence",
        "lost, duplicated or reordered frame",
        f"{_ERRORS}:SequenceError",
    ),
    (
        _E.TRUNCATED_MESSAGE,
        "truncated message",
        "message cut short or overrun",
        f"{_ERRORS}:TruncatedMessage",
    ),
    (
        _E.MESSAGE_TIMEOUT,
        "message timeout",
        "message incomplete within the timeout",
        f"{_ERRORS}:MessageTimeout",
    ),
    (
        _E.CREDIT_VIOLATION,
        "credit violation",
        "frame sent beyond the credit granted",
        f"{_ERRORS}:CreditViolation",
    ),
    (_E.PEER_RESET, "peer reset", "(local only) the peer sent RESET", f"{_ERRORS}:PeerReset"),
    (
        _E.CHANNEL_CLOSED,
        "channel closed",
        "(local only) the channel is closed",
        f"{_ERRORS}:ChannelClosed",
    ),
    (
        _E.UNSUPPORTED_VERSION,
        "unsupported version",
        "framing version not supported",
        f"{_ERRORS}:UnsupportedVersion",
    ),
    (
        _E.OPEN_TIMEOUT,
        "open timeout",
        "(device) no OPEN within the open timeout (default 15 s)",
        f"{_ERRORS}:OpenTimeout",
    ),
    (
        _E.CHANNEL,
        "channel",
        "a SECURE message failed authentication",
        "bleprov.core.channel:ChannelError",
    ),
    (
        _E.SECURE_CHANNEL_CLOSED,
        "channel closed",
        "(local only) the secure channel is closed",
        "bleprov.core.channel:ChannelClosedError",
    ),
    (
        _E.IDLE_TIMEOUT,
        "idle timeout",
        "no message for the idle timeout (default 120 s)",
        "bleprov.core.channel:IdleTimeout",
    ),
    (
        _E.MODE_NOT_ALLOWED,
        "mode not allowed",
        "the device's policy disables the requested mode",
        f"{_SESSION}.modes.base:ModeNotAllowed bleprov.core.attempts:SessionRefused",
    ),
    (
        _E.LOCKED_OUT,
        "locked out",
        "too many failed attempts; only a physical reset lifts it",
        "bleprov.core.attempts:LockedOut",
    ),
    (
        _E.TRY_LATER,
        "try later",
        "backoff after failures; `retry_after` seconds",
        "bleprov.core.attempts:TryLater",
    ),
    (
        _E.AUTHENTICATION_FAILED,
        "authentication failed",
        "wrong code or number, wrong label secret",
        f"{_SESSION}.modes.base:AuthenticationFailed",
    ),
    (
        _E.BUTTON_NOT_PRESSED,
        "button not pressed",
        "button mode outside a button window",
        "bleprov.core.attempts:ButtonNotPressed",
    ),
    (
        _E.SESSION_OVERLAP,
        "session overlap",
        "a second host tried during the button window",
        "bleprov.core.attempts:SessionOverlap",
    ),
    (
        _E.USER_REJECTED,
        "user rejected",
        "compare mode: the numbers differed",
        f"{_SESSION}.modes.base:UserRejected",
    ),
    (
        _E.UNEXPECTED_MESSAGE,
        "unexpected message",
        "a message out of order for the state",
        f"{_SESSION}.modes.base:UnexpectedMessage",
    ),
    (
        _E.HANDSHAKE_TIMEOUT,
        "handshake timeout",
        "the handshake did not finish in time (default 60 s; 10 s through a broker), "
        "or no HELLO within 15 s",
        f"{_SESSION}.common:HandshakeTimeout",
    ),
    (
        _E.DOWNGRADE,
        "downgrade",
        "(host only) advertisement and info disagree",
        f"{_SESSION}.modes.base:Downgrade",
    ),
    (
        _E.DEVICE_BUSY,
        "device busy",
        "the device is in a session on another link (BLE or the broker); try later",
        "bleprov.core.attempts:DeviceBusy",
    ),
    (
        _E.BUTTON_WINDOW_USED,
        "button window used",
        "another host authenticated in this button window (it is one-shot) and no press "
        "has opened a new one: someone else may have set the device up; reset it by hand",
        "bleprov.core.attempts:ButtonWindowUsed",
    ),
    (
        _E.DEVICE_OWNED,
        "device owned",
        "the device has an owner: its factory label, code, number and button open no "
        "session; only the owner's commissioning window does (section 12.3)",
        f"{_SESSION}.common:DeviceOwned",
    ),
    (
        _E.BAD_WINDOW,
        "bad window",
        "a window offer out of bounds: a device answers `window/open` with it on the "
        "validated connection (section 13)",
        "bleprov.core.window:WindowError",
    ),
    (
        _E.WINDOW_CLOSED,
        "window closed",
        "the window code was used but no window is open (expired, used, closed, or 5 wrong codes)",
        "bleprov.core.window:WindowClosed",
    ),
    (
        _E.ATTESTATION,
        "attestation",
        "(host only) chain or signature invalid",
        "bleprov.core.identity:AttestationError",
    ),
    (
        _E.UNKNOWN_MANUFACTURER,
        "unknown manufacturer",
        "(host only) chain to an untrusted root, REFUSE policy",
        "bleprov.core.identity:UnknownManufacturer",
    ),
    (
        _E.MALFORMED_ATTESTATION,
        "malformed attestation",
        "(host only) attestation does not decode",
        "bleprov.core.identity:MalformedAttestation",
    ),
)

_S = EnrolmentStatus
_ENROLMENT = "bleprov.core.enrolment"
STATUS_ROWS: Final[tuple[tuple[EnrolmentStatus, str, str], ...]] = (
    (_S.OK, "ok", _ENROLMENT),
    (_S.UNKNOWN_ENDPOINT, "unknown endpoint", f"{_ENROLMENT}.messages:EnrolmentError"),
    (_S.BAD_REQUEST, "bad request (malformed body)", _ENROLMENT),
    (_S.BUSY, "busy (a join or commit is in progress)", _ENROLMENT),
    (
        _S.NOT_ALLOWED,
        "not allowed (no attempts left; remote factory reset without owner)",
        f"{_ENROLMENT} bleprov.core.membership",
    ),
    (_S.NOTHING_TO_COMMIT, "nothing to commit", _ENROLMENT),
    (_S.NOT_PROVEN, "not proven (the staged credentials have not joined)", _ENROLMENT),
    (
        _S.INTERNAL,
        "internal (the store or network failed; the device rolled back)",
        f"{_ENROLMENT} bleprov.service.enrolment",
    ),
    (_S.FAILSAFE_EXPIRED, "fail-safe expired (the staged changes were rolled back)", _ENROLMENT),
)

_TLS = "bleprov.tls.connection"
_HUB = "bleprov.tls.hub"
_TRUST = "bleprov.service.trust"
#: The validated connection's code field: ErrorCode values the TLS link sends, the TLS
#: adapter's own codes, and the device's operation refusals, in wire order.
CONNECTION_ROWS: Final[tuple[tuple[int, str, str, str], ...]] = (
    (
        _E.MALFORMED_DATA,
        "MALFORMED_DATA",
        "malformed message (a `BadMessage` closes the connection) or data (the hub's "
        "answer to a renewal it cannot decode)",
        f"{_TLS} {_HUB}",
    ),
    (
        _E.UNEXPECTED_MESSAGE,
        "UNEXPECTED_MESSAGE",
        "unexpected message (e.g. `csr` without a `renew` just before)",
        _HUB,
    ),
    (
        _E.BAD_WINDOW,
        "BAD_WINDOW",
        "a device: bad window offer (section 12.3)",
        _TRUST,
    ),
    (
        ConnectionCode.UNKNOWN_OP,
        "UNKNOWN_OP",
        "unknown operation (the hub or a device)",
        f"{_HUB} {_TRUST}",
    ),
    (ConnectionCode.BAD_REQUEST, "BAD_REQUEST", "bad request (malformed body)", _HUB),
    (
        ConnectionCode.NOT_ALLOWED,
        "NOT_ALLOWED",
        "a device: the caller may not do this (not the owner, not a pinned peer, or the "
        "device cannot do it)",
        _TRUST,
    ),
    (ConnectionCode.INTERNAL, "INTERNAL", "internal (the hub could not do it)", f"{_TLS} {_HUB}"),
    (_E.ZONE, "ZONE", "zone: unspecified refusal", f"bleprov.core.zone:ZoneError {_TLS}"),
    (
        _E.NOT_A_ZONE_MEMBER,
        "NOT_A_ZONE_MEMBER",
        "not a zone member (does not chain, bad names or profile)",
        f"bleprov.core.zone:NotAZoneMember {_TLS}",
    ),
    (_E.REVOKED, "REVOKED", "revoked", f"bleprov.core.zone:Revoked {_TLS}"),
    (
        _E.CERTIFICATE_EXPIRED,
        "CERTIFICATE_EXPIRED",
        "certificate expired",
        f"bleprov.core.zone:CertificateExpired {_TLS}",
    ),
    (_E.WRONG_ZONE, "WRONG_ZONE", "wrong zone", f"bleprov.core.zone:WrongZone {_TLS}"),
    (
        _E.BAD_CSR,
        "BAD_CSR",
        "bad CSR (malformed, not P-256, other device, same key, not bound to the nonce)",
        f"bleprov.core.zone:BadCsr {_HUB}",
    ),
    (
        _E.BAD_CRL,
        "BAD_CRL",
        "bad CRL (malformed, badly signed, stale; or no fresh CRL from the hub yet)",
        f"bleprov.core.zone:BadCrl bleprov.service.device_daemon:NoFreshCrl {_TLS}",
    ),
    (_E.PEER, "PEER", "peer: unspecified refusal", f"bleprov.core.peer:PeerError {_TLS}"),
    (_E.NOT_PINNED, "NOT_PINNED", "not pinned", f"bleprov.core.peer:NotPinned {_TLS}"),
    (
        _E.BAD_PEER_IDENTITY,
        "BAD_PEER_IDENTITY",
        "bad peer identity (certificate off the peer profile)",
        f"bleprov.core.peer:BadPeerIdentity {_TLS}",
    ),
)

_ADV = "bleprov.core.advertising"
_MSG = f"{_SESSION}.messages"
NAMESPACES: Final[tuple[Namespace, ...]] = (
    Namespace(
        "frame-kind",
        "Frame kinds",
        "framing control byte, bits 7-6 (section 4)",
        _codes(
            [
                (
                    0,
                    "DATA",
                    "a message's frame (the first one has FIRST set)",
                    "bleprov.core.frames",
                ),
                (1, "CREDIT", "grants DATA frames up to `limit`", "bleprov.core.frames"),
                (
                    2,
                    "OPEN",
                    "host to device, the first frame of a connection",
                    "bleprov.core.frames",
                ),
                (
                    3,
                    "RESET",
                    "the sender abandoned the exchange; an error code follows",
                    "bleprov.core.frames",
                ),
            ]
        ),
    ),
    Namespace(
        "frame-flag",
        "Frame flags",
        "framing control byte, bits 5-0 (section 4)",
        _codes([(FRAME_FIRST_BIT, "FIRST", "a message's first DATA frame", "bleprov.core.frames")]),
    ),
    Namespace(
        "error",
        "Error codes",
        "RESET frame code, REFUSED code, CLOSE body (section 5); zone and peer codes also "
        "in a validated connection's code (section 13)",
        tuple(WireCode(int(c), c.name, m, tuple(w.split())) for c, _, m, w in ERROR_ROWS),
    ),
    Namespace(
        "session-message",
        "Session message types",
        "a session message's first element (section 6)",
        _codes(
            [
                (1, "HELLO", "host to device, the first message", _MSG),
                (2, "HANDSHAKE", "a handshake message, either direction", _MSG),
                (3, "REFUSED", "device to host, plaintext, then close", _MSG),
                (4, "SECURE", "an encrypted record (section 8)", _MSG),
            ]
        ),
    ),
    Namespace(
        "inner-kind",
        "Secure record kinds",
        "a secure record's plaintext, first element (section 6)",
        _codes(
            [
                (1, "ATTESTATION", "device to host (section 9)", _MSG),
                (2, "CONFIRMED", "host to device, compare mode", _MSG),
                (3, "APPLICATION", "an enrolment message (section 11)", _MSG),
                (4, "CLOSE", "an error code, 0 = normal close", _MSG),
                (
                    5,
                    "CHAIN_REQUEST",
                    "host to device: send the attestation's intermediate (1) or it and the "
                    "root (2) (section 9)",
                    _MSG,
                ),
                (6, "CHAIN", "device to host: the certificates asked for (section 9)", _MSG),
            ]
        ),
    ),
    Namespace(
        "mode",
        "Mode bits",
        "advertisement byte 2, info key 3, HELLO mode (sections 2, 3, 6)",
        _codes(
            [
                (0x01, "QR", "qr: Noise NKpsk0 on the label's key (section 7.1)", f"{_ADV} {_MSG}"),
                (0x02, "CODE", "code: SPAKE2+ on the label's code (section 7.2)", f"{_ADV} {_MSG}"),
                (0x04, "COMPARE", "compare: numeric comparison (section 7.3)", f"{_ADV} {_MSG}"),
                (
                    0x08,
                    "BUTTON",
                    "button: Noise NN in a button window (section 7.4)",
                    f"{_ADV} {_MSG}",
                ),
                (
                    0x10,
                    "PASSKEY",
                    "passkey: SPAKE2+ on a one-time number (section 7.5)",
                    f"{_ADV} {_MSG}",
                ),
            ]
        ),
    ),
    Namespace(
        "advertised-flag",
        "Advertisement flags",
        "advertisement service data, byte 5 (section 2)",
        _codes(
            [
                (0x01, "BUTTON_WINDOW_OPEN", "button window open", _ADV),
                (0x02, "BUSY", "busy (in a session)", _ADV),
                (0x04, "WINDOW_OPEN", "commissioning window open (section 12.3)", _ADV),
            ]
        ),
    ),
    Namespace(
        "device-state",
        "Device states",
        "advertisement service data byte 1, info key 2 (sections 2, 3)",
        _codes(
            [
                (0, "VIRGIN", "virgin", _ADV),
                (1, "ENROLLED", "enrolled", _ADV),
                (2, "PEER_BOUND", "peer-bound", _ADV),
                (3, "LOCKED_OUT", "locked out", _ADV),
            ]
        ),
    ),
    Namespace(
        "info-key",
        "Info keys",
        "the info characteristic's CBOR map keys (section 3)",
        _codes(
            [
                (1, "PROTOCOL_VERSION", "protocol_version", _ADV),
                (2, "STATE", "state", _ADV),
                (3, "MODES", "modes", _ADV),
                (4, "DISCRIMINATOR", "discriminator", _ADV),
                (5, "MAX_MESSAGE", "max_message", _ADV),
                (6, "RX_WINDOW", "rx_window", _ADV),
                (7, "PROFILE_VERSION", "profile_version", _ADV),
                (8, "PBKDF_SALT", "pbkdf_salt (code mode)", _ADV),
                (9, "PBKDF_COST", "pbkdf_cost (code mode)", _ADV),
                (10, "WINDOW", "window (while a commissioning window is open)", _ADV),
            ]
        ),
    ),
    Namespace(
        "ad-type",
        "AD types",
        "Bluetooth SIG AD types in the advertisement and scan response (section 2)",
        _codes(
            [
                (AD_FLAGS, "FLAGS", "Flags", f"{_ADV} bleprov.radio.bless_peripheral"),
                (
                    AD_COMPLETE_128_BIT_UUIDS,
                    "COMPLETE_128_BIT_UUIDS",
                    "Complete List of 128-bit Service UUIDs",
                    f"{_ADV} bleprov.radio.bless_peripheral",
                ),
                (
                    AD_SHORTENED_LOCAL_NAME,
                    "SHORTENED_LOCAL_NAME",
                    "Shortened Local Name",
                    f"{_ADV} bleprov.radio.bless_peripheral",
                ),
                (
                    AD_SERVICE_DATA_128,
                    "SERVICE_DATA_128",
                    "Service Data - 128-bit UUID",
                    f"{_ADV} bleprov.radio.bless_peripheral",
                ),
            ]
        ),
    ),
    Namespace(
        "ad-flag-bit",
        "AD Flags bits",
        "the Flags AD structure's value (section 2)",
        _codes(
            [
                (
                    0x02,
                    "le-general-discoverable",
                    "LE General Discoverable",
                    f"{_ADV} bleprov.radio.bless_peripheral",
                ),
                (
                    0x04,
                    "br-edr-not-supported",
                    "BR/EDR not supported",
                    f"{_ADV} bleprov.radio.bless_peripheral",
                ),
            ]
        ),
    ),
    Namespace(
        "enrolment-kind",
        "Enrolment message kinds",
        "an enrolment message's first element (section 11)",
        _codes(
            [
                (
                    EnrolmentKind.REQUEST,
                    "REQUEST",
                    "request, host to device",
                    f"{_ENROLMENT}.messages",
                ),
                (
                    EnrolmentKind.RESPONSE,
                    "RESPONSE",
                    "response, device to host",
                    f"{_ENROLMENT}.messages",
                ),
                (
                    EnrolmentKind.NOTIFICATION,
                    "NOTIFICATION",
                    "notification, device to host",
                    f"{_ENROLMENT}.messages",
                ),
            ]
        ),
    ),
    Namespace(
        "enrolment-status",
        "Enrolment statuses",
        "an enrolment response's status, an error notification's status (section 11)",
        tuple(WireCode(int(s), s.name, m, tuple(w.split())) for s, m, w in STATUS_ROWS),
    ),
    Namespace(
        "wifi-security",
        "Wi-Fi security types",
        "`security` in wifi/set and scan entries (section 11)",
        _codes(
            [
                (0, "OPEN", "open", "bleprov.core.wifi"),
                (1, "WPA2_PERSONAL", "WPA2-Personal", "bleprov.core.wifi"),
                (2, "WPA3_PERSONAL", "WPA3-Personal", "bleprov.core.wifi"),
                (3, "WPA2_WPA3_PERSONAL", "WPA2/WPA3 transition", "bleprov.core.wifi"),
            ]
        ),
    ),
    Namespace(
        "join-failure",
        "Wi-Fi failure reasons",
        "`reason` in a wifi/status notification (section 11)",
        _codes(
            [
                (1, "WRONG_PASSWORD", "wrong password", "bleprov.core.wifi"),
                (2, "NETWORK_NOT_FOUND", "network not found", "bleprov.core.wifi"),
                (3, "TIMEOUT", "timeout", "bleprov.core.wifi"),
                (4, "DHCP_FAILED", "DHCP failed", "bleprov.core.wifi"),
                (5, "OTHER", "other", "bleprov.core.wifi"),
            ]
        ),
    ),
    Namespace(
        "window-purpose",
        "Window purposes",
        "a window offer's and info key 10's purpose (sections 3, 12.3)",
        _codes(
            [
                (0, "ADMIN", "bind the new host as an additional admin", "bleprov.core.window"),
                (1, "HANDOVER", "hand the device over to the new host", "bleprov.core.window"),
            ]
        ),
    ),
    Namespace(
        "connection",
        "Validated-connection codes",
        "`code` in a validated connection's `error` and `refused` bodies (section 13)",
        _codes(CONNECTION_ROWS),
    ),
    Namespace(
        "broker-kind",
        "Broker envelope kinds",
        "a broker payload's first byte (docs/cloud-binding.md)",
        _codes(
            [
                (0x01, "OPEN", "host to device: open a session", "bleprov.broker.wire"),
                (0x02, "DATA_UP", "host to device: one session message", "bleprov.broker.wire"),
                (
                    0x03,
                    "CLOSE_UP",
                    "host to device: close, a reason follows",
                    "bleprov.broker.wire",
                ),
                (0x11, "ACCEPT", "device to host: the session is open", "bleprov.broker.wire"),
                (0x12, "DATA_DOWN", "device to host: one session message", "bleprov.broker.wire"),
                (
                    0x13,
                    "CLOSE_DOWN",
                    "device to host: close, a reason follows",
                    "bleprov.broker.wire",
                ),
            ]
        ),
    ),
    Namespace(
        "broker-close",
        "Broker close reasons",
        "a broker CLOSE envelope's body byte (docs/cloud-binding.md)",
        _codes(
            [
                (0, "NORMAL", "normal close", "bleprov.broker.wire"),
                (
                    1,
                    "BUSY",
                    "the device is in another session (on BLE or the broker)",
                    "bleprov.broker.wire",
                ),
                (
                    2,
                    "ERROR",
                    "a malformed or oversized envelope, or the session failed",
                    "bleprov.broker.wire",
                ),
                (3, "OFFLINE", "the device is leaving the broker", "bleprov.broker.wire"),
            ]
        ),
    ),
    Namespace(
        "enrolment-endpoint",
        "Enrolment endpoints",
        "a request's endpoint (section 11); products add `vendor/...`",
        _text_codes(
            f"{_ENROLMENT}.messages",
            [
                ("info", "INFO", "the device's capabilities"),
                ("wifi/scan", "WIFI_SCAN", "scan for networks"),
                ("wifi/set", "WIFI_SET", "stage Wi-Fi credentials and join"),
                ("failsafe", "FAILSAFE", "arm the fail-safe"),
                ("commit", "COMMIT", "make the staged records durable"),
                ("abort", "ABORT", "roll back"),
                ("factory-reset", "FACTORY_RESET", "always refused here (section 13)"),
                ("enrolment/status", "ENROLMENT_STATUS", "was this enrolment committed"),
            ],
        ),
    ),
    Namespace(
        "enrolment-topic",
        "Enrolment notification topics",
        "a notification's topic (section 11)",
        _text_codes(
            f"{_ENROLMENT}.messages",
            [
                ("session", "SESSION", "the session's authority and zone key, once"),
                ("wifi/scan", "WIFI_SCAN", "scan results"),
                ("wifi/status", "WIFI_STATUS", "join progress"),
                ("failsafe", "FAILSAFE", "the fail-safe expired"),
            ],
        )
        + _text_codes(
            f"{_ENROLMENT}.device",
            [("error", "ERROR", "a message that could not be answered (no id)")],
        ),
    ),
    Namespace(
        "connection-op",
        "Validated-connection operations",
        "a validated connection message's `op` (section 13)",
        _text_codes(_TLS, [("welcome", "GREETING", "the server accepted the client (id 0)")])
        + _text_codes(
            _TLS,
            [
                ("refused", "REFUSED", "the server refused the client, then closes"),
                ("error", "ERROR", "an error reply"),
            ],
        )
        + _text_codes(
            _TRUST,
            [
                ("hello", "HELLO", "a device: its name and the caller's role"),
                ("peer/unbind", "UNBIND", "a device: forget the calling peer"),
                ("factory-reset", "FACTORY_RESET", "a device: reset, by its owner"),
                ("window/open", "WINDOW_OPEN", "a device: open a commissioning window"),
                ("window/close", "WINDOW_CLOSE", "a device: close it"),
            ],
        )
        + _text_codes(
            _HUB,
            [
                ("crl", "CRL", "the hub: the zone's CRL"),
                ("renew", "RENEW", "the hub: a nonce for a renewal"),
                ("nonce", "NONCE", "the hub's reply to renew"),
                ("csr", "CSR", "the hub: renew with this CSR"),
                ("renewed", "RENEWED", "the hub's reply to csr"),
            ],
        ),
    ),
)


def namespace(key: str) -> Namespace:
    """The namespace registered under ``key``."""
    for candidate in NAMESPACES:
        if candidate.key == key:
            return candidate
    raise KeyError(key)


# ------------------------------------------------------------------- docs/protocol.md


def _hex(value: int | str) -> str:
    return f"`{value}`" if isinstance(value, str) else f"0x{value:02X}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_errors() -> list[str]:
    """Section 5's table."""
    return _table(("code", "name", "meaning"), ((_hex(c), w, m) for c, w, m, _ in ERROR_ROWS))


def render_statuses() -> list[str]:
    """Section 11's status table."""
    return _table(("status", "meaning"), ((_hex(s), m) for s, m, _ in STATUS_ROWS))


def render_connection() -> list[str]:
    """Section 13.1's code table: what kind of code each is and who sends it."""
    senders = {
        "bleprov.tls.connection": "TLS adapter",
        "bleprov.tls.hub": "hub",
        "bleprov.service.trust": "device",
    }
    error_codes = {code.value for code in namespace("error").codes}
    rows = []
    for code in namespace("connection").codes:
        if code.value in error_codes:
            kind = "section 5 error"
        elif any(w.startswith("bleprov.core.zone:") for w in code.where):
            kind = "zone error"
        elif any(w.startswith("bleprov.core.peer:") for w in code.where):
            kind = "peer error"
        elif code.where == ("bleprov.service.trust",):
            kind = "device refusal"
        else:
            kind = "TLS link"
        sent_by = ", ".join(senders[w] for w in code.where if w in senders)
        rows.append((_hex(code.value), code.meaning, kind, sent_by))
    return _table(("code", "meaning", "kind", "sent by"), rows)


def render_registry() -> list[str]:
    """The appendix: every namespace and its values."""
    lines: list[str] = []
    for space in NAMESPACES:
        lines += [f"**{space.title}** (`{space.key}`): {space.field}.", ""]
        lines += _table(
            ("value", "name", "meaning"),
            ((_hex(c.value), f"`{c.name}`", c.meaning) for c in space.codes),
        )
        lines.append("")
    lines.append("No value means two things in one field.")
    return lines


#: Marker name -> renderer; docs/protocol.md holds each between
#: ``<!-- wire-codes:NAME -->`` and ``<!-- /wire-codes:NAME -->``.
SECTIONS: Final = {
    "errors": render_errors,
    "statuses": render_statuses,
    "connection": render_connection,
    "registry": render_registry,
}


def update_document(text: str) -> str:
    """``text`` with every marked section replaced by its rendering from the registry."""
    for name, render in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- wire-codes:{name} -->\n).*?(<!-- /wire-codes:{name} -->)", re.DOTALL
        )
        match = pattern.search(text)
        if match is None:
            raise ValueError(f"no wire-codes:{name} markers")
        body = "\n".join(render()) + "\n"
        text = text[: match.end(1)] + body + text[match.start(2) :]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``--update PATH``: rewrite the marked tables in PATH (docs/protocol.md)."""
    parser = argparse.ArgumentParser(prog="python -m bleprov.core.wire_codes")
    parser.add_argument("--update", type=Path, required=True, metavar="PATH")
    args = parser.parse_args(argv)
    path: Path = args.update
    path.write_text(update_document(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
