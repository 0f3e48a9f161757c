"""The device's encrypted store: format, atomic multi-record updates, typed failures."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.advertising import OobMode
from bleprov.core.attempts import AttemptLimiter
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer
from bleprov.session import AttemptStore
from bleprov.store.device_store import (
    AEAD_INFO,
    HEADER,
    MAGIC,
    PAD_TO,
    STORE_FILE_NAME,
    DeviceStore,
    InvalidRecord,
    StoreCorrupt,
    StoreError,
    StoreKeyMismatch,
    StoreRollback,
    StoreVersionUnsupported,
    derive_store_keys,
)
from bleprov.store.keys import KEY_FILE_NAME, KeyFileProvider, KeyUnavailable

NOW = datetime.now(UTC)
CHEAP = ScryptCost(n=1 << 10, r=8, p=1)
WIFI_PASSWORD = b"correct horse battery staple"
REPO = Path(__file__).resolve().parents[2]


def open_store(directory: Path) -> DeviceStore:
    return DeviceStore(directory, KeyFileProvider(directory / KEY_FILE_NAME))


@pytest.fixture
def store(tmp_path: Path) -> DeviceStore:
    return open_store(tmp_path / "device")


# Published vectors for the two primitives the format is built from, used exactly as the
# store uses them (cryptography's ChaCha20Poly1305 and HKDF-SHA256).


def test_chacha20_poly1305_matches_rfc_8439_section_2_8_2() -> None:
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it."
    )
    expected = bytes.fromhex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
        "1ae10b594f09e26a7e902ecbd0600691"  # tag
    )
    assert ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad) == expected
    assert ChaCha20Poly1305(key).decrypt(nonce, expected, aad) == plaintext


def test_hkdf_sha256_matches_rfc_5869_test_case_1() -> None:
    okm = HKDF(hashes.SHA256(), 42, salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA))).derive(
        b"\x0b" * 22
    )
    assert okm == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_store_keys_are_hkdf_of_the_provider_key() -> None:
    store_key = bytes(range(32))
    aead_key, key_id = derive_store_keys(store_key)
    assert aead_key == HKDF(hashes.SHA256(), 32, salt=None, info=AEAD_INFO).derive(store_key)
    assert len(key_id) == 8
    assert key_id not in (aead_key, store_key[:8])


def test_a_never_written_store_is_empty(store: DeviceStore) -> None:
    assert store.load() == {}
    assert store.get("wifi") is None
    assert not store.path.exists()


def test_update_sets_and_deletes_several_records_in_one_write(store: DeviceStore) -> None:
    store.update({"wifi": WIFI_PASSWORD, "state": b"enrolled", "zone": b"z1"})
    assert store.generation == 1
    store.update({"zone": None, "state": b"virgin", "tokens": b"t"})
    assert store.generation == 2
    again = open_store(store.directory)
    assert again.load() == {"wifi": WIFI_PASSWORD, "state": b"virgin", "tokens": b"t"}
    assert again.get("tokens") == b"t"
    assert again.generation == 2


def test_a_transaction_writes_once_or_not_at_all(store: DeviceStore) -> None:
    store.update({"state": b"virgin"})
    with store.transaction() as records:
        records["wifi"] = WIFI_PASSWORD
        records["zone"] = b"zone certificate"
        records["state"] = b"enrolled"
    assert store.generation == 2
    before = store.path.read_bytes()

    def fail_halfway() -> None:
        with store.transaction() as records:
            records["state"] = b"half done"
            raise RuntimeError("the enrolment failed halfway")

    with pytest.raises(RuntimeError):
        fail_halfway()
    assert store.path.read_bytes() == before
    assert open_store(store.directory).get("state") == b"enrolled"


def test_a_nested_transaction_is_refused_not_deadlocked(store: DeviceStore) -> None:
    def nest() -> None:
        with store.transaction() as records:
            records["state"] = b"outer"
            store.attempt_store().save(b"inner")

    with pytest.raises(StoreError, match="already open"):
        nest()
    assert store.load() == {}
    store.update({"state": b"after"})  # the lock was released
    assert store.get("state") == b"after"


def test_the_file_layout(store: DeviceStore) -> None:
    store.update({"wifi": WIFI_PASSWORD})
    first = store.path.read_bytes()
    store.update({"wifi": WIFI_PASSWORD})
    second = store.path.read_bytes()
    magic, version, generation, key_id, nonce = HEADER.unpack_from(first)
    assert (magic, version, generation) == (MAGIC, 1, 1)
    assert HEADER.size == 37
    store_key = (store.directory / KEY_FILE_NAME).read_bytes()
    aead_key, expected_key_id = derive_store_keys(store_key)
    assert key_id == expected_key_id
    plaintext = ChaCha20Poly1305(aead_key).decrypt(nonce, first[37:], first[:37])
    length = int.from_bytes(plaintext[:4], "big")
    assert cbor2.loads(plaintext[4 : 4 + length]) == {"wifi": WIFI_PASSWORD}
    assert len(plaintext) % PAD_TO == 0
    assert plaintext[4 + length :] == bytes(len(plaintext) - 4 - length)
    # Same content again: a new generation and a fresh nonce, so a new ciphertext.
    _, _, generation2, key_id2, nonce2 = HEADER.unpack_from(second)
    assert (generation2, key_id2) == (2, key_id)
    assert nonce2 != nonce
    assert second[37:] != first[37:]


def test_nothing_secret_is_on_disk_in_plaintext(tmp_path: Path) -> None:
    directory = tmp_path / "device"
    store = open_store(directory)
    device, _label = provision_device(
        Manufacturer.create("Acme", now=NOW).issue_device(now=NOW),
        modes=OobMode.QR | OobMode.CODE,
        cost=CHEAP,
    )
    store.put_provisioning(device)
    store.update({"wifi": cbor2.dumps({"ssid": "home", "psk": WIFI_PASSWORD})})
    store.attempt_store().save(AttemptLimiter(failures=5).to_bytes())
    key = device.identity.attestation_key.private_numbers().private_value.to_bytes(32, "big")
    noise_key = device.identity.noise_static_key.private_bytes_raw()
    store_key = (directory / KEY_FILE_NAME).read_bytes()
    secrets = [
        WIFI_PASSWORD,
        device.label_secret,
        key,
        noise_key,
        store_key,
        derive_store_keys(store_key)[0],  # the AEAD key (the key id is public)
        *(record.encode() for record in device.code_records.values()),
    ]
    for path in directory.iterdir():
        if path.name == KEY_FILE_NAME:
            continue
        content = path.read_bytes()
        for secret in secrets:
            assert secret not in content, path.name
    assert b"wifi" not in store.path.read_bytes()  # record names are encrypted too
    loaded = open_store(directory).provisioning()
    assert loaded is not None
    assert loaded.label_secret == device.label_secret
    assert loaded.identity.device_id == device.identity.device_id
    assert loaded.identity.noise_static_key.private_bytes_raw() == noise_key


def test_padding_hides_the_length_of_a_wifi_password(tmp_path: Path) -> None:
    short, long = open_store(tmp_path / "a"), open_store(tmp_path / "b")
    short.update({"wifi": b"x" * 8})
    long.update({"wifi": b"x" * 63})
    assert short.path.stat().st_size == long.path.stat().st_size


def test_repr_names_the_file_and_provider_only(store: DeviceStore) -> None:
    store.update({"wifi": WIFI_PASSWORD})
    text = repr(store)
    assert STORE_FILE_NAME in text
    assert "file" in text
    key = (store.directory / KEY_FILE_NAME).read_bytes()
    assert key.hex() not in text
    assert "correct horse" not in text


def written(store: DeviceStore) -> bytes:
    store.update({"wifi": WIFI_PASSWORD, "state": b"enrolled"})
    return store.path.read_bytes()


def reload_fails(directory: Path, raw: bytes) -> StoreError:
    (directory / STORE_FILE_NAME).write_bytes(raw)
    with pytest.raises(StoreError) as caught:
        open_store(directory).load()
    return caught.value


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (0, StoreCorrupt),  # magic
        (8, StoreVersionUnsupported),  # version
        (16, StoreCorrupt),  # generation: authenticated as associated data
        (17, StoreKeyMismatch),  # key id
        (30, StoreCorrupt),  # nonce
        (40, StoreCorrupt),  # ciphertext
        (-1, StoreCorrupt),  # tag
    ],
)
def test_every_altered_field_is_a_typed_error(
    store: DeviceStore, offset: int, error: type[StoreError]
) -> None:
    raw = bytearray(written(store))
    raw[offset] ^= 0x01
    caught = reload_fails(store.directory, bytes(raw))
    assert type(caught) is error
    assert str(store.path) in str(caught)


def test_a_spliced_header_fails_authentication(store: DeviceStore) -> None:
    old = written(store)
    new = written(store)
    caught = reload_fails(store.directory, new[:17] + old[17:])  # new generation, old body
    assert type(caught) is StoreCorrupt
    assert "altered" in str(caught)


def test_truncations_and_appendages_are_corruption(store: DeviceStore) -> None:
    raw = written(store)
    for length in [0, 1, 8, 36, 37, 52, 53, 100, len(raw) - 16, len(raw) - 1]:
        caught = reload_fails(store.directory, raw[:length])
        assert type(caught) is StoreCorrupt, length
    assert type(reload_fails(store.directory, raw + b"\0")) is StoreCorrupt
    assert type(reload_fails(store.directory, b"\0" * (2 << 20))) is StoreCorrupt


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A store directory and its intact file, for the property test (hypothesis
    refuses function-scoped fixtures; each example rewrites the file first)."""
    directory = tmp_path_factory.mktemp("pristine") / "device"
    return directory, written(open_store(directory))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_damage_is_always_a_typed_error(
    pristine: tuple[Path, bytes], data: st.DataObject
) -> None:
    directory, intact = pristine
    raw = bytearray(intact)
    offsets = st.integers(0, len(raw) - 1)
    positions = data.draw(st.lists(offsets, min_size=1, max_size=4, unique=True))
    for position in positions:
        raw[position] ^= data.draw(st.integers(1, 255))
    (directory / STORE_FILE_NAME).write_bytes(bytes(raw))
    with pytest.raises(StoreError):
        open_store(directory).load()


