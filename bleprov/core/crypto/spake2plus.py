"""SPAKE2+ (RFC 9383), ciphersuite P256-SHA256-HKDF-SHA256-HMAC-SHA256, for the ``code`` mode.

``code`` mode authenticates the host with a short secret the user has: a printed code, or
a scratch card's user name and password. The host is the SPAKE2+ *Prover* and knows the
code; the device is the *Verifier* and stores only the verifier record ``(w0, L)``
(:class:`VerifierRecord`), from which the code cannot be recovered without a dictionary
attack against scrypt. An active attacker gets one guess per run; a passive one none.

The exchange (RFC 9383, sections 3.3 and 3.4; Appendix A)::

    Prover (host)                                 Verifier (device)
    shareP = x*P + w0*M       -- shareP -->
                              <-- shareV, confirmV -- shareV = y*P + w0*N
    check confirmV            -- confirmP -->       check confirmP
    K_shared                                        K_shared

with ``Z`` and ``V`` the shared points, ``TT`` the transcript (every field prefixed by its
8-byte little-endian length), ``K_main = SHA-256(TT)``, ``K_confirmP || K_confirmV =
HKDF(nil, K_main, "ConfirmationKeys")``, ``K_shared = HKDF(nil, K_main, "SharedKey")``,
``confirmP = HMAC(K_confirmP, shareV)`` and ``confirmV = HMAC(K_confirmV, shareP)``.
Points travel as 65-byte uncompressed SEC1 encodings, the form RFC 9383's test vectors use
(Appendix C); any other length or form is refused.

Layers, so that every step can be checked against Appendix C:

- :func:`prover_init`, :func:`prover_finish`, :func:`verifier_finish`,
  :func:`compute_transcript`, :func:`compute_key_schedule` and :func:`confirmation` are the
  RFC's Appendix A functions, pure and stateless;
- :class:`Prover` and :class:`Verifier` are single-use state machines over them, sans-IO:
  bytes in, bytes out, and the only way to run the protocol in bleprov.

Registration (section 3.2): :func:`derive_verifier` runs scrypt over the password and both
identities and returns the prover's :class:`ProverSecrets`; its
:meth:`~ProverSecrets.verifier_record` is what the device stores.

Errors: a peer's share that is malformed, off the curve, the identity, a reflection of our
own share, or exactly the password mask (``w0*M`` or ``w0*N``) raises
:class:`InvalidShare`; a confirmation that does not verify raises
:class:`ConfirmationFailed`; both subclass :class:`Spake2PlusError`, a
:class:`~bleprov.core.errors.ProtocolError`. Calling a step twice or out of order raises
:class:`~bleprov.core.errors.LocalProtocolError`. Whatever failed, the object is spent and
holds no key. No message or ``repr`` contains secret material.

Cost: a run takes about 1.3 ms of CPU on each side (five scalar multiplications each;
median of 50 runs on the AMD EPYC build host), scrypt excluded.

Side channels: scalar multiplication is pycryptodome's (blinded, constant-time in C), the
confirmation checks use :func:`hmac.compare_digest`; Python integers holding ``w0``, ``w1``
and the ephemeral scalars cannot be wiped, only dropped as soon as they are no longer needed.

Primitives: P-256 arithmetic from pycryptodome (``EccPoint``), point decompression of the
RFC's ``M`` and ``N`` and scrypt and HKDF from ``cryptography``, SHA-256 and HMAC from the
standard library.

Why pycryptodome (issue 17 measured it): its ``EccPoint`` operations are C (its
constant-time ``ec_nat`` module, with a BMI2/ADX build on x86-64), not Python; a
variable-base multiplication costs about 0.45 ms and is most of a run's CPU. fastecdsa 4
(Rust, wheels) is no faster there, five times slower at ``k*P`` and gives no side-channel
guarantee for bare point arithmetic; coincurve and btclib are secp256k1 only; the other
candidates are pure Python. OpenSSL, through ``cryptography``, has no point addition and
gives only the x of ``k*Q``: recovering y and adding in Python saved at most a third of a
multiplication, with secret-dependent Python arithmetic, so it is not done.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# EccPoint is documented public API of Crypto.PublicKey.ECC, which re-exports it without
# ``__all__``; mypy --strict calls that an implicit re-export (pycryptodome 3.21's stubs
# did not, hence unused-ignore).
from Crypto.PublicKey.ECC import EccPoint  # type: ignore[attr-defined, unused-ignore]

from bleprov.core.crypto.primitives import hkdf_sha256, p256_point, scrypt
from bleprov.core.errors import LocalProtocolError, MalformedData, ProtocolError

CIPHERSUITE: Final = "P256-SHA256-HKDF-SHA256-HMAC-SHA256"

# P-256 domain parameters (SEC 2 v2, section 2.4.2; FIPS 186-4, D.1.2.3).
#: The field prime.
P256_FIELD_PRIME: Final = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
#: The group order: RFC 9383's ``p``. The cofactor ``h`` is 1, so a point on the curve other
#: than the identity is in the prime-order group and multiplying by ``h`` is a no-op.
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_GX: Final = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_P256_GY: Final = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
_CURVE: Final = "p256"

#: M and N for P-256 as RFC 9383 section 4 prints them (compressed SEC1).
M_COMPRESSED: Final = bytes.fromhex(
    "02886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12f"
)
N_COMPRESSED: Final = bytes.fromhex(
    "03d8bbd6c639c62937b04d997f38c3770719c629d7014d49a24b4f98baa1292b49"
)

SCALAR_LEN: Final = 32
COORDINATE_LEN: Final = 32
#: A share (shareP, shareV), L, Z and V: 0x04 || X || Y.
POINT_LEN: Final = 1 + 2 * COORDINATE_LEN
_UNCOMPRESSED_TAG: Final = 0x04
#: HMAC-SHA256 tags (confirmP, confirmV) and the HMAC confirmation keys.
CONFIRMATION_LEN: Final = 32
#: K_main (SHA-256 output) and K_shared (RFC 9383 section 3.4: the hash's output length).
KEY_LEN: Final = 32
#: A serialized verifier record: w0 (32 bytes, big-endian) || L (65 bytes).
VERIFIER_RECORD_LEN: Final = SCALAR_LEN + POINT_LEN

#: Each half of the PBKDF output, w0s and w1s: ceil(log2 p) + 64 bits (RFC 9383 section
#: 3.2), so that reducing it modulo p leaves a bias of at most 2**-64.
PBKDF_HALF_LEN: Final = (256 + 64) // 8
#: The shortest scrypt salt accepted: the device's info carries a random 16..32-byte one.
MIN_SALT_LEN: Final = 16
#: scrypt's memory is 128 * n * r bytes; refuse more than this (the cost can come from the
#: device's info value, which must not make the host allocate arbitrary amounts).
MAX_SCRYPT_MEMORY: Final = 1 << 30
MAX_SCRYPT_PARALLELISM: Final = 16

_CONFIRMATION_KEYS_INFO: Final = b"ConfirmationKeys"
_SHARED_KEY_INFO: Final = b"SharedKey"
#: Bytes drawn per ephemeral scalar: reduced modulo p, as the PBKDF halves are.
_EPHEMERAL_DRAW_LEN: Final = PBKDF_HALF_LEN
_EPHEMERAL_DRAWS: Final = 4


class Spake2PlusError(ProtocolError):
    """The SPAKE2+ exchange failed because of what the peer sent; start a new one."""


class InvalidShare(Spake2PlusError, MalformedData):
    """The peer's share is malformed, off P-256, the identity, our own, or the bare mask."""


