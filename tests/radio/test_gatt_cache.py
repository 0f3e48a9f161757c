"""GATT caching: the Database Hash the device serves, the host's cache of known devices,
and the ATT round trips of set-up counted at bumble's ATT layer."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bleak import BleakClient
from bumble import att, gatt, gatt_client, gatt_server
from bumble.device import Peer
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.cmac import CMAC

from bleprov.core.profile import default_profile
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.gatt_cache import CacheEntry, GattCache, default_cache_path
from bleprov.radio.host_link import CentralRadio, HostLink, LinkError, find_device
from bleprov.radio.linktest import EchoApplication, linktest_info, run_link_test
from bleprov.radio.virtual import make_virtual_device
from tests.conftest import VirtualDevice, VirtualRadio, next_address

PROFILE = default_profile()
USER_DESCRIPTION = "00002901-0000-1000-8000-00805f9b34fb"

# ------------------------------------------------------------------ the hash itself

#: Attribute types whose handle, type and value are hashed (Core spec, Vol 3, Part G, 7.3.1).
_WITH_VALUE = {0x2800, 0x2801, 0x2802, 0x2803, 0x2900}
#: Attribute types whose handle and type (not value) are hashed.
_WITHOUT_VALUE = {0x2901, 0x2902, 0x2903, 0x2904, 0x2905}


def spec_database_hash(attributes: list[tuple[int, bytes, bytes]]) -> bytes:
    """The Database Hash from the Core spec's rules alone: AES-CMAC, key zero, over the
    (handle, type, value) or (handle, type) of the listed declarations, in handle order;
    ``attributes`` are (handle, type as little-endian bytes, value)."""
    message = b""
    for handle, kind, value in sorted(attributes):
        short = int.from_bytes(kind, "little") if len(kind) == 2 else None
        if short in _WITH_VALUE:
            message += struct.pack("<H", handle) + kind + value
        elif short in _WITHOUT_VALUE:
            message += struct.pack("<H", handle) + kind
    mac = CMAC(AES(bytes(16)))
    mac.update(message)
    return mac.finalize()


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


#: The example database of the Core spec, Vol 3, Part G, Appendix B, with its values.
APPENDIX_B = [
    (0x01, _u16(0x2800), _u16(0x1800)),
    (0x02, _u16(0x2803), bytes([0x0A]) + _u16(0x03) + _u16(0x2A00)),
    (0x03, _u16(0x2A00), b"Example Name"),  # a value: not hashed
    (0x04, _u16(0x2803), bytes([0x02]) + _u16(0x05) + _u16(0x2A01)),
    (0x05, _u16(0x2A01), b"\x00\x00"),
    (0x06, _u16(0x2800), _u16(0x1801)),
    (0x07, _u16(0x2803), bytes([0x20]) + _u16(0x08) + _u16(0x2A05)),
    (0x08, _u16(0x2A05), b""),
    (0x09, _u16(0x2902), b"\x02\x00"),  # a CCCD: its value not hashed
    (0x0A, _u16(0x2803), bytes([0x0A]) + _u16(0x0B) + _u16(0x2B29)),
    (0x0B, _u16(0x2B29), b"\x01"),
    (0x0C, _u16(0x2803), bytes([0x02]) + _u16(0x0D) + _u16(0x2B2A)),
    (0x0D, _u16(0x2B2A), bytes(16)),
    (0x0E, _u16(0x2800), _u16(0x1808)),
    (0x0F, _u16(0x2802), _u16(0x14) + _u16(0x16) + _u16(0x180F)),
    (0x10, _u16(0x2803), bytes([0xA2]) + _u16(0x11) + _u16(0x2A18)),
    (0x11, _u16(0x2A18), b"\x00"),
    (0x12, _u16(0x2902), b"\x00\x00"),
    (0x13, _u16(0x2900), b"\x00\x00"),
    (0x14, _u16(0x2801), _u16(0x180F)),
    (0x15, _u16(0x2803), bytes([0x02]) + _u16(0x16) + _u16(0x2A19)),
    (0x16, _u16(0x2A19), b"\x64"),
]


def test_the_hash_rules_reproduce_the_core_spec_example() -> None:
    """Core spec, Vol 3, Part G, Appendix B: the published hash of its example database."""
    assert spec_database_hash(APPENDIX_B) == bytes.fromhex("F1CA2D48ECF58BAC8A8830BBB9FBA990")


def _attribute_triples(server: gatt_server.Server) -> list[tuple[int, bytes, bytes]]:
    triples = []
    for attribute in server.attributes:
        value = attribute.value if isinstance(attribute.value, bytes) else b""
        triples.append((attribute.handle, attribute.type.to_bytes(), value))
    return triples


async def _read_hash(radio: VirtualRadio, dev: VirtualDevice) -> bytes:
    central = make_virtual_device(radio.link, name="inspector", address=next_address("C1:B1"))
    await central.power_on()
    connection = await central.connect(dev.bumble.random_address)
    [(_, value)] = (
        await connection.gatt_client.send_request(
            att.ATT_Read_By_Type_Request(
                starting_handle=1,
                ending_handle=0xFFFF,
                attribute_type=gatt.GATT_DATABASE_HASH_CHARACTERISTIC,
            )
        )
    ).attributes
    await connection.disconnect()
    return bytes(value)


async def test_the_device_serves_the_database_hash_of_its_layout(radio: VirtualRadio) -> None:
    """The hash read over the air (by type, as BlueZ, Android and iOS read it) is the one
    the spec's rules give for the device's attributes, and the Generic Attribute service
    offers Service Changed and Client Supported Features beside it."""
    dev = await radio.make_device()
    served = await _read_hash(radio, dev)
    # A uint128 (the CMAC output read as a big-endian number, as the spec prints it),
    # sent least significant octet first like every ATT integer.
    assert served == spec_database_hash(_attribute_triples(dev.bumble.gatt_server))[::-1]
    central = make_virtual_device(radio.link, name="inspector", address=next_address("C1:B1"))
    await central.power_on()
    peer = Peer(await central.connect(dev.bumble.random_address))
    [service] = await peer.discover_service(gatt.GATT_GENERIC_ATTRIBUTE_SERVICE)
    characteristics = {c.uuid: c for c in await peer.discover_characteristics(service=service)}
    changed = characteristics[gatt.GATT_SERVICE_CHANGED_CHARACTERISTIC]
    assert changed.properties & gatt.Characteristic.Properties.INDICATE
    assert gatt.GATT_CLIENT_SUPPORTED_FEATURES_CHARACTERISTIC in characteristics
    assert gatt.GATT_DATABASE_HASH_CHARACTERISTIC in characteristics


async def test_the_hash_does_not_follow_the_device_state(radio: VirtualRadio) -> None:
    """Only declarations are hashed: a device that changes state (its info value) keeps
    its hash, so hosts keep their cache; another layout has another hash."""
    dev = await radio.make_device()
    before = await _read_hash(radio, dev)
    dev.link.peripheral.set_info(b"\xa0" * 40)
    assert await _read_hash(radio, dev) == before
    other = await radio.make_device()
    extra = gatt.Service("180f", [])
    other.bumble.add_service(extra)
    assert await _read_hash(radio, other) != before


# ------------------------------------------------------------------ round trips


@dataclass
class AttTrace:
    """Every ATT PDU the host's GATT client sends and receives, in order."""

    events: list[tuple[str, att.ATT_PDU]] = field(default_factory=list)

    def clear(self) -> None:
        self.events.clear()

    def setup(self) -> list[str]:
        """The host's requests up to its first Write Command (OPEN)."""
        requests = []
        for direction, pdu in self.events:
            if direction == "out" and pdu.op_code == att.Opcode.ATT_WRITE_COMMAND:
                return requests
            if direction == "out" and pdu.op_code.name.endswith("_REQUEST"):
                requests.append(pdu.op_code.name)
        raise AssertionError("the host never wrote a frame")

    def open_before_cccd_answered(self) -> bool:
        """The first Write Command went out before the answer to the last Write Request
        sent ahead of it (the CCCD write): the two overlap."""
        waiting = False
        for direction, pdu in self.events:
            if direction == "out" and pdu.op_code == att.Opcode.ATT_WRITE_REQUEST:
                waiting = True
            elif direction == "in" and pdu.op_code == att.Opcode.ATT_WRITE_RESPONSE:
                waiting = False
            elif direction == "out" and pdu.op_code == att.Opcode.ATT_WRITE_COMMAND:
                return waiting
        return False


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> AttTrace:
    recorded = AttTrace()
    send = gatt_client.Client.send_gatt_pdu
    receive = gatt_client.Client.on_gatt_pdu

    def traced_send(self: gatt_client.Client, pdu: bytes) -> None:
        recorded.events.append(("out", att.ATT_PDU.from_bytes(pdu)))
        send(self, pdu)

    def traced_receive(self: gatt_client.Client, pdu: att.ATT_PDU) -> None:
        recorded.events.append(("in", pdu))
        receive(self, pdu)

    monkeypatch.setattr(gatt_client.Client, "send_gatt_pdu", traced_send)
    monkeypatch.setattr(gatt_client.Client, "on_gatt_pdu", traced_receive)
    return recorded


