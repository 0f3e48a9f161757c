"""The steps the key-agreement modes share, written once: how code, passkey and compare
turn their shared secret and transcript into session keys, and the SPAKE2+ set-up and
confirmation code and passkey both run (docs/protocol.md, sections 7.2, 7.3 and 7.5).

Each mode's transcript hash is ``SHA-256(label || field || field ...)`` with the mode's
own label ("bleprov/1 code transcript", ...); the fields follow the label as they are,
without lengths (every one has a fixed length or is the length-prefixed prologue first).
A failed SPAKE2+ confirmation, or a peer share refused, is :class:`AuthenticationFailed`
with the mode's own words, and nothing else about why: a wrong code and a fake device
look alike on purpose.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from bleprov.core.crypto.primitives import hkdf_sha256
from bleprov.core.crypto.spake2plus import (
    PBKDF_HALF_LEN,
    Prover,
    ProverSecrets,
    Verifier,
    VerifierRecord,
)
from bleprov.core.errors import ProtocolError
from bleprov.core.session.messages import join_fields, split_fields
from bleprov.core.session.modes.base import (
    SPAKE_ID_VERIFIER,
    AuthenticationFailed,
    Step,
    key_schedule,
    spake_scalars,
)


def transcript_hash(label: bytes, *fields: bytes) -> bytes:
    """``SHA-256(label || fields...)``: a mode's public handshake hash ``hh``."""
    return hashlib.sha256(label + b"".join(fields)).digest()


def keys_step(
    secret: bytes,
    label: bytes,
    *fields: bytes,
    reply: bytes | None = None,
    number: int | None = None,
) -> Step:
    """The step that ends a handshake: keys from ``secret`` and the transcript hash."""
    keys = key_schedule(secret, transcript_hash(label, *fields))
    return Step(reply=reply, keys=keys, number=number, done=True)


# ----------------------------------------------------------------------- SPAKE2+


def hkdf_spake_secrets(ikm: bytes, *, salt: bytes | None, info: bytes) -> ProverSecrets:
    """``w0s || w1s = HKDF-SHA256(salt, ikm, info, L = 80)``, halves reduced mod p: the
    SPAKE2+ secrets of a passkey, or of the verifier an unknown user name gets."""
    return spake_scalars(hkdf_sha256(ikm, 2 * PBKDF_HALF_LEN, salt=salt, info=info))


def spake_prover(
    prover_secrets: ProverSecrets,
    *,
    context: bytes,
    user: bytes,
    rng: Callable[[int], bytes] = secrets.token_bytes,
) -> Prover:
    """The host's SPAKE2+ side: idProver is the user name, idVerifier "bleprov device"."""
    return Prover(
        prover_secrets,
        context=context,
        id_prover=user,
        id_verifier=SPAKE_ID_VERIFIER,
        rng=rng,
    )


def spake_verifier(
    record: VerifierRecord,
    *,
    context: bytes,
    user: bytes,
    rng: Callable[[int], bytes] = secrets.token_bytes,
) -> Verifier:
    """The device's SPAKE2+ side, with the same identities as :func:`spake_prover`."""
    return Verifier(record, context=context, id_prover=user, id_verifier=SPAKE_ID_VERIFIER, rng=rng)


def spake_respond(verifier: Verifier, share_p: bytes) -> tuple[bytes, Step]:
    """The device's reply to shareP: ``[shareV, confirmV]``, keys still withheld.

    Returns shareV too, which the transcript hash needs later. A refused share raises
    :class:`~bleprov.core.crypto.spake2plus.InvalidShare` (the attempt was counted)."""
    share_v, confirm_v = verifier.respond(share_p)
    return share_v, Step(reply=join_fields(share_v, confirm_v), awaiting_proof=True)


def spake_host_confirm(
    prover: Prover,
    body: bytes,
    *,
    what: str,
    failure: str,
    label: bytes,
    pro: bytes,
    share_p: bytes,
) -> Step:
    """The host's last step: check the device's ``[shareV, confirmV]``; reply confirmP.

    ``hh = SHA-256(label || pro || shareP || shareV)``, where ``pro`` is everything the
    mode binds before shareP (the prologue, and for passkey the salt). A shareV refused
    or a confirmV that does not verify raises :class:`AuthenticationFailed` with
    ``failure``: the host then sends nothing more (docs/protocol.md, section 7.2)."""
    share_v, confirm_v = split_fields(body, 2, what)
    try:
        confirm_p, k_shared = prover.finish(share_v, confirm_v)
    except ProtocolError:
        raise AuthenticationFailed(failure) from None
    return keys_step(k_shared, label, pro, share_p, share_v, reply=confirm_p)


def spake_device_confirm(
    verifier: Verifier,
    confirm_p: bytes,
    *,
    failure: str,
    label: bytes,
    pro: bytes,
    share_p: bytes,
    share_v: bytes,
) -> Step:
    """The device's last step: check confirmP; only then the keys (the same ``hh`` as
    :func:`spake_host_confirm`). A wrong confirmP raises :class:`AuthenticationFailed`."""
    try:
        k_shared = verifier.finish(confirm_p)
    except ProtocolError:
        raise AuthenticationFailed(failure) from None
    return keys_step(k_shared, label, pro, share_p, share_v)