def test_a_different_key_is_a_key_mismatch(store: DeviceStore) -> None:
    written(store)
    (store.directory / KEY_FILE_NAME).unlink()
    with pytest.raises(StoreKeyMismatch, match="another key") as caught:
        open_store(store.directory).load()
    assert "erase" in str(caught.value)
    with pytest.raises(StoreKeyMismatch):
        open_store(store.directory).update({"state": b"x"})


def test_a_rollback_seen_by_a_running_store_is_refused(store: DeviceStore) -> None:
    old = written(store)
    written(store)
    store.path.write_bytes(old)
    with pytest.raises(StoreRollback, match="from generation 2 to 1"):
        store.load()
    with pytest.raises(StoreRollback):
        store.update({"state": b"x"})
    # A restarted store has no memory of generation 2: documented limitation.
    assert open_store(store.directory).generation == 0
    assert open_store(store.directory).get("state") == b"enrolled"


def test_factory_reset_keeps_the_factory_identity_only(store: DeviceStore) -> None:
    store.update({"provisioning": b"factory record", "wifi": WIFI_PASSWORD, "zone": b"z"})
    store.attempt_store().save(b"attempts")
    store.factory_reset()
    assert store.load() == {"provisioning": b"factory record"}
    assert store.generation == 3
    assert WIFI_PASSWORD not in store.path.read_bytes()


