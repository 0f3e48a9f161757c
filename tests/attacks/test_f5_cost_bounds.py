"""F5 (issue 15): KDF costs read from a file or from the air were taken as given.

* device.bin (a sealed file): scrypt's log2 N, r and p come from its unauthenticated
  header. r = 0 raised ValueError, r = 2^64 OverflowError, r = 2^22 MemoryError, and
  (20, 8, 1) allocated 1 GiB before the tag was checked; p was bounded by nothing.
* The host ran a commissioning window's scrypt at whatever cost the device's info said,
  up to 1 GiB and 16 lanes (only the printed-code path had the host's bound).
* A device accepted a window offer no host would run, and a device.bin whose code cost
  no host would run.
* Encrypted PKCS#8 keys (zone.bin, manufacturer.bin, user key files) carry their PBKDF2
  iteration count in the clear: 2^31 holds the loader for about six minutes.
* The registry ran scrypt at the cost stored with each passphrase hash, and hub.toml's
  passphrase_cost, up to 1 GiB and 16 lanes.

Each cost is now bounded by a named constant before anything is derived.
"""

from __future__ import annotations

import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.advertising import DeviceInfo, DeviceState, OobMode
from bleprov.core.crypto import loading
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError, ProtocolError
from bleprov.core.factory import DeviceProvisioning, provision_device
from bleprov.core.identity import Manufacturer
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import code as code_mode
from bleprov.core.window import WindowCode, WindowError, WindowInfo, WindowOffer, WindowPurpose
from bleprov.core.zone import Zone, ZoneSetupError
from bleprov.store import registry, sealed
from bleprov.store.hub_files import HubError, open_registry
from tests.attacks.session_rig import TRUST

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHEAP = ScryptCost(n=1 << 10, r=1, p=1)


# -------------------------------------------------------------------- device.bin


def tampered_seal(cost: list[int]) -> bytes:
    """A sealed envelope with this cost in its header (the rest need not be right: the
    tag is checked after scrypt ran)."""
    out: bytes = cbor2.dumps(
        [sealed.LABEL, 1, bytes(16), cost, bytes(12), bytes(16)], canonical=True
    )
    return out


@pytest.mark.parametrize(
    "cost",
    [[10, 0, 1], [10, 2**64, 1], [10, 2**22, 1], [10, 8, 0], [10, 1, 2**31]],
    ids=["r0-ValueError", "r2^64-OverflowError", "r2^22-MemoryError", "p0", "p2^31"],
)
def test_a_sealed_file_with_an_impossible_scrypt_cost_is_a_sealed_file_error(
    cost: list[int],
) -> None:
    """F5: the minimal inputs (68 to 78 bytes); before, each escaped as the exception
    its id names (p 2^31: MemoryError)."""
    with pytest.raises(sealed.SealedFileError):
        sealed.unseal(tampered_seal(cost), b"passphrase")


@pytest.mark.parametrize(
    "cost", [[20, 8, 1], [17, 8, 1], [10, 8, 16], [10, 16, 1]], ids=["1GiB", "128MiB", "p16", "r16"]
)
def test_a_sealed_file_dearer_than_we_write_is_refused_before_scrypt_runs(
    monkeypatch: pytest.MonkeyPatch, cost: list[int]
) -> None:
    """F5: before, (20, 8, 1) allocated 1 GiB and p 16 ran sixteen passes, all before the
    tag was checked."""

    def no_scrypt(*args: object) -> bytes:
        raise AssertionError(f"scrypt ran at {args[2:]}")

    monkeypatch.setattr(sealed, "_key", no_scrypt)
    with pytest.raises(sealed.SealedFileError, match="cost"):
        sealed.unseal(tampered_seal(cost), b"passphrase")


def test_seal_writes_only_what_unseal_reads() -> None:
    with pytest.raises(sealed.SealedFileError):
        sealed.seal(b"data", b"passphrase", log2_n=sealed.MAX_LOG2_N + 1)
    data = sealed.seal(b"data", b"passphrase", log2_n=sealed.MIN_LOG2_N)
    assert sealed.unseal(data, b"passphrase") == b"data"


