"""The five out-of-band modes as handshake engines, one class per mode and role.

Each engine consumes and produces handshake bodies (the ``body`` of HELLO and HANDSHAKE
messages) and, once keys exist, hands back :class:`SessionKeys`. Engines know nothing of
framing, attempts or attestation: :mod:`bleprov.core.session.host` and
:mod:`bleprov.core.session.device` drive them.

Every mode binds the same prologue (:func:`prologue`): protocol version, the chosen mode
and the device's info value byte for byte, so a mode the device's policy did not offer,
or info altered on the way, makes the handshake fail (downgrade protection).

- ``qr``: Noise_NKpsk0_25519_ChaChaPoly_SHA256. The label carries the device's static
  key (authenticates the device) and a 128-bit secret, the PSK (authenticates the host).
  One round trip.
- ``code``: SPAKE2+ (RFC 9383, P-256). The device holds only the verifier (w0, L). One
  and a half round trips. A user name the device does not know gets a fake verifier (a
  reply like any other, and the same failure as a wrong password): no user enumeration.
- ``compare``: P-256 ECDH with commitment before reveal, LE Secure Connections style
  (f4 commitment, g2 six-digit value); the user confirms the number on both sides (only
  a device with a button of its own may offer it).
- ``passkey``: SPAKE2+ again, with a one-time six-digit number the device draws and
  shows when asked; the user types it on the host. For a device with a display and no
  button: an active attacker gets one guess in 10^6 per attempt, a recording nothing.
- ``button``: Noise_NN_25519_ChaChaPoly_SHA256, unauthenticated, accepted only in the
  device's button window (:class:`~bleprov.core.attempts.ButtonWindow`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bleprov.core.crypto import lesc
from bleprov.core.crypto.noise import NoiseHandshake
from bleprov.core.crypto.spake2plus import (
    P256_ORDER,
    PBKDF_HALF_LEN,
    Prover,
    ProverSecrets,
    ScryptCost,
    Verifier,
    VerifierRecord,
    derive_verifier,
    pbkdf_input,
)
from bleprov.core.device_secrets import SPAKE_ID_VERIFIER
from bleprov.core.errors import LocalProtocolError, MalformedData, ProtocolError
from bleprov.core.session.messages import Mode, join_fields, split_fields

PROTOCOL_LABEL: Final = b"bleprov/1"
QR_PSK_INFO: Final = b"bleprov/1 qr psk"
KEYS_INFO: Final = b"bleprov/1 session keys"
#: Channel bindings: HKDF info prefix; the label follows (docs/protocol.md, "Channel binding").
BINDING_INFO: Final = b"bleprov/1 channel binding "
MAX_BINDING_LABEL: Final = 64
#: Secret exports: HKDF info prefix; the label follows (docs/protocol.md, "Secure channel").
EXPORTER_INFO: Final = b"bleprov/1 exporter "
#: code mode: HKDF info of the fake verifier an unknown user name gets (the user follows).
UNKNOWN_USER_INFO: Final = b"bleprov/1 unknown user "
#: passkey mode: digits of the one-time number, and the bytes of its per-attempt salt.
PASSKEY_DIGITS: Final = 6
PASSKEY_SALT_BYTES: Final = 16
#: passkey mode: HKDF info deriving w0s || w1s from the number.
PASSKEY_KDF_INFO: Final = b"bleprov/1 passkey w0w1"


class AuthenticationFailed(ProtocolError):
    """The peer did not prove the out-of-band secret (wrong code, wrong label)."""

    code = 0x43


class UserRejected(ProtocolError):
    """The user said the numbers on the host and the device differ."""

    code = 0x46


class UnexpectedMessage(ProtocolError):
    """A handshake message arrived when another was due."""

    code = 0x47


def prologue(mode: Mode, device_info: bytes) -> bytes:
    """What every mode binds: version label, chosen mode, the device info exactly."""
    return PROTOCOL_LABEL + bytes([int(mode)]) + len(device_info).to_bytes(2, "big") + device_info


def qr_psk(label_secret: bytes) -> bytes:
    """The Noise PSK from the label's 128-bit secret (HKDF-SHA256, fixed info)."""
    if len(label_secret) != 16:
        raise MalformedData("label secret must be 16 bytes")
    derived: bytes = HKDF(hashes.SHA256(), 32, salt=None, info=QR_PSK_INFO).derive(label_secret)
    return derived


