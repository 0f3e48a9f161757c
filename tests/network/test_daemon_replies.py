"""The parsers of wpa_supplicant's and NetworkManager's replies, fuzzed (issue 15).

What a daemon answers is parsed into scan results, network IDs, addresses and failure
reasons. Each parser must bound its input and end in None (an entry it skips) or the
backend's typed error, never another exception: a join or a scan must not die of an
AttributeError. Property tests feed arbitrary text (wpa_supplicant's replies and events)
and arbitrary D-Bus-shaped values (NetworkManager's unwrapped properties); the smallest
input each found on the old code is a regression case.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.errors import MalformedData
from bleprov.network import wpa_supplicant as wpa

if sys.platform != "linux":
    pytest.skip("NetworkManager and dbus-fast are Linux-only", allow_module_level=True)

from dbus_fast import Message, MessageType, Variant

from bleprov.network import networkmanager as nm

FUZZ = settings(max_examples=500, deadline=None)

# wpa_supplicant's replies are ASCII in practice; the fuzz also draws other digits
# (str.isdigit() is true for "²", which int() refuses) and very long numbers.
reply_text = st.text(
    alphabet=st.sampled_from("0123456789²\u0661 \t\n=[]-abcdefxDISABLEDCURRENT:\\\"'"), max_size=80
) | st.text(max_size=80)
long_number = st.integers(4300, 6000).map(lambda n: "1" * n)


# ------------------------------------------------------------------- wpa_supplicant


@pytest.mark.parametrize(
    "reply",
    ["network id / ssid / bssid / flags\n²\tHome\tany\t", "h\n" + "1" * 5000 + "\tx\tany\t"],
    ids=["superscript-two-ValueError", "5000-digits-ValueError"],
)
def test_a_network_list_with_a_bad_id_skips_the_row(reply: str) -> None:
    """Before, ``"²".isdigit()`` passed and int() raised ValueError from the join."""
    assert wpa.parse_network_list(reply) == []


@FUZZ
@given(reply_text | long_number.map(lambda n: f"h\n{n}\tx\tany\t[CURRENT]"))
def test_network_lists_parse_without_raising(reply: str) -> None:
    for network in wpa.parse_network_list(reply):
        assert 0 <= network.id < 10**9


@pytest.mark.parametrize("reply", ["²\n", "1" * 5000 + "\n"], ids=["superscript", "long"])
def test_an_add_network_reply_that_is_no_id_is_a_typed_error(reply: str) -> None:
    """Before, ``"²".isdigit()`` passed and int() raised ValueError from try_join."""
    with pytest.raises(wpa.WpaSupplicantError):
        wpa.network_id_of(reply, "ADD_NETWORK")


@FUZZ
@given(reply_text | long_number)
def test_network_ids_parse_to_a_number_or_a_typed_error(reply: str) -> None:
    with suppress(wpa.WpaSupplicantError):
        assert 0 <= wpa.network_id_of(reply, "ADD_NETWORK") < 10**9


def connected_event(network_id: str) -> str:
    return f"CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:01:01 completed [id={network_id} "


def test_a_connected_event_with_a_5000_digit_id_is_no_event() -> None:
    """Before, ``\\d+`` matched and int() raised ValueError out of the join."""
    assert wpa.connected_network(connected_event("1" * 5000)) is None
    assert wpa.connected_network(connected_event("7")) == 7


def test_a_temp_disabled_event_with_a_5000_digit_id_is_no_event() -> None:
    event = (
        f'CTRL-EVENT-SSID-TEMP-DISABLED id={"1" * 5000} ssid="Home" auth_failures=1 '
        "duration=10 reason=WRONG_KEY"
    )
    assert wpa.temp_disabled_network(event) is None
    assert wpa.temp_disabled_network(event.replace("1" * 5000, "3")) == (3, "WRONG_KEY")


@FUZZ
@given(
    reply_text
    | long_number.map(connected_event)
    | st.text(alphabet="0123456789\u0661", max_size=12).map(connected_event)
)
def test_events_parse_without_raising(event: str) -> None:
    wpa.connected_network(event)
    wpa.temp_disabled_network(event)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["ssid", "freq", "level", "bssid", "flags", "id"]) | st.text(max_size=5),
        reply_text | long_number,
        max_size=6,
    )
)
def test_bss_entries_parse_to_a_result_or_none(fields: dict[str, str]) -> None:
    wpa.bss_scan_result(fields)
    wpa.bss_id(fields)


def test_a_bss_entry_whose_id_is_not_a_number_ends_the_walk() -> None:
    """Before, the id went unchecked into the next command (``BSS NEXT-<id>``)."""
    assert wpa.bss_id({"id": "3 ; REMOVE_NETWORK all"}) is None
    assert wpa.bss_id({"id": "1" * 5000}) is None
    assert wpa.bss_id({"id": "12"}) == 12


@FUZZ
@given(reply_text)
def test_escaped_ssids_decode_or_raise_malformed_data(text: str) -> None:
    with suppress(MalformedData):
        assert len(wpa.decode_escaped_ssid(text)) <= 32


# ------------------------------------------------------------------ NetworkManager

dbus_scalars = (
    st.integers(-(2**70), 2**70)
    | st.floats()
    | st.booleans()
    | st.text(max_size=12)
    | st.binary(max_size=40)
)
dbus_values = st.recursive(
    dbus_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
        | children.map(lambda v: Variant("s", v) if isinstance(v, str) else v)
    ),
    max_leaves=12,
)
AP_KEYS = ["Ssid", "HwAddress", "Frequency", "Strength", "Flags", "WpaFlags", "RsnFlags"]


@pytest.mark.parametrize(
    ("props", "escaped"),
    [
        ({"Strength": float("inf")}, "OverflowError"),
        ({"Ssid": 2**36}, "a 64 GiB bytes(int) allocation"),
    ],
    ids=["inf-OverflowError", "int-ssid-MemoryError"],
)
def test_access_point_properties_of_the_wrong_type_are_skipped(
    props: dict[str, Any], escaped: str
) -> None:
    """Before, each escaped (or allocated) as its id says; now the entry is skipped."""
    good = {
        "Ssid": b"Home",
        "HwAddress": "02:00:00:00:01:0a",
        "Frequency": 5180,
        "Strength": 83,
        "Flags": 1,
        "WpaFlags": 0,
        "RsnFlags": 0x188,
    }
    assert nm.access_point_scan_result(good) is not None
    assert nm.access_point_scan_result({**good, **props}) is None, escaped


@FUZZ
@given(st.dictionaries(st.sampled_from(AP_KEYS), dbus_values, max_size=7))
def test_access_points_parse_to_a_result_or_none(props: dict[str, Any]) -> None:
    nm.access_point_scan_result(props)


@pytest.mark.parametrize(
    "props",
    [{"AddressData": "x"}, {"AddressData": [1]}, {"Addresses": [1]}, {"Addresses": [[2**40]]}],
    ids=["str-AttributeError", "int-AttributeError", "int-TypeError", "big-struct.error"],
)
def test_ip_configs_of_the_wrong_shape_have_no_address(props: dict[str, Any]) -> None:
    """Before, each escaped as its id says, from the join's DHCP check."""
    assert nm.address_of_ip_config(props) is None


