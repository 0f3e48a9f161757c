"""Advertised service data and the info characteristic: exact layouts, strict decoders."""

from __future__ import annotations

import contextlib
import re

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bleprov.core.advertising import (
    AdvertisedFlags,
    DeviceInfo,
    DeviceState,
    OobMode,
    ServiceData,
    advertising_data,
    decode_service_data,
    encode_service_data,
    format_discriminator,
    parse_discriminator,
    scan_response_data,
)
from bleprov.core.errors import MalformedData
from bleprov.core.profile import default_profile

INFO = DeviceInfo(
    protocol_version=2,
    state=DeviceState.VIRGIN,
    modes=OobMode.QR | OobMode.CODE,
    discriminator=0x5A5,
    max_message=65536,
    rx_window=16,
    profile_version=1,
)


def test_service_data_layout_is_exact() -> None:
    data = ServiceData(1, DeviceState.PEER_BOUND, OobMode.COMPARE, 0xABC, AdvertisedFlags.BUSY)
    assert encode_service_data(data) == bytes([1, 2, 4, 0x0A, 0xBC, 2])


@given(
    state=st.sampled_from(list(DeviceState)),
    modes=st.integers(0, 15),
    disc=st.integers(0, 0xFFF),
    flags=st.integers(0, 3),
)
def test_service_data_round_trip(state: DeviceState, modes: int, disc: int, flags: int) -> None:
    data = ServiceData(1, state, OobMode(modes), disc, AdvertisedFlags(flags))
    assert decode_service_data(encode_service_data(data)) == data


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes([1, 0, 0, 0, 0]),  # short
        bytes([1, 0, 0, 0, 0, 0, 0]),  # long
        bytes([0, 0, 0, 0, 0, 0]),  # version 0
        bytes([1, 9, 0, 0, 0, 0]),  # unknown state
        bytes([1, 0, 0x20, 0, 0, 0]),  # unknown mode bit (0x10 is passkey)
        bytes([1, 0, 0, 0x10, 0, 0]),  # discriminator over 12 bits
        bytes([1, 0, 0, 0, 0, 0x80]),  # unknown flag
    ],
)
def test_malformed_service_data(raw: bytes) -> None:
    with pytest.raises(MalformedData):
        decode_service_data(raw)


def test_advertising_data_is_flags_then_service_data() -> None:
    sd = encode_service_data(INFO.service_data())
    ad = advertising_data(sd)
    assert len(ad) == 27
    assert ad[:3] == bytes([2, 0x01, 0x06])
    assert ad[3:5] == bytes([1 + 16 + 6, 0x21])
    uuid_le = bytes.fromhex(default_profile().service_uuid.replace("-", ""))[::-1]
    assert ad[5:21] == uuid_le
    assert ad[21:] == sd


def test_scan_response_carries_uuid_and_short_name() -> None:
    sr = scan_response_data("bleprov-device-with-long-name")
    assert len(sr) <= 31
    assert sr[1] == 0x07
    assert sr[18:20] == bytes([9, 0x08])
    assert sr[20:] == b"bleprov-"


def test_info_round_trip_and_is_canonical_cbor() -> None:
    raw = INFO.encode()
    assert DeviceInfo.decode(raw) == INFO
    assert raw == cbor2.dumps(cbor2.loads(raw), canonical=True)


def test_info_ignores_unknown_keys() -> None:
    value = cbor2.loads(INFO.encode())
    value[99] = "later version"
    assert DeviceInfo.decode(cbor2.dumps(value)) == INFO


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({1: 1}),
        cbor2.dumps({1: 1, 2: 0, 3: 0, 4: 0x1000, 5: 65536, 6: 16, 7: 1}),
        cbor2.dumps({1: 1, 2: 0, 3: 0, 4: 1, 5: 65536, 6: 0, 7: 1}),
        cbor2.dumps({1: 1, 2: 7, 3: 0, 4: 1, 5: 65536, 6: 16, 7: 1}),
        cbor2.dumps({1: True, 2: 0, 3: 0, 4: 1, 5: 65536, 6: 16, 7: 1}),
        b"\x00" * 600,
    ],
)
def test_malformed_info(raw: bytes) -> None:
    with pytest.raises(MalformedData):
        DeviceInfo.decode(raw)


@given(st.binary(max_size=80))
def test_info_decoder_never_crashes(raw: bytes) -> None:
    with contextlib.suppress(MalformedData):
        DeviceInfo.decode(raw)


def test_an_owned_device_is_one_that_offers_no_factory_mode() -> None:
    from bleprov.core.advertising import AdvertisedFlags, DeviceState, OobMode, ServiceData

    def data(state: DeviceState, modes: OobMode, flags: AdvertisedFlags) -> ServiceData:
        return ServiceData(1, state, modes, 0x123, flags)

    none, window = AdvertisedFlags.NONE, AdvertisedFlags.WINDOW_OPEN
    assert data(DeviceState.PEER_BOUND, OobMode(0), none).owned
    assert data(DeviceState.ENROLLED, OobMode.CODE, window).owned
    # Set up but offering its label (the owner released it): not owned.
    assert not data(DeviceState.PEER_BOUND, OobMode.QR, none).owned
    assert not data(DeviceState.VIRGIN, OobMode(0), none).owned


@pytest.mark.parametrize(
    ("typed", "value"),
    [("0x874", 0x874), ("0X874", 0x874), ("0xf00", 0xF00), (" 0x000 ", 0), ("2164", 0x874),
     ("4095", 0xFFF), ("0xFFF", 0xFFF), ("0002164", 0x874)],
)  # fmt: skip
def test_a_discriminator_is_typed_as_on_the_label_or_in_decimal(typed: str, value: int) -> None:
    assert parse_discriminator(typed) == value


@pytest.mark.parametrize(
    ("typed", "says"),
    [("F00", "0xF00"), ("874A", "0x874A"), ("0x", "not a discriminator"),
     ("0x1000", "0xFFF"), ("4096", "0 to 4095"), ("-1", "not a discriminator"),
     ("0x-1", "not a discriminator"), ("kitchen", "e.g. 0x874"), ("", "not a discriminator"),
     ("٣", "not a discriminator"), ("9" * 5000, "too long")],
)  # fmt: skip
def test_anything_else_is_refused_saying_how(typed: str, says: str) -> None:
    with pytest.raises(MalformedData, match=re.escape(says)):
        parse_discriminator(typed)


def test_a_discriminator_is_shown_as_the_label_prints_it() -> None:
    assert format_discriminator(0x874) == "0x874"
    assert format_discriminator(0x1F) == "0x01F"
    assert all(parse_discriminator(format_discriminator(v)) == v for v in range(4096))
