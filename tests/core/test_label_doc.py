"""docs/protocol.md section 10's printed-key and manual-code rules are the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bleprov.core.advertising import OobMode
from bleprov.core.onboarding import (
    CROCKFORD_ALPHABET,
    OnboardingPayload,
    PayloadError,
    encode_manual_code,
    encode_printed_key,
    parse_printed_key,
    passcode_password,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TEXT = DOC.read_text()


def _payload(passcode: int | None) -> OnboardingPayload:
    modes = OobMode.QR | OobMode.CODE
    return OnboardingPayload(
        discriminator=0xFFF,
        modes=modes,
        device_public_key=b"\xff" * 32,
        label_secret=b"\xff" * 16,
        passcode=passcode,
    )


def test_the_printed_key_padding_leads_and_the_lengths_are_as_documented() -> None:
    assert f"`{CROCKFORD_ALPHABET}`" in TEXT
    short = encode_printed_key(_payload(None)).replace("-", "")
    long = encode_printed_key(_payload(48613702)).replace("-", "")
    assert (len(short), len(long)) == (83, 89)
    assert "(83 or 89 symbols)" in TEXT
    assert CROCKFORD_ALPHABET.index(short[0]) < 8  # its two leading bits are the padding
    # A first symbol that sets a padding bit is refused.
    with pytest.raises(PayloadError, match="first character"):
        parse_printed_key("8" + short[1:])


def test_the_manual_code_example_and_the_zero_padded_passcode() -> None:
    example = re.search(r"discriminator 0xF00 gives `(\d{4}-\d{4}-\d{3})`", TEXT)
    assert example is not None
    assert encode_manual_code(0xF00, 4096) == example.group(1)
    assert passcode_password(4096) == b"00004096"
