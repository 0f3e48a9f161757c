"""The one CBOR codec of bleprov: deterministic encoding, strict and bounded decoding.

Every CBOR structure bleprov reads (from the air, a broker, a file) goes through
:func:`loads`. It accepts only the subset our messages use, in deterministic encoding
(RFC 8949 section 4.2.1), and checks it in one linear pass while it decodes:

- integers (beyond 64 bits as bignums, tags 2 and 3, of at most 64 bytes with no leading
  zero: X.509 serial numbers need 160 bits), byte and text strings (valid UTF-8), arrays,
  maps, ``false``, ``true``, ``null`` and floating-point numbers in their shortest
  exact form (half, single or double precision; NaN as 0xf97e00);
- definite lengths only, every argument in its shortest form;
- map keys that are integers, byte strings or text strings only, in strictly increasing
  bytewise order of their encodings (so no duplicates);
- no other tags, no other simple values;
- at most ``max_depth`` levels of nesting and ``max_items`` data items in all (by
  default as many as there are bytes: each item takes at least one).

Why not ``cbor2.loads`` then a re-encode to check canonical form: the re-encode is not
bounded. A self-referencing value (tags 28/29) or a MIME tag (36) makes it raise an
encoder error nobody expects from a decoder, and maps nested as map keys make it take
time exponential in the depth (49 bytes took 15 s). Here the work is linear in the input
and every failure is a :class:`CborError`, a :class:`~bleprov.core.errors.MalformedData`.

:func:`dumps` writes the same deterministic encoding. For the maps bleprov writes (keys
that are all small integers, or all text) RFC 8949's bytewise key order and RFC 7049's
length-first order agree, so the bytes are those ``cbor2.dumps(..., canonical=True)``
gives.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from bleprov.core.errors import BleprovError, MalformedData

#: Nesting a message of ours never exceeds (a map inside an array inside an array...).
DEFAULT_MAX_DEPTH = 8

_UINT64_MAX = (1 << 64) - 1
#: Longest bignum accepted (512 bits); ours are X.509 serial numbers of at most 20 bytes.
MAX_BIGNUM_BYTES = 64


class CborError(MalformedData):
    """Bytes that are not one deterministic CBOR item of the subset bleprov uses."""


CborValue = (
    int | float | bytes | str | bool | None | list["CborValue"] | dict["CborKey", "CborValue"]
)
CborKey = int | bytes | str


# ---------------------------------------------------------------------------- encoding


def _head(major: int, argument: int) -> bytes:
    if argument < 24:
        return bytes([major << 5 | argument])
    if argument <= 0xFF:
        return bytes([major << 5 | 24, argument])
    if argument <= 0xFFFF:
        return bytes([major << 5 | 25]) + argument.to_bytes(2, "big")
    if argument <= 0xFFFFFFFF:
        return bytes([major << 5 | 26]) + argument.to_bytes(4, "big")
    return bytes([major << 5 | 27]) + argument.to_bytes(8, "big")


def _float(value: float) -> bytes:
    """The shortest of half, single and double precision that holds ``value`` exactly."""
    if math.isnan(value):
        return b"\xf9\x7e\x00"
    for initial, form in ((0xF9, ">e"), (0xFA, ">f")):
        try:
            packed = struct.pack(form, value)
        except OverflowError:
            continue
        if struct.unpack(form, packed)[0] == value:
            return bytes([initial]) + packed
    return b"\xfb" + struct.pack(">d", value)


def _encode(value: object, out: list[bytes], depth: int) -> None:
    if depth > 64:
        raise TypeError("value nests too deeply to encode")
    kind = type(value)
    # The exact built-in types our messages are made of first: a type test costs far less
    # than the isinstance checks against ABCs below, which handle everything else
    # (subclasses, enums, other mappings and sequences) as before. Same bytes either way.
    if kind is int and 0 <= value <= _UINT64_MAX:  # type: ignore[operator]
        out.append(_head(0, value))  # type: ignore[arg-type]
    elif kind is bytes:
        out.append(_head(2, len(value)))  # type: ignore[arg-type]
        out.append(value)  # type: ignore[arg-type]
    elif kind is str:
        data = value.encode("utf-8")  # type: ignore[attr-defined]
        out.append(_head(3, len(data)))
        out.append(data)
    elif kind is dict:
        _encode_map(value, out, depth)  # type: ignore[arg-type]
    elif kind is list or kind is tuple:
        _encode_array(value, out, depth)  # type: ignore[arg-type]
    elif value is False:
        out.append(b"\xf4")
    elif value is True:
        out.append(b"\xf5")
    elif value is None:
        out.append(b"\xf6")
    elif isinstance(value, int):
        if 0 <= value <= _UINT64_MAX:
            out.append(_head(0, value))
        elif -(1 << 64) <= value < 0:
            out.append(_head(1, -1 - value))
        else:  # a bignum: tag 2 (positive) or 3 (negative), magnitude without leading zeros
            magnitude = value if value > 0 else -1 - value
            data = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
            if len(data) > MAX_BIGNUM_BYTES:
                raise TypeError(f"integer does not fit in {MAX_BIGNUM_BYTES} bytes")
            out.append(b"\xc2" if value > 0 else b"\xc3")
            out.append(_head(2, len(data)))
            out.append(data)
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(_head(2, len(data)))
        out.append(data)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.append(_head(3, len(data)))
        out.append(data)
    elif isinstance(value, Mapping):
        _encode_map(value, out, depth)
    elif isinstance(value, Sequence):
        _encode_array(value, out, depth)
    else:
        raise TypeError(f"cannot encode a {type(value).__name__} as CBOR")


def _encode_map(value: Mapping[Any, Any], out: list[bytes], depth: int) -> None:
    items: list[tuple[bytes, bytes]] = []
    for key, item in value.items():
        if isinstance(key, bool) or not isinstance(key, (int, bytes, str)):
            raise TypeError("map keys must be integers, byte strings or text")
        encoded_key: list[bytes] = []
        _encode(key, encoded_key, depth + 1)
        encoded_item: list[bytes] = []
        _encode(item, encoded_item, depth + 1)
        items.append((b"".join(encoded_key), b"".join(encoded_item)))
    items.sort(key=lambda pair: pair[0])
    for (before, _), (after, _) in itertools.pairwise(items):
        if before == after:
            raise TypeError("map has two equal keys")
    out.append(_head(5, len(items)))
    for encoded_key_bytes, encoded_item_bytes in items:
        out.append(encoded_key_bytes)
        out.append(encoded_item_bytes)


def _encode_array(value: Sequence[Any], out: list[bytes], depth: int) -> None:
    out.append(_head(4, len(value)))
    for item in value:
        _encode(item, out, depth + 1)


def dumps(value: object) -> bytes:
    """Deterministic CBOR of ``value`` (integers, bytes, text, lists, maps, bools, None).

    Raises TypeError for anything else: that is a bug of the caller, not bad input.
    """
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


# ---------------------------------------------------------------------------- decoding


class _Decoder:
    __slots__ = ("data", "items_left", "max_depth", "position")

    def __init__(self, data: bytes, max_depth: int, max_items: int) -> None:
        self.data = data
        self.position = 0
        self.items_left = max_items
        self.max_depth = max_depth

    def fail(self, what: str) -> CborError:
        return CborError(
            f"not deterministic CBOR of the expected kind: {what} at byte {self.position}"
        )

    def take(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise self.fail("truncated item")
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def head(self) -> tuple[int, int, int]:
        """(major type, additional information, argument), the argument in shortest form."""
        if self.position >= len(self.data):
            raise self.fail("truncated item")
        initial = self.data[self.position]
        self.position += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info > 27:
            raise self.fail("indefinite length or reserved value")
        if major == 7:
            return major, info, 0  # a float: item() reads it
        size = 1 << (info - 24)
        argument = int.from_bytes(self.take(size), "big")
        shortest = 24 if size == 1 else 1 << (4 * size)  # 24, 0x100, 0x10000, 0x100000000
        if argument < shortest:
            raise self.fail("argument not in its shortest form")
        return major, info, argument

    def float(self, info: int) -> float:
        start = self.position - 1
        if info == 24:
            raise self.fail("simple value")
        size, form = {25: (2, ">e"), 26: (4, ">f"), 27: (8, ">d")}[info]
        value: float = struct.unpack(form, self.take(size))[0]
        if _float(value) != self.data[start : self.position]:
            self.position = start
            raise self.fail("floating-point number not in its shortest form")
        return value

    def count_item(self) -> None:
        self.items_left -= 1
        if self.items_left < 0:
            raise self.fail("too many data items")

    def item(self, depth: int) -> CborValue:
        self.count_item()
        start = self.position
        major, info, argument = self.head()
        if major == 0:
            return argument
        if major == 1:
            return -1 - argument
        if major == 2:
            return self.take(argument)
        if major == 3:
            raw = self.take(argument)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self.position = start
                raise self.fail("text string that is not UTF-8") from None
        if major in (4, 5):
            if depth >= self.max_depth:
                raise self.fail("nesting too deep")
            # Each element takes at least one byte: a count above what is left is a lie.
            if argument * (2 if major == 5 else 1) > len(self.data) - self.position:
                raise self.fail("more elements announced than bytes left")
            if major == 4:
                return [self.item(depth + 1) for _ in range(argument)]
            return self.map(argument, depth + 1)
        if major == 6:
            if argument not in (2, 3):
                self.position = start
                raise self.fail("tag")
            return self.bignum(negative=argument == 3)
        if info >= 24:
            return self.float(info)
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        self.position = start
        raise self.fail("simple value")

    def bignum(self, *, negative: bool) -> int:
        start = self.position
        major, _, length = self.head()
        if major != 2 or not 8 < length <= MAX_BIGNUM_BYTES:
            self.position = start
            raise self.fail("bignum that is not a byte string of 9..64 bytes")
        data = self.take(length)
        if data[0] == 0:
            self.position = start
            raise self.fail("bignum with a leading zero byte")
        magnitude = int.from_bytes(data, "big")
        return -1 - magnitude if negative else magnitude

    def map(self, count: int, depth: int) -> dict[CborKey, CborValue]:
        result: dict[CborKey, CborValue] = {}
        previous = b""
        for _ in range(count):
            key_start = self.position
            self.count_item()
            major, _, argument = self.head()
            if major == 0:
                key: CborKey = argument
            elif major == 1:
                key = -1 - argument
            elif major == 2:
                key = self.take(argument)
            elif major == 3:
                try:
                    key = self.take(argument).decode("utf-8")
                except UnicodeDecodeError:
                    self.position = key_start
                    raise self.fail("text string that is not UTF-8") from None
            else:
                self.position = key_start
                raise self.fail("map key that is not an integer, byte string or text")
            encoded_key = self.data[key_start : self.position]
            if encoded_key <= previous:
                self.position = key_start
                raise self.fail("map keys not in strictly increasing order")
            previous = encoded_key
            result[key] = self.item(depth)
        return result


def loads(
    raw: bytes,
    *,
    max_size: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int | None = None,
) -> Any:
    """Exactly one deterministic CBOR item of at most ``max_size`` bytes, else CborError.

    The value is a :data:`CborValue` (typed ``Any``, like ``cbor2.loads``: the caller
    checks its shape). The work is linear in ``len(raw)``; only :class:`CborError` escapes.
    """
    if not isinstance(raw, (bytes, bytearray)):
        raise CborError("CBOR input must be bytes")
    if len(raw) > max_size:
        raise CborError(f"CBOR item of {len(raw)} bytes exceeds {max_size}")
    decoder = _Decoder(bytes(raw), max_depth, max(len(raw), 1) if max_items is None else max_items)
    try:
        value = decoder.item(0)
    except RecursionError:  # only if max_depth was set far above any message of ours
        raise CborError("CBOR item nests too deeply") from None
    if decoder.position != len(raw):
        raise decoder.fail("bytes after the item")
    return value


def decode_array(raw: object, limit: int, error: type[BleprovError], what: str) -> list[Any]:
    """A record that is one CBOR array of at most ``limit`` bytes, or ``error`` naming
    ``what``: how every stored record and attestation is read."""
    if not isinstance(raw, bytes | bytearray):
        raise error(f"{what} must be bytes")
    raw = bytes(raw)
    if len(raw) > limit:
        raise error(f"{what} of {len(raw)} bytes exceeds {limit}")
    try:
        value = loads(raw, max_size=limit)
    except CborError as exc:
        raise error(f"{what}: {exc}") from None
    if not isinstance(value, list):
        raise error(f"{what} must be a CBOR array")
    return list(value)
