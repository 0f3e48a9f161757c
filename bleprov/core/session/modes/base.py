"""What every mode shares: the prologue, the key schedule, the step an engine returns,
the handshake errors, and the two Noise handshakes qr and button run.

Every mode binds the same prologue (:func:`prologue`): protocol version, the chosen mode
and the device's info value byte for byte, so a mode the device's policy did not offer,
or info altered on the way, makes the handshake fail (downgrade protection).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, runtime_checkable

from bleprov.core.attempts import Credential, SessionRefused
from bleprov.core.crypto.noise import NoiseHandshake, NoisePattern
from bleprov.core.crypto.primitives import hkdf_sha256
from bleprov.core.crypto.spake2plus import (
    P256_ORDER,
    PBKDF_HALF_LEN,
    ProverSecrets,
    VerifierRecord,
)
from bleprov.core.device_secrets import SPAKE_ID_VERIFIER as SPAKE_ID_VERIFIER
from bleprov.core.errors import ProtocolError
from bleprov.core.session.messages import Mode
from bleprov.core.wire_codes import ErrorCode

if TYPE_CHECKING:
    from bleprov.core.advertising import DeviceInfo
    from bleprov.core.crypto.primitives import X25519PrivateKey

#: The protocol version every transcript binds (in the prologue, which every mode
#: hashes); the "bleprov/1 ..." HKDF labels are fixed domain-separation strings.
PROTOCOL_LABEL: Final = b"bleprov/2"
KEYS_INFO: Final = b"bleprov/1 session keys"
#: Channel bindings: HKDF info prefix; the label follows (docs/protocol.md, "Channel binding").
BINDING_INFO: Final = b"bleprov/1 channel binding "
MAX_BINDING_LABEL: Final = 64
#: Secret exports: HKDF info prefix; the label follows (docs/protocol.md, "Secure channel").
EXPORTER_INFO: Final = b"bleprov/1 exporter "


class AuthenticationFailed(ProtocolError):
    """The peer did not prove the out-of-band secret (wrong code, wrong label)."""

    code = ErrorCode.AUTHENTICATION_FAILED


class UserRejected(ProtocolError):
    """The user said the numbers on the host and the device differ."""

    code = ErrorCode.USER_REJECTED


class ModeNotAllowed(SessionRefused):
    """The device's policy disables the mode the host asked for."""

    code = ErrorCode.MODE_NOT_ALLOWED


class Downgrade(ProtocolError):
    """What the device advertised and what it says in its info disagree."""

    code = ErrorCode.DOWNGRADE


class UnexpectedMessage(ProtocolError):
    """A handshake message arrived when another was due."""

    code = ErrorCode.UNEXPECTED_MESSAGE


def prologue(mode: Mode, device_info: bytes) -> bytes:
    """What every mode binds: version label, chosen mode, the device info exactly."""
    return PROTOCOL_LABEL + bytes([int(mode)]) + len(device_info).to_bytes(2, "big") + device_info


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
    return hkdf_sha256(handshake_hash, 32, salt=None, info=BINDING_INFO + label)


def exporter(keys: SessionKeys, label: bytes) -> bytes:
    """32 secret bytes both ends of *this* session derive from its keys, for ``label``.

    Unlike :func:`channel_binding` (public: from the transcript), an export is known only
    to the two ends: HKDF-SHA256 with the handshake hash as salt and both directions'
    keys as input, as TLS exporters are (RFC 8446 section 7.5)."""
    if not isinstance(label, bytes) or not 0 < len(label) <= MAX_BINDING_LABEL:
        raise ValueError(f"exporter label must be 1..{MAX_BINDING_LABEL} bytes")
    return hkdf_sha256(
        keys.host_to_device + keys.device_to_host,
        32,
        salt=keys.handshake_hash,
        info=EXPORTER_INFO + label,
    )


def key_schedule(secret: bytes, handshake_hash: bytes) -> SessionKeys:
    okm = hkdf_sha256(secret, 64, salt=handshake_hash, info=KEYS_INFO)
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


class _NoiseEngine:
    """What both ends of qr and button share: one Noise handshake on the mode's prologue,
    whose Split() keys and hash become the session's keys after the second message.

    NKpsk0 takes the PSK and the device's static key (the host its public half as
    ``remote_static``, the device its private key as ``static_key``); NN takes none of
    them. :class:`~bleprov.core.crypto.noise.NoiseHandshake` refuses any other mix."""

    _initiator: ClassVar[bool]

    def __init__(
        self,
        pattern: NoisePattern,
        mode: Mode,
        device_info: bytes,
        *,
        static_key: X25519PrivateKey | None = None,
        remote_static: bytes | None = None,
        psk: bytes | None = None,
    ) -> None:
        self._hs = NoiseHandshake(
            pattern,
            initiator=self._initiator,
            local_static=static_key,
            remote_static=remote_static,
            psk=psk,
            prologue=prologue(mode, device_info),
        )

    def _established(self, reply: bytes | None = None) -> Step:
        host_to_device, device_to_host = self._hs.split_keys()
        keys = SessionKeys(host_to_device, device_to_host, self._hs.handshake_hash)
        return Step(reply=reply, keys=keys, done=True)


