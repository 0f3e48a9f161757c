"""``compare`` mode: P-256 ECDH with commitment before reveal, LE Secure Connections style
(f4 commitment, g2 six-digit value); the user confirms the number on both sides (only
a device with a button of its own may offer it).
"""

from __future__ import annotations

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
    prologue,
)
from bleprov.core.session.modes.confirm import keys_step

if TYPE_CHECKING:
    from bleprov.core.advertising import DeviceInfo


#: compare mode: the label of the transcript hash ``hh`` (docs/protocol.md, section 7.3).
COMPARE_TRANSCRIPT_LABEL: Final = b"bleprov/1 compare transcript"


@dataclass
class _CompareState:
    key: P256PrivateKey
    pk_self: bytes
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    pk_peer: bytes = b""
    commitment: bytes = b""
    peer_nonce: bytes = b""

    def take_peer_nonce(self, nonce: bytes, peer: str) -> None:
        """The peer's revealed nonce: 16 bytes, and not an echo of ours."""
        if len(nonce) != 16:
            raise MalformedData("nonce must be 16 bytes")
        if hmac.compare_digest(nonce, self.nonce):
            raise AuthenticationFailed(f"the {peer} echoed our own nonce")

    def finish(
        self, pro: bytes, pk_h: bytes, pk_d: bytes, n_h: bytes, n_d: bytes, reply: bytes | None
    ) -> Step:
        """Both sides' last step: DHKey, the number to show, the keys (section 7.3)."""
        dh = lesc.dh_key(self.key, lesc.p256_public_key_from_bytes(self.pk_peer))
        number = lesc.numeric_comparison_value(pk_h[:32], pk_d[:32], n_h, n_d)
        return keys_step(
            dh,
            COMPARE_TRANSCRIPT_LABEL,
            pro,
            pk_h,
            pk_d,
            self.commitment,
            n_h,
            n_d,
            reply=reply,
            number=number,
        )


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
            s.take_peer_nonce(n_d, "device")
            try:
                lesc.verify_commitment(s.commitment, s.pk_peer[:32], s.pk_self[:32], n_d)
            except lesc.CommitmentMismatch:
                raise AuthenticationFailed(
                    "the device's nonce does not open its commitment"
                ) from None
            s.peer_nonce = n_d
            step = s.finish(self._pro, s.pk_self, s.pk_peer, s.nonce, n_d, reply=None)
            self._stage = 2
            return step
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
        s.take_peer_nonce(body, "host")
        s.peer_nonce = body
        step = s.finish(self._pro, s.pk_peer, s.pk_self, body, s.nonce, reply=s.nonce)
        self._stage = 2
        return step


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
