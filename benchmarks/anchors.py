"""The anchors' key exchanges, both roles, timed on this machine for side-by-side ratios.

- **SRP-6a, 3072-bit group, SHA-512**: what ESP-IDF provisioning security 2 and HomeKit
  pairing use. PyPI ``srp`` (its OpenSSL ``ctypes`` back end when libssl loads, else pure
  Python: :data:`SRP_BACKEND` says which). ``srp`` ships no 3072-bit group, so the group
  is RFC 5054's (the RFC 3526 MODP prime, g = 5), computed here from its defining formula
  and checked against ``srp``'s own 4096-bit group made by the same formula.
- **X25519 + SHA-256(PoP) + AES-256-CTR**: ESP-IDF provisioning security 1, with
  ``cryptography``: the client sends its X25519 key, the device answers with its key and
  a 16-byte random (the CTR nonce), both XOR SHA-256 of the proof of possession into the
  shared secret, the client proves it by encrypting the device's key, the device by
  encrypting the client's.

Each role is timed alone with ``time.process_time`` (what it computes, not what it waits
for), median of many runs. The verifier (SRP) is made once, as a factory would.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import statistics
import time
from dataclasses import dataclass
from typing import Final

import srp  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def _pi_fixed(bits: int) -> int:
    """floor(pi * 2**bits), by Machin's formula in integers (64 guard bits)."""

    def arctan_inv(x: int, one: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            n += 2
            total += sign * (term // n)
            sign = -sign
        return total

    one = 1 << (bits + 64)
    return (4 * (4 * arctan_inv(5, one) - arctan_inv(239, one))) >> 64


def modp_prime(bits: int, offset: int) -> int:
    """RFC 3526's MODP prime: 2^b - 2^(b-64) - 1 + 2^64 * (floor(2^(b-130) pi) + offset)."""
    return int(2**bits - 2 ** (bits - 64) - 1 + 2**64 * (_pi_fixed(bits - 130) + offset))


def _srp_group_3072() -> str:
    n_4096 = modp_prime(4096, 240904)
    known_4096, _ = srp._mod._ng_const[srp.NG_4096]
    if n_4096 != int(known_4096, 16):
        raise RuntimeError("the MODP formula does not give srp's 4096-bit group")
    n = modp_prime(3072, 1690314)
    if n.bit_length() != 3072 or pow(2, n - 1, n) != 1:
        raise RuntimeError("the 3072-bit MODP group is not a 3072-bit prime")
    return f"{n:X}"


N_3072_HEX: Final = _srp_group_3072().encode()
G_HEX: Final = b"05"
SRP_BACKEND: Final = srp.User.__module__.rsplit(".", 1)[-1].lstrip("_")
_SRP: Final = {
    "hash_alg": srp.SHA512,
    "ng_type": srp.NG_CUSTOM,
    "n_hex": N_3072_HEX,
    "g_hex": G_HEX,
}


@dataclass
class AnchorRow:
    name: str
    host_ms: float
    device_ms: float
    messages: int
    bytes_total: int


def srp_handshake(salt: bytes, verifier: bytes, password: bytes) -> tuple[float, float, int]:
    """One SRP-6a exchange; host (User) and device (Verifier) CPU seconds, bytes."""
    t = time.process_time()
    user = srp.User(b"wifiprov", password, **_SRP)
    name, a_pub = user.start_authentication()
    host = time.process_time() - t
    t = time.process_time()
    verifier_ = srp.Verifier(name, salt, verifier, a_pub, **_SRP)
    s, b_pub = verifier_.get_challenge()
    device = time.process_time() - t
    if s is None or b_pub is None:
        raise RuntimeError("SRP verifier refused A")
    t = time.process_time()
    m = user.process_challenge(s, b_pub)
    host += time.process_time() - t
    t = time.process_time()
    hamk = verifier_.verify_session(m)
    device += time.process_time() - t
    t = time.process_time()
    user.verify_session(hamk)
    host += time.process_time() - t
    if not (user.authenticated() and verifier_.authenticated()):
        raise RuntimeError("SRP exchange failed")
    size = len(a_pub) + len(s) + len(b_pub) + len(m) + len(hamk)
    return host, device, size


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _sec1_key(private: X25519PrivateKey, peer: bytes, pop: bytes) -> bytes:
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer))
    digest = hashlib.sha256(pop).digest()
    return bytes(a ^ b for a, b in zip(shared, digest, strict=True))


def sec1_handshake(pop: bytes) -> tuple[float, float, int]:
    """One ESP-IDF security 1 exchange; host and device CPU seconds, bytes."""
    t = time.process_time()
    client = X25519PrivateKey.generate()
    client_pub = _raw(client.public_key())
    host = time.process_time() - t
    t = time.process_time()  # device: session command 0
    device_key = X25519PrivateKey.generate()
    device_pub = _raw(device_key.public_key())
    device_random = os.urandom(16)
    device_ctr = Cipher(
        algorithms.AES(_sec1_key(device_key, client_pub, pop)), modes.CTR(device_random)
    ).encryptor()
    device = time.process_time() - t
    t = time.process_time()  # client: verify token
    client_ctr = Cipher(
        algorithms.AES(_sec1_key(client, device_pub, pop)), modes.CTR(device_random)
    ).encryptor()
    client_verify = client_ctr.update(device_pub)
    host += time.process_time() - t
    t = time.process_time()  # device: session command 1
    if not hmac.compare_digest(device_ctr.update(client_verify), device_pub):
        raise RuntimeError("security 1: client proof refused")
    device_verify = device_ctr.update(client_pub)
    device += time.process_time() - t
    t = time.process_time()
    if not hmac.compare_digest(client_ctr.update(device_verify), client_pub):
        raise RuntimeError("security 1: device proof refused")
    host += time.process_time() - t
    size = len(client_pub) + len(device_pub) + len(device_random) + 2 * 32
    return host, device, size


def run(runs: int) -> list[AnchorRow]:
    """Median host and device CPU of ``runs`` exchanges of each anchor."""
    password = secrets.token_bytes(16)
    salt, verifier = srp.create_salted_verification_key(b"wifiprov", password, **_SRP)
    srp_runs = [srp_handshake(salt, verifier, password) for _ in range(runs)]
    pop = secrets.token_bytes(16)
    sec1_runs = [sec1_handshake(pop) for _ in range(runs)]
    return [
        AnchorRow(
            f"SRP-6a 3072/SHA-512 (ESP-IDF security 2, HomeKit; srp {SRP_BACKEND})",
            statistics.median(h for h, _, _ in srp_runs) * 1000,
            statistics.median(d for _, d, _ in srp_runs) * 1000,
            4,
            srp_runs[0][2],
        ),
        AnchorRow(
            "X25519 + SHA-256(PoP) + AES-256-CTR (ESP-IDF security 1)",
            statistics.median(h for h, _, _ in sec1_runs) * 1000,
            statistics.median(d for _, d, _ in sec1_runs) * 1000,
            4,
            sec1_runs[0][2],
        ),
    ]
