"""What a device label carries: the onboarding payload as QR text, NFC record and printed codes.

A label is the out-of-band channel. In ``qr`` mode it authenticates both ends of the
Noise NKpsk0 handshake: the device's static X25519 public key (the host needs it before
its first message) and a 128-bit label secret (the PSK source, proving the host saw the
label). ``code`` mode needs a short passcode (or a user/password scratch card) for
SPAKE2+; ``compare`` and ``button`` need nothing printed.

Forms, all built on one compact binary layout (version 1):

- **QR text**: ``BP:`` + base-38 of the binary payload, using only the QR alphanumeric
  character set, so a v1 label fits QR version 4-M (88 characters) or 5-M with a passcode
  (95 characters).
- **NFC**: an NDEF message of one NFC Forum External Type record ``bleprov.dev:p``
  whose payload is the binary layout.
- **Long printed key**: Crockford base-32 of the binary payload plus a mod-37 check
  symbol, grouped by four, for ``qr`` mode without a camera.
- **Manual code**: 11 digits (``DDPP-PPPP-PPC``) for ``code`` mode: 6 discriminator bits,
  the 8-digit passcode and a Verhoeff check digit.
- **User/password**: a scratch-card credential for ``code`` mode.

Every parser is strict (one spelling per payload, reserved bits zero, exact lengths)
and raises :class:`PayloadError` or a subclass, whose message never repeats secret
material. Binary layout (big-endian, bit 7 = most significant):

====== ==== ==============================================================
offset size field
====== ==== ==============================================================
0      1    bits 7-4 version (1); bits 3-2 reserved (0); bit 1 passkey mode (0x10);
            bit 0 passcode present
1      2    bits 15-12 modes (OobMode 0x01-0x08); bits 11-0 discriminator
3      32   device static X25519 public key (raw)
35     16   label secret
51     4    only if passcode present: bits 31-27 reserved (0); bits 26-0 passcode
====== ==== ==============================================================
"""

from __future__ import annotations

import itertools
import math
import random
import re
import secrets
from dataclasses import dataclass, field
from typing import Final, Literal

import construct as cs

from bleprov.core.advertising import DISCRIMINATOR_BITS, DISCRIMINATOR_MAX, OobMode
from bleprov.core.crypto.primitives import X25519PublicKey, x25519_public_key
from bleprov.core.errors import MalformedData
from bleprov.core.mode_bits import mode_names

# ---------------------------------------------------------------------------- errors


class PayloadError(MalformedData):
    """An onboarding payload, code or credential is malformed or refused."""


class UnsupportedPayloadVersion(PayloadError):
    """The payload is of a format version this side does not read."""


class MistypedCode(PayloadError):
    """A check digit or check symbol does not match: the user mistyped the code."""


class PrintedKeyError(PayloadError):
    """A typed printed key that is not one. ``group`` is where it goes wrong (1-based, in
    the label's groups of four, or as typed when typed in groups), when the format can
    tell; None when it cannot."""

    def __init__(self, message: str, *, group: int | None = None) -> None:
        super().__init__(message)
        self.group = group


class PrintedKeyMistyped(PrintedKeyError, MistypedCode):
    """A printed key whose check symbol does not match the characters before it."""


class TrivialPasscode(PayloadError):
    """A passcode is guessable (a repeated digit, a sequence, a repeated block)."""


# ----------------------------------------------------------------------- constants

PAYLOAD_VERSION: Final = 1
PUBLIC_KEY_BYTES: Final = 32
LABEL_SECRET_BYTES: Final = 16
#: Binary payload sizes in version 1, without and with a passcode.
PAYLOAD_BYTES: Final = 3 + PUBLIC_KEY_BYTES + LABEL_SECRET_BYTES
PAYLOAD_BYTES_WITH_PASSCODE: Final = PAYLOAD_BYTES + 4
#: The modes the label format (version 1) carries: a mode without a bit here cannot be
#: printed on a label.
_ALL_MODES: Final = int(
    OobMode.QR | OobMode.CODE | OobMode.COMPARE | OobMode.BUTTON | OobMode.PASSKEY
)
#: The modes the header's 4-bit field holds; passkey (0x10) has a header bit of its own.
_HEADER_MODES: Final = int(OobMode.QR | OobMode.CODE | OobMode.COMPARE | OobMode.BUTTON)

PASSCODE_DIGITS: Final = 8
PASSCODE_MIN: Final = 1
PASSCODE_MAX: Final = 99_999_998
PASSCODE_BITS: Final = 27  # PASSCODE_MAX < 2**27

#: No parser looks at more text than this; real inputs are under 120 characters.
_TEXT_INPUT_MAX: Final = 512


