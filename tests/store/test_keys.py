"""Key providers: the key file's guards, the OS keyring, a TPM (a software TPM here)."""

from __future__ import annotations

import base64
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from bleprov.store.device_store import DeviceStore, StoreKeyMismatch
from bleprov.store.keys import (
    KEY_BYTES,
    KEY_FILE_NAME,
    KEYRING_SERVICE,
    TPM_BLOB_NAME,
    TPM_TOOLS,
    KeyCorrupt,
    KeyFileInsecure,
    KeyFileProvider,
    KeyProviderError,
    KeyringProvider,
    KeyUnavailable,
    TpmProvider,
    make_key_provider,
    select_key_provider,
)

REPO = Path(__file__).resolve().parents[2]


# The key file.


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / KEY_FILE_NAME
    provider = KeyFileProvider(path)
    assert provider.available()
    assert not provider.exists()
    key = provider.load_or_create()
    assert len(key) == KEY_BYTES
    assert provider.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE_NAME]  # no temporaries
    assert KeyFileProvider(path).load_or_create() == key
    assert KeyFileProvider(tmp_path / "other" / KEY_FILE_NAME).load_or_create() != key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / KEY_FILE_NAME
    KeyFileProvider(path).load_or_create()
    path.chmod(mode)
    with pytest.raises(KeyFileInsecure, match=f"chmod 600 {path}") as caught:
        KeyFileProvider(path).load_or_create()
    assert f"{mode:04o}" in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    KeyFileProvider(path).load_or_create()
    os.chown(path, 12345, 12345)
    with pytest.raises(KeyFileInsecure, match="belongs to uid 12345") as caught:
        KeyFileProvider(path).load_or_create()
    assert f"chown {os.geteuid()} {path}" in str(caught.value)


def test_a_key_file_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    for content in (b"", b"\1" * 31, b"\1" * 33):
        path.write_bytes(content)
        path.chmod(0o600)
        with pytest.raises(KeyCorrupt, match="restore it from a backup"):
            KeyFileProvider(path).load_or_create()


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    KeyFileProvider(real).load_or_create()
    (tmp_path / KEY_FILE_NAME).symlink_to(real)
    with pytest.raises(KeyFileInsecure, match="symbolic link"):
        KeyFileProvider(tmp_path / KEY_FILE_NAME).load_or_create()


def test_a_key_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(KeyFileInsecure, match=f"chmod 700 {directory}"):
        KeyFileProvider(directory / KEY_FILE_NAME).load_or_create()
    assert not (directory / KEY_FILE_NAME).exists()


