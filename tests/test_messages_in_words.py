"""Messages a person reads name things in words (issue 13): no Python repr, no raw enum
name, no pydantic wording."""

from __future__ import annotations

from bleprov.broker.client import BrokerConfig
from bleprov.cli import plain_words
from bleprov.core.advertising import (
    AdvertisedFlags,
    DeviceState,
    OobMode,
    ServiceData,
    describe,
)
from bleprov.core.wifi import JoinFailure
from bleprov.core.words import words


def test_a_broker_reads_as_its_url() -> None:
    config = BrokerConfig.from_url("mqtt://broker.example:1883")
    assert str(config) == "mqtt://broker.example:1883"
    assert f"announced on {config}" == "announced on mqtt://broker.example:1883"


def test_an_advertisement_reads_as_words() -> None:
    data = ServiceData(
        1, DeviceState.PEER_BOUND, OobMode.QR | OobMode.CODE, 311, AdvertisedFlags.WINDOW_OPEN
    )
    assert describe(data) == "discriminator 0x137, peer bound, modes qr, code, window open"


def test_enum_members_read_as_words() -> None:
    assert words(JoinFailure.WRONG_PASSWORD) == "wrong password"


def test_typer_conversion_errors_read_as_words() -> None:
    pydantic = "Input should be a valid integer, unable to parse string as an integer"
    assert plain_words(pydantic) == "give a whole number"
    assert plain_words("Input should be a valid number, unable to parse") == "give a number"
    assert plain_words("Input should be greater than or equal to 23") == (
        "it should be greater than or equal to 23"
    )
    assert plain_words("Value error, 'king' is not one of 'admin', 'member'.") == (
        "'king' is not one of 'admin', 'member'."
    )
    assert plain_words("Missing option '--name'.") == "Missing option '--name'."