@dataclass(frozen=True, repr=False)
class SessionKeys:
    host_to_device: bytes
    device_to_host: bytes
    #: Public transcript hash the device's attestation signs.
    handshake_hash: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


def channel_binding(handshake_hash: bytes, label: bytes) -> bytes:
    """32 bytes unique to one session, for binding other protocols to it.

    Derived from the handshake hash, which Noise (section 11.2) names as the channel-binding
    value: both ends of *this* session compute it, a session with anyone else yields another.
    It is not a secret (the transcript is public); what uses it needs uniqueness, not secrecy
    (a CSR bound to the session that carries it). Each use has its own ``label``.
    """
    if not isinstance(label, bytes) or not 0 < len(label) <= MAX_BINDING_LABEL:
        raise ValueError(f"binding label must be 1..{MAX_BINDING_LABEL} bytes")
    out: bytes = HKDF(hashes.SHA256(), 32, salt=None, info=BINDING_INFO + label).derive(
        handshake_hash
    )
    return out


def exporter(keys: SessionKeys, label: bytes) -> bytes:
    """32 secret bytes both ends of *this* session derive from its keys, for ``label``.

    Unlike :func:`channel_binding` (public: from the transcript), an export is known only
    to the two ends: HKDF-SHA256 with the handshake hash as salt and both directions'
    keys as input, as TLS exporters are (RFC 8446 section 7.5)."""
    if not isinstance(label, bytes) or not 0 < len(label) <= MAX_BINDING_LABEL:
        raise ValueError(f"exporter label must be 1..{MAX_BINDING_LABEL} bytes")
    out: bytes = HKDF(
        hashes.SHA256(), 32, salt=keys.handshake_hash, info=EXPORTER_INFO + label
    ).derive(keys.host_to_device + keys.device_to_host)
    return out


def _schedule(secret: bytes, handshake_hash: bytes) -> SessionKeys:
    okm = HKDF(hashes.SHA256(), 64, salt=handshake_hash, info=KEYS_INFO).derive(secret)
    return SessionKeys(okm[:32], okm[32:], handshake_hash)


@dataclass
class Step:
    """What an engine produced for one input."""

    reply: bytes | None = None
    keys: SessionKeys | None = None
    #: compare mode: the six-digit value to show and have the user confirm; passkey mode
    #: (device side): the one-time number to show for the user to type on the host.
    number: int | None = None
    #: passkey mode, host side: the user must type the number the device shows now.
    needs_passkey: bool = False
    #: code mode, device side: keys exist but the host has not proven the code yet.
    awaiting_proof: bool = False
    done: bool = False


# ------------------------------------------------------------------ qr / button


class _NoiseHost:
    def __init__(self, handshake: NoiseHandshake) -> None:
        self._hs = handshake

    def hello(self) -> bytes:
        return self._hs.write_message(b"")

    def receive(self, body: bytes) -> Step:
        self._hs.read_message(body)
        k1, k2 = self._hs.split_keys()
        return Step(keys=SessionKeys(k1, k2, self._hs.handshake_hash), done=True)


class _NoiseDevice:
    def __init__(self, handshake: NoiseHandshake) -> None:
        self._hs = handshake

    def hello(self, body: bytes) -> Step:
        try:
            self._hs.read_message(body)
        except ProtocolError:
            raise AuthenticationFailed("the host did not prove the label secret") from None
        reply = self._hs.write_message(b"")
        k1, k2 = self._hs.split_keys()
        return Step(reply=reply, keys=SessionKeys(k1, k2, self._hs.handshake_hash), done=True)

    def receive(self, body: bytes) -> Step:
        raise UnexpectedMessage("the Noise handshake has no third message")


