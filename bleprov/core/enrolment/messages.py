"""Enrolment messages: requests, responses and pushed notifications over the secure channel.

Each APPLICATION record of a session carries one deterministic-CBOR array
(docs/protocol.md, "Enrolment messages"):

- ``[0, id, endpoint, body]`` request, host to device;
- ``[1, id, status, body]`` response, device to host (status 0 = ok, else an error code);
- ``[2, topic, body]`` notification, device to host, unsolicited (Wi-Fi status, scan
  results streamed in full).

Bodies are CBOR maps with text keys. Endpoints are names; the core ones are in
:class:`Endpoint`, and products register their own (``vendor/...``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from bleprov.core import cbor
from bleprov.core.errors import MalformedData, ProtocolError
from bleprov.core.wifi import (
    Connected,
    Failed,
    JoinFailure,
    ScanResult,
    WifiCredentials,
    WifiSecurity,
)
from bleprov.core.wire_codes import EnrolmentKind, EnrolmentStatus

MAX_ENROLMENT_MESSAGE: Final = 60 * 1024
MAX_ENDPOINT_NAME: Final = 64
#: Scan results go out in notifications of this many entries (each well under a frame).
SCAN_CHUNK: Final = 16


class Endpoint(enum.StrEnum):
    INFO = "info"
    WIFI_SCAN = "wifi/scan"
    WIFI_SET = "wifi/set"
    FAILSAFE = "failsafe"
    COMMIT = "commit"
    ABORT = "abort"
    FACTORY_RESET = "factory-reset"
    #: Whether an enrolment (by its ID) is the one this device committed last.
    ENROLMENT_STATUS = "enrolment/status"


class Topic(enum.StrEnum):
    #: Pushed once, at the session's start: its authority, and what the device offers
    #: unasked (the zone CSR).
    SESSION = "session"
    WIFI_SCAN = "wifi/scan"
    WIFI_STATUS = "wifi/status"
    FAILSAFE = "failsafe"


#: A response's status (0 = ok, else an error code); registered in bleprov.core.wire_codes.
Status = EnrolmentStatus


class EnrolmentError(ProtocolError):
    """A request was refused; ``status`` is its wire code."""

    code = int(Status.UNKNOWN_ENDPOINT)

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = int(status)


class WifiState(enum.StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass(frozen=True)
class Request:
    id: int
    endpoint: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Response:
    id: int
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Notification:
    topic: str
    body: dict[str, Any]


Message = Request | Response | Notification


def encode(message: Message) -> bytes:
    if isinstance(message, Request):
        return cbor.dumps([EnrolmentKind.REQUEST, message.id, message.endpoint, message.body])
    if isinstance(message, Response):
        return cbor.dumps([EnrolmentKind.RESPONSE, message.id, message.status, message.body])
    return cbor.dumps([EnrolmentKind.NOTIFICATION, message.topic, message.body])


def _uint(value: object, what: str, hi: int = (1 << 32) - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
        raise MalformedData(f"{what} must be an unsigned integer up to {hi}")
    return value


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ENDPOINT_NAME:
        raise MalformedData(f"{what} must be a name of 1..{MAX_ENDPOINT_NAME} characters")
    return value


def _body(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise MalformedData("a body is a map with text keys")
    return value


def decode(raw: bytes) -> Message:
    """Parse one enrolment message; anything malformed raises :class:`MalformedData`."""
    if len(raw) > MAX_ENROLMENT_MESSAGE:
        raise MalformedData(f"enrolment message of {len(raw)} bytes is too large")
    value = cbor.loads(raw, max_size=MAX_ENROLMENT_MESSAGE)
    if not isinstance(value, list) or not value:
        raise MalformedData("enrolment message must be a non-empty array")
    kind = value[0]
    if kind == EnrolmentKind.REQUEST and len(value) == 4:
        return Request(_uint(value[1], "id"), _name(value[2], "endpoint"), _body(value[3]))
    if kind == EnrolmentKind.RESPONSE and len(value) == 4:
        return Response(_uint(value[1], "id"), _uint(value[2], "status", 255), _body(value[3]))
    if kind == EnrolmentKind.NOTIFICATION and len(value) == 3:
        return Notification(_name(value[1], "topic"), _body(value[2]))
    raise MalformedData("unknown enrolment message kind or wrong field count")


# ------------------------------------------------------------------ body codecs


def _field(body: dict[str, Any], key: str, kind: type, *, required: bool = True) -> Any:
    if key not in body:
        if required:
            raise MalformedData(f"field {key!r} is missing")
        return None
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedData(f"field {key!r} has the wrong type")
    return value


def scan_entry(result: ScanResult) -> dict[str, Any]:
    return {
        "ssid": result.ssid,
        "bssid": result.bssid,
        "rssi": result.rssi,
        "channel": result.channel,
        "security": int(result.security),
    }


def parse_scan_entry(body: dict[str, Any]) -> ScanResult:
    try:
        security = WifiSecurity(_field(body, "security", int))
    except ValueError:
        raise MalformedData("unknown security type") from None
    return ScanResult(
        ssid=_field(body, "ssid", bytes),
        bssid=_field(body, "bssid", str),
        rssi=_field(body, "rssi", int),
        channel=_field(body, "channel", int),
        security=security,
    )


def credentials_body(credentials: WifiCredentials) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ssid": credentials.ssid,
        "security": int(credentials.security),
        "hidden": credentials.hidden,
    }
    if credentials.passphrase is not None:
        body["passphrase"] = credentials.passphrase
    if credentials.psk is not None:
        body["psk"] = credentials.psk
    return body


def parse_credentials(body: dict[str, Any]) -> WifiCredentials:
    try:
        security = WifiSecurity(_field(body, "security", int))
    except ValueError:
        raise MalformedData("unknown security type") from None
    hidden = body.get("hidden", False)
    if not isinstance(hidden, bool):
        raise MalformedData("field 'hidden' must be a boolean")
    return WifiCredentials(
        ssid=_field(body, "ssid", bytes),
        security=security,
        passphrase=_field(body, "passphrase", str, required=False),
        psk=_field(body, "psk", bytes, required=False),
        hidden=hidden,
    )


def status_body(
    state: WifiState, *, outcome: Connected | Failed | None = None, attempts_left: int
) -> dict[str, Any]:
    body: dict[str, Any] = {"state": state.value, "attempts_left": attempts_left}
    if isinstance(outcome, Connected):
        body["ip"] = outcome.ip_address
    elif isinstance(outcome, Failed):
        body["reason"] = int(outcome.reason)
    return body


@dataclass(frozen=True)
class WifiStatus:
    state: WifiState
    attempts_left: int
    ip: str | None = None
    reason: JoinFailure | None = None


def parse_status(body: dict[str, Any]) -> WifiStatus:
    try:
        state = WifiState(_field(body, "state", str))
        reason = body.get("reason")
        return WifiStatus(
            state=state,
            attempts_left=_field(body, "attempts_left", int),
            ip=_field(body, "ip", str, required=False),
            reason=None if reason is None else JoinFailure(reason),
        )
    except ValueError:
        raise MalformedData("bad Wi-Fi status") from None