RACER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bleprov.store.keys import KeyFileProvider
    base = Path(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        key = KeyFileProvider(base / line.strip() / "store.key").load_or_create()
        print(key.hex(), flush=True)
    """
)


def test_processes_creating_the_key_at_once_get_one_key(tmp_path: Path) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(4)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None
            assert racer.stdout.readline() == "ready\n"
        for round_ in range(40):
            for racer in racers:  # as close together as two pipes allow
                assert racer.stdin is not None
                racer.stdin.write(f"round{round_}\n")
                racer.stdin.flush()
            keys = {racer.stdout.readline().strip() for racer in racers if racer.stdout}
            on_disk = (tmp_path / f"round{round_}" / KEY_FILE_NAME).read_bytes().hex()
            assert keys == {on_disk}, round_
    finally:
        for racer in racers:
            if racer.stdin is not None:
                racer.stdin.close()
        for racer in racers:
            racer.wait(timeout=30)
            if racer.stdout is not None:
                racer.stdout.close()


# The OS keyring, through keyring's own plug-in API with an in-memory backend.


class MemoryKeyring(Protocol):
    entries: dict[tuple[str, str], str]
    locked: bool


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """An in-memory backend, plugged in through keyring's own backend API."""
    keyring = pytest.importorskip("keyring")
    from keyring.backend import KeyringBackend
    from keyring.errors import KeyringLocked

    class InMemoryKeyring(KeyringBackend):
        priority = 1.0

        def __init__(self) -> None:
            super().__init__()
            self.entries: dict[tuple[str, str], str] = {}
            self.locked = False

        def get_password(self, service: str, username: str) -> str | None:
            if self.locked:
                raise KeyringLocked("locked")
            return self.entries.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            if self.locked:
                raise KeyringLocked("locked")
            self.entries[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            del self.entries[(service, username)]

    backend = InMemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """keyring's own "no backend" keyring, as on a headless machine."""
    keyring = pytest.importorskip("keyring")
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def test_keyring_round_trip(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    provider = KeyringProvider("bleprov-test", "device-1", lock_path=tmp_path / "lock")
    assert provider.available()
    assert not provider.exists()
    key = provider.load_or_create()
    assert len(key) == KEY_BYTES
    assert provider.exists()
    assert memory_keyring.entries == {("bleprov-test", "device-1"): base64.b64encode(key).decode()}
    assert KeyringProvider("bleprov-test", "device-1").load_or_create() == key
    assert KeyringProvider("bleprov-test", "device-2").load_or_create() != key
    store = DeviceStore(tmp_path / "device", provider)
    store.update({"wifi": b"secret"})
    assert DeviceStore(tmp_path / "device", KeyringProvider("bleprov-test", "device-1")).load()
    del memory_keyring.entries[("bleprov-test", "device-1")]
    with pytest.raises(StoreKeyMismatch):
        DeviceStore(tmp_path / "device", KeyringProvider("bleprov-test", "device-1")).load()


def test_a_damaged_keyring_entry_is_refused(memory_keyring: MemoryKeyring) -> None:
    for value in ("not base64!", base64.b64encode(b"short").decode()):
        memory_keyring.entries[("bleprov-test", "device")] = value
        with pytest.raises(KeyCorrupt, match="bleprov-test/device"):
            KeyringProvider("bleprov-test", "device").load_or_create()


def test_a_locked_keyring_is_a_typed_error(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.locked = True
    with pytest.raises(KeyUnavailable, match="unlock the keyring"):
        KeyringProvider("bleprov-test", "device").load_or_create()


def test_without_a_keyring_backend_the_provider_is_unavailable(no_keyring: None) -> None:
    provider = KeyringProvider("bleprov-test", "device")
    assert not provider.available()
    assert not provider.exists()
    with pytest.raises(KeyUnavailable, match="no usable OS keyring"):
        provider.load_or_create()


def test_selection_prefers_the_first_available(
    memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    chosen = select_key_provider(["keyring", "file"], directory=tmp_path)
    assert chosen.name == "keyring"
    assert isinstance(chosen, KeyringProvider)
    assert (chosen.service, chosen.username) == (KEYRING_SERVICE, str(tmp_path.resolve()))
    assert select_key_provider(["file", "keyring"], directory=tmp_path).name == "file"


def test_selection_skips_an_unavailable_keyring(no_keyring: None, tmp_path: Path) -> None:
    assert select_key_provider(["keyring", "file"], directory=tmp_path).name == "file"
    with pytest.raises(KeyUnavailable, match="none of the key providers keyring"):
        select_key_provider(["keyring"], directory=tmp_path)


def test_selection_prefers_the_provider_holding_the_key(
    memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    make_key_provider("file", directory=tmp_path).load_or_create()
    assert select_key_provider(["keyring", "file"], directory=tmp_path).name == "file"


def test_unknown_provider_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="choose from tpm, keyring, file"):
        select_key_provider(["hsm"], directory=tmp_path)


# A TPM 2.0: swtpm, the software TPM, driven through tpm2-tools as a real one would be.

needs_tpm_tools = pytest.mark.skipif(
    shutil.which("swtpm") is None or not all(shutil.which(tool) for tool in TPM_TOOLS),
    reason="needs Debian's swtpm and tpm2-tools",
)


class SoftwareTpm:
    """An swtpm process serving TPM 2.0 commands on 127.0.0.1:port (control on port+1)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.state.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        for _ in range(20):
            self.port = _free_port_pair()
            self.process = subprocess.Popen(
                [
                    "swtpm",
                    "socket",
                    "--tpm2",
                    "--tpmstate",
                    f"dir={self.state}",
                    "--server",
                    f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                    "--ctrl",
                    f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                    "--flags",
                    "not-need-init,startup-clear",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError("swtpm did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _free_port_pair() -> int:
    while True:
        port = random.randrange(20000, 60000, 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port


@pytest.fixture
def software_tpm(tmp_path: Path) -> Iterator[SoftwareTpm]:
    tpm = SoftwareTpm(tmp_path / "tpm-state")
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()


@needs_tpm_tools
def test_the_key_sealed_to_a_tpm_survives_a_tpm_restart(
    software_tpm: SoftwareTpm, tmp_path: Path
) -> None:
    directory = tmp_path / "device"
    provider = TpmProvider(directory, tcti=software_tpm.tcti)
    assert provider.available()
    assert not provider.exists()
    key = provider.load_or_create()
    assert len(key) == KEY_BYTES
    blob = (directory / TPM_BLOB_NAME).read_bytes()
    assert key not in blob
    assert stat.S_IMODE((directory / TPM_BLOB_NAME).stat().st_mode) == 0o600
    assert TpmProvider(directory, tcti=software_tpm.tcti).load_or_create() == key
    store = DeviceStore(directory, provider)
    store.update({"wifi": b"secret"})
    software_tpm.stop()
    assert not TpmProvider(directory, tcti=software_tpm.tcti).available()
    software_tpm.start()  # same state directory: the same TPM after a reboot
    reopened = DeviceStore(directory, TpmProvider(directory, tcti=software_tpm.tcti))
    assert reopened.get("wifi") == b"secret"


@needs_tpm_tools
def test_another_tpm_cannot_unseal_the_key(software_tpm: SoftwareTpm, tmp_path: Path) -> None:
    directory = tmp_path / "device"
    TpmProvider(directory, tcti=software_tpm.tcti).load_or_create()
    other = SoftwareTpm(tmp_path / "other-tpm-state")
    other.start()
    try:
        with pytest.raises(KeyCorrupt, match="sealed by another TPM"):
            TpmProvider(directory, tcti=other.tcti).load_or_create()
    finally:
        other.stop()


@needs_tpm_tools
def test_a_damaged_sealed_blob_is_refused(software_tpm: SoftwareTpm, tmp_path: Path) -> None:
    directory = tmp_path / "device"
    TpmProvider(directory, tcti=software_tpm.tcti).load_or_create()
    (directory / TPM_BLOB_NAME).write_bytes(b"garbage")
    with pytest.raises(KeyCorrupt, match="is damaged"):
        TpmProvider(directory, tcti=software_tpm.tcti).load_or_create()


@needs_tpm_tools
def test_selection_never_replaces_a_missing_tpm_with_a_new_key(
    software_tpm: SoftwareTpm, tmp_path: Path
) -> None:
    directory = tmp_path / "device"
    chosen = select_key_provider(["tpm", "file"], directory=directory, tcti=software_tpm.tcti)
    assert chosen.name == "tpm"
    chosen.load_or_create()
    software_tpm.stop()
    with pytest.raises(KeyUnavailable, match="held by the tpm provider"):
        select_key_provider(["tpm", "file"], directory=directory, tcti=software_tpm.tcti)
    assert not (directory / KEY_FILE_NAME).exists()


def test_without_a_tpm_the_provider_is_unavailable(tmp_path: Path) -> None:
    # A port nothing listens on: honest "no", whether or not tpm2-tools are installed.
    provider = TpmProvider(tmp_path, tcti=f"swtpm:host=127.0.0.1,port={_free_port_pair()}")
    assert not provider.available()
    assert select_key_provider(["tpm", "file"], directory=tmp_path, tcti=provider.tcti).name == (
        "file"
    )
    with pytest.raises(KeyUnavailable):
        provider.load_or_create()