def test_factory_reset_refuses_an_unreadable_store_and_erase_recovers(
    store: DeviceStore,
) -> None:
    raw = bytearray(written(store))
    raw[-1] ^= 1
    store.path.write_bytes(bytes(raw))
    fresh = open_store(store.directory)
    with pytest.raises(StoreCorrupt):
        fresh.factory_reset()
    fresh.erase()
    assert fresh.load() == {}
    assert fresh.generation == 2  # continues from the damaged file's header


def test_erase_recovers_from_a_lost_key(store: DeviceStore) -> None:
    written(store)
    written(store)
    (store.directory / KEY_FILE_NAME).unlink()
    fresh = open_store(store.directory)
    fresh.erase()
    assert fresh.load() == {}
    assert fresh.generation == 3


def test_the_attempt_counter_adapter(store: DeviceStore) -> None:
    attempts: AttemptStore = store.attempt_store()
    assert attempts.load() is None
    limiter = AttemptLimiter()
    limiter.begin_attempt(0.0)
    limiter.begin_attempt(1.0)
    attempts.save(limiter.to_bytes())
    store.update({"wifi": WIFI_PASSWORD})
    raw = open_store(store.directory).attempt_store().load()
    assert raw is not None
    assert AttemptLimiter.from_bytes(raw).failures == 2
    assert store.get("wifi") == WIFI_PASSWORD


