"""ESP-IDF wifi_prov security 2, HomeKit and Matter, modelled on bleprov's link model.

Not run: built from each system's published message flow, message by message, each
size taken from the field layout its source or specification publishes (cited beside
each message). Variable fields take the value stated there (an SSID of 4 bytes, a
12-byte passphrase, 5 access points, as in bleprov's runs). The messages become ATT PDUs
the way each system's BLE transport carries them, and :func:`benchmarks.air.schedule`
and :func:`benchmarks.air.analyse` turn them into round trips, flights, bytes on air
and time exactly as for bleprov's traced PDUs.

Transports:

- ESP-IDF protocomm over BLE (``components/protocomm/src/transports/protocomm_nimble.c``,
  client ``tools/esp_prov/transport/ble_cli.py``): each request is an ATT Write Request
  to the endpoint's characteristic, its answer an ATT Read of the same characteristic (a
  Read Request, then Read Blob Requests for what does not fit in MTU - 1): 2 ATT round
  trips at least per exchange, one flight.
- HAP over BLE (HAP specification R2, non-commercial, HAP-BLE PDUs; write of
  the request PDU, then read of the response PDU, each fragmented with a 2-byte
  continuation header): 2 ATT round trips at least per procedure.
- Matter BTP (Matter Core specification 1.3, "Bluetooth Transport Protocol"): every
  BTP segment from the commissioner is an ATT Write Request on C1, every segment from
  the device an ATT Handle Value Indication on C2, each acknowledged at the ATT layer:
  one ATT round trip per segment; BTP header: flags 1 and sequence number 1, plus the
  message length 2 on a message's first segment and an ack number 1 (taken on every
  first segment: each message acknowledges the peer's last).

GATT set-up (first contact): MTU exchange and a full discovery of a one-service server as
bumble's client does it for bleprov v1 (services 2, characteristics 2, descriptors 3:
:data:`GENERIC_DISCOVERY`), plus what each client adds by its published procedure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from benchmarks.air import (
    CATEGORIES,
    CERTS,
    FRAMING,
    HANDSHAKE,
    OTHER,
    SETUP,
    WIFI,
    Cost,
    LinkModel,
    TracedPdu,
    flights_of,
    schedule,
)
from bleprov.radio.virtual import LL_PAYLOAD_DLE, LL_PAYLOAD_NO_DLE, air_bytes_for

#: ATT round trips of a first-contact discovery before any client-specific step: MTU
#: exchange 1, primary services 2 (Read By Group Type until the Error Response),
#: characteristics 2 (Read By Type), descriptors 3 (Find Information): what bumble's GATT
#: client did against bleprov v1's one service (docs/trace.md, v1).
GENERIC_DISCOVERY: Final = 8


@dataclass(frozen=True)
class Step:
    """One message, host -> device (``up``) or device -> host, ``size`` bytes of the
    system's own encoding, ``certs`` of them certificates; ``waits``: the host waits for
    the device's answer before its next message (False: pipelined)."""

    name: str
    up: bool
    size: int
    category: str
    certs: int = 0
    source: str = ""


@dataclass(frozen=True)
class System:
    name: str
    transport: str  # "write-read", "hap", "btp"
    #: ATT round trips the client adds to :data:`GENERIC_DISCOVERY` before its first message.
    setup_extra: int
    setup_note: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def _s(name: str, up: bool, size: int, category: str, certs: int = 0, source: str = "") -> Step:
    return Step(name, up, size, category, certs, source)


