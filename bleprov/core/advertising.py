"""What a device says before any connection: advertised service data and the info value.

Both are plaintext by design (a scanner must see them without a session) and carry
nothing secret: protocol version, state, enabled out-of-band modes, the 12-bit
discriminator printed on the label, and framing parameters.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import construct as cs

from bleprov.core import cbor, wire_codes
from bleprov.core.errors import MalformedData
from bleprov.core.mode_bits import Mode, known_modes, mode_names
from bleprov.core.profile import GattProfile, default_profile
from bleprov.core.window import WindowInfo, WindowPurpose
from bleprov.core.words import words

#: The protocol this code speaks (docs/protocol.md). v2 replaced v1 (no v1 device is in the
#: field): a host refuses a device of any other version, before any session message.
PROTOCOL_VERSION: Final = 2
DISCRIMINATOR_BITS: Final = 12
DISCRIMINATOR_MAX: Final = (1 << DISCRIMINATOR_BITS) - 1
#: Longer text is not a discriminator (and is not converted: int() of thousands of digits).
_DISCRIMINATOR_TEXT_MAX: Final = 12
_DISCRIMINATOR_FORMS: Final = "give it as on the label, e.g. 0x874, or in decimal, e.g. 2164"
#: Largest info value a host accepts: one ATT read at the minimum MTU is 22 bytes, long
#: reads go to 512 (the largest attribute value).
INFO_MAX_BYTES: Final = 512


class DeviceState(enum.IntEnum):
    """Provisioning state, advertised so a scanner can tell virgin devices apart."""

    VIRGIN = 0
    ENROLLED = 1
    PEER_BOUND = 2
    LOCKED_OUT = 3


#: The mode bits' one enum (:mod:`bleprov.core.mode_bits`), under the name this module
#: gave it when it had an enum of its own.
OobMode = Mode

#: The built-in modes. A receiver checks against :func:`known_modes` (these and any a
#: registered mode engine added).
ALL_MODES: Final = Mode.QR | Mode.CODE | Mode.COMPARE | Mode.BUTTON | Mode.PASSKEY


class AdvertisedFlags(enum.IntFlag):
    NONE = 0
    BUTTON_WINDOW_OPEN = 0x01
    BUSY = 0x02
    #: The owner opened a commissioning window (bleprov.core.window): a host with its
    #: one-time code may authenticate now.
    WINDOW_OPEN = 0x04


_ALL_FLAGS: Final = int(
    AdvertisedFlags.BUTTON_WINDOW_OPEN | AdvertisedFlags.BUSY | AdvertisedFlags.WINDOW_OPEN
)


@dataclass(frozen=True)
class ServiceData:
    """The fixed-layout service data payload (gatt_profiles/, [advertisement])."""

    protocol_version: int
    state: DeviceState
    modes: OobMode
    discriminator: int
    flags: AdvertisedFlags = AdvertisedFlags.NONE

    @property
    def owned(self) -> bool:
        """The device has an owner: it is set up and offers no factory mode (at most its
        owner's window), so its label opens nothing (docs/security.md, "Ownership")."""
        return self.state in (DeviceState.ENROLLED, DeviceState.PEER_BOUND) and (
            not self.modes or AdvertisedFlags.WINDOW_OPEN in self.flags
        )

    def __post_init__(self) -> None:
        if not 0 <= self.discriminator <= DISCRIMINATOR_MAX:
            raise ValueError(f"discriminator must fit in {DISCRIMINATOR_BITS} bits")
        if not 0 < self.protocol_version <= 0xFF:
            raise ValueError("protocol version must be 1..255")


_CONSTRUCT_TYPES: Final = {"u8": cs.Int8ub, "u16": cs.Int16ub, "u32": cs.Int32ub}


def _service_data_struct(profile: GattProfile) -> cs.Struct:
    fields = [f.name / _CONSTRUCT_TYPES[f.type] for f in profile.advertisement.service_data]
    return cs.Struct(*fields, cs.Terminated)


def encode_service_data(data: ServiceData, profile: GattProfile | None = None) -> bytes:
    profile = profile or default_profile()
    values = {
        "protocol_version": data.protocol_version,
        "state": int(data.state),
        "modes": int(data.modes),
        "discriminator": data.discriminator,
        "flags": int(data.flags),
    }
    built: bytes = _service_data_struct(profile).build(values)
    return built


def decode_service_data(raw: bytes, profile: GattProfile | None = None) -> ServiceData:
    """Parse advertised service data; reject anything not of the profile's exact layout."""
    profile = profile or default_profile()
    expected = profile.advertisement.service_data_size
    if len(raw) != expected:
        raise MalformedData(f"service data is {len(raw)} bytes, expected {expected}")
    parsed = _service_data_struct(profile).parse(raw)
    try:
        state = DeviceState(parsed.state)
    except ValueError:
        raise MalformedData(f"unknown device state {parsed.state}") from None
    if parsed.modes & ~int(known_modes()):
        raise MalformedData(f"unknown mode bits 0x{parsed.modes:02x}")
    if parsed.flags & ~_ALL_FLAGS:
        raise MalformedData(f"unknown flag bits 0x{parsed.flags:02x}")
    if parsed.discriminator > DISCRIMINATOR_MAX:
        raise MalformedData("discriminator uses reserved bits")
    if parsed.protocol_version == 0:
        raise MalformedData("protocol version 0 is reserved")
    return ServiceData(
        protocol_version=parsed.protocol_version,
        state=state,
        modes=OobMode(parsed.modes),
        discriminator=parsed.discriminator,
        flags=AdvertisedFlags(parsed.flags),
    )


class InfoKey(enum.IntEnum):
    """Integer keys of the info characteristic's CBOR map (docs/protocol.md)."""

    PROTOCOL_VERSION = 1
    STATE = 2
    MODES = 3
    DISCRIMINATOR = 4
    MAX_MESSAGE = 5
    RX_WINDOW = 6
    PROFILE_VERSION = 7
    #: code mode only: the salt and scrypt cost the device's verifier was derived with.
    PBKDF_SALT = 8
    PBKDF_COST = 9
    #: While the owner's commissioning window is open: [salt, [log2 N, r, p], purpose].
    WINDOW = 10


@functools.lru_cache(maxsize=16)
def _encode_info(info: DeviceInfo) -> bytes:
    return info._encode()


@dataclass(frozen=True)
class DeviceInfo:
    """The plaintext info characteristic, read before any session."""

    protocol_version: int
    state: DeviceState
    modes: OobMode
    discriminator: int
    max_message: int
    rx_window: int
    profile_version: int
    #: Present when the code mode is enabled: per-device random salt (16..32 bytes) and
    #: scrypt cost (log2 N, r, p) for deriving the SPAKE2+ verifier from the code.
    pbkdf_salt: bytes | None = None
    pbkdf_cost: tuple[int, int, int] | None = None
    #: Present while the owner's commissioning window is open: the window code's KDF
    #: inputs and what the window is for.
    window: WindowInfo | None = None

    def encode(self) -> bytes:
        """Deterministic CBOR. Memoised by value (the info is frozen): a device encodes
        the same info at every session start and every re-advertisement."""
        try:
            hash(self)
        except TypeError:  # a field given as a list: encoded as it is, not memoised
            return self._encode()
        return _encode_info(self)

    def _encode(self) -> bytes:
        value: dict[InfoKey, object] = {
            InfoKey.PROTOCOL_VERSION: self.protocol_version,
            InfoKey.STATE: int(self.state),
            InfoKey.MODES: int(self.modes),
            InfoKey.DISCRIMINATOR: self.discriminator,
            InfoKey.MAX_MESSAGE: self.max_message,
            InfoKey.RX_WINDOW: self.rx_window,
            InfoKey.PROFILE_VERSION: self.profile_version,
        }
        if self.pbkdf_salt is not None and self.pbkdf_cost is not None:
            value[InfoKey.PBKDF_SALT] = self.pbkdf_salt
            value[InfoKey.PBKDF_COST] = list(self.pbkdf_cost)
        if self.window is not None:
            w = self.window
            value[InfoKey.WINDOW] = [w.salt, list(w.cost), int(w.purpose)]
        encoded = cbor.dumps({int(k): v for k, v in value.items()})
        return encoded

    @classmethod
    def decode(cls, raw: bytes) -> DeviceInfo:
        """Parse the info value; unknown keys are ignored so later versions can add some."""
        if not 0 < len(raw) <= INFO_MAX_BYTES:
            raise MalformedData(f"info value is {len(raw)} bytes, expected 1..{INFO_MAX_BYTES}")
        try:
            value = cbor.loads(raw, max_size=INFO_MAX_BYTES)
        except cbor.CborError as exc:
            raise MalformedData(f"info value: {exc}") from None
        if not isinstance(value, dict):
            raise MalformedData("info value must be a CBOR map")

        def field(key: InfoKey, lo: int, hi: int) -> int:
            got: Any = value.get(int(key))
            if not isinstance(got, int) or isinstance(got, bool) or not lo <= got <= hi:
                raise MalformedData(f"info field {words(key)} missing or out of range")
            return got

        try:
            state = DeviceState(field(InfoKey.STATE, 0, 255))
        except ValueError:
            raise MalformedData("info field state has an unknown value") from None
        salt = value.get(int(InfoKey.PBKDF_SALT))
        cost = value.get(int(InfoKey.PBKDF_COST))
        if (salt is None) != (cost is None):
            raise MalformedData("info fields pbkdf_salt and pbkdf_cost go together")
        pbkdf_cost: tuple[int, int, int] | None = None
        if salt is not None:
            if not isinstance(salt, bytes) or not 16 <= len(salt) <= 32:
                raise MalformedData("info field pbkdf_salt must be 16..32 bytes")
            if (
                not isinstance(cost, list)
                or len(cost) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) for c in cost)
                or not (10 <= cost[0] <= 22 and 1 <= cost[1] <= 32 and 1 <= cost[2] <= 16)
            ):
                raise MalformedData(
                    "info field pbkdf_cost must be [log2 N 10..22, r 1..32, p 1..16]"
                )
            pbkdf_cost = (cost[0], cost[1], cost[2])
        return cls(
            protocol_version=field(InfoKey.PROTOCOL_VERSION, 1, 255),
            state=state,
            modes=_known_modes(field(InfoKey.MODES, 0, int(known_modes()))),
            discriminator=field(InfoKey.DISCRIMINATOR, 0, DISCRIMINATOR_MAX),
            max_message=field(InfoKey.MAX_MESSAGE, 64, 0xFFFFFF),
            rx_window=field(InfoKey.RX_WINDOW, 1, 127),
            profile_version=field(InfoKey.PROFILE_VERSION, 1, 255),
            pbkdf_salt=salt,
            pbkdf_cost=pbkdf_cost,
            window=_window_info(value.get(int(InfoKey.WINDOW))),
        )

    def service_data(self, flags: AdvertisedFlags = AdvertisedFlags.NONE) -> ServiceData:
        if self.window is not None:
            flags |= AdvertisedFlags.WINDOW_OPEN
        return ServiceData(
            protocol_version=self.protocol_version,
            state=self.state,
            modes=self.modes,
            discriminator=self.discriminator,
            flags=flags,
        )


