"""The GATT profile file: loaded, validated, rendered; bad files give clear errors."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bleprov.core.errors import ProfileError
from bleprov.core.profile import (
    DEFAULT_PROFILE,
    default_profile,
    load_profile,
    parse_profile,
    render_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
PROFILE_FILE = ROOT / "gatt_profiles" / DEFAULT_PROFILE


def raw() -> dict[str, Any]:
    return tomllib.loads(PROFILE_FILE.read_text())


def test_default_profile_has_the_three_characteristics() -> None:
    p = default_profile()
    assert p.version == 1
    assert {c.key for c in p.characteristics} == {"rx", "tx", "info"}
    assert "write-without-response" in p.rx.properties
    assert {"notify", "indicate"} <= set(p.tx.properties)
    assert p.info.properties == ("read",)
    assert len({p.service_uuid, p.rx.uuid, p.tx.uuid, p.info.uuid}) == 4


def test_advertisement_fits_legacy_advertising() -> None:
    adv = default_profile().advertisement
    assert adv.service_data_size == 6
    assert adv.advertising_data_size == 27
    assert adv.advertising_data_size <= 31


def test_load_by_path_equals_default() -> None:
    assert load_profile(PROFILE_FILE) == default_profile()


def test_rendered_docs_are_in_sync_with_the_file() -> None:
    """docs/gatt-profile.md is generated; regenerate with `make docs` when this fails."""
    doc = (ROOT / "docs" / "gatt-profile.md").read_text()
    assert doc == render_markdown(default_profile())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("service"), "missing table"),
        (lambda d: d["service"].update(uuid="not-a-uuid"), "not a 128-bit UUID"),
        (lambda d: d["characteristic"][0].update(uuid=d["characteristic"][1]["uuid"]), "unique"),
        (lambda d: d["characteristic"][0].update(properties=["fly"]), "unknown properties"),
        (lambda d: d["characteristic"].pop(0), "'rx' characteristic is required"),
        (lambda d: d["characteristic"][0].update(properties=[]), "no properties"),
        (
            lambda d: d["advertisement"]["service_data"].extend(
                [{"name": n, "type": "u32", "description": "too much"} for n in "xy"]
            ),
            "legacy advertising carries 31",
        ),
        (lambda d: d["advertisement"]["service_data"][0].update(type="u7"), "type must be"),
        (lambda d: d["profile"].update(version=0), "'version' must be an integer"),
        (
            lambda d: d["advertisement"].update(
                service_data_uuid="00000000-0000-0000-0000-000000000001"
            ),
            "keyed by the service UUID",
        ),
    ],
)
def test_bad_profiles_are_rejected_with_a_clear_error(mutate: Any, message: str) -> None:
    data = copy.deepcopy(raw())
    mutate(data)
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, "test.toml")


def test_not_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[profile\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)


def test_unknown_profile_name() -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile("no-such-profile.toml")