# ---------------------------------------------------------------- ESP-IDF security 2
# Protobuf sizes: a field costs a 1-byte tag, a 1-2 byte length for bytes, its value.
# components/protocomm/proto/session.proto (SessionData: sec_ver, sec2 payload),
# components/protocomm/proto/sec2.proto (S2SessionCmd0/Resp0/Cmd1/Resp1), and
# components/protocomm/src/security/security2.c: SALT_LEN 16, PUBLIC_KEY_LEN 384,
# CLIENT_PROOF_LEN 64, AES-256-GCM with a 12-byte device nonce and a 16-byte tag on
# every later message. wifi_provisioning/proto/wifi_scan.proto, wifi_config.proto,
# wifi_constants.proto for the Wi-Fi messages; esp_prov.py for the order (scan start,
# status, results 4 a page, set config, apply config, get status polled).
_GCM: Final = 16
ESP_SEC2: Final = System(
    "ESP-IDF wifi_prov security 2 (SRP-6a 3072)",
    "write-read",
    setup_extra=5,
    setup_note="esp_prov reads each endpoint's 0x2901 User Description to find it (5 endpoints)",
    steps=(
        _s("proto-ver", True, 3, OTHER, source="protocomm version endpoint: the text 'esp'"),
        _s(
            "proto-ver JSON",
            False,
            62,
            OTHER,
            source='{"prov":{"ver":"v1.1","sec_ver":2,"cap":["wifi_scan"]}} (wifi_prov_mgr.c)',
        ),
        _s(
            "SessionCmd0",
            True,
            8 + 2 + 10 + 3 + 384 + 4,
            HANDSHAKE,
            source="sec2.proto S2SessionCmd0: username (8), client_pubkey A 384",
        ),
        _s(
            "SessionResp0",
            False,
            8 + 3 + 384 + 2 + 16 + 4,
            HANDSHAKE,
            source="S2SessionResp0: status, device_pubkey B 384, device_salt 16",
        ),
        _s(
            "SessionCmd1",
            True,
            8 + 2 + 64 + 2,
            HANDSHAKE,
            source="S2SessionCmd1: client_proof 64 (SHA-512)",
        ),
        _s(
            "SessionResp1",
            False,
            8 + 2 + 2 + 64 + 2 + 12,
            HANDSHAKE,
            source="S2SessionResp1: status, device_proof 64, device_nonce 12",
        ),
        _s("CmdScanStart", True, 12 + _GCM, WIFI, source="wifi_scan.proto CmdScanStart"),
        _s("RespScanStart", False, 4 + _GCM, WIFI),
        _s("CmdScanStatus", True, 4 + _GCM, WIFI),
        _s("RespScanStatus", False, 8 + _GCM, WIFI),
        _s("CmdScanResult (0-3)", True, 8 + _GCM, WIFI, source="4 entries a page"),
        _s(
            "RespScanResult (4 APs)",
            False,
            6 + 4 * 26 + _GCM,
            WIFI,
            source="WiFiScanResult: ssid 4, channel, rssi, bssid 6, auth (26 B each)",
        ),
        _s("CmdScanResult (4)", True, 8 + _GCM, WIFI),
        _s("RespScanResult (1 AP)", False, 6 + 26 + _GCM, WIFI),
        _s(
            "CmdSetConfig",
            True,
            4 + 6 + 14 + _GCM,
            WIFI,
            source="wifi_config.proto CmdSetConfig: ssid 4, passphrase 12",
        ),
        _s("RespSetConfig", False, 4 + _GCM, WIFI),
        _s("CmdApplyConfig", True, 2 + _GCM, WIFI),
        _s("RespApplyConfig", False, 4 + _GCM, WIFI),
        _s("CmdGetStatus", True, 2 + _GCM, WIFI, source="esp_prov polls every 5 s: one poll"),
        _s(
            "RespGetStatus (connected)",
            False,
            6 + 30 + _GCM,
            WIFI,
            source="WifiConnectedState: ip4 'a.b.c.d', bssid, ssid, channel, auth",
        ),
    ),
    notes=(
        "no device attestation and no certificate or peer-key step: its row is Wi-Fi only "
        "(compare with bleprov's wifi rows)",
        "its Wi-Fi status is polled (every 5 s in esp_prov); one poll, right after the "
        "join modelled at 0, is counted",
    ),
)

# ---------------------------------------------------------------- HomeKit
# HAP specification R2 (non-commercial), "Pair Setup" and "Pair Verify" (TLV8: a
# 2-byte header per item and per 255-byte fragment), "HAP-BLE" PDU format: request header
# control, opcode, TID, IID (2), body length (2) = 7; response header control, TID,
# status, body length (2) = 5; the body is a TLV (HAP-Param-Value, 2-byte header per
# 255 B). After Pair Verify every PDU body is ChaCha20-Poly1305 sealed (+16).
# apple/HomeKitADK HAPPairingPairSetup.c / HAPPairingPairVerify.c: same TLVs.


def _tlv(value: int) -> int:
    """A TLV8 item of ``value`` bytes, fragments of 255 included."""
    return value + 2 * max(1, math.ceil(value / 255))


def _hap_request(body: int) -> int:
    return 7 + _tlv(body)


def _hap_response(body: int) -> int:
    return 5 + _tlv(body)


