"""docs/cloud-binding.md's envelope tables are the broker adapter's wire values."""

from __future__ import annotations

import re
from pathlib import Path

from bleprov.broker import wire

DOC = Path(__file__).resolve().parents[2] / "docs" / "cloud-binding.md"


def _rows(marker: str) -> list[list[str]]:
    text = DOC.read_text()
    block = text[text.index(f"<!-- {marker} -->") : text.index(f"<!-- /{marker} -->")]
    lines = [line for line in block.splitlines() if line.startswith("| ")][1:]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]


def test_the_kind_table_is_the_code() -> None:
    documented = {}
    for value, name, direction, _ in _rows("broker-envelope"):
        suffix = (
            ""
            if name.strip("`") in ("OPEN", "ACCEPT")
            else ("_UP" if direction == "host -> device" else "_DOWN")
        )
        documented[name.strip("`") + suffix] = int(value, 16)
        kinds = wire.UP_KINDS if direction == "host -> device" else wire.DOWN_KINDS
        assert wire.Kind(int(value, 16)) in kinds
    assert documented == {k.name: int(k) for k in wire.Kind}


def test_the_close_reasons_are_the_code() -> None:
    documented = {name.strip("`"): int(value, 16) for value, name, _ in _rows("broker-close")}
    assert documented == {r.name: int(r) for r in wire.CloseReason}
    assert wire.CLOSE_BODY == 1


def test_the_session_id_form_is_the_code() -> None:
    text = DOC.read_text()
    assert "exactly 32 lower-case hex digits (`[0-9a-f]{32}`)" in text
    assert wire._SESSION_ID.pattern == "[0-9a-f]{32}"
    assert re.fullmatch(wire._SESSION_ID.pattern, wire.new_session_id())
    assert f"`{wire.DEFAULT_PREFIX}`" in text
