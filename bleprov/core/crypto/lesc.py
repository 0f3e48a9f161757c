"""The LE Secure Connections cryptographic toolbox, for the ``compare`` mode.

``compare`` mode (a device with a display; the same 6-digit number shown on both sides and
accepted only when the user confirms) runs numeric comparison exactly as Bluetooth LE
Secure Connections does (Core Specification v5.x, Vol 3, Part H, sections 2.2.6 to 2.2.9
and 2.3.5.6.2): both sides exchange P-256 public keys, the responder sends the commitment
``Cb = f4(PKb.x, PKa.x, Nb, 0)`` to its fresh nonce *before* it sees the initiator's
nonce ``Na``, then the nonces are revealed and both sides display
``g2(PKa.x, PKb.x, Na, Nb) mod 10**6``. A man in the middle holds a different key pair
towards each side, so the two numbers agree only by chance; since each side's nonce is
fixed (committed, or revealed first) before the other's is known, the attacker cannot
search for a colliding nonce and succeeds with probability 1e-6 per attempt.

Byte order: every argument and result of this module is **big-endian**, most significant
octet first, as the specification writes its function definitions and its sample data
(Appendix D). SMP PDUs on the air carry the same values little-endian; code that speaks
SMP must reverse them at that boundary. Public-key X coordinates are the 32-byte
big-endian X of the point, as ``cryptography`` encodes it.

Every primitive comes from ``cryptography``: AES-CMAC (RFC 4493) and P-256 ECDH. Inputs
of the wrong length are a bug in the caller and raise :class:`ValueError`; a peer's public
key that is not a point on P-256 raises :class:`~bleprov.core.errors.MalformedData`; a
commitment that does not open raises :class:`CommitmentMismatch`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final

from bleprov.core.crypto import primitives
from bleprov.core.crypto.primitives import P256PrivateKey, P256PublicKey
from bleprov.core.errors import MalformedData, ProtocolError

#: Length of a P-256 coordinate, private key or DHKey.
P256_COORDINATE_LEN: Final = 32
#: Length of an uncompressed public key as exchanged: X || Y, both big-endian.
P256_PUBLIC_KEY_LEN: Final = 2 * P256_COORDINATE_LEN
DHKEY_LEN: Final = 32
#: Nonces (Na, Nb), AES-CMAC keys, confirm and check values are all 128 bits.
NONCE_LEN: Final = 16
AES_CMAC_KEY_LEN: Final = 16
CONFIRM_VALUE_LEN: Final = 16
#: An f5/f6 address: one address-type octet (0 public, 1 random) then the 48-bit address.
ADDRESS_LEN: Final = 7
#: IOcap in f6: AuthReq || OOB data flag || IO capability, as in the Pairing Request.
IO_CAP_LEN: Final = 3
#: The displayed value has six decimal digits: g2 mod 10**6.
NUMERIC_COMPARISON_MODULUS: Final = 10**6

#: f5's SALT and keyID "btle" (Vol 3, Part H, section 2.2.7).
F5_SALT: Final = bytes.fromhex("6c888391aaf5a53860370bdb5a6083be")
F5_KEY_ID: Final = b"btle"
#: f5's Length field: the 256 bits of MacKey || LTK, as a 16-bit big-endian integer.
_F5_LENGTH: Final = (256).to_bytes(2, "big")


class CommitmentMismatch(ProtocolError):
    """The peer's revealed nonce does not open the commitment it sent earlier."""


@dataclass(frozen=True)
class LescKeys:
    """f5's output: MacKey (keys the f6 check values) and the LTK. Never printed."""

    mac_key: bytes = field(repr=False)
    ltk: bytes = field(repr=False)