HOMEKIT: Final = System(
    "HomeKit (pair-setup SRP-6a 3072 + pair-verify)",
    "hap",
    setup_extra=4,
    setup_note="the controller reads the Characteristic Instance ID descriptor of each "
    "pairing characteristic (4) before using it (HAP-BLE, Characteristic Instance ID)",
    steps=(
        _s(
            "Pair-Setup M1",
            True,
            _hap_request(_tlv(1) + _tlv(1)),
            HANDSHAKE,
            source="state, method",
        ),
        _s(
            "Pair-Setup M2",
            False,
            _hap_response(_tlv(1) + _tlv(16) + _tlv(384)),
            HANDSHAKE,
            source="state, salt 16, public key B 384",
        ),
        _s(
            "Pair-Setup M3",
            True,
            _hap_request(_tlv(1) + _tlv(384) + _tlv(64)),
            HANDSHAKE,
            source="state, public key A 384, proof 64",
        ),
        _s(
            "Pair-Setup M4",
            False,
            _hap_response(_tlv(1) + _tlv(64)),
            HANDSHAKE,
            source="state, proof 64",
        ),
        _s(
            "Pair-Setup M5",
            True,
            _hap_request(_tlv(1) + _tlv(_tlv(36) + _tlv(32) + _tlv(64) + 16)),
            OTHER,
            source="state, sealed (pairing ID 36, Ed25519 LTPK 32, signature 64)",
        ),
        _s(
            "Pair-Setup M6",
            False,
            _hap_response(_tlv(1) + _tlv(_tlv(17) + _tlv(32) + _tlv(64) + 16)),
            OTHER,
            source="state, sealed (accessory ID 17, LTPK 32, signature 64)",
        ),
        _s(
            "Pair-Verify M1",
            True,
            _hap_request(_tlv(1) + _tlv(32)),
            HANDSHAKE,
            source="state, X25519 key 32",
        ),
        _s(
            "Pair-Verify M2",
            False,
            _hap_response(_tlv(1) + _tlv(32) + _tlv(_tlv(17) + _tlv(64) + 16)),
            HANDSHAKE,
            source="state, X25519 key 32, sealed (accessory ID, signature 64)",
        ),
        _s(
            "Pair-Verify M3",
            True,
            _hap_request(_tlv(1) + _tlv(_tlv(36) + _tlv(64) + 16)),
            HANDSHAKE,
            source="state, sealed (controller ID, signature 64)",
        ),
        _s("Pair-Verify M4", False, _hap_response(_tlv(1)), HANDSHAKE, source="state"),
    ),
    notes=(
        "HomeKit over BLE provisions no Wi-Fi and carries no certificate (an "
        "MFi-authenticated accessory adds its token; not counted): pairing only; "
        "compare with bleprov's peer binding",
    ),
)

# ---------------------------------------------------------------- Matter
# Matter Core specification 1.3, by section title: "Message Format" (unsecured: flags 1,
# session ID 2, security flags 1, counter 4, source node ID 8 = 16; secured: 8 + MIC 16;
# protocol header: exchange flags 1, opcode 1, exchange ID 2, protocol ID 2 = 6);
# "Passcode-Authenticated Session Establishment (PASE)" (PBKDFParamRequest/Response,
# Pake1-3 as Matter TLV); "Bluetooth Transport Protocol (BTP)"; "Commissioning Flows";
# "Device Attestation" (CertificateChainRequest for DAC and PAI, AttestationRequest);
# "Operational Credentials Cluster" (CSRRequest, AddTrustedRootCertificate, AddNOC;
# Matter TLV certificates, at most 400 B: kMaxCHIPCertLength, DER at most 600 B:
# kMaxDERCertLength, connectedhomeip src/credentials/CHIPCert.h); "Network
# Commissioning Cluster" (AddOrUpdateWiFiNetwork, ConnectNetwork); "General
# Commissioning Cluster" (ArmFailSafe, SetRegulatoryConfig, CommissioningComplete);
# Interaction Model TLV framing of an Invoke request or response taken as 20 B.
# Assumed sizes (no published figure): DAC 491 B and PAI 463 B DER (P-256 certificates a
# little smaller than bleprov's own device certificate and intermediate, 537 and 471:
# fewer extensions), a certification declaration of 236 B (CMS, one signer), an RCAC of
# 240 B and a NOC of 245 B in Matter TLV, a CSR of 230 B.
_UNSEC: Final = 16 + 6
_SEC: Final = 8 + 6 + 16
_IM: Final = 20


