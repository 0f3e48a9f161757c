"""What the end-to-end tests share: one manufacturer, the hosts' trust in it, cheap KDF
costs, and a one-network simulated Wi-Fi whose password is known."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.identity import IntermediateCache, Manufacturer, TrustPolicy
from bleprov.core.session import host as hst
from bleprov.core.wifi import WifiCredentials, WifiSecurity

NOW = datetime.now(UTC)
MANUFACTURER = Manufacturer.create("Acme", now=NOW)
#: Hosts that know the manufacturer's intermediate (the steady state), so a session's
#: messages do not depend on which test ran first; the first-contact fetch is
#: tests/core/test_protocol_v2.py's.
TRUST = hst.Trust(
    (MANUFACTURER.root_certificate.public_bytes(Encoding.DER),),
    TrustPolicy.REFUSE,
    IntermediateCache([MANUFACTURER.intermediate_certificate.public_bytes(Encoding.DER)]),
)
#: Labels' and users' KDFs at a test cost: the suite measures behaviour, not scrypt.
CHEAP = ScryptCost(n=16, r=1, p=1)
PASSWORD = "correct horse battery"  # the simulated network's, not a secret
HOME = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSWORD)
ENVIRONMENT: dict[str, Any] = {
    "access_points": [
        {
            "ssid": "home",
            "bssid": "02:00:00:00:00:01",
            "channel": 6,
            "rssi": -40,
            "security": "wpa2-personal",
            "passphrase": PASSWORD,
        }
    ]
}