def _require_ascii(text: str, what: str) -> str:
    """Strip surrounding whitespace, bound the length, refuse non-ASCII.

    Non-ASCII is refused before any case folding, because ``str.upper`` maps some
    non-ASCII letters onto ASCII ones (dotless i to I) and would widen what is accepted.
    """
    if not isinstance(text, str):
        raise PayloadError(f"{what} must be text")
    if len(text) > _TEXT_INPUT_MAX:
        raise PayloadError(f"{what} is {len(text)} characters, far too long")
    stripped = text.strip()
    if not stripped.isascii():
        raise PayloadError(f"{what} contains characters outside ASCII")
    return stripped


# ----------------------------------------------------------------------- passcodes


def _passcode_refusal(digits: str) -> str | None:
    """Why an 8-digit passcode is too guessable to print, or None.

    Refused, about 10,000 codes of 10**8 (0.01 %, so the space keeps ~26.6 bits):
    one digit repeated (Matter's and HomeKit's rule); ascending or descending runs,
    wrapping 9 -> 0 as a keyboard number row does (01234567, 12345678, 98765432, 78901234);
    a block of two or four digits repeated (12121212, 19841984), which people pick
    and which a faulty generator could emit.
    """
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(digits)}
    if steps == {0}:
        return "one digit repeated"
    if steps == {1}:
        return "an ascending sequence"
    if steps == {9}:
        return "a descending sequence"
    if digits == digits[:2] * 4 or digits == digits[:4] * 2:
        return "a short block repeated"
    return None


def validate_passcode(passcode: int) -> int:
    """Return ``passcode`` if it may be printed on a label; raise saying why not.

    The passcode becomes the SPAKE2+ password on the host (as :func:`passcode_password`);
    the device keeps only the verifier derived from it.
    """
    if isinstance(passcode, bool) or not isinstance(passcode, int):
        raise PayloadError("passcode must be an integer")
    if 0 <= passcode <= 99_999_999:
        reason = _passcode_refusal(f"{passcode:0{PASSCODE_DIGITS}d}")
        if reason is not None:
            raise TrivialPasscode(f"passcode refused: {reason}")
    if not PASSCODE_MIN <= passcode <= PASSCODE_MAX:
        raise PayloadError(
            f"passcode out of range: {PASSCODE_DIGITS} digits, {PASSCODE_MIN:08d}..{PASSCODE_MAX}"
        )
    return passcode


def generate_passcode(rng: random.Random | None = None) -> int:
    """Draw a passcode uniformly among the valid ones (redraw the refused 0.01 %).

    ``rng`` defaults to the OS CSPRNG; pass a seeded ``random.Random`` only in tests.
    """
    source = rng if rng is not None else secrets.SystemRandom()
    while True:
        candidate = source.randrange(PASSCODE_MIN, PASSCODE_MAX + 1)
        if _passcode_refusal(f"{candidate:0{PASSCODE_DIGITS}d}") is None:
            return candidate


def passcode_password(passcode: int) -> bytes:
    """The SPAKE2+ password for a passcode: its 8 ASCII digits, leading zeros kept."""
    return f"{validate_passcode(passcode):0{PASSCODE_DIGITS}d}".encode("ascii")


# ---------------------------------------------------------------- the binary payload


@dataclass(frozen=True, kw_only=True, repr=False)
class OnboardingPayload:
    """What a device label carries; every instance is valid (checked on construction).

    ``modes`` must include ``qr``: the key and secret serve nothing else. A passcode
    needs ``code`` too; ``code`` without a passcode means the code is printed elsewhere
    (a scratch card). The label secret and passcode stay out of ``repr``.
    """

    version: int = PAYLOAD_VERSION
    discriminator: int
    modes: OobMode
    device_public_key: bytes
    label_secret: bytes
    passcode: int | None = None

    def __post_init__(self) -> None:
        if self.version != PAYLOAD_VERSION:
            raise UnsupportedPayloadVersion(
                f"payload version {self.version} unsupported (this side reads {PAYLOAD_VERSION})"
            )
        if (
            isinstance(self.discriminator, bool)
            or not isinstance(self.discriminator, int)
            or not 0 <= self.discriminator <= DISCRIMINATOR_MAX
        ):
            raise PayloadError(f"discriminator must be an integer of {DISCRIMINATOR_BITS} bits")
        if not isinstance(self.modes, OobMode) or int(self.modes) & ~_ALL_MODES:
            raise PayloadError("modes must be OobMode flags")
        if OobMode.QR not in self.modes:
            raise PayloadError("modes must include qr: the label carries the qr key and secret")
        _require_key_material(self.device_public_key, PUBLIC_KEY_BYTES, "device public key")
        _require_key_material(self.label_secret, LABEL_SECRET_BYTES, "label secret")
        if self.passcode is not None:
            validate_passcode(self.passcode)
            if OobMode.CODE not in self.modes:
                raise PayloadError("a passcode needs the code mode in modes")

    def __repr__(self) -> str:
        modes = "|".join(mode_names(self.modes))
        passcode = None if self.passcode is None else "<redacted>"
        return (
            f"OnboardingPayload(version={self.version}, discriminator=0x{self.discriminator:03X},"
            f" modes={modes}, device_public_key={self.device_public_key.hex()},"
            f" label_secret=<redacted>, passcode={passcode})"
        )

    def public_key(self) -> X25519PublicKey:
        """The device's static key, as Noise NKpsk0's initiator needs it."""
        return x25519_public_key(self.device_public_key)