def _invoke(payload: int) -> int:
    return _SEC + _IM + payload


MATTER: Final = System(
    "Matter (PASE + commissioning over BTP)",
    "btp",
    setup_extra=2,
    setup_note="BTP handshake: a Write Request on C1 (9 B), the CCCD write on C2, the "
    "handshake response indicated (6 B)",
    steps=(
        _s(
            "PBKDFParamRequest",
            True,
            _UNSEC + 48,
            HANDSHAKE,
            source="random 32, session ID, passcode ID, hasPBKDFParameters",
        ),
        _s(
            "PBKDFParamResponse",
            False,
            _UNSEC + 96,
            HANDSHAKE,
            source="randoms 32 + 32, session ID, iterations, salt 16",
        ),
        _s("Pake1", True, _UNSEC + 70, HANDSHAKE, source="pA 65"),
        _s("Pake2", False, _UNSEC + 104, HANDSHAKE, source="pB 65, cB 32"),
        _s("Pake3", True, _UNSEC + 37, HANDSHAKE, source="cA 32"),
        _s("StatusReport", False, _UNSEC + 8, HANDSHAKE, source="general code, protocol"),
        _s(
            "ReadRequest (commissioning info)",
            True,
            _SEC + 70,
            OTHER,
            source="BasicCommissioningInfo, RegulatoryConfig, LocationCapability, "
            "SupportsConcurrentConnection, network FeatureMap",
        ),
        _s("ReportData", False, _SEC + 150, OTHER),
        _s("ArmFailSafe", True, _invoke(10), OTHER),
        _s("ArmFailSafeResponse", False, _invoke(4), OTHER),
        _s("SetRegulatoryConfig", True, _invoke(12), OTHER),
        _s("SetRegulatoryConfigResponse", False, _invoke(4), OTHER),
        _s("CertificateChainRequest (DAC)", True, _invoke(3), HANDSHAKE),
        _s(
            "CertificateChainResponse (DAC)",
            False,
            _invoke(4 + 491),
            HANDSHAKE,
            491,
            source="DAC DER 491",
        ),
        _s("CertificateChainRequest (PAI)", True, _invoke(3), HANDSHAKE),
        _s(
            "CertificateChainResponse (PAI)",
            False,
            _invoke(4 + 463),
            HANDSHAKE,
            463,
            source="PAI DER 463",
        ),
        _s("AttestationRequest", True, _invoke(36), HANDSHAKE, source="nonce 32"),
        _s(
            "AttestationResponse",
            False,
            _invoke(8 + 236 + 32 + 4 + 66),
            HANDSHAKE,
            236,
            source="attestation elements (CD 236, nonce 32, timestamp), signature 64",
        ),
        _s("CSRRequest", True, _invoke(36), OTHER, source="CSR nonce 32"),
        _s(
            "CSRResponse",
            False,
            _invoke(8 + 230 + 34 + 66),
            OTHER,
            source="NOCSR elements (CSR ~230 DER, nonce), signature 64",
        ),
        _s(
            "AddTrustedRootCertificate",
            True,
            _invoke(4 + 240),
            OTHER,
            240,
            source="RCAC, Matter TLV ~240",
        ),
        _s("AddTrustedRootCertificate response", False, _invoke(4), OTHER),
        _s(
            "AddNOC",
            True,
            _invoke(4 + 245 + 18 + 10 + 4),
            OTHER,
            245,
            source="NOC (Matter TLV ~245), IPK 16, admin subject, vendor ID; no ICAC",
        ),
        _s("NOCResponse", False, _invoke(8), OTHER),
        _s(
            "AddOrUpdateWiFiNetwork",
            True,
            _invoke(4 + 14 + 10),
            WIFI,
            source="SSID 4, credentials 12, breadcrumb",
        ),
        _s("NetworkConfigResponse", False, _invoke(8), WIFI),
        _s("ConnectNetwork", True, _invoke(4 + 10), WIFI),
        _s("ConnectNetworkResponse", False, _invoke(8), WIFI),
        _s("CommissioningComplete", True, _invoke(2), OTHER),
        _s("CommissioningCompleteResponse", False, _invoke(4), OTHER),
    ),
    notes=(
        "the specification sends CommissioningComplete over CASE on the operational "
        "network (Sigma1-3 first); modelled here over BTP as if on BLE, so Matter's row "
        "is a lower bound",
        "the device attestation's DAC and PAI count as certificates, and the "
        "certification declaration too; the CSR is in other",
    ),
)