class ConfirmationFailed(Spake2PlusError):
    """The peer's confirmation does not verify: it does not hold the code (or the record)."""


# ---------------------------------------------------------------------------- points


def _point_from_compressed(encoded: bytes) -> EccPoint:
    """A constant point from its compressed encoding; decompression by ``cryptography``."""
    x, y = p256_point(encoded)
    return EccPoint(x, y, _CURVE)


GENERATOR: Final = EccPoint(_P256_GX, _P256_GY, _CURVE)
M: Final = _point_from_compressed(M_COMPRESSED)
N: Final = _point_from_compressed(N_COMPRESSED)


def encode_point(point: EccPoint) -> bytes:
    """Uncompressed SEC1: ``0x04 || X || Y``, coordinates big-endian, 65 bytes."""
    if point.is_point_at_infinity():
        raise ValueError("the identity has no uncompressed encoding")
    x, y = point.xy
    return (
        bytes([_UNCOMPRESSED_TAG])
        + x.to_bytes(COORDINATE_LEN, "big")
        + y.to_bytes(COORDINATE_LEN, "big")
    )


M_BYTES: Final = encode_point(M)
N_BYTES: Final = encode_point(N)


def decode_point(encoded: bytes, what: str) -> EccPoint:
    """A peer's point, strictly: 65 bytes, uncompressed, on P-256, not the identity.

    ``what`` names the field in the error message. pycryptodome would reduce coordinates
    modulo the field prime and read (0, 0) as the identity, so both are refused here first.
    """
    if len(encoded) != POINT_LEN:
        raise InvalidShare(f"{what} must be {POINT_LEN} bytes, got {len(encoded)}")
    if encoded[0] != _UNCOMPRESSED_TAG:
        raise InvalidShare(f"{what} must be an uncompressed point (0x04 first)")
    x = int.from_bytes(encoded[1 : 1 + COORDINATE_LEN], "big")
    y = int.from_bytes(encoded[1 + COORDINATE_LEN :], "big")
    if x >= P256_FIELD_PRIME or y >= P256_FIELD_PRIME:
        raise InvalidShare(f"{what} has a coordinate outside the field")
    if x == 0 and y == 0:
        raise InvalidShare(f"{what} is the identity")
    try:
        return EccPoint(x, y, _CURVE)
    except ValueError:
        raise InvalidShare(f"{what} is not a point on P-256") from None


