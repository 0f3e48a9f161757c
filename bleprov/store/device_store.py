"""The device's encrypted store: every record that must survive a power cut, in one file.

Records are named byte strings ("provisioning", "attempts", "wifi", "zone", "tokens",
"state"...). The whole set is one deterministic-CBOR map, encrypted as a whole, and every
change, however many records it touches, is one atomic file replacement
(:func:`bleprov.store.files.write_atomic`): after a crash the device has either all of a
change or none of it, which is what the enrolment commit (Wi-Fi + zone + state) needs.

File layout (``device.store``)::

    offset  size  field
    0       8     magic b"BLEPSTOR"
    8       1     format version (1)
    9       8     generation, big-endian: 1 for the first write, +1 for each write
    17      8     key id: HKDF-SHA256(store key, info "bleprov device store v1 key id")
    25      12    nonce, fresh from os.urandom for every write
    37      ...   ChaCha20-Poly1305 ciphertext and 16-byte tag

The AEAD key is HKDF-SHA256(store key, info "bleprov device store v1 aead"); the
associated data is the whole 37-byte header, so a header that does not belong to its
ciphertext (a spliced generation, another key id) fails authentication. The plaintext is
``u32 length || CBOR map || zero padding`` up to a multiple of 256 bytes, so the file
size does not tell the length of a Wi-Fi password. The key id tells a wrong key
(:class:`StoreKeyMismatch`) from an altered file (:class:`StoreCorrupt`).

Rollback: a :class:`DeviceStore` refuses a generation older than one it has already
read or written (:class:`StoreRollback`). Across restarts nothing here can tell an old
copy from the current one, because the key sits on the same medium as the store
(TPM-held monotonic counters would be needed for that).

A factory reset keeps the factory records (the device's identity and verifiers,
"provisioning") and drops everything the owner gave the device: the device is as it
left the factory, and can be enrolled again with the label in its box.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import re
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from bleprov.core import cbor
from bleprov.core.crypto.primitives import AuthenticationFailed, ChaCha20Poly1305Key, hkdf_sha256
from bleprov.core.errors import BleprovError
from bleprov.core.factory import DeviceProvisioning
from bleprov.store.files import read_optional, write_atomic
from bleprov.store.keys import KEY_BYTES, KeyProvider, exclusive_lock, select_key_provider

STORE_FILE_NAME: Final = "device.store"
MAGIC: Final = b"BLEPSTOR"
FORMAT_VERSION: Final = 1
HEADER: Final = struct.Struct(">8sBQ8s12s")
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_ID_BYTES: Final = 8
PAD_TO: Final = 256
MAX_STORE_BYTES: Final = 1 << 20
MAX_GENERATION: Final = (1 << 64) - 1
AEAD_INFO: Final = b"bleprov device store v1 aead"
KEY_ID_INFO: Final = b"bleprov device store v1 key id"
LOG_TAG_INFO: Final = b"bleprov device store v1 log tag"
RECORD_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,31}")

PROVISIONING: Final = "provisioning"
ATTEMPTS: Final = "attempts"
#: The failed-attempt counter of remote links (the broker), kept apart from BLE's.
REMOTE_ATTEMPTS: Final = "attempts.remote"
WIFI: Final = "wifi"
ZONE: Final = "zone"
TOKENS: Final = "tokens"
STATE: Final = "state"
#: Key providers tried by :meth:`DeviceStore.open` unless told otherwise: the key file.
DEFAULT_KEY_PREFERENCE: Final = ("file",)
#: Records written at the factory, kept by :meth:`DeviceStore.factory_reset`.
FACTORY_RECORDS: Final = frozenset({PROVISIONING})


class StoreError(BleprovError):
    """The device store cannot be read or written."""


class StoreCorrupt(StoreError):
    """The store file is damaged, truncated or was altered."""


class StoreRollback(StoreCorrupt):
    """The store file went back to an older generation than one already seen."""


class StoreKeyMismatch(StoreError):
    """The store was written under another key than the provider gives now."""


class StoreVersionUnsupported(StoreError):
    """The store was written by a newer bleprov."""


class StoreInUse(StoreError):
    """Another process serves this device store (one device, one daemon)."""


class InvalidRecord(StoreError):
    """A caller tried to store a record with a bad name or value, or too much data."""


def derive_store_keys(store_key: bytes) -> tuple[bytes, bytes]:
    """The AEAD key and the key id of a 32-byte store key (HKDF-SHA256, RFC 5869)."""
    if len(store_key) != KEY_BYTES:
        raise StoreError(f"a store key has {KEY_BYTES} bytes, the provider gave {len(store_key)}")
    aead_key = hkdf_sha256(store_key, KEY_BYTES, salt=None, info=AEAD_INFO)
    key_id = hkdf_sha256(store_key, KEY_ID_BYTES, salt=None, info=KEY_ID_INFO)
    return aead_key, key_id


def _check_records(records: Mapping[str, bytes]) -> None:
    for name, value in records.items():
        if not isinstance(name, str) or not RECORD_NAME.fullmatch(name):
            raise InvalidRecord(
                f"record name {name!r} is not 1-32 characters of a-z, 0-9, '_', '.', '-' "
                "starting with a letter"
            )
        if not isinstance(value, bytes):
            raise InvalidRecord(f"record {name!r} must be bytes, not {type(value).__name__}")


class StoreClaim:
    """An exclusive, non-blocking ``flock`` that says "a daemon serves this store".

    Two daemons on one store would advertise one device twice and race its sessions and
    counters; the second is refused at start. The kernel drops the lock when its holder
    dies, even by SIGKILL, so a crash never leaves the store claimed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreInUse(
                f"another bleprov process serves the store in {path.parent}: stop it first "
                "(one device, one daemon)"
            ) from None
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DeviceStore:
    """One encrypted file of named records in ``directory``, under ``key_provider``'s key.

    Writers are serialised with a lock file (``device.store.lock``) so that several
    processes may share a store; readers need no lock, since the file is only ever
    replaced whole.
    """

    def __init__(self, directory: Path, key_provider: KeyProvider) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STORE_FILE_NAME
        self.key_provider = key_provider
        self._keys: tuple[bytes, bytes] | None = None
        self._highest_generation = 0
        self._thread_lock = threading.Lock()
        self._writer: int | None = None
        #: The file's bytes as last read or written here, with their records and
        #: generation: a read that finds exactly these bytes skips the decryption and the
        #: decoding (a daemon reads its store several times per session). Compared on the
        #: whole file, not on its metadata, so another writer's change (another process, a
        #: reset, a commit) is always seen, however soon and whatever its size.
        self._decrypted: tuple[bytes, Mapping[str, bytes], int] | None = None

    @classmethod
    def open(
        cls,
        directory: Path,
        preference: tuple[str, ...] | list[str] = DEFAULT_KEY_PREFERENCE,
        *,
        tcti: str | None = None,
    ) -> DeviceStore:
        """The store in ``directory`` with its key from the first suitable provider in
        ``preference`` ("tpm", "keyring", "file"); see :func:`select_key_provider`."""
        directory = Path(directory)
        provider = select_key_provider(
            list(preference),
            directory=directory,
            tcti=tcti,
            require_existing=(directory / STORE_FILE_NAME).exists(),
        )
        return cls(directory, provider)

    def __repr__(self) -> str:
        return f"DeviceStore({str(self.path)!r}, key provider {self.key_provider.name!r})"

    @property
    def generation(self) -> int:
        """The highest generation this object has read or written (0: none yet)."""
        return self._highest_generation

    def load(self) -> dict[str, bytes]:
        """Every record; an empty dict if the store was never written."""
        return self._read()[0]

    def get(self, name: str) -> bytes | None:
        return self.load().get(name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, bytes]]:
        """A mutable copy of the records, written back in one atomic write when the block
        ends normally; nothing is written if it raises. Other writers wait meanwhile."""
        with self._write_lock():
            records, generation = self._read()
            working = dict(records)
            yield working
            _check_records(working)
            self._write(working, generation + 1)

    def update(self, changes: Mapping[str, bytes | None]) -> None:
        """Set (bytes) or delete (None) several records in one atomic write."""
        with self.transaction() as records:
            for name, value in changes.items():
                if value is None:
                    records.pop(name, None)
                else:
                    records[name] = value

    def factory_reset(self) -> None:
        """Back to the factory state in one atomic write: keep the factory records
        (``provisioning``: the device's identity), drop everything else.

        Raises :class:`StoreCorrupt` or :class:`StoreKeyMismatch` if the store cannot be
        read, since the factory records would be lost: :meth:`erase` then, and provision
        the device again from its factory record."""
        with self.transaction() as records:
            for name in list(records):
                if name not in FACTORY_RECORDS:
                    del records[name]

    def erase(self) -> None:
        """Replace the store, readable or not, with an empty one under the current key."""
        with self._write_lock():
            raw = read_optional(self.path)
            generation = self._highest_generation
            if raw is not None and len(raw) >= HEADER.size:
                magic, _, stored_generation, _, _ = HEADER.unpack_from(raw)
                if magic == MAGIC and stored_generation < 1 << 63:
                    generation = max(generation, stored_generation)
            self._write({}, generation + 1)

    def log_tag_key(self) -> bytes:
        """A per-device key for tagging names in logs (:func:`bleprov.core.wifi.network_tag`),
        derived from the store key: stable while the store is, unknown to log readers."""
        store_key = self.key_provider.load_or_create()
        return hkdf_sha256(store_key, KEY_BYTES, salt=None, info=LOG_TAG_INFO)

    def claim(self) -> StoreClaim:
        """Hold this store as its one server (:class:`StoreClaim`); StoreInUse if another
        process (or another claim here) holds it."""
        return StoreClaim(self.directory / f"{STORE_FILE_NAME}.serve.lock")

    def attempt_store(self, record: str = ATTEMPTS) -> StoreAttemptStore:
        """A failed-attempt counter as an ``AttemptStore`` (bleprov.session):
        BLE's by default, ``REMOTE_ATTEMPTS`` for the broker."""
        return StoreAttemptStore(self, record)

    def provisioning(self) -> DeviceProvisioning | None:
        """The factory provisioning record, if the device has one."""
        raw = self.get(PROVISIONING)
        return None if raw is None else DeviceProvisioning.from_bytes(raw, None)

    def put_provisioning(self, device: DeviceProvisioning) -> None:
        """Store the factory record (its identity keys protected by the store's encryption)."""
        self.update({PROVISIONING: device.to_bytes(None)})

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        # A second flock from the thread holding the first would wait for ever.
        if self._writer == threading.get_ident():
            raise StoreError(
                "a transaction is already open on this store in this thread: make the "
                "change inside it (a nested one would wait for itself)"
            )
        with self._thread_lock, exclusive_lock(self.directory / f"{STORE_FILE_NAME}.lock"):
            self._writer = threading.get_ident()
            try:
                yield
            finally:
                self._writer = None

    def _store_keys(self) -> tuple[bytes, bytes]:
        if self._keys is None:
            self._keys = derive_store_keys(self.key_provider.load_or_create())
        return self._keys

    def _read(self) -> tuple[dict[str, bytes], int]:
        # What was seen *before* the file is read: a write of this object in another
        # thread (the attempt counters' reservation) may replace the file while it is
        # read, and the older copy read then is no rollback.
        seen = self._highest_generation
        raw = read_optional(self.path)
        if raw is None:
            return {}, seen
        decrypted = self._decrypted
        if decrypted is not None and decrypted[0] == raw:
            records, generation = dict(decrypted[1]), decrypted[2]
        else:
            records, generation = self._decrypt(raw)
            if decrypted is None or generation >= decrypted[2]:  # not a racing older copy
                self._decrypted = (raw, dict(records), generation)
        if generation < seen:
            raise StoreRollback(
                f"device store {self.path} went back from generation "
                f"{seen} to {generation}: an older copy replaced it; "
                "restore the current copy, or erase the store and enrol the device again"
            )
        self._highest_generation = max(self._highest_generation, generation)
        return records, generation

    def _corrupt(self, what: str) -> StoreCorrupt:
        return StoreCorrupt(
            f"device store {self.path} {what}: restore it from a backup, or erase it "
            "(DeviceStore.erase) and provision and enrol the device again"
        )

    def _decrypt(self, raw: bytes) -> tuple[dict[str, bytes], int]:
        if len(raw) > MAX_STORE_BYTES:
            raise self._corrupt(f"is {len(raw)} bytes, more than a store can be")
        if len(raw) < HEADER.size + TAG_BYTES:
            raise self._corrupt(f"is truncated ({len(raw)} bytes)")
        magic, version, generation, key_id, nonce = HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise self._corrupt("is not a bleprov device store")
        if version != FORMAT_VERSION:
            raise StoreVersionUnsupported(
                f"device store {self.path} has format version {version}; this bleprov "
                f"reads version {FORMAT_VERSION}: upgrade bleprov"
            )
        aead_key, expected_key_id = self._store_keys()
        if not hmac.compare_digest(key_id, expected_key_id):
            raise StoreKeyMismatch(
                f"device store {self.path} was written under another key than the "
                f"{self.key_provider.name} provider gives: restore the original key (key "
                "file, keyring entry or sealed TPM key), or erase the store and provision "
                "and enrol the device again"
            )
        header = raw[: HEADER.size]
        try:
            plaintext = ChaCha20Poly1305Key(aead_key).open(nonce, raw[HEADER.size :], header)
        except AuthenticationFailed:
            raise self._corrupt("was altered or truncated (authentication failed)") from None
        return self._decode(plaintext), generation

    def _decode(self, plaintext: bytes) -> dict[str, bytes]:
        # The plaintext is authenticated: a malformed one is a writer's bug, still typed.
        if len(plaintext) < 4:
            raise self._corrupt("holds no record map")
        (length,) = struct.unpack_from(">I", plaintext)
        body = plaintext[4 : 4 + length]
        if len(body) != length or any(plaintext[4 + length :]):
            raise self._corrupt("has a malformed record map")
        try:
            value = cbor.loads(body, max_size=len(body), max_depth=1)
        except cbor.CborError:
            value = None
        if not isinstance(value, dict):
            raise self._corrupt("has a malformed record map")
        try:
            _check_records(value)
        except InvalidRecord:
            raise self._corrupt("has a malformed record") from None
        return value

    def _write(self, records: Mapping[str, bytes], generation: int) -> None:
        if generation > MAX_GENERATION:
            raise StoreError(f"device store {self.path} has used up its generation counter")
        body = cbor.dumps(dict(records))
        plaintext = struct.pack(">I", len(body)) + body
        plaintext += bytes(-len(plaintext) % PAD_TO)
        if HEADER.size + len(plaintext) + TAG_BYTES > MAX_STORE_BYTES:
            raise InvalidRecord(
                f"the records take {len(body)} bytes; a device store holds at most "
                f"{MAX_STORE_BYTES} bytes"
            )
        aead_key, key_id = self._store_keys()
        nonce = os.urandom(NONCE_BYTES)
        header = HEADER.pack(MAGIC, FORMAT_VERSION, generation, key_id, nonce)
        ciphertext = ChaCha20Poly1305Key(aead_key).seal(nonce, plaintext, header)
        self._remove_stale_temporaries()
        stored = header + ciphertext
        write_atomic(self.path, stored)
        self._highest_generation = generation
        self._decrypted = (stored, dict(records), generation)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writers that died before their rename (called under the
        write lock, so no live writer owns one). They hold ciphertext only."""
        prefix = f".{STORE_FILE_NAME}."
        with os.scandir(self.directory) as entries:  # cheaper than a glob, every write
            stale = [
                e.path for e in entries if e.name.startswith(prefix) and e.name.endswith(".tmp")
            ]
        for name in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


class StoreAttemptStore:
    """The ``AttemptStore`` the secure device link expects, kept in the device store's
    "attempts" record (so it is encrypted and shares the store's atomicity)."""

    def __init__(self, store: DeviceStore, record: str = ATTEMPTS) -> None:
        self.store = store
        self.record = record

    def load(self) -> bytes | None:
        return self.store.get(self.record)

    def save(self, state: bytes) -> None:
        self.store.update({self.record: state})