def _require_key_material(value: bytes, size: int, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise PayloadError(f"{what} must be {size} bytes")
    if not any(value):
        # All zero is what an unprovisioned factory field looks like, never a real key.
        raise PayloadError(f"{what} is all zero (never provisioned)")


_HEADER: Final = cs.BitStruct(
    "version" / cs.BitsInteger(4),
    "reserved" / cs.BitsInteger(2),
    "passkey" / cs.Flag,
    "has_passcode" / cs.Flag,
    "modes" / cs.BitsInteger(4),
    "discriminator" / cs.BitsInteger(DISCRIMINATOR_BITS),
)
_PASSCODE_FIELD: Final = cs.BitStruct(
    "reserved" / cs.BitsInteger(32 - PASSCODE_BITS),
    "passcode" / cs.BitsInteger(PASSCODE_BITS),
)
_PAYLOAD_V1: Final = cs.Struct(
    "header" / _HEADER,
    "device_public_key" / cs.Bytes(PUBLIC_KEY_BYTES),
    "label_secret" / cs.Bytes(LABEL_SECRET_BYTES),
    "passcode" / cs.If(cs.this.header.has_passcode, _PASSCODE_FIELD),
    cs.Terminated,
)


def encode_payload(payload: OnboardingPayload) -> bytes:
    """The binary layout (module docstring): 51 bytes, or 55 with a passcode."""
    has_passcode = payload.passcode is not None
    built: bytes = _PAYLOAD_V1.build(
        {
            "header": {
                "version": payload.version,
                "reserved": 0,
                "passkey": OobMode.PASSKEY in payload.modes,
                "has_passcode": has_passcode,
                "modes": int(payload.modes) & _HEADER_MODES,
                "discriminator": payload.discriminator,
            },
            "device_public_key": payload.device_public_key,
            "label_secret": payload.label_secret,
            "passcode": {"reserved": 0, "passcode": payload.passcode} if has_passcode else None,
        }
    )
    return built


def parse_payload(raw: bytes) -> OnboardingPayload:
    """Parse the binary layout; refuse other versions, lengths and reserved bits."""
    if not isinstance(raw, bytes | bytearray) or not raw:
        raise PayloadError("onboarding payload is empty")
    version = raw[0] >> 4
    if version != PAYLOAD_VERSION:
        raise UnsupportedPayloadVersion(
            f"payload version {version} unsupported (this side reads {PAYLOAD_VERSION})"
        )
    expected = PAYLOAD_BYTES_WITH_PASSCODE if raw[0] & 0x01 else PAYLOAD_BYTES
    if len(raw) != expected:
        raise PayloadError(f"onboarding payload is {len(raw)} bytes, expected {expected}")
    try:
        parsed = _PAYLOAD_V1.parse(bytes(raw))
    except cs.ConstructError:
        raise PayloadError("onboarding payload does not match its layout") from None
    if parsed.header.reserved:
        raise PayloadError("onboarding payload has reserved header bits set")
    passcode: int | None = None
    if parsed.passcode is not None:
        if parsed.passcode.reserved:
            raise PayloadError("onboarding payload has reserved passcode bits set")
        passcode = parsed.passcode.passcode
    return OnboardingPayload(
        version=version,
        discriminator=parsed.header.discriminator,
        modes=OobMode(parsed.header.modes | (OobMode.PASSKEY if parsed.header.passkey else 0)),
        device_public_key=parsed.device_public_key,
        label_secret=parsed.label_secret,
        passcode=passcode,
    )


# -------------------------------------------------------------------- base-38 / QR

#: Matter's base-38 alphabet (Matter Core Specification 5.1.3.1): a subset of the QR
#: alphanumeric set without space, ``$ % * + / :``, so the text survives URLs and typing.
BASE38_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-."
_BASE38_VALUES: Final = {ch: i for i, ch in enumerate(BASE38_ALPHABET)}
#: Bytes in a chunk -> characters: 3 -> 5 (38**5 > 2**24), 2 -> 4, 1 -> 2.
_BASE38_CHARS_FOR_BYTES: Final = {3: 5, 2: 4, 1: 2}
_BASE38_BYTES_FOR_CHARS: Final = {5: 3, 4: 2, 2: 1}

QR_PREFIX: Final = "BP:"
#: The QR alphanumeric mode's 45 characters (ISO/IEC 18004, table 5).
QR_ALPHANUMERIC: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def base38_encode(data: bytes) -> str:
    """Matter's base-38: 3-byte little-endian chunks, 5 digits each, least significant first."""
    out: list[str] = []
    for start in range(0, len(data), 3):
        chunk = data[start : start + 3]
        value = int.from_bytes(chunk, "little")
        for _ in range(_BASE38_CHARS_FOR_BYTES[len(chunk)]):
            value, digit = divmod(value, 38)
            out.append(BASE38_ALPHABET[digit])
    return "".join(out)


def base38_decode(text: str) -> bytes:
    """Inverse of :func:`base38_encode`; refuses lengths and chunk values it cannot produce."""
    for index, char in enumerate(text):
        if char not in _BASE38_VALUES:
            raise PayloadError(f"character {index + 1} is not in the base-38 alphabet")
    if len(text) % 5 in (1, 3):
        raise PayloadError(f"base-38 text of {len(text)} characters cannot be complete")
    out = bytearray()
    for start in range(0, len(text), 5):
        chunk = text[start : start + 5]
        size = _BASE38_BYTES_FOR_CHARS[len(chunk)]
        value = 0
        for char in reversed(chunk):
            value = value * 38 + _BASE38_VALUES[char]
        if value >> (8 * size):
            raise PayloadError(f"base-38 chunk at character {start + 1} is not canonical")
        out += value.to_bytes(size, "little")
    return bytes(out)


def encode_qr(payload: OnboardingPayload) -> str:
    """The QR text: ``BP:`` + base-38; encode it in alphanumeric mode, ECC level M."""
    return QR_PREFIX + base38_encode(encode_payload(payload))


def parse_qr(text: str) -> OnboardingPayload:
    """Parse QR text. Surrounding whitespace is ignored; lowercase is refused.

    An alphanumeric-mode QR code cannot hold lowercase, so lowercase text did not come
    from a label; accepting it would also give one payload two spellings.
    """
    stripped = _require_ascii(text, "QR text")
    if not stripped.startswith(QR_PREFIX):
        if stripped.upper().startswith(QR_PREFIX):
            raise PayloadError("QR text is lowercase; bleprov QR text is uppercase")
        raise PayloadError(f"not a bleprov onboarding code (expected the prefix {QR_PREFIX})")
    body = stripped[len(QR_PREFIX) :]
    if any(char.islower() for char in body):
        raise PayloadError("QR text is lowercase; bleprov QR text is uppercase")
    return parse_payload(base38_decode(body))


QrErrorCorrection = Literal["L", "M", "Q", "H"]
#: Data codewords per version (1..10) and error correction level (ISO/IEC 18004, table 7).
_QR_DATA_CODEWORDS: Final[dict[QrErrorCorrection, tuple[int, ...]]] = {
    "L": (19, 34, 55, 80, 108, 136, 156, 194, 232, 274),
    "M": (16, 28, 44, 64, 86, 108, 124, 154, 182, 216),
    "Q": (13, 22, 34, 48, 62, 76, 88, 110, 132, 154),
    "H": (9, 16, 26, 36, 46, 60, 66, 86, 100, 122),
}


def qr_alphanumeric_capacity(version: int, ecc: QrErrorCorrection = "M") -> int:
    """Characters a QR code of ``version`` (1..10) holds in alphanumeric mode."""
    if not 1 <= version <= len(_QR_DATA_CODEWORDS[ecc]):
        raise ValueError("only QR versions 1..10 are tabulated")
    data_bits = 8 * _QR_DATA_CODEWORDS[ecc][version - 1]
    count_bits = 9 if version <= 9 else 11
    available = data_bits - 4 - count_bits  # mode indicator, character count
    pairs, rest = divmod(available, 11)
    return 2 * pairs + (1 if rest >= 6 else 0)


def smallest_qr_version(text: str, ecc: QrErrorCorrection = "M") -> int:
    """The smallest QR version (1..10) holding ``text`` in alphanumeric mode at ``ecc``."""
    if any(char not in QR_ALPHANUMERIC for char in text):
        raise ValueError("text has characters outside the QR alphanumeric set")
    for version in range(1, len(_QR_DATA_CODEWORDS[ecc]) + 1):
        if len(text) <= qr_alphanumeric_capacity(version, ecc):
            return version
    raise ValueError("text needs a QR version above 10")


# ----------------------------------------------------------------------------- NFC

#: NFC Forum External Type name (NFC RTD 1.0): ``<domain>:<type>``; compared without
#: regard to case, written in lowercase because Android intent filters match exactly.
NDEF_RECORD_TYPE: Final = b"bleprov.dev:p"
NDEF_TNF_EXTERNAL: Final = 0x04
#: Far above one record's size (73 bytes); bounds what the parser reads.
_NDEF_MESSAGE_MAX: Final = 1024

_NDEF_RECORD: Final = cs.Struct(
    "header"
    / cs.BitStruct(
        "message_begin" / cs.Flag,
        "message_end" / cs.Flag,
        "chunked" / cs.Flag,
        "short_record" / cs.Flag,
        "id_present" / cs.Flag,
        "tnf" / cs.BitsInteger(3),
    ),
    "type_length" / cs.Int8ub,
    "payload_length" / cs.IfThenElse(cs.this.header.short_record, cs.Int8ub, cs.Int32ub),
    "id_length" / cs.If(cs.this.header.id_present, cs.Int8ub),
    "type" / cs.Bytes(cs.this.type_length),
    "id" / cs.If(cs.this.header.id_present, cs.Bytes(cs.this.id_length)),
    "payload" / cs.Bytes(cs.this.payload_length),
    cs.Terminated,
)


def encode_ndef(payload: OnboardingPayload) -> bytes:
    """An NDEF message of one short external-type record, MB and ME set, no ID."""
    body = encode_payload(payload)
    built: bytes = _NDEF_RECORD.build(
        {
            "header": {
                "message_begin": True,
                "message_end": True,
                "chunked": False,
                "short_record": True,
                "id_present": False,
                "tnf": NDEF_TNF_EXTERNAL,
            },
            "type_length": len(NDEF_RECORD_TYPE),
            "payload_length": len(body),
            "id_length": None,
            "type": NDEF_RECORD_TYPE,
            "id": None,
            "payload": body,
        }
    )
    return built


def parse_ndef(message: bytes) -> OnboardingPayload:
    """Parse an NDEF message holding exactly one bleprov record.

    Both the short and the long record form are read (the NDEF spec lets a writer pick);
    chunked records, record IDs, other TNFs or types, more than one record and lengths
    that disagree with the bytes are refused.
    """
    if not isinstance(message, bytes | bytearray) or not message:
        raise PayloadError("NDEF message is empty")
    if len(message) > _NDEF_MESSAGE_MAX:
        raise PayloadError(f"NDEF message is {len(message)} bytes, at most {_NDEF_MESSAGE_MAX}")
    first = message[0]
    tnf = first & 0x07
    if tnf != NDEF_TNF_EXTERNAL:
        raise PayloadError(f"NDEF record TNF is {tnf}, expected 4 (NFC Forum external type)")
    if first & 0x20:
        raise PayloadError("chunked NDEF records are not accepted")
    if not first & 0x80:
        raise PayloadError("NDEF record does not begin a message (MB flag clear)")
    if not first & 0x40:
        raise PayloadError("NDEF message holds more than one record; expected exactly one")
    if first & 0x08:
        raise PayloadError("NDEF record carries an ID; bleprov records have none")
    try:
        record = _NDEF_RECORD.parse(bytes(message))
    except cs.TerminatedError:
        raise PayloadError("NDEF message has bytes after its record") from None
    except cs.ConstructError:
        raise PayloadError("NDEF record is shorter than its length fields say") from None
    if record.type.lower() != NDEF_RECORD_TYPE:
        raise PayloadError("NDEF record type is not bleprov.dev:p")
    return parse_payload(record.payload)


# ---------------------------------------------------------------- long printed key

#: Crockford's base-32 (crockford.com/base32.html): no I, L, O, U; decoding is
#: case-insensitive and reads O as 0, I and L as 1. Check symbols 32..36 follow.
CROCKFORD_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_CHECK: Final = CROCKFORD_ALPHABET + "*~$=U"
_CROCKFORD_VALUES: Final = {
    **{ch: i for i, ch in enumerate(_CROCKFORD_CHECK)},
    "O": 0,
    "I": 1,
    "L": 1,
}
PRINTED_KEY_GROUP: Final = 4
_SEPARATORS: Final = frozenset(" -\t\r\n")
_SEPARATOR_RUNS: Final = re.compile(r"[ \-\t\r\n]+")


def _group(text: str, size: int, separator: str = "-") -> str:
    return separator.join(text[i : i + size] for i in range(0, len(text), size))


def encode_printed_key(payload: OnboardingPayload) -> str:
    """The binary payload in Crockford base-32 with its mod-37 check symbol, in fours.

    The check symbol catches every single wrong symbol and every swap of two adjacent
    symbols in the key (37 is prime and larger than 32).
    """
    raw = encode_payload(payload)
    value = int.from_bytes(raw, "big")
    count = math.ceil(8 * len(raw) / 5)
    symbols = []
    for _ in range(count):
        value, digit = divmod(value, 32)
        symbols.append(CROCKFORD_ALPHABET[digit])
    body = "".join(reversed(symbols))
    check = _CROCKFORD_CHECK[int.from_bytes(raw, "big") % 37]
    return _group(body + check, PRINTED_KEY_GROUP)


#: Key symbols in a label's printed key: without a passcode, and with one.
PRINTED_KEY_LENGTHS: Final = (
    math.ceil(8 * PAYLOAD_BYTES / 5) + 1,
    math.ceil(8 * PAYLOAD_BYTES_WITH_PASSCODE / 5) + 1,
)


@dataclass(frozen=True)
class _TypedKey:
    """A typed printed key read symbol by symbol, and how the person grouped it."""

    #: Each symbol's value (0-36), -1 for a character that is not a key character.
    values: list[int]
    #: Symbols per typed group (one group if typed in a run).
    groups: list[int]

    @classmethod
    def read(cls, text: str) -> _TypedKey:
        typed = _require_ascii(text, "printed key").upper()
        chunks = [chunk for chunk in _SEPARATOR_RUNS.split(typed) if chunk]
        values = [_CROCKFORD_VALUES.get(char, -1) for char in "".join(chunks)]
        return cls(values, [len(chunk) for chunk in chunks])

    def where(self, index: int) -> tuple[int, int]:
        """Symbol ``index`` (0-based) as (group, place), 1-based: in the groups as typed
        if typed in groups, else in the label's fours."""
        if len(self.groups) < 2:
            return index // PRINTED_KEY_GROUP + 1, index % PRINTED_KEY_GROUP + 1
        for group, size in enumerate(self.groups, 1):
            if index < size:
                return group, index + 1
            index -= size
        raise IndexError(index)

    def odd_group(self) -> tuple[int, int] | None:
        """The first typed group, the last aside, that is not four characters long (and
        its length), if the key was typed in groups at all."""
        for number, size in enumerate(self.groups[:-1], 1):
            if size != PRINTED_KEY_GROUP:
                return number, size
        return None


def _odd_words(odd: tuple[int, int]) -> str:
    return f"group {odd[0]} has {odd[1]} characters, not {PRINTED_KEY_GROUP}"


def regroup_printed_key(text: str) -> str:
    """A typed printed key as it was read, grouped in fours as the label prints it: upper
    case, O read as 0, I and L as 1, a character that is not a key character as ``?``.
    For echoing what a person typed, beside the label."""
    shown = []
    for char in text:
        if char in _SEPARATORS:
            continue
        # Only ASCII is upper-cased: str.upper maps some other letters onto ASCII ones.
        value = _CROCKFORD_VALUES.get(char.upper()) if char.isascii() else None
        shown.append("?" if value is None else _CROCKFORD_CHECK[value])
    return _group("".join(shown), PRINTED_KEY_GROUP)


def parse_printed_key(text: str) -> OnboardingPayload:
    """Parse a typed printed key: spaces, dashes, line breaks and case do not matter.

    A mistake is located as precisely as the format allows (:class:`PrintedKeyError`'s
    ``group``): a character that is not a key character, a check character before the
    end, a group typed short or long. A wrong or swapped character is caught by the one
    check symbol at the end, which says that the key is wrong, not where.
    """
    typed = _TypedKey.read(text)
    values = typed.values
    if values and min(values) < 0:
        group, place = typed.where(values.index(-1))
        raise PrintedKeyError(
            f"printed key group {group}, character {place} is not a key character "
            "(0-9 and A-Z, no U)",
            group=group,
        )
    if len(values) < 2:
        raise PrintedKeyError("printed key is too short")
    *body, check = values
    if max(body) >= 32:
        group, place = typed.where(next(i for i, digit in enumerate(body) if digit >= 32))
        raise PrintedKeyError(
            "printed key has a check character (* ~ $ = U) before its end: group "
            f"{group}, character {place}",
            group=group,
        )
    size = len(body) * 5 // 8
    lengths = " or ".join(map(str, PRINTED_KEY_LENGTHS))
    if math.ceil(8 * size / 5) != len(body):
        odd = typed.odd_group()
        where = f": {_odd_words(odd)}" if odd else f"; a label's has {lengths}"
        raise PrintedKeyError(
            f"printed key has {len(values)} characters, not a valid length{where}",
            group=odd[0] if odd else None,
        )
    value = 0
    for digit in body:
        value = value * 32 + digit
    if value >> (8 * size):
        raise PrintedKeyError(
            "printed key is not canonical (its first character is too large)", group=1
        )
    if value % 37 != check:
        mistyped = "the printed key was mistyped (its check character does not match)"
        if odd := typed.odd_group():
            raise PrintedKeyMistyped(f"{mistyped}: {_odd_words(odd)}", group=odd[0])
        if len(values) not in PRINTED_KEY_LENGTHS:
            raise PrintedKeyMistyped(
                f"{mistyped}: it has {len(values)} characters and a label's has {lengths}: "
                "one is missing, or one too many"
            )
        raise PrintedKeyMistyped(
            f"{mistyped}: a character is wrong, or two neighbours are swapped; its one "
            "check character cannot tell which, so compare it with the label group by group"
        )
    try:
        return parse_payload(value.to_bytes(size, "big"))
    except PayloadError:
        # A key typed one character short is a valid shorter length, and its check
        # character matches 1 time in 37: it decodes to nonsense. Say what was mistyped.
        if odd := typed.odd_group():
            raise PrintedKeyMistyped(
                f"the printed key was mistyped: {_odd_words(odd)}", group=odd[0]
            ) from None
        raise


# ------------------------------------------------------------ Verhoeff / manual code

# Verhoeff's tables as published (Verhoeff 1969; Gallian, "Error detection methods",
# ACM Computing Surveys 28(3), 1996): multiplication in the dihedral group D5, the
# position permutation p and its powers, and the group inverse.
_VERHOEFF_D: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_VERHOEFF_INV: Final = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)
_DECIMAL: Final = "0123456789"


