"""``code`` mode: SPAKE2+ (RFC 9383, P-256). The device holds only the verifier (w0, L). One
and a half round trips. A user name the device does not know gets a fake verifier (a
reply like any other, and the same failure as a wrong password): no user enumeration.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bleprov.core.attempts import Credential
from bleprov.core.crypto.spake2plus import (
    HOST_MAX_COST,
    ScryptCost,
    Verifier,
    VerifierRecord,
    derive_verifier,
)
from bleprov.core.errors import LocalProtocolError, MalformedData
from bleprov.core.receipt import RECEIPT_COST, EnrolmentReceipt
from bleprov.core.session.messages import Mode, join_fields, split_fields
from bleprov.core.session.modes.base import (
    SPAKE_ID_VERIFIER,
    DeviceHandshake,
    DeviceKeys,
    Downgrade,
    HostHandshake,
    ModeNotAllowed,
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
from bleprov.core.window import WINDOW_USER, WindowClosed, WindowCode

if TYPE_CHECKING:
    from bleprov.core.advertising import DeviceInfo

#: code mode: HKDF info of the fake verifier an unknown user name gets (the user follows).
UNKNOWN_USER_INFO: Final = b"bleprov/1 unknown user "
#: code mode: the label of the transcript hash ``hh`` (docs/protocol.md, section 7.2).
CODE_TRANSCRIPT_LABEL: Final = b"bleprov/1 code transcript"


def unknown_user_record(key: bytes, user: bytes) -> VerifierRecord:
    """The verifier an unknown user name gets: fixed per device and name, matching no
    password anyone knows. ``w0s || w1s = HKDF-SHA256(salt = none, ikm = key, info =
    "bleprov/1 unknown user " || user, L = 80)``."""
    return hkdf_spake_secrets(key, salt=None, info=UNKNOWN_USER_INFO + user).verifier_record()


class CodeHost:
    """SPAKE2+ prover: knows the code (or password).

    ``rng`` draws the ephemeral scalar (tests pin it to print a vector; nothing else may).
    """

    def __init__(
        self,
        *,
        password: bytes,
        user: bytes,
        salt: bytes,
        cost: ScryptCost,
        device_info: bytes,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._user = user
        self._pro = prologue(Mode.CODE, device_info)
        prover_secrets = derive_verifier(
            password, salt=salt, id_prover=user, id_verifier=SPAKE_ID_VERIFIER, cost=cost
        )
        self._prover = spake_prover(prover_secrets, context=self._pro, user=user, rng=rng)
        self._share_p = b""

    def hello(self) -> bytes:
        self._share_p = self._prover.start()
        return join_fields(self._user, self._share_p)

    def receive(self, body: bytes) -> Step:
        return spake_host_confirm(
            self._prover,
            body,
            what="code reply",
            failure="the device did not confirm the code",
            label=CODE_TRANSCRIPT_LABEL,
            pro=self._pro,
            share_p=self._share_p,
        )


class CodeDevice:
    """SPAKE2+ verifier: holds only (w0, L) for the expected user.

    Keys come only after the host's confirmation checks out, so nothing is sealed for a
    host that has not proven the code (the attestation follows in the next flight).
    ``rng`` as for :class:`CodeHost`.
    """

    def __init__(
        self,
        *,
        records: dict[bytes, VerifierRecord],
        device_info: bytes,
        unknown_user_key: bytes | None = None,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._records = records
        self._pro = prologue(Mode.CODE, device_info)
        # Without a device key, a fresh one: unknown users still fail like wrong passwords.
        self._unknown_key = unknown_user_key or secrets.token_bytes(32)
        self._rng = rng
        self._verifier: Verifier | None = None
        self._shares = (b"", b"")

    def hello(self, body: bytes) -> Step:
        user, share_p = split_fields(body, 2, "code hello", limit=128)
        # Derived for every user, known or not, so both take the same work and time.
        fake = unknown_user_record(self._unknown_key, user)
        record = self._records.get(user, fake)
        self._verifier = spake_verifier(record, context=self._pro, user=user, rng=self._rng)
        share_v, step = spake_respond(self._verifier, share_p)
        self._shares = (share_p, share_v)
        return step

    def receive(self, body: bytes) -> Step:
        if self._verifier is None or not self._shares[0]:
            raise UnexpectedMessage("code proof before hello")
        share_p, share_v = self._shares
        step = spake_device_confirm(
            self._verifier,
            body,
            failure="wrong code",
            label=CODE_TRANSCRIPT_LABEL,
            pro=self._pro,
            share_p=share_p,
            share_v=share_v,
        )
        self._shares = (b"", b"")
        return step


# ------------------------------------------------------------------ the engine

#: The dearest scrypt cost a host runs for the code mode, printed code or window
#: (:data:`~bleprov.core.crypto.spake2plus.HOST_MAX_COST`, as the info value writes it).
MAX_SCRYPT_LOG2_N: Final = HOST_MAX_COST.log2_n
MAX_SCRYPT_R: Final = HOST_MAX_COST.r
MAX_SCRYPT_P: Final = HOST_MAX_COST.p


class ExcessiveCost(MalformedData):
    """The device asks for a dearer scrypt than a host runs (a fake device's denial of
    service on the host, or a factory error)."""


def bounded_cost(log_n: int, r: int, p: int) -> ScryptCost:
    """The cost the device's info asks for (printed code or window), if a host runs it:
    checked before anything is derived, whichever of the two paths asks."""
    if log_n > MAX_SCRYPT_LOG2_N or r > MAX_SCRYPT_R or p > MAX_SCRYPT_P:
        raise ExcessiveCost(
            f"the device asks for scrypt cost 2^{log_n}, r {r}, p {p}; a host runs at "
            f"most 2^{MAX_SCRYPT_LOG2_N}, r {MAX_SCRYPT_R}, p {MAX_SCRYPT_P}"
        )
    return ScryptCost(n=1 << log_n, r=r, p=p)


@dataclass(frozen=True, repr=False)
class CodeSecret:
    """A printed code (user b"") or a scratch card's user and password."""

    password: bytes
    user: bytes = b""