def _window_info(value: object) -> WindowInfo | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], bytes)
        or not 16 <= len(value[0]) <= 32
        or not isinstance(value[1], list)
        or len(value[1]) != 3
        or not all(type(c) is int for c in value[1])
        or not (10 <= value[1][0] <= 22 and 1 <= value[1][1] <= 32 and 1 <= value[1][2] <= 16)
        or type(value[2]) is not int
        or value[2] not in {int(p) for p in WindowPurpose}
    ):
        raise MalformedData("info field window must be [salt 16..32, [log2 N, r, p], purpose]")
    cost = (value[1][0], value[1][1], value[1][2])
    return WindowInfo(value[0], cost, WindowPurpose(value[2]))


def format_discriminator(value: int) -> str:
    """A discriminator as the label prints it, and as every output shows it: ``0x874``
    (three upper-case hex digits). The label is what the user holds, so what a screen
    shows is compared with it digit by digit."""
    return f"0x{value:03X}"


def parse_discriminator(text: str) -> int:
    """A discriminator as typed: ``0x874`` (hex, with its prefix, as on the label) or
    ``2164`` (decimal, without one). A bare number is decimal, as it always was on the
    command line; hex digits without the prefix (``F00``) are refused, not guessed."""
    typed = text.strip()
    if len(typed) > _DISCRIMINATOR_TEXT_MAX:
        raise MalformedData(f"that is not a discriminator (too long): {_DISCRIMINATOR_FORMS}")
    if typed[:2] in ("0x", "0X") and _is_hex(typed[2:]):
        value = int(typed[2:], 16)
    elif typed.isascii() and typed.isdigit():
        value = int(typed, 10)
    else:
        hint = f" (hex needs its prefix, as on the label: 0x{typed})" if _is_hex(typed) else ""
        raise MalformedData(f"{typed!r} is not a discriminator: {_DISCRIMINATOR_FORMS}{hint}")
    if value > DISCRIMINATOR_MAX:
        raise MalformedData(
            f"a discriminator is {DISCRIMINATOR_BITS} bits: 0x000 to "
            f"{format_discriminator(DISCRIMINATOR_MAX)} (0 to {DISCRIMINATOR_MAX})"
        )
    return value