def _verhoeff(digits: str, first_position: int) -> int:
    if not digits or any(char not in _DECIMAL for char in digits):
        raise PayloadError("Verhoeff input must be a non-empty string of digits 0-9")
    check = 0
    for position, char in enumerate(reversed(digits), start=first_position):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(char)]]
    return check


def verhoeff_check_digit(digits: str) -> str:
    """The Verhoeff check digit to append to ``digits``."""
    return str(_VERHOEFF_INV[_verhoeff(digits, 1)])


def verhoeff_is_valid(digits: str) -> bool:
    """Whether ``digits`` ends in its correct Verhoeff check digit."""
    return _verhoeff(digits, 0) == 0


MANUAL_CODE_DIGITS: Final = 11
#: Discriminator bits in a manual code: the top 6 of 12, written as two digits 00..63
#: (a 1 in 64 false match while scanning, against Matter's 1 in 16); 64..99 are left
#: for later formats.
MANUAL_CODE_DISCRIMINATOR_BITS: Final = 6
_SHORT_DISCRIMINATOR_SHIFT: Final = DISCRIMINATOR_BITS - MANUAL_CODE_DISCRIMINATOR_BITS
_SHORT_DISCRIMINATOR_MAX: Final = (1 << MANUAL_CODE_DISCRIMINATOR_BITS) - 1


