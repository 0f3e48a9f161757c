"""``passkey`` mode: SPAKE2+ again, with a one-time six-digit number the device draws and
shows when asked; the user types it on the host. For a device with a display and no
button: an active attacker gets one guess in 10^6 per attempt, a recording nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from bleprov.core.attempts import Credential
from bleprov.core.crypto.spake2plus import Prover, ProverSecrets, Verifier, pbkdf_input
from bleprov.core.errors import LocalProtocolError, MalformedData
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes.base import (
    SPAKE_ID_VERIFIER,
    DeviceHandshake,
    DeviceKeys,
    HostHandshake,
    OobInput,
    Prompt,
    Step,
    UnexpectedMessage,
    prologue,
)
from bleprov.core.session.modes.confirm import (
    hkdf_spake_secrets,
    spake_device_confirm,
    spake_host_confirm,
    spake_prover,
    spake_respond,
    spake_verifier,
)

if TYPE_CHECKING:
    from bleprov.core.advertising import DeviceInfo

#: passkey mode: digits of the one-time number, and the bytes of its per-attempt salt.
PASSKEY_DIGITS: Final = 6
PASSKEY_SALT_BYTES: Final = 16
#: passkey mode: HKDF info deriving w0s || w1s from the number.
PASSKEY_KDF_INFO: Final = b"bleprov/1 passkey w0w1"
#: passkey mode: the label of the transcript hash ``hh`` (docs/protocol.md, section 7.5).
PASSKEY_TRANSCRIPT_LABEL: Final = b"bleprov/1 passkey transcript"


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
    return hkdf_spake_secrets(
        pbkdf_input(passkey_password(number), b"", SPAKE_ID_VERIFIER),
        salt=salt,
        info=PASSKEY_KDF_INFO,
    )


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
        self._prover = spake_prover(
            passkey_secrets(number, self._salt), context=self._pro, user=b""
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
        step = spake_host_confirm(
            self._prover,
            body,
            what="passkey reply",
            failure="the device did not confirm the number: it was mistyped, or another "
            "device answered",
            label=PASSKEY_TRANSCRIPT_LABEL,
            pro=self._pro + self._salt,
            share_p=self._share_p,
        )
        self._share_p = b""
        return step


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
        self._verifier = spake_verifier(
            passkey_secrets(number, self._salt).verifier_record(), context=self._pro, user=b""
        )
        return Step(reply=self._salt, number=number)

    def receive(self, body: bytes) -> Step:
        if self._verifier is None:
            raise UnexpectedMessage("passkey message before hello")
        if not self._share_p:
            share_v, step = spake_respond(self._verifier, body)
            self._share_p, self._share_v = body, share_v
            return step
        if not self._share_v:
            raise UnexpectedMessage("the passkey handshake is over")
        step = spake_device_confirm(
            self._verifier,
            body,
            failure="wrong number",
            label=PASSKEY_TRANSCRIPT_LABEL,
            pro=self._pro + self._salt,
            share_p=self._share_p,
            share_v=self._share_v,
        )
        self._share_v = b""
        return step


class PasskeyMode:
    """The device shows a one-time number; the user types it on the host."""

    mode: Final = Mode.PASSKEY
    name: Final = "passkey"
    credential: Final = Credential.PASSKEY
    oob: Final = OobInput.NONE
    prompt: Final = Prompt.TYPE_NUMBER
    device_confirms: Final = False
    button_window: Final = False

    def host(self, secret: object, info: DeviceInfo, info_raw: bytes) -> HostHandshake:
        return PasskeyHost(device_info=info_raw)

    def device(self, keys: DeviceKeys, info_raw: bytes) -> DeviceHandshake:
        return PasskeyDevice(device_info=info_raw)


ENGINE: Final = PasskeyMode()
