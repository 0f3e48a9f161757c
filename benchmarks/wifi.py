"""The simulated Wi-Fi the benchmarks' devices see (kept light: the device process imports it)."""

from __future__ import annotations

from typing import Any, Final

PASSPHRASE: Final = "correct horse battery"


def environment(access_points: int, *, join_delay: float = 0.0) -> dict[str, Any]:
    """A simulated Wi-Fi: ``home`` plus neighbours, scans answered at once."""
    aps: list[dict[str, Any]] = [
        {
            "ssid": "home",
            "bssid": "02:00:00:00:00:01",
            "channel": 6,
            "rssi": -40,
            "security": "wpa2-personal",
            "passphrase": PASSPHRASE,
            "join_delay": join_delay,
        },
    ]
    aps += [
        {
            "ssid": f"neighbour-{i:03d}",
            "bssid": f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
            "channel": 1 + i % 11,
            "rssi": -60 - i % 30,
            "security": "wpa3-personal",
            "passphrase": "not ours 123",
        }
        for i in range(2, access_points + 1)
    ]
    return {"access_points": aps, "scan": {"duration": 0.0}}
