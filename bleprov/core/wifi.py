"""Wi-Fi as the enrolment protocol sees it: scan results, credentials, join outcomes.

Pure data with strict validation; the network adapters (NetworkManager, wpa_supplicant,
simulated) translate to and from these.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from typing import Final

from bleprov.core.errors import MalformedData

SSID_MAX: Final = 32
PASSPHRASE_MIN: Final = 8
PASSPHRASE_MAX: Final = 63
PSK_BYTES: Final = 32


class WifiSecurity(enum.IntEnum):
    """How a network authenticates a station; its value is the wire's code."""

    OPEN = 0
    WPA2_PERSONAL = 1
    WPA3_PERSONAL = 2
    WPA2_WPA3_PERSONAL = 3  # transition mode: WPA3-SAE and WPA2-PSK on one network


class JoinFailure(enum.IntEnum):
    """Why joining failed; the host shows it and lets the user retry."""

    WRONG_PASSWORD = 1
    NETWORK_NOT_FOUND = 2
    TIMEOUT = 3
    DHCP_FAILED = 4
    OTHER = 5


@dataclass(frozen=True)
class ScanResult:
    ssid: bytes
    bssid: str
    rssi: int  # dBm
    channel: int
    security: WifiSecurity

    def __post_init__(self) -> None:
        if not 0 < len(self.ssid) <= SSID_MAX:
            raise MalformedData(f"SSID must be 1..{SSID_MAX} bytes")
        if not -127 <= self.rssi <= 20:
            raise MalformedData("RSSI out of range")
        if not 1 <= self.channel <= 233:
            raise MalformedData("channel out of range")


class BadPassphrase(MalformedData):
    """Not a WPA passphrase. The message never carries it."""

    def __init__(self, *, length_ok: bool) -> None:
        super().__init__("a WPA passphrase is 8..63 printable ASCII characters")
        #: Whether only its characters were wrong (a host words a bad length its own way).
        self.length_ok = length_ok


def check_passphrase(passphrase: str) -> None:
    """The one rule for a WPA passphrase (IEEE 802.11: 8..63 printable ASCII), checked
    once where it enters: :class:`WifiCredentials` is built where the user typed it (the
    host) and where the device decodes wifi/set, and every layer between carries that
    value unchanged (its repr never shows the secret)."""
    length_ok = PASSPHRASE_MIN <= len(passphrase) <= PASSPHRASE_MAX
    if not length_ok or not all(32 <= ord(c) <= 126 for c in passphrase):
        raise BadPassphrase(length_ok=length_ok)


@dataclass(frozen=True, repr=False)
class WifiCredentials:
    """What the host sends; exactly one of ``passphrase`` or ``psk`` unless open. Checked
    at construction, so a value that exists is valid."""

    ssid: bytes
    security: WifiSecurity
    passphrase: str | None = None
    psk: bytes | None = None
    hidden: bool = False

    def __post_init__(self) -> None:
        if not 0 < len(self.ssid) <= SSID_MAX:
            raise MalformedData(f"SSID must be 1..{SSID_MAX} bytes")
        if self.security is WifiSecurity.OPEN:
            if self.passphrase is not None or self.psk is not None:
                raise MalformedData("an open network takes no passphrase")
            return
        if (self.passphrase is None) == (self.psk is None):
            raise MalformedData("give a passphrase or a PSK, not both or neither")
        if self.passphrase is not None:
            check_passphrase(self.passphrase)
        if self.psk is not None:
            if len(self.psk) != PSK_BYTES:
                raise MalformedData("a WPA PSK is 32 bytes")
            if self.security is WifiSecurity.WPA3_PERSONAL:
                raise MalformedData("WPA3-SAE needs the passphrase, not a PSK")

    def __repr__(self) -> str:
        return (
            f"WifiCredentials(ssid={self.ssid!r}, security={self.security.name}, secret=<redacted>)"
        )


@dataclass(frozen=True)
class Connected:
    ip_address: str

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.ip_address)
        except ValueError:
            raise MalformedData("not an IP address") from None


@dataclass(frozen=True)
class Failed:
    reason: JoinFailure
    detail: str = field(default="")


JoinOutcome = Connected | Failed


def network_tag(key: bytes, ssid: bytes) -> str:
    """What logs say instead of an SSID: a short HMAC under a per-device key.

    Stable on one device (the same network has the same tag from boot to boot, so a log
    still shows whether the device changed networks) but, unlike a plain hash, not
    checkable against a list of likely names without the device's key."""
    digest = hmac.new(key, b"bleprov ssid tag\x00" + ssid, hashlib.sha256).hexdigest()
    return f"net-{digest[:8]}"