@dataclass(frozen=True)
class ManualCode:
    """A parsed manual code: enough to pick the device out of a scan, and its passcode."""

    short_discriminator: int
    passcode: int = field(repr=False)

    def matches(self, discriminator: int) -> bool:
        """Whether an advertised 12-bit discriminator agrees with this code."""
        return discriminator >> _SHORT_DISCRIMINATOR_SHIFT == self.short_discriminator


def encode_manual_code(discriminator: int, passcode: int) -> str:
    """``DDPP-PPPP-PPC``: top 6 discriminator bits, 8 passcode digits, Verhoeff check."""
    if (
        isinstance(discriminator, bool)
        or not isinstance(discriminator, int)
        or not 0 <= discriminator <= DISCRIMINATOR_MAX
    ):
        raise PayloadError(f"discriminator must be an integer of {DISCRIMINATOR_BITS} bits")
    validate_passcode(passcode)
    digits = f"{discriminator >> _SHORT_DISCRIMINATOR_SHIFT:02d}{passcode:0{PASSCODE_DIGITS}d}"
    digits += verhoeff_check_digit(digits)
    return f"{digits[:4]}-{digits[4:8]}-{digits[8:]}"


def parse_manual_code(text: str) -> ManualCode:
    """Parse a typed manual code; spaces and dashes anywhere are ignored."""
    stripped = _require_ascii(text, "manual code")
    digits = "".join(char for char in stripped if char not in " -")
    if any(char not in _DECIMAL for char in digits):
        raise PayloadError("a manual code holds only digits, spaces and dashes")
    if len(digits) != MANUAL_CODE_DIGITS:
        raise PayloadError(f"manual code has {len(digits)} digits, expected {MANUAL_CODE_DIGITS}")
    if not verhoeff_is_valid(digits):
        raise MistypedCode("the manual code was mistyped (its check digit does not match)")
    short_discriminator = int(digits[:2])
    if short_discriminator > _SHORT_DISCRIMINATOR_MAX:
        raise UnsupportedPayloadVersion(
            "manual code of a later format (its first two digits are above 63)"
        )
    passcode = validate_passcode(int(digits[2:10]))
    return ManualCode(short_discriminator, passcode)


