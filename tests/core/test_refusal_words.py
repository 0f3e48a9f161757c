"""Every wire error code a device may refuse or close with reads as words (issue 13):
what happened and what to do, never a bare ``0x44``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bleprov.core.errors import CODE_WORDS, PeerReset, code_words
from bleprov.core.session.host import refusal

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented_codes() -> list[int]:
    """The codes of docs/protocol.md's section 5, "Error codes"."""
    text = PROTOCOL.read_text()
    section = text[text.index("## 5. Error codes") : text.index("## 6. Session messages")]
    return [int(code, 16) for code in re.findall(r"^\| (0x[0-9A-Fa-f]{2}) \|", section, re.M)]


def test_the_table_was_read() -> None:
    assert len(documented_codes()) > 30


@pytest.mark.parametrize("code", documented_codes(), ids=lambda c: f"{c:#04x}")
def test_every_documented_code_has_words(code: int) -> None:
    assert code in CODE_WORDS
    message = str(refusal(code, 30))
    assert "0x" not in message
    assert ":" in message or "retry in" in message  # what happened: what to do


def test_button_and_mode_refusals_say_what_to_do() -> None:
    assert "press its button" in str(refusal(0x44, 0))
    assert "does not offer this mode" in str(refusal(0x40, 0))


def test_an_unknown_code_is_named_with_advice() -> None:
    assert "0x9f" in code_words(0x9F) and "try again" in code_words(0x9F)


def test_a_peer_reset_reads_as_words() -> None:
    assert "0x" not in str(PeerReset(0x15))