async def _host(radio: VirtualRadio, cache: GattCache | None) -> CentralRadio:
    host = make_virtual_device(radio.link, name="bleprov-host", address=next_address("C0:B1"))
    await host.power_on()
    return CentralRadio.bumble(host, gatt_cache=cache)


async def _session(host: CentralRadio, dev: VirtualDevice) -> None:
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        assert link.info == linktest_info(dev.discriminator)
        [result] = await run_link_test(link, [600])
        assert result.size == 600


_DISCOVERY = {
    "ATT_READ_BY_GROUP_TYPE_REQUEST",
    "ATT_FIND_BY_TYPE_VALUE_REQUEST",
    "ATT_FIND_INFORMATION_REQUEST",
    "ATT_READ_BY_TYPE_REQUEST",
}


async def test_a_known_device_takes_three_att_round_trips_of_setup(
    radio: VirtualRadio, trace: AttTrace, tmp_path: Path
) -> None:
    """First contact: targeted discovery of the one service (far below the 11 requests
    of discovering everything). Known device: MTU exchange, the hash and the info in one
    Read Multiple, and the CCCD write with OPEN right behind it, not waiting."""
    dev = await radio.make_device()
    cache = GattCache(tmp_path / "gatt-cache.json")
    host = await _host(radio, cache)
    await _session(host, dev)
    first = trace.setup()
    assert first[0] == "ATT_EXCHANGE_MTU_REQUEST"
    assert "ATT_READ_BY_GROUP_TYPE_REQUEST" not in first  # not every service
    assert len(first) <= 8, first
    assert trace.open_before_cccd_answered()

    trace.clear()
    again = await _host(radio, GattCache(tmp_path / "gatt-cache.json"))  # a new process
    await _session(again, dev)
    known = trace.setup()
    assert known == [
        "ATT_EXCHANGE_MTU_REQUEST",
        "ATT_READ_MULTIPLE_REQUEST",
        "ATT_WRITE_REQUEST",
    ], known
    assert not _DISCOVERY & set(known)
    assert trace.open_before_cccd_answered()