def _require_scalar(name: str, value: int) -> None:
    if not 0 < value < P256_ORDER:
        raise MalformedData(f"{name} must be in 1..p-1")


def _length_prefixed(value: bytes) -> bytes:
    """``len(value) || value`` with an 8-byte little-endian length (RFC 9383 section 3)."""
    return len(value).to_bytes(8, "little") + value


# ---------------------------------------------------------------------- registration


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's cost parameters (RFC 7914): ``n`` CPU/memory, ``r`` block size, ``p`` lanes.

    scrypt needs about ``128 * n * r`` bytes of memory. RFC 9383 section 3.2 recommends
    (N, r, p) = (32768, 8, 1), :data:`DEFAULT_COST`: 32 MiB and about 85 ms of one core on
    the AMD EPYC build host (``cryptography`` 50, OpenSSL's scrypt; median of 15 runs).
    Tests may use tiny costs such as ``ScryptCost(n=16, r=1, p=1)``; nothing else should.

    Raises :class:`~bleprov.core.errors.MalformedData` for parameters scrypt refuses or
    costs above :data:`MAX_SCRYPT_MEMORY` / :data:`MAX_SCRYPT_PARALLELISM`, since a cost
    usually comes from the device's info value.
    """

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise MalformedData("scrypt n must be a power of two, at least 2")
        if self.r < 1 or not 1 <= self.p <= MAX_SCRYPT_PARALLELISM:
            raise MalformedData(f"scrypt needs r >= 1 and p in 1..{MAX_SCRYPT_PARALLELISM}")
        if self.memory_bytes > MAX_SCRYPT_MEMORY:
            raise MalformedData(f"scrypt cost needs more than {MAX_SCRYPT_MEMORY} bytes")

    @property
    def log2_n(self) -> int:
        """``log2(n)``, the form the device's info value carries."""
        return self.n.bit_length() - 1

    @property
    def memory_bytes(self) -> int:
        """The memory scrypt's ROMix needs: ``128 * n * r`` bytes."""
        return 128 * self.n * self.r

    def exceeds(self, bound: ScryptCost) -> bool:
        """Whether any of ``n``, ``r``, ``p`` is above ``bound``'s."""
        return self.n > bound.n or self.r > bound.r or self.p > bound.p


DEFAULT_COST: Final = ScryptCost(n=2**15, r=8, p=1)
#: The dearest scrypt a host runs for a code, the device's printed code or an owner's
#: window (docs/protocol.md, section 3): the cost comes from the device's info, which a
#: fake device chooses, so it must not make the host allocate or spin at will. 2^17 x 8
#: is 128 MiB, p 2 two passes: eight times :data:`DEFAULT_COST` (what factories and
#: windows write) at most, which leaves room to raise the default twice. Factories do
#: not issue, and devices do not accept windows, above it: no host would use them.
HOST_MAX_COST: Final = ScryptCost(n=2**17, r=8, p=2)


@dataclass(frozen=True, repr=False)
class VerifierRecord:
    """What the Verifier (device) stores: ``w0`` and ``L = w1*P`` (65-byte encoding).

    Secret: with it an attacker can pose as the device and run a dictionary attack on the
    code, though not pose as the host. Construction validates both fields and raises
    :class:`~bleprov.core.errors.MalformedData`.
    """

    w0: int
    L: bytes

    def __post_init__(self) -> None:
        _require_scalar("w0", self.w0)
        try:
            decode_point(self.L, "L")
        except InvalidShare as error:
            raise MalformedData(f"verifier record: {error}") from None

    def __repr__(self) -> str:
        return "VerifierRecord(<secret>)"

    @property
    def w0_bytes(self) -> bytes:
        """``w0`` as 32 bytes, big-endian: the form the transcript uses."""
        return self.w0.to_bytes(SCALAR_LEN, "big")

    def encode(self) -> bytes:
        """``w0 || L``: 32 + 65 bytes."""
        return self.w0_bytes + self.L

    @classmethod
    def from_fields(cls, w0: bytes, L: bytes) -> VerifierRecord:  # noqa: N803 (RFC's name)
        """The record from its two stored fields, strictly (exact lengths, ranges, curve)."""
        if len(w0) != SCALAR_LEN:
            raise MalformedData(f"verifier record: w0 must be {SCALAR_LEN} bytes")
        return cls(int.from_bytes(w0, "big"), bytes(L))

    @classmethod
    def decode(cls, encoded: bytes) -> VerifierRecord:
        """Inverse of :meth:`encode`, strictly."""
        if len(encoded) != VERIFIER_RECORD_LEN:
            raise MalformedData(
                f"verifier record must be {VERIFIER_RECORD_LEN} bytes, got {len(encoded)}"
            )
        return cls.from_fields(encoded[:SCALAR_LEN], encoded[SCALAR_LEN:])


@dataclass(frozen=True, repr=False)
class ProverSecrets:
    """The Prover's (host's) ``w0`` and ``w1``, both in 1..p-1. Never printed."""

    w0: int
    w1: int

    def __post_init__(self) -> None:
        _require_scalar("w0", self.w0)
        _require_scalar("w1", self.w1)

    def __repr__(self) -> str:
        return "ProverSecrets(<secret>)"

    def verifier_record(self) -> VerifierRecord:
        """The record the device stores: ``(w0, L = w1*P)``."""
        return VerifierRecord(self.w0, encode_point(GENERATOR * self.w1))


def pbkdf_input(password: bytes, id_prover: bytes, id_verifier: bytes) -> bytes:
    """``len(pw) || pw || len(idProver) || idProver || len(idVerifier) || idVerifier``."""
    return b"".join(_length_prefixed(value) for value in (password, id_prover, id_verifier))


def derive_verifier(
    password: bytes,
    *,
    salt: bytes,
    id_prover: bytes = b"",
    id_verifier: bytes = b"",
    cost: ScryptCost = DEFAULT_COST,
) -> ProverSecrets:
    """``w0`` and ``w1`` from the code, as RFC 9383 section 3.2 recommends, with scrypt.

    ``w0s || w1s = scrypt(pbkdf_input(...), salt, cost)``, 40 bytes each, read as big-endian
    integers; ``w0 = w0s mod p``, ``w1 = w1s mod p``. At :data:`DEFAULT_COST` this takes
    about 85 ms (see :class:`ScryptCost`), which is what each guess costs an attacker who
    stole a verifier record. Call :meth:`ProverSecrets.verifier_record` for the device's
    record.
    """
    if len(salt) < MIN_SALT_LEN:
        raise MalformedData(f"scrypt salt must be at least {MIN_SALT_LEN} bytes")
    output = scrypt(
        pbkdf_input(password, id_prover, id_verifier),
        salt=salt,
        length=2 * PBKDF_HALF_LEN,
        n=cost.n,
        r=cost.r,
        p=cost.p,
    )
    w0 = int.from_bytes(output[:PBKDF_HALF_LEN], "big") % P256_ORDER
    w1 = int.from_bytes(output[PBKDF_HALF_LEN:], "big") % P256_ORDER
    # ProverSecrets refuses a zero scalar, which happens with probability about 2**-255.
    return ProverSecrets(w0, w1)


# -------------------------------------------------------- RFC 9383 Appendix A functions


def prover_init(w0: int, x: int) -> bytes:
    """ProverInit: ``shareP = X = x*P + w0*M``, encoded."""
    return encode_point(GENERATOR * x + M * w0)


def _unmasked(share: EccPoint, w0: int, mask: EccPoint, what: str) -> EccPoint:
    """``share - w0*mask``; the identity (the share was exactly the mask) is refused."""
    point = share + (-(mask * w0))
    if point.is_point_at_infinity():
        raise InvalidShare(f"{what} cancels the password mask")
    return point


def prover_finish(w0: int, w1: int, x: int, share_v: bytes) -> tuple[bytes, bytes]:
    """ProverFinish: check shareV, then ``Z = h*x*(Y - w0*N)``, ``V = h*w1*(Y - w0*N)``.

    Returns the encoded ``(Z, V)``; h is 1 for P-256.
    """
    unmasked = _unmasked(decode_point(share_v, "shareV"), w0, N, "shareV")
    return encode_point(unmasked * x), encode_point(unmasked * w1)


def verifier_finish(w0: int, L: bytes, y: int, share_p: bytes) -> tuple[bytes, bytes, bytes]:  # noqa: N803
    """VerifierFinish: check shareP, then ``Y = y*P + w0*N``, ``Z = h*y*(X - w0*M)``,
    ``V = h*y*L``.

    Returns the encoded ``(shareV, Z, V)``; h is 1 for P-256.
    """
    unmasked = _unmasked(decode_point(share_p, "shareP"), w0, M, "shareP")
    share_v = encode_point(GENERATOR * y + N * w0)
    if hmac.compare_digest(share_v, share_p):
        raise InvalidShare("shareP reflects the verifier's own share")
    record_point = decode_point(L, "L")
    return share_v, encode_point(unmasked * y), encode_point(record_point * y)


def compute_transcript(
    *,
    context: bytes,
    id_prover: bytes,
    id_verifier: bytes,
    share_p: bytes,
    share_v: bytes,
    z: bytes,
    v: bytes,
    w0: int,
) -> bytes:
    """ComputeTranscript: ``TT``, every field after its 8-byte little-endian length.

    Context, idProver, idVerifier, M, N, shareP, shareV, Z, V, w0 (32 bytes big-endian).
    """
    fields = (
        context,
        id_prover,
        id_verifier,
        M_BYTES,
        N_BYTES,
        share_p,
        share_v,
        z,
        v,
        w0.to_bytes(SCALAR_LEN, "big"),
    )
    return b"".join(_length_prefixed(value) for value in fields)


@dataclass(frozen=True, repr=False)
class KeySchedule:
    """ComputeKeySchedule's output, plus K_main. All secret; never printed."""

    k_main: bytes
    k_confirm_p: bytes
    k_confirm_v: bytes
    k_shared: bytes

    def __repr__(self) -> str:
        return "KeySchedule(<secret>)"


def _hkdf(k_main: bytes, info: bytes, length: int) -> bytes:
    """RFC 9383's ``KDF(nil, K_main, info)``: HKDF-SHA256 with an empty salt."""
    return hkdf_sha256(k_main, length, salt=None, info=info)


def compute_key_schedule(transcript: bytes) -> KeySchedule:
    """``K_main = SHA-256(TT)``; ``K_confirmP || K_confirmV = KDF(nil, K_main,
    "ConfirmationKeys")``; ``K_shared = KDF(nil, K_main, "SharedKey")``.

    Each HMAC confirmation key is as long as the hash output (RFC 9383 section 3.4).
    """
    k_main = hashlib.sha256(transcript).digest()
    confirmation_keys = _hkdf(k_main, _CONFIRMATION_KEYS_INFO, 2 * CONFIRMATION_LEN)
    return KeySchedule(
        k_main=k_main,
        k_confirm_p=confirmation_keys[:CONFIRMATION_LEN],
        k_confirm_v=confirmation_keys[CONFIRMATION_LEN:],
        k_shared=_hkdf(k_main, _SHARED_KEY_INFO, KEY_LEN),
    )


def confirmation(key: bytes, peer_share: bytes) -> bytes:
    """``MAC(K_confirm, share)``: HMAC-SHA256 over the share received from the other side."""
    return hmac.new(key, peer_share, hashlib.sha256).digest()


# -------------------------------------------------------------------- state machines


def _ephemeral_scalar(rng: Callable[[int], bytes], injected: int | None) -> int:
    """x or y: uniform in 1..p-1 from ``rng`` (40 bytes reduced mod p), or the injected one."""
    if injected is not None:
        if not 0 < injected < P256_ORDER:
            raise ValueError("an injected ephemeral scalar must be in 1..p-1")
        return injected
    for _ in range(_EPHEMERAL_DRAWS):
        drawn = rng(_EPHEMERAL_DRAW_LEN)
        if len(drawn) != _EPHEMERAL_DRAW_LEN:
            raise LocalProtocolError("the random source returned the wrong number of bytes")
        scalar = int.from_bytes(drawn, "big") % P256_ORDER
        if scalar:
            return scalar
    raise LocalProtocolError("the random source keeps returning multiples of the group order")


class _Stage(enum.Enum):
    NEW = enum.auto()
    WAITING = enum.auto()
    SUCCEEDED = enum.auto()
    FAILED = enum.auto()


@dataclass(repr=False)
class _Session:
    """Everything one run holds between its two steps; dropped at the end."""

    share_p: bytes
    share_v: bytes = b""
    keys: KeySchedule | None = None


class Prover:
    """The host's side of one SPAKE2+ run: :meth:`start`, then :meth:`finish`, once.

    ``context`` binds the run to the higher protocol (bleprov passes its prologue);
    ``id_prover`` and ``id_verifier`` must be the identities the verifier record was derived
    with. ``rng`` returns n random bytes (the OS CSPRNG by default).
    ``_ephemeral_scalar_for_tests`` fixes x, for RFC 9383's test vectors only: a fixed x in
    real use gives away the code to anyone who sees two runs.
    """

    def __init__(
        self,
        prover_secrets: ProverSecrets,
        *,
        context: bytes,
        id_prover: bytes,
        id_verifier: bytes,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        _ephemeral_scalar_for_tests: int | None = None,
    ) -> None:
        self._secrets: ProverSecrets | None = prover_secrets
        self._context = context
        self._id_prover = id_prover
        self._id_verifier = id_verifier
        self._x: int | None = _ephemeral_scalar(rng, _ephemeral_scalar_for_tests)
        self._stage = _Stage.NEW
        self._session: _Session | None = None
        self._k_main: bytes | None = None

    def __repr__(self) -> str:
        return f"Prover(stage={self._stage.name.lower()})"

    def start(self) -> bytes:
        """shareP, the 65-byte first message."""
        if self._stage is not _Stage.NEW or self._secrets is None or self._x is None:
            raise LocalProtocolError("Prover.start() runs once, first")
        share_p = prover_init(self._secrets.w0, self._x)
        self._session = _Session(share_p)
        self._stage = _Stage.WAITING
        return share_p

    def finish(self, share_v: bytes, confirm_v: bytes) -> tuple[bytes, bytes]:
        """Check the verifier's reply; return ``(confirmP, K_shared)``.

        Raises :class:`InvalidShare` or :class:`ConfirmationFailed` (wrong code, or not the
        device that holds its record); the Prover is spent either way.
        """
        prover_secrets, x, session = self._secrets, self._x, self._session
        if (
            self._stage is not _Stage.WAITING
            or prover_secrets is None
            or x is None
            or session is None
        ):
            raise LocalProtocolError("Prover.finish() runs once, after start()")
        self._stage = _Stage.FAILED
        self._secrets = self._x = self._session = None
        if hmac.compare_digest(share_v, session.share_p):
            raise InvalidShare("shareV reflects the prover's own share")
        z, v = prover_finish(prover_secrets.w0, prover_secrets.w1, x, share_v)
        keys = compute_key_schedule(
            compute_transcript(
                context=self._context,
                id_prover=self._id_prover,
                id_verifier=self._id_verifier,
                share_p=session.share_p,
                share_v=share_v,
                z=z,
                v=v,
                w0=prover_secrets.w0,
            )
        )
        if not hmac.compare_digest(confirmation(keys.k_confirm_v, session.share_p), confirm_v):
            raise ConfirmationFailed("the verifier's confirmation does not verify")
        self._stage = _Stage.SUCCEEDED
        self._k_main = keys.k_main
        return confirmation(keys.k_confirm_p, share_v), keys.k_shared

    @property
    def transcript_hash(self) -> bytes:
        """K_main = SHA-256(TT), once :meth:`finish` succeeded.

        Secret (TT holds Z, V and w0): bind later keys to it (as HKDF input), never send it.
        RFC 9383 section 3.4 wants K_main used for nothing but the key schedule and then
        discarded; this property is the one deliberate exception, for channel binding.
        """
        if self._k_main is None:
            raise LocalProtocolError("no transcript hash before a successful finish()")
        return self._k_main


class Verifier:
    """The device's side of one SPAKE2+ run: :meth:`respond`, then :meth:`finish`, once.

    Holds only the :class:`VerifierRecord`. ``K_shared`` is released by :meth:`finish` alone,
    after the prover's confirmation verified (RFC 9383 section 3.3). Arguments as for
    :class:`Prover`; ``_ephemeral_scalar_for_tests`` fixes y, for test vectors only.
    """

    def __init__(
        self,
        record: VerifierRecord,
        *,
        context: bytes,
        id_prover: bytes,
        id_verifier: bytes,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        _ephemeral_scalar_for_tests: int | None = None,
    ) -> None:
        self._record: VerifierRecord | None = record
        self._context = context
        self._id_prover = id_prover
        self._id_verifier = id_verifier
        self._y: int | None = _ephemeral_scalar(rng, _ephemeral_scalar_for_tests)
        self._stage = _Stage.NEW
        self._session: _Session | None = None
        self._k_main: bytes | None = None

    def __repr__(self) -> str:
        return f"Verifier(stage={self._stage.name.lower()})"

    def respond(self, share_p: bytes) -> tuple[bytes, bytes]:
        """Check shareP; return ``(shareV, confirmV)``, which may travel in one message.

        Raises :class:`InvalidShare` (the Verifier is then spent).
        """
        record, y = self._record, self._y
        if self._stage is not _Stage.NEW or record is None or y is None:
            raise LocalProtocolError("Verifier.respond() runs once, first")
        self._stage = _Stage.FAILED
        self._record = self._y = None
        share_v, z, v = verifier_finish(record.w0, record.L, y, share_p)
        keys = compute_key_schedule(
            compute_transcript(
                context=self._context,
                id_prover=self._id_prover,
                id_verifier=self._id_verifier,
                share_p=share_p,
                share_v=share_v,
                z=z,
                v=v,
                w0=record.w0,
            )
        )
        self._session = _Session(share_p, share_v, keys)
        self._stage = _Stage.WAITING
        return share_v, confirmation(keys.k_confirm_v, share_p)

    def finish(self, confirm_p: bytes) -> bytes:
        """Check the prover's confirmation; return ``K_shared``.

        Raises :class:`ConfirmationFailed` (wrong code); the Verifier is spent either way.
        """
        session = self._session
        if self._stage is not _Stage.WAITING or session is None or session.keys is None:
            raise LocalProtocolError("Verifier.finish() runs once, after respond()")
        self._stage = _Stage.FAILED
        self._session = None
        keys = session.keys
        if not hmac.compare_digest(confirmation(keys.k_confirm_p, session.share_v), confirm_p):
            raise ConfirmationFailed("the prover's confirmation does not verify")
        self._stage = _Stage.SUCCEEDED
        self._k_main = keys.k_main
        return keys.k_shared

    @property
    def transcript_hash(self) -> bytes:
        """K_main = SHA-256(TT), once :meth:`finish` succeeded; secret, as for the Prover."""
        if self._k_main is None:
            raise LocalProtocolError("no transcript hash before a successful finish()")
        return self._k_main
