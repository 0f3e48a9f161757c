"""docs/simulated-wifi.md's format table and state document are what the parser reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.network.simulated import (
    SimulatedConfigError,
    _decode_state,
    _encode_state,
    parse_environment,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "simulated-wifi.md"

#: A value for every documented key (the table's rows), each within its documented range.
VALUES = {
    "ssid": "Home",
    "bssid": "02:00:00:00:00:01",
    "channel": 6,
    "rssi": -40,
    "security": "wpa2-personal",
    "passphrase": "correct horse",
    "hidden": False,
    "join_delay": 0.5,
    "ip_address": "192.168.1.60",
    "behaviour": "connect",
    "fail_first": 1,
    "fail_first_with": "dhcp-failed",
}


def _documented_keys() -> dict[str, set[str]]:
    """Table -> keys, from the format table's first column."""
    text = DOC.read_text()
    table = text[text.index("| table / key |") : text.index("**State document.**")]
    keys: dict[str, set[str]] = {}
    for cell in re.findall(r"^\| `([^`]+)`", table, re.M):
        if cell.startswith("["):
            name, _, key = cell.partition("] ")
            keys.setdefault(name.strip("[]"), set()).update(k for k in [key] if k)
        else:
            keys.setdefault("access_points", set()).add(cell)
    return keys


def test_every_documented_key_is_read() -> None:
    keys = _documented_keys()
    assert set(keys["access_points"]) == set(VALUES)
    config = {
        "scan": {key: 1.0 for key in keys["scan"]},
        "dhcp": {"ip_address": "192.168.1.50"},
        "device": {
            "connected": "Home",
            "saved": {"ssid": "Home", "security": "wpa2-personal", "psk_hex": "00" * 32},
        },
        "access_points": [VALUES],
    }
    environment = parse_environment(config)
    assert environment.access_points[0].fail_first == 1


@pytest.mark.parametrize("table", ["scan", "dhcp", "device", "access_points"])
def test_an_undocumented_key_is_an_error(table: str) -> None:
    config: dict[str, object] = {"access_points": [dict(VALUES)]}
    if table == "access_points":
        config["access_points"] = [dict(VALUES, colour="blue")]
    else:
        config[table] = {"colour": "blue"}
    with pytest.raises(SimulatedConfigError, match="colour"):
        parse_environment(config)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ssid", "x" * 33),
        ("passphrase", "short"),
        ("passphrase", "x" * 64),
        ("channel", 234),
        ("rssi", 21),
        ("bssid", "02-00-00-00-00-01"),
        ("fail_first", 1_000_001),
        ("fail_first_with", "connect"),
        ("join_delay", -1),
    ],
)
def test_the_documented_ranges_are_enforced(key: str, value: object) -> None:
    with pytest.raises(SimulatedConfigError):
        parse_environment({"access_points": [dict(VALUES, **{key: value})]})


def test_the_state_document_is_as_documented() -> None:
    text = DOC.read_text()
    example = text[
        text.index("```json") + len("```json") : text.index("```", text.index("```json") + 7)
    ]
    documented = json.loads(example)
    saved = _decode_state(json.dumps(documented).encode(), "doc")
    assert saved == WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase="correct horse")
    written = _encode_state(saved)
    assert json.loads(written) == documented
    assert written == json.dumps(documented, indent=2, sort_keys=True).encode() + b"\n"