async def test_without_a_cache_every_contact_is_a_targeted_first_contact(
    radio: VirtualRadio, trace: AttTrace
) -> None:
    dev = await radio.make_device()
    host = await _host(radio, None)
    await _session(host, dev)
    first = trace.setup()
    assert len(first) == 7, first  # no Database Hash read: nothing to cache it in
    trace.clear()
    await _session(host, dev)
    assert trace.setup() == first


# ------------------------------------------------------------------ a wrong cache


async def test_a_corrupt_cache_file_costs_a_rediscovery(
    radio: VirtualRadio, trace: AttTrace, tmp_path: Path
) -> None:
    dev = await radio.make_device()
    path = tmp_path / "gatt-cache.json"
    path.write_bytes(b"\x00{not json")
    await _session(await _host(radio, GattCache(path)), dev)
    assert "ATT_FIND_BY_TYPE_VALUE_REQUEST" in trace.setup()
    document = json.loads(path.read_text())  # rewritten, whole
    assert document["format"] == 1 and len(document["devices"]) == 1
    trace.clear()
    await _session(await _host(radio, GattCache(path)), dev)
    assert len(trace.setup()) == 3


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: e.update(hash="00" * 16),  # another layout's hash
        lambda e: e.update(hash_handle=e["hash_handle"] + 1),  # hash read elsewhere
        lambda e: e.update(hash_handle=0xFFFF),  # no such handle
        lambda e: e.update(services="nope"),  # not well formed
        lambda e: e["services"][0]["characteristics"].reverse(),  # out of order
    ],
)
async def test_a_wrong_cache_entry_costs_a_rediscovery(
    radio: VirtualRadio, trace: AttTrace, tmp_path: Path, damage: object
) -> None:
    dev = await radio.make_device()
    path = tmp_path / "gatt-cache.json"
    host = await _host(radio, GattCache(path))
    await _session(host, dev)
    document = json.loads(path.read_text())
    [entry] = document["devices"].values()
    damage(entry)  # type: ignore[operator]
    path.write_text(json.dumps(document))
    trace.clear()
    await _session(await _host(radio, GattCache(path)), dev)
    assert "ATT_FIND_BY_TYPE_VALUE_REQUEST" in trace.setup()