# --------------------------------------------------------------- user and password

#: Scratch-card characters: digits and capitals without 0 O 1 I L (31 symbols). Only
#: capitals, so typed lowercase maps back without ambiguity.
SCRATCH_ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
USER_LENGTH: Final = 8
PASSWORD_LENGTH: Final = 12
#: 12 symbols of 31: 59.4 bits.
PASSWORD_ENTROPY_BITS: Final = PASSWORD_LENGTH * math.log2(len(SCRATCH_ALPHABET))
SCRATCH_GROUP: Final = 4
_CONFUSABLE: Final = frozenset("0O1IL")
_PRINTED_CREDENTIAL: Final = re.compile(
    r"user\s*:\s*(?P<user>[^/]*?)\s*/\s*password\s*:\s*(?P<password>.*)", re.IGNORECASE
)


def _scratch_value(typed: str, what: str, length: int) -> str:
    """Normalise a typed scratch-card value: no separators, capitals, exact alphabet."""
    stripped = _require_ascii(typed, what)
    value = "".join(char for char in stripped.upper() if char not in " -")
    for index, char in enumerate(value):
        if char in _CONFUSABLE:
            raise PayloadError(
                f"{what} character {index + 1} is one a card never uses (0, O, 1, I, L)"
            )
        if char not in SCRATCH_ALPHABET:
            raise PayloadError(f"{what} character {index + 1} is not a card character")
    if len(value) != length:
        raise PayloadError(f"{what} has {len(value)} characters, expected {length}")
    return value


