"""The strict CBOR codec: what it accepts, what it refuses, and that its work is linear."""

from __future__ import annotations

import time

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core import cbor
from bleprov.core.errors import MalformedData

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(1 << 200), 1 << 200),
        st.binary(max_size=40),
        st.text(max_size=40),
        st.floats(allow_nan=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.integers(0, 23), inner, max_size=5),
        st.dictionaries(st.text(max_size=20), inner, max_size=5),
        st.dictionaries(st.binary(max_size=20), inner, max_size=5),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_dumps_matches_cbor2_canonical_and_round_trips(value: object) -> None:
    """Same bytes as the encoder the wire was written with, so the wire does not change."""
    encoded = cbor.dumps(value)
    assert encoded == cbor2.dumps(value, canonical=True)
    assert cbor.loads(encoded, max_size=len(encoded), max_depth=16) == value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_cbor_error(raw: bytes) -> None:
    try:
        value = cbor.loads(raw, max_size=64)
    except cbor.CborError:
        return
    assert cbor.dumps(value) == raw  # accepted means deterministic


# The minimal inputs the fuzzing campaign found (issue 15, F1 and F2).
SHARED_REFERENCE = bytes.fromhex("d81c81d81d00")  # tag 28 [tag 29 (0)]: refers to itself
MIME_TAG = bytes.fromhex("d82461")  # tag 36 around a text string
MIME_TAG_5 = bytes.fromhex("d824626161")


def nested_map_keys(levels: int) -> bytes:
    """{{{...{0: 0}...}: 0}: 0}: each level a map whose key is the level below."""
    value = b"\xa1\x00\x00"
    for _ in range(levels):
        value = b"\xa1" + value + b"\x00"
    return value


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (SHARED_REFERENCE, "tag"),
        (MIME_TAG_5, "tag"),
        (bytes.fromhex("c2480100000000000000"), "bignum"),  # fits in 64 bits
        (bytes.fromhex("c249000100000000000000"), "leading zero"),
        (bytes.fromhex("c2187b"), "bignum"),  # tag 2 around an integer
        (bytes.fromhex("c1187b"), "tag"),  # epoch time
        (bytes.fromhex("fa3f800000"), "shortest form"),  # 1.0 in single precision
        (bytes.fromhex("fb7ff8000000000000"), "shortest form"),  # NaN in double precision
        (bytes.fromhex("f818"), "simple value"),
        (bytes.fromhex("f7"), "simple value"),  # undefined
        (bytes.fromhex("1817"), "shortest form"),
        (bytes.fromhex("5f41614162ff"), "indefinite"),
        (bytes.fromhex("a2616201616101"), "increasing order"),
        (bytes.fromhex("a2616101616102"), "increasing order"),  # duplicate key
        (bytes.fromhex("a1800000"), "integer, byte string or text"),  # array key
        (bytes.fromhex("a1f500"), "integer, byte string or text"),  # bool key
        (nested_map_keys(3), "integer, byte string or text"),
        (bytes.fromhex("62c328"), "UTF-8"),
        (bytes.fromhex("9a7fffffff00"), "more elements announced"),
        (bytes.fromhex("0000"), "bytes after"),
        (b"", "truncated"),
        (bytes.fromhex("5a00010000"), "truncated"),
    ],
)
def test_refused_with_a_typed_error(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedData, match=why):
        cbor.loads(raw, max_size=1024)


def test_depth_and_item_bounds() -> None:
    deep = b"\x81" * 9 + b"\x00"
    with pytest.raises(cbor.CborError, match="too deep"):
        cbor.loads(deep, max_size=100)
    assert cbor.loads(deep, max_size=100, max_depth=9) is not None
    many = b"\x98\x64" + b"\x00" * 100
    with pytest.raises(cbor.CborError, match="too many"):
        cbor.loads(many, max_size=1000, max_items=100)
    assert len(cbor.loads(many, max_size=1000, max_items=101)) == 100  # type: ignore[arg-type]
    with pytest.raises(cbor.CborError, match="exceeds"):
        cbor.loads(b"\x00" * 10, max_size=9)


def test_nested_map_keys_cost_linear_time() -> None:
    """F2: 49 bytes of maps nested as keys took 14.7 s in the old re-encode check."""
    started = time.perf_counter()
    for levels in (20, 2000):
        with pytest.raises(cbor.CborError):
            cbor.loads(nested_map_keys(levels), max_size=10_000, max_depth=10_000)
    assert time.perf_counter() - started < 0.5


def test_encoder_refuses_what_it_cannot_write_deterministically() -> None:
    for value in ({(1,): 1}, {True: 1}, 1 << 512, object()):
        with pytest.raises(TypeError):
            cbor.dumps(value)