async def test_a_new_layout_at_the_same_address_is_discovered_again(
    radio: VirtualRadio, trace: AttTrace, tmp_path: Path
) -> None:
    """A firmware update that moves the service (here: a service added before it) changes
    the hash: the host discovers again instead of writing to stale handles."""
    dev = await radio.make_device()
    path = tmp_path / "gatt-cache.json"
    await _session(await _host(radio, GattCache(path)), dev)
    address = dev.bumble.random_address
    await dev.link.close()
    # The same device, updated: same address, one more service ahead of ours.
    bumble = make_virtual_device(radio.link, name="bleprov-dev", address=str(address))
    bumble.add_service(gatt.Service("180f", []))
    link = DeviceLink(
        BumblePeripheral(bumble), EchoApplication(), lambda: linktest_info(dev.discriminator)
    )
    await link.start()
    try:
        trace.clear()
        moved = VirtualDevice(bumble, link, link.application, dev.discriminator)
        await _session(await _host(radio, GattCache(path)), moved)
        setup = trace.setup()
        assert "ATT_READ_MULTIPLE_REQUEST" in setup  # tried the cache
        assert "ATT_FIND_BY_TYPE_VALUE_REQUEST" in setup  # and found it stale
    finally:
        await link.close()


def test_the_cache_lives_in_the_xdg_cache_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "bleprov" / "gatt-cache.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_path() == Path.home() / ".cache" / "bleprov" / "gatt-cache.json"


def test_an_unwritable_cache_is_no_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = GattCache(blocker / "gatt-cache.json")  # its directory cannot be made
    cache.put("F0:B1:00:00:00:01/P", CacheEntry(bytes(16), 13, ()))
    assert cache.get("F0:B1:00:00:00:01/P") == CacheEntry(bytes(16), 13, ())


async def test_a_partial_entry_does_not_serve_a_client_that_wants_every_descriptor(
    radio: VirtualRadio, trace: AttTrace, tmp_path: Path
) -> None:
    """HostLink caches only tx's descriptors; a bleak client asking for all of them is
    not handed that entry, and once it has discovered them it is served from the cache
    with its user descriptions."""
    dev = await radio.make_device()
    path = tmp_path / "gatt-cache.json"
    await _session(await _host(radio, GattCache(path)), dev)
    host = await _host(radio, GattCache(path))
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    for contact in ("first", "known"):
        trace.clear()
        async with BleakClient(
            found.device, services=[PROFILE.service_uuid], **host.client_kwargs()
        ) as client:
            info = client.services.get_characteristic(PROFILE.info.uuid)
            assert info is not None
            assert [d.uuid for d in info.descriptors] == [USER_DESCRIPTION]
            assert (
                bytes(await client.read_gatt_char(info))
                == linktest_info(dev.discriminator).encode()
            )
        requests = [p.op_code.name for d, p in trace.events if d == "out"]
        discovered = "ATT_FIND_BY_TYPE_VALUE_REQUEST" in requests
        assert discovered == (contact == "first"), (contact, requests)


async def test_a_refused_subscription_fails_the_link(
    radio: VirtualRadio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CCCD write is not waited for, but its refusal still ends the session with a
    link error (not a hang until the message timeout)."""
    dev = await radio.make_device()

    def refuse(self: gatt_server.Server, *_args: object) -> None:
        raise att.ATT_Error(att.ATT_WRITE_NOT_PERMITTED_ERROR)

    monkeypatch.setattr(gatt_server.Server, "write_cccd", refuse)
    host = await _host(radio, None)
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        with pytest.raises(LinkError, match="could not subscribe"):
            await link.request(b"hello", timeout=5)


async def test_at_the_minimum_mtu_a_cut_short_info_is_read_again(
    radio: VirtualRadio, trace: AttTrace, tmp_path: Path
) -> None:
    """At ATT_MTU 23 the Read Multiple response (22 bytes) cannot hold the hash and the
    whole info: the host reads the info again rather than use a truncated value."""
    dev = await radio.make_device()
    path = tmp_path / "gatt-cache.json"
    for _ in range(2):
        trace.clear()
        host = make_virtual_device(radio.link, name="bleprov-host", address=next_address("C0:B1"))
        await host.power_on()
        await _session(CentralRadio.bumble(host, mtu=23, gatt_cache=GattCache(path)), dev)
    assert trace.setup()[:2] == ["ATT_READ_MULTIPLE_REQUEST", "ATT_READ_REQUEST"]
