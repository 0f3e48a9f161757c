"""Ownership moves only when the owner says so: commissioning windows end to end.

Over the virtual radio and loopback TLS, as the device daemon runs them: the owner opens
a window over its validated connection (peer or zone hub), a new host finds the device by
its advertised window, authenticates with the one-time code, and binds as an admin or
takes the device over. The window is one-time, bounded in wrong codes and in time, and
the old label stays dead throughout."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import UTC, datetime

import pytest

from bleprov.core import membership as mb
from bleprov.core.advertising import AdvertisedFlags, OobMode
from bleprov.core.attempts import Credential
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError
from bleprov.core.window import WindowCode, WindowOffer, WindowPurpose
from bleprov.service.provisioning import PeerPlan, provision
from bleprov.service.trust import DeviceTrust, HostTrust, open_window
from bleprov.service.zone_hub import hub_server_credentials
from bleprov.tls.connection import RequestFailed, open_member_connection
from tests.worlds import LOOPBACK, VirginDevice, World

#: The window code's KDF at the lowest cost hosts accept (2^10): behaviour, not scrypt.
CHEAP_WINDOW = ScryptCost(n=1 << 10, r=1, p=1)


async def _serve_peers(world: World, device: VirginDevice) -> int:
    trust = device.runtime.trust
    server = await trust.serve_peers(LOOPBACK, 0)
    world.closers.append(trust.close)
    return int(server.sockets[0].getsockname()[1])


async def _open(
    host: HostTrust, port: int, device: VirginDevice, purpose: WindowPurpose
) -> WindowCode:
    return await host.open_window(
        LOOPBACK, port, device.device_id, purpose=purpose, seconds=120, cost=CHEAP_WINDOW
    )


async def test_the_owner_adds_an_admin_through_a_one_time_window(world: World) -> None:
    device = await world.new_device()
    owner, friend = world.host("owner"), world.host("friend")
    await world.bind(device, owner)
    port = await _serve_peers(world, device)
    assert device.runtime.current_info().modes == OobMode(0)  # the label is dead

    code = await _open(owner, port, device, WindowPurpose.ADMIN)
    info = device.runtime.current_info()
    assert info.modes == OobMode.CODE and info.window is not None
    assert AdvertisedFlags.WINDOW_OPEN in info.service_data().flags

    session = await world.window_session(code, discriminator=device.runtime.discriminator)
    try:
        report = await provision(session, peer=PeerPlan(friend))
    finally:
        await session.close()
        await device.service.drain()
    assert report.peer is not None and report.peer.name == device.device_id

    owner_record = mb.owner_of(device.store.load())
    assert owner_record is not None
    assert owner_record.is_owner(owner.identity().fingerprint)
    assert owner_record.admins == (friend.identity().fingerprint,)
    assert device.runtime.current_info().window is None  # one-time: closed by the commit

    async with await friend.connect(LOOPBACK, port, device.device_id) as connection:
        hello = await connection.request("hello", {})
        assert hello["role"] == "admin" and "owner" not in hello
        for op in ("factory-reset", "window/open"):
            with pytest.raises(RequestFailed):
                await connection.request(op, {})
    with pytest.raises(BleprovError):  # the used code opens nothing
        await world.window_session(code, device=device)


async def test_a_handover_moves_ownership_and_the_old_owner_is_forgotten(world: World) -> None:
    device = await world.new_device()
    seller, buyer = world.host("seller"), world.host("buyer")
    await world.bind(device, seller)
    port = await _serve_peers(world, device)
    code = await _open(seller, port, device, WindowPurpose.HANDOVER)

    session = await world.window_session(code, discriminator=device.runtime.discriminator)
    try:
        await provision(session, peer=PeerPlan(buyer))
    finally:
        await session.close()
        await device.service.drain()
    owner_record = mb.owner_of(device.store.load())
    assert owner_record is not None and owner_record.is_owner(buyer.identity().fingerprint)
    assert mb.pins_of(device.store.load()).names() == ["buyer"]
    with pytest.raises(BleprovError):
        async with await seller.connect(LOOPBACK, port, device.device_id) as connection:
            await connection.request("hello", {})
    async with await buyer.connect(LOOPBACK, port, device.device_id) as connection:
        assert (await connection.request("hello", {}))["role"] == "owner"
    with pytest.raises(BleprovError):  # the old label is still dead for everyone
        await world.bind(device, world.host("label-holder"))


async def test_the_zone_hub_opens_a_window_and_hands_over_into_another_zone(
    world: World,
) -> None:
    device = await world.new_device()
    await world.enrol(device)
    trust = DeviceTrust(device.store, device_id=device.device_id, windows=device.runtime)
    server = await trust.serve_members(LOOPBACK, 0, crl_provider=world.crl)
    world.closers.append(trust.close)
    port = server.sockets[0].getsockname()[1]
    hub = hub_server_credentials(world.hub, now=datetime.now(UTC))
    async with await open_member_connection(
        LOOPBACK, port, hub, crl_der=world.crl(), expect_device=device.device_id
    ) as connection:
        code = await open_window(
            connection, purpose=WindowPurpose.HANDOVER, seconds=120, cost=CHEAP_WINDOW
        )

    buyer = world.host("buyer")
    session = await world.window_session(code, discriminator=device.runtime.discriminator)
    try:
        await provision(session, peer=PeerPlan(buyer))
    finally:
        await session.close()
        await device.service.drain()
    records = device.store.load()
    assert mb.RECORD_ZONE not in records  # the old zone's membership went with the handover
    owner_record = mb.owner_of(records)
    assert owner_record is not None and owner_record.kind == "peer"
    assert owner_record.is_owner(buyer.identity().fingerprint)


async def test_wrong_window_codes_close_the_window_and_spare_the_factory_counter(
    world: World,
) -> None:
    device = await world.new_device()
    owner = world.host("owner")
    await world.bind(device, owner)
    port = await _serve_peers(world, device)
    code = await _open(owner, port, device, WindowPurpose.ADMIN)
    wrong = f"{(int(code.digits) + 1) % 10**12:012d}"
    limits = device.runtime.server.limits
    factory_failures = {c: limits[c].failures for c in Credential if c.limited}
    for _ in range(5):
        with pytest.raises(BleprovError):
            await world.window_session(wrong, discriminator=device.runtime.discriminator)
        await asyncio.sleep(0)
    assert device.runtime.current_info().window is None
    with pytest.raises(BleprovError):  # even the right code: the window is closed
        await world.window_session(code, discriminator=device.runtime.discriminator)
    assert {c: limits[c].failures for c in Credential if c.limited} == factory_failures


async def test_only_the_owner_opens_a_window_and_offers_are_checked(world: World) -> None:
    device = await world.new_device()
    owner = world.host("owner")
    await world.bind(device, owner)
    port = await _serve_peers(world, device)
    offer = WindowOffer.create(
        WindowCode.generate(), purpose=WindowPurpose.ADMIN, seconds=120, cost=CHEAP_WINDOW
    )
    bad = {**offer.to_body(), "seconds": 86400}
    async with await owner.connect(LOOPBACK, port, device.device_id) as connection:
        with pytest.raises(RequestFailed):
            await connection.request("window/open", bad)
        await connection.request("window/open", offer.to_body())
        assert (await connection.request("window/close", {}))["closed"] is True
    assert device.runtime.current_info().window is None
    with pytest.raises(BleprovError):
        await world.window_session("0000-0000-0000", device=device)


async def test_bleprov_zone_open_window_as_a_process(world: World) -> None:
    """The zone admin's command: the hub opens a window on its member, the code is printed
    once, and a new host binds with it; the passphrases travel in the environment."""
    device = await world.new_device()
    await world.enrol(device)
    trust = DeviceTrust(device.store, device_id=device.device_id, windows=device.runtime)
    server = await trust.serve_members(LOOPBACK, 0, crl_provider=world.crl)
    world.closers.append(trust.close)
    port = server.sockets[0].getsockname()[1]
    env = {
        **os.environ,
        "BLEPROV_ZONE_PASSPHRASE": "zone passphrase",
        "BLEPROV_USER_PASSPHRASE": "admin passphrase",
        "COLUMNS": "200",
    }
    argv = [
        sys.executable, "-m", "bleprov", "zone", "open-window", device.device_id,
        "--dir", str(world.hub.directory), "--user", "admin",
        "--address", f"{LOOPBACK}:{port}", "--purpose", "admin", "--minutes", "5",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out.decode() + err.decode()
    match = re.search(r"code: (\d{4}-\d{4}-\d{4})", out.decode())
    assert match is not None, out.decode()
    friend = world.host("friend")
    await world.bind_in_window(WindowCode.parse(match.group(1)), device, friend)
    owner_record = mb.owner_of(device.store.load())
    assert owner_record is not None and owner_record.kind == "zone"
    assert owner_record.admins == (friend.identity().fingerprint,)
