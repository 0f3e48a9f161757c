"""F6 (issue 15): the loaders of local files let other exceptions than their own escape.

load_profile raised UnicodeDecodeError on a non-UTF-8 file and AttributeError on a table
of the wrong type, instead of ProfileError. The other loaders of files (hub.toml, the
simulated network's config and state files, the CLI config, the key file, the TPM blob)
had not been fuzzed: each gets a property test here (random bytes, random TOML-shaped
values, and mutations of a good file) that lets only the loader's typed error out, and
the smallest input each found on the old code is a regression case.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bleprov.cli.config import ConfigError, load_config
from bleprov.core.errors import ProfileError
from bleprov.core.profile import load_profile, parse_profile
from bleprov.network.simulated import (
    SimulatedConfigError,
    SimulatedWifi,
    _decode_state,
    parse_environment,
)
from bleprov.store.hub_files import HubError, _read_config
from bleprov.store.keys import KeyFileProvider, KeyProviderError, TpmProvider

PROFILE_TEXT = Path(__file__).parents[2] / "gatt_profiles" / "bleprov-provisioning-v1.toml"
SIMULATED_TEXT = Path(__file__).parents[2] / "bleprov" / "network" / "simulated_example.toml"
HUB_TOML = (
    b'version = 1\nname = "Home"\nzone_id = "0123456789abcdef"\n'
    b"[passphrase_cost]\nn = 16\nr = 1\np = 1\n"
)
CLI_TOML = b'trust = ["roots/acme.pem"]\nzone = "hub"\n'
DEEP = b"a = " + b"[" * 5000
AP_KEYS = [
    *("ssid", "ssid_hex", "bssid", "channel", "rssi", "security", "passphrase", "hidden"),
    *("join_delay", "behaviour", "fail_first", "fail_first_with", "ip_address"),
]


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def only(
    error: type[BaseException] | tuple[type[BaseException], ...], call: Callable[[], Any]
) -> None:
    """Run ``call``: it may succeed or raise ``error``, nothing else."""
    with suppress(error):
        call()


# ----------------------------------------------------------------- value strategies

scalars = (
    st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.datetimes(timezones=st.none() | st.just(UTC))
)
toml_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def tables_with(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dictionaries whose keys are mostly the loader's own (so the fuzz goes deep)."""
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), toml_values, max_size=8)


