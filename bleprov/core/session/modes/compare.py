"""``compare`` mode: P-256 ECDH with commitment before reveal, LE Secure Connections style
(f4 commitment, g2 six-digit value); the user confirms the number on both sides (only
a device with a button of its own may offer it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bleprov.core.attempts import Credential
from bleprov.core.crypto import lesc
from bleprov.core.crypto.primitives import P256PrivateKey
from bleprov.core.errors import MalformedData
from bleprov.core.session.messages import Mode, join_fields, split_fields
from bleprov.core.session.modes.base import (
    AuthenticationFailed,
    DeviceHandshake,
    DeviceKeys,
    HostHandshake,
    OobInput,
    Prompt,
    Step,
    UnexpectedMessage,
    key_schedule,
    prologue,
)

if TYPE_CHECKING:
    from bleprov.core.advertising import DeviceInfo


def _compare_hash(
    pro: bytes, pk_h: bytes, pk_d: bytes, c_d: bytes, n_h: bytes, n_d: bytes
) -> bytes:
    return hashlib.sha256(
        b"bleprov/1 compare transcript" + pro + pk_h + pk_d + c_d + n_h + n_d
    ).digest()


@dataclass
class _CompareState:
    key: P256PrivateKey
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
            return Step(keys=key_schedule(dh, hh), number=number, done=True)
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
        return Step(reply=s.nonce, keys=key_schedule(dh, hh), number=number, done=True)


class CompareMode:
    """Both sides show a number; the user confirms it on both."""

    mode: Final = Mode.COMPARE
    name: Final = "compare"
    credential: Final = Credential.COMPARE
    oob: Final = OobInput.NONE
    prompt: Final = Prompt.CONFIRM_NUMBER
    device_confirms: Final = True
    button_window: Final = False

    def host(self, secret: object, info: DeviceInfo, info_raw: bytes) -> HostHandshake:
        return CompareHost(device_info=info_raw)

    def device(self, keys: DeviceKeys, info_raw: bytes) -> DeviceHandshake:
        return CompareDevice(device_info=info_raw)


ENGINE: Final = CompareMode()
