"""M1: a malicious device overwrote the host's pin for another device (review of 0457068).

provision() pinned whatever peer certificate the device answered, under the name in it,
replacing any pin of that name. A device (attested as itself) that answers with a peer
certificate named after another device took over the host's trust in that other device.
Now the host requires the peer name to equal the attested device ID, checks it before the
commit, and never replaces a pin with another key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bleprov.core import membership as mb
from bleprov.core.errors import BleprovError
from bleprov.core.peer import PeerIdentity
from bleprov.service.provisioning import PeerPlan, provision
from tests.worlds import World


async def test_a_device_cannot_take_over_the_hosts_pin_for_another_device(
    world: World,
) -> None:
    host = world.host("laptop")
    victim = await world.new_device()
    await world.bind(victim, host)
    victim_pin = host.pins().pins()[0]
    assert victim_pin.name == victim.device_id

    rogue = await world.new_device()
    # The rogue's firmware presents a peer identity named after the victim.
    impostor = PeerIdentity.create(victim.device_id, now=datetime.now(UTC))
    rogue.store.update({mb.RECORD_PEER_IDENTITY: impostor.to_bytes()})

    session, _ = await world.session(rogue)
    try:
        with pytest.raises(BleprovError):
            await provision(session, peer=PeerPlan(host))
    finally:
        await session.close()
        await rogue.service.drain()
    pins = host.pins()
    assert pins.names() == [victim.device_id]
    assert pins.pins()[0].fingerprint == victim_pin.fingerprint
    assert mb.owner_of(rogue.store.load()) is None, "the rogue committed a binding anyway"