def qr_host(*, device_static_public: bytes, label_secret: bytes, device_info: bytes) -> _NoiseHost:
    return _NoiseHost(
        NoiseHandshake(
            "NKpsk0",
            initiator=True,
            local_static=None,
            remote_static=device_static_public,
            psk=qr_psk(label_secret),
            prologue=prologue(Mode.QR, device_info),
        )
    )


def qr_device(
    *, static_key: X25519PrivateKey, label_secret: bytes, device_info: bytes
) -> _NoiseDevice:
    return _NoiseDevice(
        NoiseHandshake(
            "NKpsk0",
            initiator=False,
            local_static=static_key,
            remote_static=None,
            psk=qr_psk(label_secret),
            prologue=prologue(Mode.QR, device_info),
        )
    )


def button_host(*, device_info: bytes) -> _NoiseHost:
    return _NoiseHost(
        NoiseHandshake(
            "NN",
            initiator=True,
            local_static=None,
            remote_static=None,
            psk=None,
            prologue=prologue(Mode.BUTTON, device_info),
        )
    )


def button_device(*, device_info: bytes) -> _NoiseDevice:
    return _NoiseDevice(
        NoiseHandshake(
            "NN",
            initiator=False,
            local_static=None,
            remote_static=None,
            psk=None,
            prologue=prologue(Mode.BUTTON, device_info),
        )
    )


# ------------------------------------------------------------------------ code


def _scalars(okm: bytes) -> ProverSecrets:
    """``w0s || w1s`` (40 bytes each, big-endian) reduced mod p, as RFC 9383 section 3.2."""
    w0 = int.from_bytes(okm[:PBKDF_HALF_LEN], "big") % P256_ORDER
    w1 = int.from_bytes(okm[PBKDF_HALF_LEN:], "big") % P256_ORDER
    return ProverSecrets(w0, w1)


def unknown_user_record(key: bytes, user: bytes) -> VerifierRecord:
    """The verifier an unknown user name gets: fixed per device and name, matching no
    password anyone knows. ``w0s || w1s = HKDF-SHA256(salt = none, ikm = key, info =
    "bleprov/1 unknown user " || user, L = 80)``."""
    okm = HKDF(
        hashes.SHA256(), 2 * PBKDF_HALF_LEN, salt=None, info=UNKNOWN_USER_INFO + user
    ).derive(key)
    return _scalars(okm).verifier_record()


def _code_hash(pro: bytes, share_p: bytes, share_v: bytes) -> bytes:
    return hashlib.sha256(b"bleprov/1 code transcript" + pro + share_p + share_v).digest()


class CodeHost:
    """SPAKE2+ prover: knows the code (or password)."""

    def __init__(
        self,
        *,
        password: bytes,
        user: bytes,
        salt: bytes,
        cost: ScryptCost,
        device_info: bytes,
    ) -> None:
        self._user = user
        self._pro = prologue(Mode.CODE, device_info)
        prover_secrets = derive_verifier(
            password, salt=salt, id_prover=user, id_verifier=SPAKE_ID_VERIFIER, cost=cost
        )
        self._prover = Prover(
            prover_secrets, context=self._pro, id_prover=user, id_verifier=SPAKE_ID_VERIFIER
        )
        self._share_p = b""

    def hello(self) -> bytes:
        self._share_p = self._prover.start()
        return join_fields(self._user, self._share_p)

    def receive(self, body: bytes) -> Step:
        share_v, confirm_v = split_fields(body, 2, "code reply")
        try:
            confirm_p, k_shared = self._prover.finish(share_v, confirm_v)
        except ProtocolError:
            raise AuthenticationFailed("the device did not confirm the code") from None
        keys = _schedule(k_shared, _code_hash(self._pro, self._share_p, share_v))
        return Step(reply=confirm_p, keys=keys, done=True)