def mutated(original: bytes) -> st.SearchStrategy[bytes]:
    """A good file with a few bytes replaced, inserted or cut."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            op = draw(st.sampled_from(["replace", "insert", "cut"]))
            chunk = draw(st.binary(min_size=1, max_size=4))
            if op == "replace":
                data[at : at + len(chunk)] = chunk
            elif op == "insert":
                data[at:at] = chunk
            else:
                del data[at : at + len(chunk)]
        return bytes(data)

    return build()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Nested tables take longer to draw than bytes: fewer of them (the property is the same).
FUZZ_TABLES = settings(FUZZ, max_examples=100)


# ------------------------------------------------------------------ GATT profile


def profile_file(data: bytes) -> Callable[[], Any]:
    def load() -> Any:
        with scratch() as directory:
            path = directory / "profile.toml"
            path.write_bytes(data)
            return load_profile(path)

    return load


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"profile=0\nservice=0\ncharacteristic=[0]\nadvertisement=0",
        DEEP,
    ],
    ids=["not-utf8-UnicodeDecodeError", "wrong-table-AttributeError", "deep-RecursionError"],
)
def test_a_bad_profile_file_is_a_profile_error(data: bytes) -> None:
    """F6, the minimal inputs: before, each escaped as its id says."""
    with pytest.raises(ProfileError):
        profile_file(data)()


@FUZZ
@given(st.binary(max_size=200) | mutated(PROFILE_TEXT.read_bytes()))
def test_profile_files_raise_only_profile_errors(data: bytes) -> None:
    only(ProfileError, profile_file(data))


@FUZZ_TABLES
@given(tables_with(["profile", "service", "characteristic", "advertisement"]))
def test_profile_tables_raise_only_profile_errors(data: dict[str, Any]) -> None:
    only(ProfileError, lambda: parse_profile(data))


# ---------------------------------------------------------------------- hub.toml


def hub_toml(data: bytes) -> Callable[[], Any]:
    def load() -> Any:
        with scratch() as directory:
            (directory / "hub.toml").write_bytes(data)
            return _read_config(directory)

    return load


def test_a_deeply_nested_hub_toml_is_a_hub_error() -> None:
    """F6: before, RecursionError escaped."""
    with pytest.raises(HubError):
        hub_toml(DEEP)()


@FUZZ
@given(st.binary(max_size=200) | mutated(HUB_TOML))
def test_hub_toml_raises_only_hub_errors(data: bytes) -> None:
    only(HubError, hub_toml(data))


# ------------------------------------------------------------ simulated network


def simulated_file(data: bytes) -> Callable[[], Any]:
    def load() -> Any:
        with scratch() as directory:
            path = directory / "environment.toml"
            path.write_bytes(data)
            return SimulatedWifi.from_file(path)

    return load


def test_a_deeply_nested_simulated_config_is_a_config_error() -> None:
    """F6: before, RecursionError escaped."""
    with pytest.raises(SimulatedConfigError):
        simulated_file(DEEP)()


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 5000,
        b"1" * 5000,
        b'{"format": "bleprov-simulated-wifi-state", "version": 1,'
        b' "saved": {"ssid": "\\ud800", "security": "open"}}',
    ],
    ids=["deep-RecursionError", "long-int-ValueError", "surrogate-UnicodeEncodeError"],
)
def test_a_bad_simulated_state_file_is_a_config_error(data: bytes) -> None:
    """F6: the state file (JSON); before, each escaped as its id says."""
    with pytest.raises(SimulatedConfigError):
        _decode_state(data, "state.json")


@FUZZ
@given(st.binary(max_size=200) | mutated(SIMULATED_TEXT.read_bytes()))
def test_simulated_config_files_raise_only_config_errors(data: bytes) -> None:
    only(SimulatedConfigError, simulated_file(data))


@FUZZ_TABLES
@given(
    st.fixed_dictionaries(
        {
            "access_points": st.lists(
                tables_with(AP_KEYS),
                max_size=3,
            )
        },
        optional={
            "scan": tables_with(["interval", "duration", "timeout"]),
            "dhcp": tables_with(["ip_address"]),
            "device": tables_with(["connected", "saved"]),
        },
    )
)
def test_simulated_environments_raise_only_config_errors(data: dict[str, Any]) -> None:
    only(SimulatedConfigError, lambda: parse_environment(data))


saved_profiles = tables_with(["ssid", "ssid_hex", "security", "passphrase", "psk_hex", "hidden"])


@FUZZ
@given(
    st.binary(max_size=200)
    | st.builds(
        lambda saved, version: json.dumps(
            {"format": "bleprov-simulated-wifi-state", "version": version, "saved": saved},
            default=str,
        ).encode(),
        saved_profiles,
        st.integers(0, 2),
    )
)
def test_simulated_state_files_raise_only_config_errors(data: bytes) -> None:
    only(SimulatedConfigError, lambda: _decode_state(data, "state.json"))


# -------------------------------------------------------------------- CLI config


def cli_config(data: bytes) -> Callable[[], Any]:
    def load() -> Any:
        with scratch() as directory:
            path = directory / "config.toml"
            path.write_bytes(data)
            return load_config(path)

    return load


def test_a_deeply_nested_cli_config_is_a_config_error() -> None:
    """F6: before, RecursionError escaped."""
    with pytest.raises(ConfigError):
        cli_config(DEEP)()


@FUZZ
@given(st.binary(max_size=200) | mutated(CLI_TOML))
def test_cli_config_files_raise_only_config_errors(data: bytes) -> None:
    only(ConfigError, cli_config(data))


# -------------------------------------------------------------- key file, TPM blob


@FUZZ
@given(st.binary(max_size=100))
def test_key_files_raise_only_key_provider_errors(data: bytes) -> None:
    with scratch() as directory:
        os.chmod(directory, 0o700)
        path = directory / "store.key"
        path.write_bytes(data)
        os.chmod(path, 0o600)
        only(KeyProviderError, lambda: KeyFileProvider(path).load_or_create())


@FUZZ
@given(st.binary(max_size=200))
def test_tpm_blobs_raise_only_key_provider_errors(data: bytes) -> None:
    with scratch() as directory:
        (directory / "store.tpm").write_bytes(data)
        provider = TpmProvider(directory)
        provider.blob_path = directory / "store.tpm"
        only(KeyProviderError, provider._read_blob)


def test_a_tpm_blob_that_is_a_directory_is_a_key_provider_error(tmp_path: Path) -> None:
    """F6: before, IsADirectoryError escaped."""
    provider = TpmProvider(tmp_path)
    provider.blob_path.mkdir()
    with pytest.raises(KeyProviderError):
        provider._read_blob()


_ = datetime  # hypothesis draws datetimes for the TOML-shaped values