@pytest.mark.parametrize(
    "changes",
    [
        {"": b"x"},
        {"Wifi": b"x"},
        {"a" * 33: b"x"},
        {"wifi": "not bytes"},
        {"blob": b"\0" * (1 << 20)},
    ],
)
def test_bad_records_are_refused_before_anything_is_written(
    store: DeviceStore, changes: dict[str, bytes]
) -> None:
    store.update({"state": b"ok"})
    before = store.path.read_bytes()
    with pytest.raises(InvalidRecord):
        store.update(changes)
    assert store.path.read_bytes() == before


def test_stale_temporary_files_are_removed_by_the_next_write(store: DeviceStore) -> None:
    written(store)
    stale = store.directory / f".{STORE_FILE_NAME}.abcd1234.tmp"
    stale.write_bytes(b"left by a writer that died before its rename")
    written(store)
    assert not stale.exists()
    assert sorted(p.name for p in store.directory.iterdir()) == [
        STORE_FILE_NAME,
        f"{STORE_FILE_NAME}.lock",
        KEY_FILE_NAME,
    ]


def test_open_uses_the_key_file_by_default(tmp_path: Path) -> None:
    store = DeviceStore.open(tmp_path / "device")
    store.update({"state": b"virgin"})
    assert store.key_provider.name == "file"
    assert DeviceStore.open(tmp_path / "device").get("state") == b"virgin"


def test_open_refuses_to_make_a_new_key_for_an_existing_store(tmp_path: Path) -> None:
    store = DeviceStore.open(tmp_path / "device")
    store.update({"state": b"virgin"})
    (tmp_path / "device" / KEY_FILE_NAME).unlink()
    with pytest.raises(KeyUnavailable, match="none of the key providers"):
        DeviceStore.open(tmp_path / "device")


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    directory = tmp_path / "device"
    open_store(directory).update({"count": b"0"})
    writer = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from bleprov.store.device_store import DeviceStore
        from bleprov.store.keys import KeyFileProvider
        directory = Path(sys.argv[1])
        store = DeviceStore(directory, KeyFileProvider(directory / "store.key"))
        for _ in range(100):
            with store.transaction() as records:
                records["count"] = str(int(records["count"]) + 1).encode()
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", writer, str(directory)], cwd=REPO) for _ in range(3)
    ]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0]
    final = open_store(directory)
    assert final.get("count") == b"300"
    assert final.generation == 301