SYSTEMS: Final = (ESP_SEC2, HOMEKIT, MATTER)


# ---------------------------------------------------------------- messages -> PDUs


class _Builder:
    """ATT PDUs (with their causes) for a sequence of requests and answers."""

    def __init__(self) -> None:
        self.pdus: list[TracedPdu] = []
        self.labels: list[tuple[str, str]] = []  # (category, label) per PDU
        self.last: int | None = None

    def add(self, up: bool, length: int, category: str, *, cause: int | None = -1) -> int:
        """One L2CAP PDU of ``length`` ATT bytes (+4 L2CAP), caused by the last PDU."""
        index = len(self.pdus)
        data = bytes(4 + length)
        self.pdus.append(TracedPdu(index, up, data, self.last if cause == -1 else cause))
        self.labels.append((category, ""))
        self.last = index
        return index

    def round_trip(self, up: bool, request: int, answer: int, category: str) -> None:
        self.add(up, request, category)
        self.add(not up, answer, category)


def _chunks(size: int, first: int, rest: int) -> list[int]:
    """Payload of each fragment: ``first`` bytes, then ``rest`` at most each."""
    parts = [min(size, first)]
    size -= parts[0]
    while size > 0:
        parts.append(min(size, rest))
        size -= parts[-1]
    return parts


def _build(system: System, mtu: int) -> tuple[_Builder, dict[str, int], int]:
    """PDUs, the protocol bytes by category, and the index of the first protocol PDU."""
    b = _Builder()
    by = dict.fromkeys(CATEGORIES, 0)
    b.round_trip(True, 3, 3, SETUP)  # Exchange MTU
    for _ in range(GENERIC_DISCOVERY - 1 + system.setup_extra):
        b.round_trip(True, 7, 20, SETUP)
    first = len(b.pdus)
    value = mtu - 3
    for step in system.steps:
        by[CERTS] += step.certs
        by[step.category] += step.size - step.certs
        if system.transport == "write-read":
            if step.up:
                # A long value goes as Prepare Write Requests (4 B of header each: handle,
                # offset) and an Execute Write Request.
                parts = _chunks(step.size, value, value - 2)
                for part in parts:
                    b.round_trip(True, 3 + part if len(parts) == 1 else 5 + part, 1, FRAMING)
                if len(parts) > 1:
                    b.round_trip(True, 2, 1, FRAMING)
            else:
                # Read Request, then Read Blob Requests (handle, offset) for the rest.
                for i, part in enumerate(_chunks(step.size, mtu - 1, mtu - 1)):
                    b.round_trip(True, 3 if i == 0 else 5, 1 + part, FRAMING)
        elif system.transport == "hap":
            # Fragments: the first carries the PDU header, the rest a 2-byte continuation
            # header (control, TID); a request is written, a response read.
            for part in _chunks(step.size, value, value - 2):
                if step.up:
                    b.round_trip(True, 3 + part, 1, FRAMING)
                else:
                    b.round_trip(True, 3, 1 + part, FRAMING)
        else:  # btp: flags, sequence; the first segment adds length (2) and ack (1)
            for i, part in enumerate(_chunks(step.size, value - 5, value - 2)):
                b.round_trip(step.up, 3 + (5 if i == 0 else 2) + part, 1, FRAMING)
    return b, by, first


def model(system: System, mtu: int, link: LinkModel | None = None) -> Cost:
    """The system's enrolment as :class:`Cost`, on the same link model as bleprov's."""
    ll_payload = LL_PAYLOAD_DLE if mtu > 23 else LL_PAYLOAD_NO_DLE
    link = link or LinkModel(ll_payload=ll_payload)
    b, by, first = _build(system, mtu)
    total = sum(air_bytes_for(len(p.data), link.ll_payload) for p in b.pdus)
    setup_air = sum(air_bytes_for(len(p.data), link.ll_payload) for p in b.pdus[:first])
    by[SETUP] = setup_air
    by[FRAMING] = total - sum(by.values())
    events = schedule(b.pdus, link)
    return Cost(
        system.name,
        "",
        mtu,
        len(b.pdus),
        first // 2,
        len(b.pdus) // 2,
        flights_of([s.up for s in system.steps]),
        total,
        by,
        events[-1] * link.interval_ms / 1000,
        events[first] * link.interval_ms / 1000,
        link,
    )