@dataclass(frozen=True)
class UserPasswordCredential:
    """A scratch card for ``code`` mode: a user name and a random password.

    Both are canonical (no separators, capitals only). On the host they become the
    SPAKE2+ identity and password (:attr:`spake2_user`, :attr:`spake2_password`); the
    device stores only the verifier. The password stays out of ``repr``.
    """

    user: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        for value, what, length in (
            (self.user, "user", USER_LENGTH),
            (self.password, "password", PASSWORD_LENGTH),
        ):
            if not isinstance(value, str) or _scratch_value(value, what, length) != value:
                raise PayloadError(f"{what} must be {length} card characters, ungrouped")

    @classmethod
    def from_typed(cls, user: str, password: str) -> UserPasswordCredential:
        """From two input fields: case, spaces and dashes do not matter."""
        return cls(
            _scratch_value(user, "user", USER_LENGTH),
            _scratch_value(password, "password", PASSWORD_LENGTH),
        )

    @property
    def spake2_user(self) -> bytes:
        return self.user.encode("ascii")

    @property
    def spake2_password(self) -> bytes:
        return self.password.encode("ascii")


def generate_user_password(rng: random.Random | None = None) -> UserPasswordCredential:
    """A fresh card: uniform symbols from the OS CSPRNG unless ``rng`` is given (tests)."""
    source = rng if rng is not None else secrets.SystemRandom()
    user = "".join(source.choice(SCRATCH_ALPHABET) for _ in range(USER_LENGTH))
    password = "".join(source.choice(SCRATCH_ALPHABET) for _ in range(PASSWORD_LENGTH))
    return UserPasswordCredential(user, password)