def _known_modes(bits: int) -> Mode:
    """``bits`` as modes, if every one is a known mode (the range check alone lets a gap
    through once a registered mode leaves one)."""
    if bits & ~int(known_modes()):
        raise MalformedData(f"unknown mode bits 0x{bits:02x}")
    return Mode(bits)


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def describe(data: ServiceData) -> str:
    """One line for a person: "discriminator 0x137, virgin, modes qr, code"."""
    modes = ", ".join(mode_names(data.modes)) or "none"
    flags = [words(f) for f in AdvertisedFlags if f and f in data.flags and f.name]
    extra = f", {', '.join(flags)}" if flags else ""
    return (
        f"discriminator {format_discriminator(data.discriminator)}, {words(data.state)}, "
        f"modes {modes}{extra}"
    )


def as_mapping(data: ServiceData) -> Mapping[str, object]:
    """A JSON-friendly view for `bleprov scan --json`."""
    return {
        "protocol_version": data.protocol_version,
        "state": data.state.name.lower(),
        "modes": mode_names(data.modes),
        "discriminator": data.discriminator,
        "flags": [f.name.lower() for f in AdvertisedFlags if f and f in data.flags and f.name],
    }


# Advertising data types (Bluetooth Assigned Numbers, "Common Data Types").
AD_FLAGS: Final = wire_codes.AD_FLAGS
AD_COMPLETE_128_BIT_UUIDS: Final = wire_codes.AD_COMPLETE_128_BIT_UUIDS
AD_SHORTENED_LOCAL_NAME: Final = wire_codes.AD_SHORTENED_LOCAL_NAME
AD_SERVICE_DATA_128: Final = wire_codes.AD_SERVICE_DATA_128
_FLAG_BITS: Final = wire_codes.AD_FLAG_BITS