class CodeDevice:
    """SPAKE2+ verifier: holds only (w0, L) for the expected user.

    Keys come only after the host's confirmation checks out, so nothing is sealed for a
    host that has not proven the code (the attestation follows in the next flight).
    """

    def __init__(
        self,
        *,
        records: dict[bytes, VerifierRecord],
        device_info: bytes,
        unknown_user_key: bytes | None = None,
    ) -> None:
        self._records = records
        self._pro = prologue(Mode.CODE, device_info)
        # Without a device key, a fresh one: unknown users still fail like wrong passwords.
        self._unknown_key = unknown_user_key or secrets.token_bytes(32)
        self._verifier: Verifier | None = None
        self._shares = (b"", b"")

    def hello(self, body: bytes) -> Step:
        user, share_p = split_fields(body, 2, "code hello", limit=128)
        # Derived for every user, known or not, so both take the same work and time.
        fake = unknown_user_record(self._unknown_key, user)
        record = self._records.get(user, fake)
        self._verifier = Verifier(
            record, context=self._pro, id_prover=user, id_verifier=SPAKE_ID_VERIFIER
        )
        share_v, confirm_v = self._verifier.respond(share_p)
        self._shares = (share_p, share_v)
        return Step(reply=join_fields(share_v, confirm_v), awaiting_proof=True)

    def receive(self, body: bytes) -> Step:
        if self._verifier is None or not self._shares[0]:
            raise UnexpectedMessage("code proof before hello")
        try:
            k_shared = self._verifier.finish(body)
        except ProtocolError:
            raise AuthenticationFailed("wrong code") from None
        self._shares, (share_p, share_v) = (b"", b""), self._shares
        keys = _schedule(k_shared, _code_hash(self._pro, share_p, share_v))
        return Step(keys=keys, done=True)


# --------------------------------------------------------------------- passkey


def passkey_password(number: int) -> bytes:
    """The SPAKE2+ password of a one-time number: its six ASCII digits, zeros kept."""
    if isinstance(number, bool) or not 0 <= number < 10**PASSKEY_DIGITS:
        raise LocalProtocolError(f"a passkey is a number of {PASSKEY_DIGITS} digits")
    return f"{number:0{PASSKEY_DIGITS}d}".encode("ascii")


def parse_passkey(text: str) -> int:
    """The number a user typed: exactly six digits; spaces and dashes between them are
    fine. Raises :class:`LocalProtocolError` (ask again) for anything else."""
    digits = "".join(ch for ch in text.strip() if ch not in " -")
    if len(digits) != PASSKEY_DIGITS or not (digits.isascii() and digits.isdigit()):
        raise LocalProtocolError(f"type the {PASSKEY_DIGITS} digits the device shows")
    return int(digits)


def passkey_secrets(number: int, salt: bytes) -> ProverSecrets:
    """``w0, w1`` from the one-time number and the attempt's salt.

    ``w0s || w1s = HKDF-SHA256(salt, ikm = pbkdf_input(digits, "", "bleprov device"),
    info = "bleprov/1 passkey w0w1", L = 80)``. No memory-hard cost, on purpose: scrypt
    makes each *offline* guess dear, and SPAKE2+ leaves nothing to guess offline (a
    recording of the exchange, or an active attacker's run, tests no candidate number);
    the number is drawn afresh for every attempt and never stored, so no verifier can be
    stolen either. What limits an attacker is one online guess per attempt (10^-6) and
    the attempt counter. scrypt would only cost the device time on every attempt.
    """
    if len(salt) != PASSKEY_SALT_BYTES:
        raise MalformedData(f"passkey salt must be {PASSKEY_SALT_BYTES} bytes")
    okm = HKDF(hashes.SHA256(), 2 * PBKDF_HALF_LEN, salt=salt, info=PASSKEY_KDF_INFO).derive(
        pbkdf_input(passkey_password(number), b"", SPAKE_ID_VERIFIER)
    )
    return _scalars(okm)


def _passkey_hash(pro: bytes, salt: bytes, share_p: bytes, share_v: bytes) -> bytes:
    return hashlib.sha256(b"bleprov/1 passkey transcript" + pro + salt + share_p + share_v).digest()