def encode_user_password(credential: UserPasswordCredential) -> str:
    """The printed form: ``user: ABCD-EFGH / password: JKMN-PQRS-TVWX``."""
    return (
        f"user: {_group(credential.user, SCRATCH_GROUP)}"
        f" / password: {_group(credential.password, SCRATCH_GROUP)}"
    )


def parse_user_password(text: str) -> UserPasswordCredential:
    """Parse the printed form (as typed or scanned): labels in any case, values forgiving."""
    stripped = _require_ascii(text, "credential")
    match = _PRINTED_CREDENTIAL.fullmatch(stripped)
    if match is None:
        raise PayloadError("expected 'user: ... / password: ...'")
    return UserPasswordCredential.from_typed(match["user"], match["password"])


__all__ = [
    "BASE38_ALPHABET",
    "CROCKFORD_ALPHABET",
    "LABEL_SECRET_BYTES",
    "MANUAL_CODE_DIGITS",
    "NDEF_RECORD_TYPE",
    "NDEF_TNF_EXTERNAL",
    "PASSCODE_MAX",
    "PASSCODE_MIN",
    "PASSWORD_ENTROPY_BITS",
    "PAYLOAD_BYTES",
    "PAYLOAD_BYTES_WITH_PASSCODE",
    "PAYLOAD_VERSION",
    "PRINTED_KEY_LENGTHS",
    "PUBLIC_KEY_BYTES",
    "QR_ALPHANUMERIC",
    "QR_PREFIX",
    "SCRATCH_ALPHABET",
    "ManualCode",
    "MistypedCode",
    "OnboardingPayload",
    "PayloadError",
    "PrintedKeyError",
    "PrintedKeyMistyped",
    "QrErrorCorrection",
    "TrivialPasscode",
    "UnsupportedPayloadVersion",
    "UserPasswordCredential",
    "base38_decode",
    "base38_encode",
    "encode_manual_code",
    "encode_ndef",
    "encode_payload",
    "encode_printed_key",
    "encode_qr",
    "encode_user_password",
    "generate_passcode",
    "generate_user_password",
    "parse_manual_code",
    "parse_ndef",
    "parse_payload",
    "parse_printed_key",
    "parse_qr",
    "parse_user_password",
    "passcode_password",
    "qr_alphanumeric_capacity",
    "regroup_printed_key",
    "smallest_qr_version",
    "validate_passcode",
    "verhoeff_check_digit",
    "verhoeff_is_valid",
]