def _ad(ad_type: int, value: bytes) -> bytes:
    return bytes([len(value) + 1, ad_type]) + value


def _uuid_le(uuid: str) -> bytes:
    return bytes.fromhex(uuid.replace("-", ""))[::-1]


def advertising_data(service_data: bytes, profile: GattProfile | None = None) -> bytes:
    """Raw legacy advertising data: Flags, then Service Data keyed by the service UUID."""
    profile = profile or default_profile()
    adv = profile.advertisement
    out = b""
    if adv.flags:
        out += _ad(AD_FLAGS, bytes([sum(_FLAG_BITS[f] for f in adv.flags)]))
    out += _ad(AD_SERVICE_DATA_128, _uuid_le(adv.service_data_uuid) + service_data)
    if len(out) > 31:
        raise ValueError(f"advertising data of {len(out)} bytes exceeds 31")
    return out


def scan_response_data(local_name: str, profile: GattProfile | None = None) -> bytes:
    """Raw scan response: the service UUID list and a shortened name, as the profile says."""
    profile = profile or default_profile()
    adv = profile.advertisement
    out = b""
    if "complete-128-bit-service-uuids" in adv.scan_response:
        out += _ad(AD_COMPLETE_128_BIT_UUIDS, _uuid_le(profile.service_uuid))
    if "shortened-local-name" in adv.scan_response and local_name:
        name = local_name.encode("utf-8")[: min(adv.max_local_name, 31 - len(out) - 2)]
        out += _ad(AD_SHORTENED_LOCAL_NAME, name.decode("utf-8", "ignore").encode("utf-8"))
    return out
