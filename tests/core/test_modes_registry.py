"""Pairing modes are pluggable: a mode is one engine behind the registry.

The proof: a toy fifth mode, defined here and nowhere in bleprov (a fixed-PSK mode on
the Noise NKpsk0 handshake qr uses), registers itself and runs a whole session host <->
device through the sans-IO machines; the advertisement, the info value, HELLO and the
CLI's mode words accept it; without registration every receiver refuses its bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import pytest

from bleprov.core import mode_bits
from bleprov.core.advertising import DeviceInfo, OobMode, decode_service_data, describe
from bleprov.core.attempts import Credential
from bleprov.core.errors import LocalProtocolError, MalformedData
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session import messages
from bleprov.core.session.modes import registry
from bleprov.core.session.modes.base import (
    DeviceHandshake,
    DeviceKeys,
    HostHandshake,
    ModeEngine,
    NoiseDevice,
    NoiseHost,
    OobInput,
    Prompt,
)
from tests.core.test_session import (
    ALL,
    IDENTITY,
    MANUFACTURER,
    NOW,
    ended,
    established,
    exchange_application_data,
    info,
    make_device,
    make_host,
    pump,
)

TOY_BIT: Final = 0x20
#: The toy's secret: the same for every device (a toy, never a product feature).
FIXED_PSK: Final = bytes(range(32))


@dataclass(frozen=True)
class FixedPskSecret:
    """What the toy's host holds: the device's static key (the PSK is fixed)."""

    device_static_public: bytes


class FixedPskMode:
    """Noise NKpsk0 with a fixed PSK: the device is authenticated by its static key."""

    mode: Final = mode_bits.Mode(TOY_BIT)
    name: Final = "fixedpsk"
    credential: Final = Credential.LABEL
    oob: Final = OobInput.LABEL
    prompt: Final = Prompt.NONE
    device_confirms: Final = False
    button_window: Final = False

    def host(self, secret: object, info: DeviceInfo, info_raw: bytes) -> HostHandshake:
        if not isinstance(secret, FixedPskSecret):
            raise LocalProtocolError("fixedpsk mode needs the device's static key")
        return NoiseHost(
            "NKpsk0",
            self.mode,
            info_raw,
            remote_static=secret.device_static_public,
            psk=FIXED_PSK,
        )

    def device(self, keys: DeviceKeys, info_raw: bytes) -> DeviceHandshake:
        return NoiseDevice(
            "NKpsk0", self.mode, info_raw, static_key=keys.noise_static_key, psk=FIXED_PSK
        )


TOY: Final[ModeEngine] = FixedPskMode()


@pytest.fixture
def toy() -> Iterator[ModeEngine]:
    registry.register(TOY)
    try:
        yield TOY
    finally:
        registry.unregister(TOY.mode)


def test_a_registered_fifth_mode_runs_a_session_host_to_device(toy: ModeEngine) -> None:
    modes = OobMode(int(ALL) | TOY_BIT)
    device = make_device(modes=modes)
    host = make_host(
        toy.mode, FixedPskSecret(IDENTITY.noise_static_public_key), device_info=info(modes)
    )
    first = host.start(0.0)
    hello = messages.decode(next(e.data for e in first if isinstance(e, hst.SendMessage)))
    assert isinstance(hello, messages.Hello) and int(hello.mode) == TOY_BIT

    run = pump(host, device, first)

    done = established(run)
    assert done is not None and done.mode == toy.mode
    assert done.attestation.device_id == IDENTITY.device_id
    assert dev.Authenticated(toy.mode, Credential.LABEL) in run.device_events
    assert host.is_open and device.is_open
    exchange_application_data(host, device)


def test_the_toy_mode_fails_against_another_device_key(toy: ModeEngine) -> None:
    """It authenticates: a host holding another static key gets no session."""
    modes = OobMode(int(ALL) | TOY_BIT)
    device = make_device(modes=modes)
    other = MANUFACTURER.issue_device(now=NOW).noise_static_public_key
    host = make_host(toy.mode, FixedPskSecret(other), device_info=info(modes))
    run = pump(host, device, host.start(0.0))
    assert established(run) is None
    assert ended(run.device_events) is not None


def test_the_device_refuses_the_toy_mode_its_policy_lacks(toy: ModeEngine) -> None:
    device = make_device(modes=ALL)
    host = make_host(
        toy.mode,
        FixedPskSecret(IDENTITY.noise_static_public_key),
        device_info=info(OobMode(int(ALL) | TOY_BIT)),
    )
    run = pump(host, device, host.start(0.0))
    assert isinstance(ended(run.device_events), dev.ModeNotAllowed)


def test_advertisement_info_and_words_follow_the_registry(toy: ModeEngine) -> None:
    modes = OobMode(int(ALL) | TOY_BIT)
    data = DeviceInfo.decode(info(modes)).service_data()
    assert int(data.modes) == int(modes)
    assert describe(data).endswith("modes qr, code, compare, button, passkey, fixedpsk")
    assert mode_bits.listed_names()[-1] == "fixedpsk"
    assert mode_bits.mode_by_name("FixedPSK") == toy.mode
    assert toy.mode.label == "fixedpsk"


def test_an_unregistered_mode_bit_is_refused_everywhere() -> None:
    raw_info = info(OobMode(int(ALL) | TOY_BIT))
    with pytest.raises(MalformedData, match="modes"):
        DeviceInfo.decode(raw_info)
    with pytest.raises(MalformedData, match="unknown mode"):
        decode_service_data(bytes([1, 0, TOY_BIT, 0, 0, 0]))
    hello = messages.encode(messages.Hello(mode_bits.Mode(TOY_BIT), b""))
    with pytest.raises(MalformedData, match="unknown mode"):
        messages.decode(hello)
    with pytest.raises(KeyError):
        mode_bits.mode_by_name("fixedpsk")


def test_the_registry_holds_the_five_built_in_modes_as_before() -> None:
    """What the machines used to list by hand, now read from the engines."""
    by_name = {e.name: e for e in registry.engines()}
    assert list(by_name) == ["qr", "code", "compare", "passkey", "button"]
    assert {e.name: (int(e.mode), e.credential) for e in registry.engines()} == {
        "qr": (0x01, Credential.LABEL),
        "code": (0x02, Credential.CODE),
        "compare": (0x04, Credential.COMPARE),
        "button": (0x08, Credential.BUTTON),
        "passkey": (0x10, Credential.PASSKEY),
    }
    assert [e.name for e in registry.engines() if e.device_confirms] == ["compare"]
    assert [e.name for e in registry.engines() if e.button_window] == ["button"]
    assert by_name["compare"].prompt is Prompt.CONFIRM_NUMBER
    assert by_name["passkey"].prompt is Prompt.TYPE_NUMBER
    assert dev.offered_modes(int(ALL), device_confirms=False) == int(ALL) & ~0x04
    with pytest.raises(ValueError, match="built-in"):
        registry.unregister(mode_bits.Mode.QR)


def test_a_taken_bit_or_name_cannot_be_registered_twice(toy: ModeEngine) -> None:
    with pytest.raises(ValueError, match="registered"):
        registry.register(FixedPskMode())
    with pytest.raises(ValueError, match="taken"):
        mode_bits.register_bit(0x40, "qr")
