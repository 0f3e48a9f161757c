"""Radio specifications name an adapter where a machine has several (the lab has two)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bleprov.radio.host_link import CentralRadio
from bleprov.radio.spec import RadioSpec, RadioSpecError


@pytest.mark.parametrize(
    ("text", "adapter"),
    [("system", ""), ("bluez", ""), ("system:hci1", "hci1"), ("bluez:hci0", "hci0")],
)
def test_a_system_radio_may_name_its_adapter(text: str, adapter: str) -> None:
    spec = RadioSpec.parse(text)
    assert (spec.kind, spec.adapter) == ("system", adapter)
    assert RadioSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["system:", "bluez:wlan0", "system:hci1;rm", "bluez:hci"])
def test_an_adapter_that_is_no_bluez_adapter_name_is_refused(text: str) -> None:
    with pytest.raises(RadioSpecError, match="adapter"):
        RadioSpec.parse(text)


def test_bleak_gets_the_adapter_for_scanning_and_connecting() -> None:
    radio = CentralRadio.system("hci1")
    assert radio.scanner_kwargs() == {"bluez": {"adapter": "hci1"}}
    assert radio.client_kwargs() == {"bluez": {"adapter": "hci1"}}
    assert CentralRadio.system().scanner_kwargs() == {}


def test_bluez_main_conf_with_eatt_on_draws_a_warning(tmp_path: Path) -> None:
    """Seen in the lab: with BlueZ's default of 3 ATT bearers on both sides, the device's
    notifications overtook each other ("DATA frame 4 arrived, expected 3")."""
    from bleprov.radio import bluez

    conf = tmp_path / "main.conf"
    assert bluez.gatt_channels(str(tmp_path / "absent.conf")) == 3  # BlueZ's default
    conf.write_text("[General]\nName = x\n[GATT]\n#Channels = 3\n")
    warning = bluez.eatt_warning(str(conf))
    assert warning is not None and "Channels = 1" in warning
    conf.write_text("[GATT]\n# one bearer: frames stay in order\nChannels = 1\n")
    assert bluez.gatt_channels(str(conf)) == 1 and bluez.eatt_warning(str(conf)) is None
    conf.write_text("[GATT]\nChannels = many\n")
    assert bluez.gatt_channels(str(conf)) == 3
