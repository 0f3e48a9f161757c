"""Sealed files: data encrypted at rest under a key stretched from a passphrase.

Envelope (deterministic CBOR): ``["bleprov sealed", 1, salt, [log2 N, r, p], nonce,
ciphertext]``; the key is scrypt(passphrase, salt) and the cipher ChaCha20-Poly1305 with
the envelope's header as associated data, so nothing in it can be altered unnoticed.
The Device enrolment issue's key-provider store supersedes this for device state.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bleprov.core import cbor
from bleprov.core.errors import BleprovError
from bleprov.store.files import write_atomic

LABEL = "bleprov sealed"
DEFAULT_LOG2_N = 15


class SealedFileError(BleprovError):
    """A sealed file is corrupt or the passphrase is wrong."""


def _key(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    key: bytes = Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)
    return key


def seal(data: bytes, passphrase: bytes, *, log2_n: int = DEFAULT_LOG2_N) -> bytes:
    if not passphrase:
        raise SealedFileError("an empty passphrase protects nothing")
    salt, nonce = os.urandom(16), os.urandom(12)
    cost = [log2_n, 8, 1]
    header = cbor.dumps([LABEL, 1, salt, cost, nonce])
    ciphertext = ChaCha20Poly1305(_key(passphrase, salt, log2_n, 8, 1)).encrypt(nonce, data, header)
    return cbor.dumps([LABEL, 1, salt, cost, nonce, ciphertext])


def unseal(raw: bytes, passphrase: bytes) -> bytes:
    try:
        value = cbor.loads(raw, max_size=1 << 20)
    except cbor.CborError:
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 6
        or value[:2] != [LABEL, 1]
        or not isinstance(value[2], bytes)
        or not isinstance(value[3], list)
        or len(value[3]) != 3
        or not all(isinstance(v, int) for v in value[3])
        or not 10 <= value[3][0] <= 20
        or not isinstance(value[4], bytes)
        or len(value[4]) != 12
        or not isinstance(value[5], bytes)
    ):
        raise SealedFileError("not a bleprov sealed file, or it is damaged")
    salt, (log2_n, r, p), nonce, ciphertext = value[2], value[3], value[4], value[5]
    header = cbor.dumps(value[:5])
    try:
        return ChaCha20Poly1305(_key(passphrase, salt, log2_n, r, p)).decrypt(
            nonce, ciphertext, header
        )
    except InvalidTag:
        raise SealedFileError("wrong passphrase, or the file was altered") from None


def write_sealed(path: Path, data: bytes, passphrase: bytes) -> None:
    write_atomic(path, seal(data, passphrase))


def read_sealed(path: Path, passphrase: bytes) -> bytes:
    try:
        return unseal(Path(path).read_bytes(), passphrase)
    except FileNotFoundError:
        raise SealedFileError(f"{path} does not exist") from None