def test_a_copied_store_opens_with_its_key_only(tmp_path: Path) -> None:
    original = open_store(tmp_path / "a")
    written(original)
    (tmp_path / "b").mkdir(mode=0o700)
    shutil.copy(original.path, tmp_path / "b" / STORE_FILE_NAME)
    with pytest.raises(StoreKeyMismatch):
        open_store(tmp_path / "b").load()
    shutil.copy(original.directory / KEY_FILE_NAME, tmp_path / "b" / KEY_FILE_NAME)
    assert open_store(tmp_path / "b").get("wifi") == WIFI_PASSWORD


def test_a_write_in_another_thread_during_a_read_is_no_rollback(
    store: DeviceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon writes its attempt reservation in a worker thread while its event loop
    may read the store: a read of the file as it was just before that write's rename is
    not a rollback (it raised StoreRollback, and the enrolment failed to open)."""
    import threading

    from bleprov.store import device_store

    store.update({"a": b"1"})
    real_read = device_store.read_optional
    raced = []

    def read_then_race(path: Path) -> bytes | None:
        old = real_read(path)
        if not raced and threading.current_thread() is threading.main_thread():
            raced.append(True)  # the other thread's write lands after this read
            writer = threading.Thread(target=store.update, args=({"b": b"2"},))
            writer.start()
            writer.join()
        return old

    monkeypatch.setattr(device_store, "read_optional", read_then_race)
    assert store.load() == {"a": b"1"}  # the copy read: older, no error
    assert store.load() == {"a": b"1", "b": b"2"}
    assert store.generation == 2


def test_a_read_after_another_writer_sees_its_change_not_the_kept_copy(
    tmp_path: Path,
) -> None:
    """A store keeps what it last decrypted (a daemon reads its store several times per
    session), but another writer's change (another process: a CLI reset, a commit) must
    be seen at the next read, however soon after and whatever its size: the same-size
    change below would keep the file's length, and may keep its inode and mtime tick."""
    daemon, other = open_store(tmp_path / "device"), open_store(tmp_path / "device")
    daemon.update({"provisioning": b"factory record", "state": b"a", "wifi": WIFI_PASSWORD})
    assert daemon.load()["state"] == b"a"
    other.update({"state": b"b"})  # same size, at once
    assert daemon.load()["state"] == b"b"
    other.factory_reset()
    assert daemon.load() == {"provisioning": b"factory record"}
    other.update({"zone": b"z"})
    with daemon.transaction() as records:  # a commit reads what the other wrote
        assert records == {"provisioning": b"factory record", "zone": b"z"}
        records["state"] = b"enrolled"
    assert other.load() == {"provisioning": b"factory record", "zone": b"z", "state": b"enrolled"}


def test_the_kept_copy_is_no_one_s_to_change_and_hides_no_damage(store: DeviceStore) -> None:
    store.update({"state": b"a"})
    records = store.load()
    records["state"] = b"changed by a caller"
    assert store.load() == {"state": b"a"}
    raw = bytearray(store.path.read_bytes())
    raw[40] ^= 0x01
    store.path.write_bytes(bytes(raw))
    with pytest.raises(StoreCorrupt):
        store.load()


def test_reading_an_unchanged_store_decrypts_it_once(
    store: DeviceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's CPU per session: its own write is kept, and rereading the same bytes
    costs no decryption (measured: about 0.1 ms each, five or six per handshake)."""
    store.update({"state": b"a"})
    decrypted = []
    real = store._decrypt
    monkeypatch.setattr(store, "_decrypt", lambda raw: decrypted.append(1) or real(raw))
    for _ in range(3):
        assert store.load() == {"state": b"a"}
    assert decrypted == []
    open_store(store.directory).update({"state": b"b"})
    assert store.load() == {"state": b"b"}
    assert store.load() == {"state": b"b"}
    assert decrypted == [1]