@dataclass(frozen=True, repr=False)
class WindowSecret:
    """The one-time code of a commissioning window the device's owner opened."""

    code: WindowCode


class CodeMode:
    """A code the user holds: printed, a scratch card, the owner's window code, or an
    enrolment's receipt."""

    mode: Final = Mode.CODE
    name: Final = "code"
    credential: Final = Credential.CODE
    oob: Final = OobInput.CODE
    prompt: Final = Prompt.NONE
    device_confirms: Final = False
    button_window: Final = False

    def host(self, secret: object, info: DeviceInfo, info_raw: bytes) -> HostHandshake:
        if isinstance(secret, EnrolmentReceipt):
            return CodeHost(
                password=secret.secret,
                user=secret.user,
                salt=secret.enrolment_id,
                cost=RECEIPT_COST,
                device_info=info_raw,
            )
        if isinstance(secret, WindowSecret):
            if info.window is None:
                raise WindowClosed("the device has no commissioning window open")
            return CodeHost(
                password=secret.code.password,
                user=WINDOW_USER,
                salt=info.window.salt,
                cost=bounded_cost(*info.window.cost),
                device_info=info_raw,
            )
        if not isinstance(secret, CodeSecret):
            raise LocalProtocolError("code mode needs the code or user and password")
        if info.pbkdf_salt is None or info.pbkdf_cost is None:
            raise Downgrade("the device offers code mode without its PBKDF parameters")
        return CodeHost(
            password=secret.password,
            user=secret.user,
            salt=info.pbkdf_salt,
            cost=bounded_cost(*info.pbkdf_cost),
            device_info=info_raw,
        )

    def device(self, keys: DeviceKeys, info_raw: bytes) -> DeviceHandshake:
        if not keys.code_records:
            raise ModeNotAllowed("this device has no code verifier")
        return CodeDevice(
            records=keys.code_records,
            device_info=info_raw,
            unknown_user_key=keys.unknown_user_key,
        )


ENGINE: Final = CodeMode()