class PasskeyHost:
    """SPAKE2+ prover once the user typed the number: HELLO asks the device to draw one."""

    def __init__(self, *, device_info: bytes) -> None:
        self._pro = prologue(Mode.PASSKEY, device_info)
        self._salt: bytes | None = None
        self._prover: Prover | None = None
        self._share_p = b""

    def hello(self) -> bytes:
        return b""

    def enter(self, number: int) -> bytes:
        """The number the user typed: the prover's share to send."""
        if self._salt is None or self._prover is not None:
            raise LocalProtocolError("no passkey is being asked for")
        self._prover = Prover(
            passkey_secrets(number, self._salt),
            context=self._pro,
            id_prover=b"",
            id_verifier=SPAKE_ID_VERIFIER,
        )
        self._share_p = self._prover.start()
        return self._share_p

    def receive(self, body: bytes) -> Step:
        if self._salt is None:
            if len(body) != PASSKEY_SALT_BYTES:
                raise MalformedData(f"passkey salt must be {PASSKEY_SALT_BYTES} bytes")
            self._salt = body
            return Step(needs_passkey=True)
        if self._prover is None or not self._share_p:
            raise UnexpectedMessage("passkey reply before the number was typed")
        share_v, confirm_v = split_fields(body, 2, "passkey reply")
        try:
            confirm_p, k_shared = self._prover.finish(share_v, confirm_v)
        except ProtocolError:
            raise AuthenticationFailed(
                "the device did not confirm the number: it was mistyped, or another device answered"
            ) from None
        share_p, self._share_p = self._share_p, b""
        keys = _schedule(k_shared, _passkey_hash(self._pro, self._salt, share_p, share_v))
        return Step(reply=confirm_p, keys=keys, done=True)


