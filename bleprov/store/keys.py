"""Where the device store's key lives: a key file, the OS keyring or a TPM.

The device store (:mod:`bleprov.store.device_store`) is encrypted under one random
32-byte key. A :class:`KeyProvider` creates that key on first use and gives the same key
back on every later boot:

* :class:`KeyFileProvider` (``file``, the default): a 0600 file owned by the device's
  user, refused if anyone else could read or replace it.
* :class:`KeyringProvider` (``keyring``): the OS keyring through the optional ``keyring``
  library (``pip install bleprov[keyring]``), the key stored base64.
* :class:`TpmProvider` (``tpm``): the key sealed to a TPM 2.0 with the ``tpm2-tools``
  command line; only the sealed blob, useless without that very TPM, is on disk.

:func:`select_key_provider` picks one from a preference list, preferring the provider
that already holds the store's key, so a TPM that is missing one boot never silently
gives way to a fresh key file.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from bleprov.core import cbor
from bleprov.core.errors import BleprovError
from bleprov.store.files import write_atomic

KEY_BYTES: Final = 32
KEY_FILE_NAME: Final = "store.key"
TPM_BLOB_NAME: Final = "store-key.tpm"
KEYRING_SERVICE: Final = "bleprov-device-store"
PROVIDER_NAMES: Final = ("tpm", "keyring", "file")


class KeyProviderError(BleprovError):
    """The store key cannot be had from its provider."""


class KeyUnavailable(KeyProviderError):
    """The provider (keyring backend, TPM, key directory) cannot be used here."""


class KeyFileInsecure(KeyProviderError):
    """The key file or its directory could be read or replaced by someone else."""


class KeyCorrupt(KeyProviderError):
    """The stored key (file, keyring entry, sealed blob) is damaged."""


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600): serialises writers across
    processes; the kernel drops the lock when its holder dies, even by SIGKILL."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:  # no directory yet (the first write): made only then
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class KeyProvider(ABC):
    """Gives the device store its 32-byte key, creating it on first use."""

    name: str

    @abstractmethod
    def available(self) -> bool:
        """True if this provider can be used on this machine now."""

    @abstractmethod
    def exists(self) -> bool:
        """True if this provider already holds a key (so it must not be passed over)."""

    @abstractmethod
    def load_or_create(self) -> bytes:
        """The store key: the stored one, or a new random one stored first."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class KeyFileProvider(KeyProvider):
    """The key in a file readable by its owner only.

    Created atomically: the key goes to a private temporary file which is then hard-linked
    to its name; ``link`` fails if the name exists (the O_EXCL guarantee), so two
    processes starting at once end up with one key, the first one linked, and nobody ever
    sees a half-written key file.
    """

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"KeyFileProvider({str(self.path)!r})"

    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def available(self) -> bool:
        if self.exists():
            return os.access(self.path, os.R_OK)
        ancestor = self.path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        return ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK)

    def load_or_create(self) -> bytes:
        try:
            return self._read()
        except FileNotFoundError:
            pass
        directory = self._prepare_directory()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(secrets.token_bytes(KEY_BYTES))
                tmp.flush()
                os.fsync(tmp.fileno())
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.link(tmp_name, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        _fsync_directory(directory)
        return self._read()

    def _prepare_directory(self) -> Path:
        directory = self.path.parent
        if not directory.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
            try:
                directory.mkdir(mode=0o700)
                os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask only
            except FileExistsError:  # another process is creating the key too
                pass
        info = os.stat(directory)
        if info.st_uid not in (os.geteuid(), 0):
            raise KeyFileInsecure(
                f"key directory {directory} belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.geteuid()}) or root: use a directory of your own"
            )
        if info.st_mode & 0o022:
            raise KeyFileInsecure(
                f"key directory {directory} is writable by other users, who could replace "
                f"the key: chmod 700 {directory}"
            )
        return directory

    def _read(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if os.path.islink(self.path):
                raise KeyFileInsecure(
                    f"key file {self.path} is a symbolic link; replace it with the file itself"
                ) from None
            raise KeyUnavailable(f"cannot open key file {self.path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileInsecure(f"key file {self.path} is not a regular file")
            if info.st_uid != os.geteuid():
                raise KeyFileInsecure(
                    f"key file {self.path} belongs to uid {info.st_uid}, not to this user "
                    f"(uid {os.geteuid()}): run as its owner or chown {os.geteuid()} {self.path}"
                )
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeyFileInsecure(
                    f"key file {self.path} has permissions {mode:04o}; other users could "
                    f"read it: chmod 600 {self.path}"
                )
            data = os.read(fd, KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) != KEY_BYTES:
            raise KeyCorrupt(
                f"key file {self.path} holds {len(data)}{'+' if len(data) > KEY_BYTES else ''} "
                f"bytes, not {KEY_BYTES}: restore it from a backup; without it the device "
                "store cannot be decrypted and must be erased"
            )
        return data


class KeyringProvider(KeyProvider):
    """The key in the OS keyring (Secret Service, macOS Keychain, Windows Credential
    Locker, or whatever backend ``keyring`` is configured with), base64-encoded.

    A keyring has no create-if-absent operation; ``lock_path``, when given, serialises
    first-time creation between processes with a file lock.
    """

    name = "keyring"

    def __init__(self, service: str, username: str, *, lock_path: Path | None = None) -> None:
        self.service = service
        self.username = username
        self.lock_path = lock_path

    def __repr__(self) -> str:
        return f"KeyringProvider({self.service!r}, {self.username!r})"

    def available(self) -> bool:
        try:
            import keyring
        except ImportError:
            return False
        try:
            return float(keyring.get_keyring().priority) > 0
        except Exception:  # a backend that cannot even report its priority is unusable
            return False

    def exists(self) -> bool:
        if not self.available():
            return False
        return self._get() is not None

    def load_or_create(self) -> bytes:
        if not self.available():
            raise KeyUnavailable(
                "no usable OS keyring: install the keyring extra (pip install "
                "'bleprov[keyring]') and run inside a desktop session, or configure a "
                "keyring backend (see `keyring diagnose`), or use the key file provider"
            )
        with exclusive_lock(self.lock_path) if self.lock_path else contextlib.nullcontext():
            stored = self._get()
            if stored is None:
                self._set(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"))
                stored = self._get()
                if stored is None:
                    raise KeyUnavailable(
                        f"the keyring ({self._backend_name()}) accepted the store key but "
                        "does not return it: choose another keyring backend or provider"
                    )
        try:
            key = base64.b64decode(stored.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            key = b""
        if len(key) != KEY_BYTES:
            raise KeyCorrupt(
                f"keyring entry {self.service}/{self.username} is not a bleprov store key: "
                "restore it, or delete it and erase the device store"
            )
        return key

    def _backend_name(self) -> str:
        import keyring

        return type(keyring.get_keyring()).__name__

    def _get(self) -> str | None:
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(self.service, self.username)
        except KeyringError as exc:
            raise KeyUnavailable(
                f"the keyring ({self._backend_name()}) refused to read the store key: "
                f"{type(exc).__name__}; unlock the keyring and retry"
            ) from None

    def _set(self, value: str) -> None:
        import keyring
        from keyring.errors import KeyringError

        try:
            keyring.set_password(self.service, self.username, value)
        except KeyringError as exc:
            raise KeyUnavailable(
                f"the keyring ({self._backend_name()}) refused to store the store key: "
                f"{type(exc).__name__}; unlock the keyring and retry"
            ) from None


TPM_TOOLS: Final = (
    "tpm2_createprimary",
    "tpm2_create",
    "tpm2_load",
    "tpm2_unseal",
    "tpm2_flushcontext",
    "tpm2_getcap",
)
#: Needed only for a key bound to PCRs (``pcrs=``).
TPM_POLICY_TOOLS: Final = ("tpm2_createpolicy", "tpm2_startauthsession", "tpm2_policypcr")
_TPM_BLOB_LABEL: Final = "bleprov tpm sealed key"
#: A sealed object's public and private parts take about 300 bytes; read no more than this.
_MAX_TPM_BLOB: Final = 4096
#: A PCR selection as tpm2-tools writes it: one bank, PCRs 0-23 (``sha256:7`` or
#: ``sha256:0,2,7``).
_PCR_SELECTION = re.compile(
    r"(sha1|sha256|sha384|sha512):([0-9]|1[0-9]|2[0-3])(,([0-9]|1[0-9]|2[0-3]))*"
)
#: The sealed object's attributes with a PCR policy: no userWithAuth, so the empty
#: password does not unseal it, only the policy does.
_POLICY_ATTRIBUTES: Final = "fixedtpm|fixedparent|adminwithpolicy|noda"
# The storage primary key is re-derived from the owner hierarchy's seed on every use
# (same template, same key), so nothing has to be made persistent in the TPM.
_PRIMARY_ARGS: Final = ("-C", "o", "-g", "sha256", "-G", "ecc")


class TpmProvider(KeyProvider):
    """The key sealed to a TPM 2.0, through the tpm2-tools command line.

    On first use a random key is sealed as a keyed-hash data object under the owner
    hierarchy's storage primary key; the sealed object's public and private parts (the
    private part encrypted by the TPM, loadable only by that TPM) are kept in
    ``<directory>/store-key.tpm``. Each load re-creates the primary key, loads the object
    and unseals it; the key travels over a pipe, never through a file.

    ``pcrs`` (``sha256:7``: the secure-boot state) binds a *new* sealed key to those PCRs'
    values at sealing time (a PolicyPCR policy, no password): the TPM then unseals it only
    while they hold the same values, so a disk moved to another boot chain (secure boot off,
    another bootloader or kernel signing key) cannot open the store, even in this device. The
    selection is kept in the blob, so later loads need no option. A legitimate change of
    those PCRs (a firmware update that re-measures PCR 7) locks the store out too: re-seal
    before such an update, or keep the store's key elsewhere. An existing sealed key keeps
    the policy it was made with.

    ``tcti`` selects the TPM (``device:/dev/tpmrm0``, ``swtpm:host=...,port=...``);
    by default tpm2-tools' own choice (``TPM2TOOLS_TCTI`` or the kernel resource
    manager). Transient objects are flushed after every step, because a TPM without a
    resource manager (a simulator, ``/dev/tpm0``) keeps them until flushed and has
    room for very few; behind a resource manager the flush only touches this
    connection's objects. The owner hierarchy must have an empty authorisation value.
    """

    name = "tpm"

    def __init__(
        self,
        directory: Path,
        *,
        tcti: str | None = None,
        timeout: float = 30.0,
        pcrs: str | None = None,
    ) -> None:
        if pcrs is not None and not _PCR_SELECTION.fullmatch(pcrs):
            raise KeyProviderError(
                f"bad PCR selection {pcrs!r}: one bank and PCR numbers, e.g. sha256:7"
            )
        self.directory = Path(directory)
        self.blob_path = self.directory / TPM_BLOB_NAME
        self.tcti = tcti
        self.timeout = timeout
        self.pcrs = pcrs

    def __repr__(self) -> str:
        return f"TpmProvider({str(self.directory)!r}, tcti={self.tcti!r}, pcrs={self.pcrs!r})"

    def exists(self) -> bool:
        return self.blob_path.exists()

    def available(self) -> bool:
        if not all(shutil.which(tool) for tool in TPM_TOOLS):
            return False
        try:
            self._run("tpm2_getcap", "handles-transient", timeout=min(self.timeout, 10.0))
        except KeyProviderError:
            return False
        return True

    def load_or_create(self) -> bytes:
        tools = TPM_TOOLS + (TPM_POLICY_TOOLS if self.pcrs or self._blob_pcrs() else ())
        missing = [tool for tool in tools if not shutil.which(tool)]
        if missing:
            raise KeyUnavailable(
                f"TPM tools not found ({', '.join(missing)}): install tpm2-tools, or use "
                "another key provider"
            )
        if not self.exists():
            with exclusive_lock(self.directory / f".{TPM_BLOB_NAME}.lock"):
                if not self.exists():
                    public, private = self._seal(secrets.token_bytes(KEY_BYTES))
                    fields: list[object] = [_TPM_BLOB_LABEL, 1, public, private]
                    if self.pcrs is not None:
                        fields = [_TPM_BLOB_LABEL, 2, public, private, self.pcrs]
                    blob = cbor.dumps(fields)
                    write_atomic(self.blob_path, blob)
        return self._unseal()

    def _blob_pcrs(self) -> str | None:
        """The PCR selection the existing sealed key is bound to (None: none, or no key)."""
        if not self.exists():
            return None
        return self._read_blob()[2]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.tcti is not None:
            env["TPM2TOOLS_TCTI"] = self.tcti
        return env

    def _run(
        self, tool: str, *args: str, stdin: bytes = b"", timeout: float | None = None
    ) -> bytes:
        try:
            done = subprocess.run(  # noqa: S603 - fixed tool names, arguments are our paths
                [tool, *args],
                input=stdin,
                capture_output=True,
                env=self._environment(),
                timeout=self.timeout if timeout is None else timeout,
                check=False,
            )
        except FileNotFoundError:
            raise KeyUnavailable(f"{tool} not found: install tpm2-tools") from None
        except subprocess.TimeoutExpired:
            raise KeyUnavailable(f"the TPM did not answer {tool} within the timeout") from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            raise KeyUnavailable(f"{tool} failed: {reason}")
        out: bytes = done.stdout
        return out

    def _flush(self) -> None:
        self._run("tpm2_flushcontext", "-t")

    def _create_primary(self, work: Path) -> None:
        self._run("tpm2_createprimary", *_PRIMARY_ARGS, "-c", str(work / "primary.ctx"), "-Q")

    def _seal(self, key: bytes) -> tuple[bytes, bytes]:
        with tempfile.TemporaryDirectory(prefix="bleprov-tpm-") as work_name:
            work = Path(work_name)
            policy: list[str] = []
            if self.pcrs is not None:
                # The policy digest of "these PCRs hold their current values".
                self._run(
                    "tpm2_createpolicy",
                    "--policy-pcr",
                    "-l",
                    self.pcrs,
                    "-L",
                    str(work / "pcr.policy"),
                    "-Q",
                )
                policy = ["-L", str(work / "pcr.policy"), "-a", _POLICY_ATTRIBUTES]
            try:
                self._flush()
                self._create_primary(work)
                self._flush()
                self._run(
                    "tpm2_create",
                    "-C",
                    str(work / "primary.ctx"),
                    *policy,
                    "-i",
                    "-",
                    "-u",
                    str(work / "sealed.pub"),
                    "-r",
                    str(work / "sealed.priv"),
                    "-Q",
                    stdin=key,
                )
            finally:
                self._flush()
            return (work / "sealed.pub").read_bytes(), (work / "sealed.priv").read_bytes()

    def _read_blob(self) -> tuple[bytes, bytes, str | None]:
        """The sealed object's public and private parts, and its PCR selection if any
        (version 1: none; version 2: bound to PCRs)."""
        try:
            with self.blob_path.open("rb") as file:
                raw = file.read(_MAX_TPM_BLOB + 1)
        except OSError as exc:
            raise KeyUnavailable(
                f"cannot read the sealed key {self.blob_path}: {exc.strerror or exc}"
            ) from None
        try:
            value = cbor.loads(raw, max_size=_MAX_TPM_BLOB)
        except cbor.CborError:
            value = None
        version1 = isinstance(value, list) and len(value) == 4 and value[:2] == [_TPM_BLOB_LABEL, 1]
        version2 = (
            isinstance(value, list)
            and len(value) == 5
            and value[:2] == [_TPM_BLOB_LABEL, 2]
            and isinstance(value[4], str)
            and _PCR_SELECTION.fullmatch(value[4]) is not None
        )
        if (
            not isinstance(value, list)
            or not (version1 or version2)
            or not isinstance(value[2], bytes)
            or not isinstance(value[3], bytes)
        ):
            raise KeyCorrupt(
                f"sealed key {self.blob_path} is damaged: restore it from a backup; without "
                "it the device store cannot be decrypted and must be erased"
            )
        return value[2], value[3], value[4] if version2 else None

    def _policy_session(self, work: Path, pcrs: str) -> str:
        """A policy session satisfied by the PCRs' current values: the unseal's auth."""
        session = str(work / "session.ctx")
        self._run("tpm2_startauthsession", "--policy-session", "-S", session)
        try:
            self._run("tpm2_policypcr", "-S", session, "-l", pcrs, "-Q")
        except KeyUnavailable:
            self._run("tpm2_flushcontext", session)
            raise
        return session

    def _unseal(self) -> bytes:
        public, private, pcrs = self._read_blob()
        with tempfile.TemporaryDirectory(prefix="bleprov-tpm-") as work_name:
            work = Path(work_name)
            (work / "sealed.pub").write_bytes(public)
            (work / "sealed.priv").write_bytes(private)
            try:
                self._flush()
                self._create_primary(work)
                self._flush()
                try:
                    self._run(
                        "tpm2_load",
                        "-C",
                        str(work / "primary.ctx"),
                        "-u",
                        str(work / "sealed.pub"),
                        "-r",
                        str(work / "sealed.priv"),
                        "-c",
                        str(work / "sealed.ctx"),
                        "-Q",
                    )
                except KeyUnavailable as exc:
                    raise KeyCorrupt(
                        f"this TPM cannot load the sealed key {self.blob_path} ({exc}): it was "
                        "sealed by another TPM, or this TPM was cleared; the device store "
                        "cannot be decrypted and must be erased"
                    ) from None
                self._flush()
                if pcrs is None:
                    key = self._run("tpm2_unseal", "-c", str(work / "sealed.ctx"))
                else:
                    session = self._policy_session(work, pcrs)
                    try:
                        key = self._run(
                            "tpm2_unseal",
                            "-c",
                            str(work / "sealed.ctx"),
                            "-p",
                            f"session:{session}",
                        )
                    except KeyUnavailable as exc:
                        raise KeyUnavailable(
                            f"the TPM refused to unseal the store key bound to PCRs {pcrs}: "
                            "they no longer hold the values it was sealed with (the boot chain "
                            f"or secure-boot state changed) ({exc})"
                        ) from None
                    finally:
                        with contextlib.suppress(KeyUnavailable):
                            self._run("tpm2_flushcontext", session)
            finally:
                self._flush()
        if len(key) != KEY_BYTES:
            raise KeyCorrupt(f"sealed key {self.blob_path} does not hold a {KEY_BYTES}-byte key")
        return key


def make_key_provider(
    name: str, *, directory: Path, tcti: str | None = None, tpm_pcrs: str | None = None
) -> KeyProvider:
    """The provider called ``name`` ("tpm", "keyring", "file") for the store in
    ``directory``; ``tpm_pcrs`` binds a new TPM-sealed key to PCRs (see TpmProvider)."""
    directory = Path(directory)
    if name == "file":
        return KeyFileProvider(directory / KEY_FILE_NAME)
    if name == "keyring":
        return KeyringProvider(
            KEYRING_SERVICE,
            str(directory.resolve()),
            lock_path=directory / f".{KEY_FILE_NAME}.lock",
        )
    if name == "tpm":
        return TpmProvider(directory, tcti=tcti, pcrs=tpm_pcrs)
    raise KeyProviderError(
        f"unknown key provider {name!r}: choose from {', '.join(PROVIDER_NAMES)}"
    )


def select_key_provider(
    preference: list[str],
    *,
    directory: Path,
    tcti: str | None = None,
    require_existing: bool = False,
) -> KeyProvider:
    """The provider for the store in ``directory``: the first in ``preference`` that
    already holds a key (it must then be available), else the first available one.

    ``require_existing`` (the store already exists) forbids making a new key: a key
    nobody holds any more cannot open the store, and a new one would not either."""
    providers = [make_key_provider(name, directory=directory, tcti=tcti) for name in preference]
    for provider in providers:
        if provider.exists():
            if not provider.available():
                raise KeyUnavailable(
                    f"the device store's key is held by the {provider.name} provider, which "
                    "is unavailable now: bring it back (TPM device, keyring session) rather "
                    "than starting over with a new key"
                )
            return provider
    if require_existing:
        raise KeyUnavailable(
            f"the device store in {directory} exists, but none of the key providers "
            f"{', '.join(preference)} holds its key: restore the key (file, keyring entry, "
            "sealed TPM key) or bring its provider back, or erase the store"
        )
    for provider in providers:
        if provider.available():
            return provider
    raise KeyUnavailable(
        f"none of the key providers {', '.join(preference) or '(none given)'} is available "
        "here; the key file provider needs a writable directory"
    )