def device_record(cost: list[object]) -> bytes:
    identity = Manufacturer.create("Acme", now=NOW).issue_device(now=NOW)
    device, _ = provision_device(identity, modes=OobMode.QR | OobMode.CODE, cost=CHEAP)
    value = cbor2.loads(device.to_bytes(None))
    value[7] = cost
    out: bytes = cbor2.dumps(value, canonical=True)
    return out


@pytest.mark.parametrize(
    "cost",
    [[2**20, 8, 16], [2**18, 8, 1], ["x", 8, 1], [1024, 8, None]],
    ids=["1GiB-p16", "256MiB", "n-text-TypeError", "p-null-TypeError"],
)
def test_a_device_record_with_a_cost_no_host_runs_is_malformed(cost: list[object]) -> None:
    """F5: the code cost device.bin holds is what the device advertises; before, a cost
    no host runs loaded (the device's code mode was dead), and a non-integer one raised
    TypeError."""
    with pytest.raises(BleprovError):
        DeviceProvisioning.from_bytes(device_record(cost), None)


# ---------------------------------------------------------------- the air: windows


def window_info(cost: tuple[int, int, int]) -> bytes:
    return DeviceInfo(
        protocol_version=2,
        state=DeviceState.PEER_BOUND,
        modes=OobMode.CODE,
        discriminator=0x123,
        max_message=65536,
        rx_window=16,
        profile_version=1,
        window=WindowInfo(bytes(16), cost, WindowPurpose.ADMIN),
    ).encode()


@pytest.mark.parametrize("cost", [(20, 8, 16), (18, 8, 1), (15, 16, 1), (15, 8, 3)])
def test_the_host_refuses_a_window_dearer_than_its_bound(
    monkeypatch: pytest.MonkeyPatch, cost: tuple[int, int, int]
) -> None:
    """F5: before, a window's cost went to scrypt unchecked ((20, 8, 16): 1 GiB, 16 lanes)."""

    def no_scrypt(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"the host ran scrypt at {kwargs.get('cost')}")

    monkeypatch.setattr(code_mode, "derive_verifier", no_scrypt)
    with pytest.raises(ProtocolError, match="scrypt cost"):
        hst.HostSession(
            mode=Mode.CODE,
            secret=hst.WindowSecret(WindowCode.generate()),
            device_info=window_info(cost),
            trust=TRUST,
            wall_clock=NOW,
            now=0.0,
        )


def test_a_device_refuses_a_window_offer_no_host_would_run() -> None:
    """F5: before, the device accepted (and advertised) a window costing 1 GiB x 16."""
    body = WindowOffer.create(WindowCode.generate(), purpose=WindowPurpose.ADMIN, cost=CHEAP)
    with pytest.raises(WindowError, match="scrypt cost"):
        WindowOffer.from_body({**body.to_body(), "cost": [20, 8, 16]})


# ------------------------------------------------------------- encrypted PKCS#8


