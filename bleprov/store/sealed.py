"""Sealed files: data encrypted at rest under a key stretched from a passphrase.

Envelope (deterministic CBOR): ``["bleprov sealed", 1, salt, [log2 N, r, p], nonce,
ciphertext]``; the key is scrypt(passphrase, salt) and the cipher ChaCha20-Poly1305 with
the envelope's header as associated data, so nothing in it can be altered unnoticed.
The Device enrolment issue's key-provider store supersedes this for device state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from bleprov.core import cbor
from bleprov.core.crypto.primitives import AuthenticationFailed, ChaCha20Poly1305Key, scrypt
from bleprov.core.errors import BleprovError
from bleprov.store.files import write_atomic

LABEL = "bleprov sealed"
DEFAULT_LOG2_N = 15
#: The cost range a sealed file may claim. Its header is read before anything is
#: authenticated (the tag is checked after scrypt ran), so a tampered device.bin chose
#: scrypt's cost: r 0 or 2^64 crashed the reader, (20, 8, 1) allocated 1 GiB before the
#: tag check, p was bounded by nothing (issue 15, F5). We write r 8, p 1 and log2 N 15
#: (tests 10); 16 (64 MiB) leaves room to raise the default once.
MIN_LOG2_N: Final = 10
MAX_LOG2_N: Final = 16
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_SIZE: Final = 16
NONCE_SIZE: Final = 12


class SealedFileError(BleprovError):
    """A sealed file is corrupt or the passphrase is wrong."""


def _key(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return scrypt(passphrase, salt=salt, length=32, n=1 << log2_n, r=r, p=p)


def seal(data: bytes, passphrase: bytes, *, log2_n: int = DEFAULT_LOG2_N) -> bytes:
    if not passphrase:
        raise SealedFileError("an empty passphrase protects nothing")
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise SealedFileError(f"a sealed file's log2 N is {MIN_LOG2_N}..{MAX_LOG2_N}")
    salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
    cost = [log2_n, SCRYPT_R, SCRYPT_P]
    header = cbor.dumps([LABEL, 1, salt, cost, nonce])
    key = _key(passphrase, salt, log2_n, SCRYPT_R, SCRYPT_P)
    ciphertext = ChaCha20Poly1305Key(key).seal(nonce, data, header)
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
        or len(value[2]) != SALT_SIZE
        or not isinstance(value[3], list)
        or len(value[3]) != 3
        or not isinstance(value[4], bytes)
        or len(value[4]) != NONCE_SIZE
        or not isinstance(value[5], bytes)
    ):
        raise SealedFileError("not a bleprov sealed file, or it is damaged")
    log2_n, r, p = value[3]
    if (
        not all(type(v) is int for v in (log2_n, r, p))
        or not MIN_LOG2_N <= log2_n <= MAX_LOG2_N
        or (r, p) != (SCRYPT_R, SCRYPT_P)
    ):
        raise SealedFileError(
            "the sealed file asks for a scrypt cost bleprov does not write: it is damaged "
            "or was altered"
        )
    salt, nonce, ciphertext = value[2], value[4], value[5]
    header = cbor.dumps(value[:5])
    try:
        return ChaCha20Poly1305Key(_key(passphrase, salt, log2_n, r, p)).open(
            nonce, ciphertext, header
        )
    except AuthenticationFailed:
        raise SealedFileError("wrong passphrase, or the file was altered") from None


def write_sealed(path: Path, data: bytes, passphrase: bytes) -> None:
    write_atomic(path, seal(data, passphrase))


def read_sealed(path: Path, passphrase: bytes) -> bytes:
    try:
        return unseal(Path(path).read_bytes(), passphrase)
    except FileNotFoundError:
        raise SealedFileError(f"{path} does not exist") from None