class NoiseHost(_NoiseEngine):
    """The host's half of a Noise mode, the initiator: HELLO, then the device's reply."""

    _initiator = True

    def hello(self) -> bytes:
        return self._hs.write_message(b"")

    def receive(self, body: bytes) -> Step:
        self._hs.read_message(body)
        return self._established()


class NoiseDevice(_NoiseEngine):
    """The device's half of a Noise mode, the responder: it answers HELLO and is done."""

    _initiator = False

    def hello(self, body: bytes) -> Step:
        try:
            self._hs.read_message(body)
        except ProtocolError:
            raise AuthenticationFailed("the host did not prove the label secret") from None
        return self._established(reply=self._hs.write_message(b""))

    def receive(self, body: bytes) -> Step:
        raise UnexpectedMessage("the Noise handshake has no third message")


def spake_scalars(okm: bytes) -> ProverSecrets:
    """``w0s || w1s`` (40 bytes each, big-endian) reduced mod p, as RFC 9383 section 3.2."""
    w0 = int.from_bytes(okm[:PBKDF_HALF_LEN], "big") % P256_ORDER
    w1 = int.from_bytes(okm[PBKDF_HALF_LEN:], "big") % P256_ORDER
    return ProverSecrets(w0, w1)


# ------------------------------------------------------------- the engine protocol


class OobInput(enum.Enum):
    """What the host must hold from outside the radio to run a mode."""

    #: The label's key and secret (QR code, NFC tag, long printed key).
    LABEL = "label"
    #: A code: printed, a scratch card's user and password, a window code, a receipt.
    CODE = "code"
    #: Nothing the user holds (a person compares or types a number, or presses a button).
    NONE = "none"


class Prompt(enum.Enum):
    """What a person does while the handshake runs (what the host's UI asks for)."""

    NONE = "none"
    #: Both sides show a number; the user confirms it on both (host:
    #: :class:`~bleprov.core.session.host.CompareNumber`; device: ``confirm_number``).
    CONFIRM_NUMBER = "confirm-number"
    #: The device shows a number; the user types it on the host (:class:`NumberEntry`).
    TYPE_NUMBER = "type-number"


class HostHandshake(Protocol):
    """The host's half of one mode's handshake."""

    def hello(self) -> bytes:
        """HELLO's body."""
        ...

    def receive(self, body: bytes) -> Step:
        """One HANDSHAKE body from the device."""
        ...


@runtime_checkable
class NumberEntry(Protocol):
    """A host handshake that waits for a number the user types (:attr:`Prompt.TYPE_NUMBER`)."""

    def enter(self, number: int) -> bytes:
        """The typed number: the HANDSHAKE body to send."""
        ...


class DeviceHandshake(Protocol):
    """The device's half of one mode's handshake."""

    def hello(self, body: bytes) -> Step:
        """HELLO's body from the host."""
        ...

    def receive(self, body: bytes) -> Step:
        """One HANDSHAKE body from the host."""
        ...


class DeviceKeys(Protocol):
    """What a device holds for its modes
    (:class:`~bleprov.core.session.device.DeviceSecrets` is one)."""

    @property
    def label_secret(self) -> bytes | None: ...

    @property
    def code_records(self) -> dict[bytes, VerifierRecord]: ...

    @property
    def noise_static_key(self) -> X25519PrivateKey: ...

    @property
    def unknown_user_key(self) -> bytes: ...


class ModeEngine(Protocol):
    """One pairing mode: everything the session machines, the advertisement, the labels
    and the CLI need to know of it. Register one with
    :func:`bleprov.core.session.modes.registry.register`."""

    @property
    def mode(self) -> Mode:
        """Its bit: HELLO's mode byte, and its bit in advertised and policy mode sets."""
        ...

    @property
    def name(self) -> str:
        """Its word in the CLI, on labels and in messages."""
        ...

    @property
    def credential(self) -> Credential:
        """The secret it proves on the device, whose attempt counter it uses."""
        ...

    @property
    def oob(self) -> OobInput:
        """What the host must hold from outside the radio."""
        ...

    @property
    def prompt(self) -> Prompt:
        """What a person does during the handshake."""
        ...

    @property
    def device_confirms(self) -> bool:
        """The device's own user must confirm too: only a device that can (display and
        button) offers it, and the session opens only after both confirmed."""
        ...

    @property
    def button_window(self) -> bool:
        """Runs unauthenticated inside the device's button window (claims it, is ended
        by another host's try, spends it whatever the outcome)."""
        ...

    def host(self, secret: object, info: DeviceInfo, info_raw: bytes) -> HostHandshake:
        """The host's handshake with the device whose info value is ``info_raw``.

        ``secret`` is what the user gave (:data:`~bleprov.core.session.host.OutOfBand`);
        the wrong kind raises :class:`~bleprov.core.errors.LocalProtocolError`."""
        ...

    def device(self, keys: DeviceKeys, info_raw: bytes) -> DeviceHandshake:
        """The device's handshake; :class:`ModeNotAllowed` if the device lacks its secret."""
        ...