def with_iterations(encrypted_pkcs8: bytes, iterations: int) -> bytes:
    """The key with its PBKDF2 iteration count replaced (DER lengths fixed up)."""
    old = b"\x02\x02\x08\x00"  # BestAvailableEncryption's 2048
    at = encrypted_pkcs8.index(old)
    body = iterations.to_bytes((iterations.bit_length() + 8) // 8, "big")
    new = bytes([2, len(body)]) + body
    grow = len(new) - len(old)
    out = bytearray(encrypted_pkcs8[:at] + new + encrypted_pkcs8[at + len(old) :])
    # EncryptedPrivateKeyInfo (long form, 1 octet), its AlgorithmIdentifier, PBES2
    # params, the KDF AlgorithmIdentifier and PBKDF2 params: the lengths around it.
    for offset in (2, 4, 17, 19, 32):
        out[offset] += grow
    return bytes(out)


def test_a_zone_bin_key_asking_for_two_million_pbkdf2_iterations_is_refused() -> None:
    """F5: before, the loader ran them (and 2^31 would take minutes), then said "wrong
    passphrase"; now the count is read first and refused."""
    value = cbor2.loads(Zone.create("Home", now=NOW).to_bytes(b"zone passphrase"))
    value[3] = with_iterations(value[3], 2_000_000)
    with pytest.raises(ZoneSetupError, match="iterations"):
        Zone.from_bytes(cbor2.dumps(value, canonical=True), b"zone passphrase")


def test_an_encrypted_key_asking_for_2_to_the_31_iterations_is_refused_at_once() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert loading.load_der_private_key(key, b"pw") is not None
    started = time.monotonic()
    with pytest.raises(loading.KeyTooDear):
        loading.load_der_private_key(with_iterations(key, 2**31 - 1), b"pw")
    assert time.monotonic() - started < 1.0


def test_a_key_encrypted_with_scrypt_is_not_one_we_read() -> None:
    """OpenSSL can write PKCS#8 under scrypt, whose N in the file made cryptography
    allocate 1 GiB; we never write it, so it is refused before loading."""

    def der(tag: int, *parts: bytes) -> bytes:
        body = b"".join(parts)
        assert len(body) < 128
        return bytes([tag, len(body)]) + body

    scrypt = der(
        0x30,
        bytes.fromhex("06092b06010401da47040b"),  # id-scrypt (RFC 7914)
        der(0x30, der(0x04, bytes(8)), der(0x02, b"\x40\x00\x00\x00"), der(0x02, b"\x08")),
    )
    aes = der(0x30, bytes.fromhex("060960864801650304012a"), der(0x04, bytes(16)))
    algorithm = der(0x30, bytes.fromhex("06092a864886f70d01050d"), der(0x30, scrypt, aes))
    scrypt_pkcs8 = der(0x30, algorithm, der(0x04, bytes(16)))
    with pytest.raises(loading.KeyTooDear):
        loading.check_key_encryption_cost(scrypt_pkcs8)


# ------------------------------------------------------------- registry, hub.toml


@pytest.mark.parametrize(
    "cost", [(2**20, 8, 16), (2**19, 8, 1), (2**17, 8, 4)], ids=["1GiB-p16", "512MiB", "p4"]
)
def test_a_stored_passphrase_hash_dearer_than_the_bound_is_refused(
    monkeypatch: pytest.MonkeyPatch, cost: tuple[int, int, int]
) -> None:
    """F5: before, verify_passphrase ran scrypt at the cost stored with the hash."""

    def no_scrypt(*args: object) -> bytes:
        raise AssertionError("scrypt ran")

    monkeypatch.setattr(registry, "_scrypt", no_scrypt)
    n, r, p = cost
    with pytest.raises(registry.RegistryError, match="cost"):
        registry.verify_passphrase("x", f"scrypt${n}${r}${p}$AAAAAAAAAAAAAAAAAAAAAA$AAAA")


def test_hub_toml_with_a_passphrase_cost_above_the_bound_is_refused(tmp_path: Path) -> None:
    """F5: before, hub.toml's passphrase_cost was taken up to 1 GiB and 16 lanes."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hub.toml").write_text(
        'version = 1\nname = "Home"\nzone_id = "0123456789abcdef"\n'
        "[passphrase_cost]\nn = 1048576\nr = 8\np = 16\n"
    )
    with pytest.raises(HubError, match="passphrase_cost"):
        open_registry(hub)


def _keys() -> list[bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der, pkcs8 = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8
    return [
        key.private_bytes(der, pkcs8, serialization.BestAvailableEncryption(b"pw")),
        key.private_bytes(der, pkcs8, serialization.NoEncryption()),
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=60)
    | st.builds(
        lambda key, at, chunk: key[:at] + chunk + key[at + len(chunk) :],
        st.sampled_from(_keys()),
        st.integers(0, 60),
        st.binary(min_size=1, max_size=3),
    )
)
def test_the_key_encryption_header_reader_raises_only_unreadable_key(data: bytes) -> None:
    """The DER walk that reads the KDF cost parses hostile bytes itself: only its typed
    error may leave it, and the loader after it."""
    for passphrase in (b"pw", None):
        with suppress(loading.UnreadableKey):
            loading.load_der_private_key(data, passphrase)