def _require_length(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC with a 128-bit key (RFC 4493; Vol 3, Part H, section 2.2.5)."""
    _require_length("AES-CMAC key", key, AES_CMAC_KEY_LEN)
    return primitives.aes_cmac(key, message)


def f4(u: bytes, v: bytes, x: bytes, z: int) -> bytes:
    """Confirm value: ``AES-CMAC_X(U || V || Z)`` (section 2.2.6).

    ``u`` and ``v`` are 32-byte public-key X coordinates, ``x`` a 16-byte nonce, ``z`` one
    octet (0 for numeric comparison).
    """
    _require_length("U", u, P256_COORDINATE_LEN)
    _require_length("V", v, P256_COORDINATE_LEN)
    _require_length("X", x, NONCE_LEN)
    if not 0 <= z <= 0xFF:
        raise ValueError("Z must fit in one octet")
    return aes_cmac(x, u + v + bytes([z]))


def f5(w: bytes, n1: bytes, n2: bytes, a1: bytes, a2: bytes) -> LescKeys:
    """MacKey and LTK from the DHKey ``w``, both nonces and both addresses (section 2.2.7)."""
    _require_length("W", w, DHKEY_LEN)
    _require_length("N1", n1, NONCE_LEN)
    _require_length("N2", n2, NONCE_LEN)
    _require_length("A1", a1, ADDRESS_LEN)
    _require_length("A2", a2, ADDRESS_LEN)
    t = aes_cmac(F5_SALT, w)
    body = F5_KEY_ID + n1 + n2 + a1 + a2 + _F5_LENGTH
    return LescKeys(mac_key=aes_cmac(t, b"\x00" + body), ltk=aes_cmac(t, b"\x01" + body))


def f6(w: bytes, n1: bytes, n2: bytes, r: bytes, io_cap: bytes, a1: bytes, a2: bytes) -> bytes:
    """Check value: ``AES-CMAC_W(N1 || N2 || R || IOcap || A1 || A2)`` (section 2.2.8)."""
    _require_length("W", w, AES_CMAC_KEY_LEN)
    _require_length("N1", n1, NONCE_LEN)
    _require_length("N2", n2, NONCE_LEN)
    _require_length("R", r, NONCE_LEN)
    _require_length("IOcap", io_cap, IO_CAP_LEN)
    _require_length("A1", a1, ADDRESS_LEN)
    _require_length("A2", a2, ADDRESS_LEN)
    return aes_cmac(w, n1 + n2 + r + io_cap + a1 + a2)


def g2(u: bytes, v: bytes, x: bytes, y: bytes) -> int:
    """Numeric comparison value: ``AES-CMAC_X(U || V || Y) mod 2**32`` (section 2.2.9)."""
    _require_length("U", u, P256_COORDINATE_LEN)
    _require_length("V", v, P256_COORDINATE_LEN)
    _require_length("X", x, NONCE_LEN)
    _require_length("Y", y, NONCE_LEN)
    return int.from_bytes(aes_cmac(x, u + v + y)[-4:], "big")


def numeric_comparison_value(u_pk_x: bytes, v_pk_x: bytes, na: bytes, nb: bytes) -> int:
    """The 6-digit value both sides display, 0..999999.

    ``u_pk_x``/``na`` are the initiator's (host's) public-key X and nonce, ``v_pk_x``/``nb``
    the responder's (device's): ``g2(PKa.x, PKb.x, Na, Nb) mod 10**6``.
    """
    return g2(u_pk_x, v_pk_x, na, nb) % NUMERIC_COMPARISON_MODULUS


def format_numeric_comparison_value(value: int) -> str:
    """The value as the user sees it: always six digits, leading zeros kept."""
    if not 0 <= value < NUMERIC_COMPARISON_MODULUS:
        raise ValueError("a numeric comparison value is 0..999999")
    return f"{value:06d}"


def commitment(pk_x_self: bytes, pk_x_peer: bytes, nonce: bytes, z: int = 0) -> bytes:
    """This side's commitment to ``nonce``: ``f4(PKself.x, PKpeer.x, nonce, z)``.

    The responder sends it before it sees the initiator's nonce (Cb = f4(PKb.x, PKa.x, Nb, 0)).
    """
    return f4(pk_x_self, pk_x_peer, nonce, z)


def confirm_values_equal(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of two confirm or check values."""
    return hmac.compare_digest(expected, received)


def verify_commitment(
    received: bytes, pk_x_peer: bytes, pk_x_self: bytes, peer_nonce: bytes, z: int = 0
) -> None:
    """Check that the peer's revealed nonce opens the commitment it sent before.

    Raises :class:`CommitmentMismatch` otherwise: the exchange must be aborted, never retried
    with the same keys.
    """
    if not confirm_values_equal(commitment(pk_x_peer, pk_x_self, peer_nonce, z), received):
        raise CommitmentMismatch("the peer's nonce does not match its commitment")


def generate_p256_private_key() -> P256PrivateKey:
    """A fresh P-256 key pair for one exchange (never reused across exchanges)."""
    return primitives.generate_p256_key()


def p256_private_key_from_bytes(d: bytes) -> P256PrivateKey:
    """A P-256 private key from its 32-byte big-endian scalar (for test vectors)."""
    _require_length("private key", d, P256_COORDINATE_LEN)
    return primitives.p256_private_key(int.from_bytes(d, "big"))


def p256_public_key_bytes(key: P256PrivateKey | P256PublicKey) -> bytes:
    """The 64-byte public key to send: X || Y, both big-endian."""
    return primitives.p256_public_point(key)[1:]


def public_key_x(key: P256PrivateKey | P256PublicKey) -> bytes:
    """The 32-byte big-endian X coordinate that f4 and g2 take as U and V."""
    return p256_public_key_bytes(key)[:P256_COORDINATE_LEN]


def p256_public_key_from_bytes(xy: bytes) -> P256PublicKey:
    """Decode a peer's X || Y public key, refusing any point that is not on P-256.

    Checking the point defeats invalid-curve attacks, which recover the private key from
    DHKeys computed on points of small order (CVE-2018-5383).
    """
    if len(xy) != P256_PUBLIC_KEY_LEN:
        raise MalformedData(f"a P-256 public key is {P256_PUBLIC_KEY_LEN} bytes, got {len(xy)}")
    try:
        return primitives.p256_public_key(b"\x04" + xy)
    except ValueError:
        raise MalformedData("the public key is not a point on P-256") from None


def dh_key(private_key: P256PrivateKey, peer_public_key: P256PublicKey) -> bytes:
    """The 32-byte DHKey: the big-endian X coordinate of ``private * peer_public``."""
    return primitives.p256_ecdh(private_key, peer_public_key)