@FUZZ
@given(st.dictionaries(st.sampled_from(["AddressData", "Addresses"]), dbus_values, max_size=2))
def test_ip_configs_parse_to_an_address_or_none(props: dict[str, Any]) -> None:
    nm.address_of_ip_config(props)


@FUZZ
@given(dbus_values)
def test_failure_reasons_of_any_value_are_failures(reason: Any) -> None:
    assert nm.failure_for_reason(reason).reason is not None


class _Reply:
    message_type = MessageType.METHOD_RETURN
    error_name = None

    def __init__(self, body: list[Any]) -> None:
        self.body = body


class _Bus:
    """Answers every call with one reply body (what a confused daemon might send)."""

    def __init__(self, body: list[Any]) -> None:
        self.body = body

    async def call(self, message: Message) -> _Reply:
        return _Reply(self.body)


def wifi_answering(body: list[Any]) -> nm.NetworkManagerWifi:
    wifi = nm.NetworkManagerWifi()
    wifi._bus = _Bus(body)  # type: ignore[assignment]
    wifi._device = "/org/freedesktop/NetworkManager/Devices/1"
    return wifi


@pytest.mark.parametrize(
    ("body", "getter"),
    [([], "get"), ([1, 2], "get"), ([], "get_all"), (["not a dict"], "get_all")],
    ids=[
        "get-none-ValueError",
        "get-two-ValueError",
        "all-none-ValueError",
        "all-str-AttributeError",
    ],
)
async def test_a_reply_of_the_wrong_shape_is_a_networkmanager_error(
    body: list[Any], getter: str
) -> None:
    """Before, each escaped as its id says (unpacking a reply, ``.items()`` of a string)."""
    wifi = wifi_answering(body)
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: wifi._get("/p", "i", "n"),
        "get_all": lambda: wifi._get_all("/p", "i"),
    }
    with pytest.raises(nm.NetworkManagerError):
        await calls[getter]()


@pytest.mark.parametrize(
    "reason", ["x", float("inf"), [1]], ids=["str-ValueError", "inf-OverflowError", "list"]
)
async def test_a_state_reason_that_is_no_number_is_unknown(reason: Any) -> None:
    """Before, int() of it raised out of the join's failure report."""
    wifi = wifi_answering([Variant("(uu)", [1, 2])])
    assert await wifi._failure() == 2
    wifi = wifi_answering([[1, reason]])
    assert await wifi._failure() == nm.DeviceStateReason.UNKNOWN


reply_bodies = st.lists(
    dbus_values
    | st.sampled_from(["/", "", "/org/freedesktop/NetworkManager/Devices/1", "not a path"])
    | st.lists(st.sampled_from(["/a/1", "x", 5]), max_size=3),
    max_size=3,
)


@FUZZ
@given(reply_bodies)
def test_any_reply_body_ends_in_a_result_or_a_networkmanager_error(body: list[Any]) -> None:
    """The backend's reads, each answered with the same arbitrary body: paths are checked
    before they name the next object, shapes before they are unpacked."""

    async def read_all() -> None:
        wifi = wifi_answering(body)
        for read in (
            wifi._find_wifi_device,
            wifi._read_access_points,
            wifi._active_profile,
            lambda: wifi._address_of("/org/freedesktop/NetworkManager/ActiveConnection/1"),
            wifi._failure,
            wifi._remove_earlier_profiles,
            lambda: wifi._active_state("/org/freedesktop/NetworkManager/ActiveConnection/1"),
        ):
            with suppress(nm.NetworkManagerError):
                await read()

    asyncio.run(read_all())


def test_an_active_connection_that_is_no_path_is_a_networkmanager_error() -> None:
    """Before, an int where NetworkManager names an object went on to be the next call's
    path (dbus-fast then raised its own error)."""

    async def ask() -> None:
        with pytest.raises(nm.NetworkManagerError):
            await wifi_answering([5])._active_profile()

    asyncio.run(ask())