class PasskeyDevice:
    """SPAKE2+ verifier of a number it draws and shows for this attempt only."""

    def __init__(
        self,
        *,
        device_info: bytes,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        draw: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self._pro = prologue(Mode.PASSKEY, device_info)
        self._rng = rng
        self._draw = draw
        self._salt = b""
        self._verifier: Verifier | None = None
        self._share_p = b""
        self._share_v = b""

    def hello(self, body: bytes) -> Step:
        if body:
            raise MalformedData("a passkey hello carries no body")
        self._salt = self._rng(PASSKEY_SALT_BYTES)
        number = self._draw(10**PASSKEY_DIGITS)
        self._verifier = Verifier(
            passkey_secrets(number, self._salt).verifier_record(),
            context=self._pro,
            id_prover=b"",
            id_verifier=SPAKE_ID_VERIFIER,
        )
        return Step(reply=self._salt, number=number)

    def receive(self, body: bytes) -> Step:
        if self._verifier is None:
            raise UnexpectedMessage("passkey message before hello")
        if not self._share_p:
            share_v, confirm_v = self._verifier.respond(body)
            self._share_p, self._share_v = body, share_v
            return Step(reply=join_fields(share_v, confirm_v), awaiting_proof=True)
        if not self._share_v:
            raise UnexpectedMessage("the passkey handshake is over")
        try:
            k_shared = self._verifier.finish(body)
        except ProtocolError:
            raise AuthenticationFailed("wrong number") from None
        hh = _passkey_hash(self._pro, self._salt, self._share_p, self._share_v)
        self._share_v = b""
        return Step(keys=_schedule(k_shared, hh), done=True)


# --------------------------------------------------------------------- compare


def _compare_hash(
    pro: bytes, pk_h: bytes, pk_d: bytes, c_d: bytes, n_h: bytes, n_d: bytes
) -> bytes:
    return hashlib.sha256(
        b"bleprov/1 compare transcript" + pro + pk_h + pk_d + c_d + n_h + n_d
    ).digest()


@dataclass
class _CompareState:
    key: ec.EllipticCurvePrivateKey
    pk_self: bytes
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    pk_peer: bytes = b""
    commitment: bytes = b""
    peer_nonce: bytes = b""


class CompareHost:
    """Initiator: sends its key, receives the device's commitment, reveals its nonce."""

    def __init__(
        self, *, device_info: bytes, rng: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self._pro = prologue(Mode.COMPARE, device_info)
        key = lesc.generate_p256_private_key()
        self._s = _CompareState(key, lesc.p256_public_key_bytes(key), rng(16))
        self._stage = 0

    def hello(self) -> bytes:
        return self._s.pk_self

    def receive(self, body: bytes) -> Step:
        s = self._s
        if self._stage == 0:
            pk_d, c_d = split_fields(body, 2, "compare commitment")
            if hmac.compare_digest(pk_d, s.pk_self):
                raise AuthenticationFailed("the device echoed our own public key")
            lesc.p256_public_key_from_bytes(pk_d)
            if len(c_d) != 16:
                raise MalformedData("commitment must be 16 bytes")
            s.pk_peer, s.commitment = pk_d, c_d
            self._stage = 1
            return Step(reply=s.nonce)
        if self._stage == 1:
            n_d = body
            if len(n_d) != 16:
                raise MalformedData("nonce must be 16 bytes")
            if hmac.compare_digest(n_d, s.nonce):
                raise AuthenticationFailed("the device echoed our own nonce")
            try:
                lesc.verify_commitment(s.commitment, s.pk_peer[:32], s.pk_self[:32], n_d)
            except lesc.CommitmentMismatch:
                raise AuthenticationFailed(
                    "the device's nonce does not open its commitment"
                ) from None
            s.peer_nonce = n_d
            dh = lesc.dh_key(s.key, lesc.p256_public_key_from_bytes(s.pk_peer))
            number = lesc.numeric_comparison_value(s.pk_self[:32], s.pk_peer[:32], s.nonce, n_d)
            hh = _compare_hash(self._pro, s.pk_self, s.pk_peer, s.commitment, s.nonce, n_d)
            self._stage = 2
            return Step(keys=_schedule(dh, hh), number=number, done=True)
        raise UnexpectedMessage("the compare handshake is over")


class CompareDevice:
    """Responder: commits to its nonce before it sees the host's."""

    def __init__(
        self, *, device_info: bytes, rng: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self._pro = prologue(Mode.COMPARE, device_info)
        key = lesc.generate_p256_private_key()
        self._s = _CompareState(key, lesc.p256_public_key_bytes(key), rng(16))
        self._stage = 0

    def hello(self, body: bytes) -> Step:
        s = self._s
        if hmac.compare_digest(body[:64], s.pk_self):
            raise AuthenticationFailed("the host echoed our own public key")
        lesc.p256_public_key_from_bytes(body)
        s.pk_peer = body
        s.commitment = lesc.commitment(s.pk_self[:32], s.pk_peer[:32], s.nonce)
        self._stage = 1
        return Step(reply=join_fields(s.pk_self, s.commitment))

    def receive(self, body: bytes) -> Step:
        s = self._s
        if self._stage != 1:
            raise UnexpectedMessage("the compare handshake is over")
        if len(body) != 16:
            raise MalformedData("nonce must be 16 bytes")
        if hmac.compare_digest(body, s.nonce):
            raise AuthenticationFailed("the host echoed our own nonce")
        s.peer_nonce = body
        dh = lesc.dh_key(s.key, lesc.p256_public_key_from_bytes(s.pk_peer))
        number = lesc.numeric_comparison_value(s.pk_peer[:32], s.pk_self[:32], body, s.nonce)
        hh = _compare_hash(self._pro, s.pk_peer, s.pk_self, s.commitment, body, s.nonce)
        self._stage = 2
        return Step(reply=s.nonce, keys=_schedule(dh, hh), number=number, done=True)


__all__ = [
    "AuthenticationFailed",
    "CodeDevice",
    "CodeHost",
    "CompareDevice",
    "CompareHost",
    "PasskeyDevice",
    "PasskeyHost",
    "ProverSecrets",
    "SessionKeys",
    "Step",
    "UnexpectedMessage",
    "UserRejected",
    "button_device",
    "button_host",
    "parse_passkey",
    "passkey_password",
    "passkey_secrets",
    "prologue",
    "qr_device",
    "qr_host",
    "qr_psk",
    "unknown_user_record",
]
