"""Pinned peers over validated connections: bound peers connect, everyone else is refused."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from bleprov.core.peer import PeerIdentity, PinSet
from bleprov.tls import (
    PeerNotTrusted,
    PeerRefused,
    UnexpectedPeer,
    open_peer_connection,
    start_peer_server,
)

from .conftest import HOST, Served, echo_handler, running

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def alice() -> PeerIdentity:
    return PeerIdentity.create("alice-laptop", now=NOW)


@pytest.fixture(scope="module")
def bob() -> PeerIdentity:
    return PeerIdentity.create("LAMP-0001", now=NOW)


@pytest.fixture(scope="module")
def carol() -> PeerIdentity:
    return PeerIdentity.create("carol", now=NOW)


@contextlib.asynccontextmanager
async def peer_server(
    identity: PeerIdentity, pins_provider: Callable[[], PinSet]
) -> AsyncIterator[Served]:
    served = Served(0)
    server = await start_peer_server(HOST, 0, identity, pins_provider, echo_handler(served))
    async with running(server, served) as result:
        yield result


async def test_bound_peers_connect(alice: PeerIdentity, bob: PeerIdentity) -> None:
    # Binding: each side keeps the other's pin (exchanged over the secure session).
    bob_pins = PinSet([alice.pin])
    alice_pins = PinSet([bob.pin])
    async with (
        peer_server(bob, lambda: bob_pins) as served,
        await open_peer_connection(
            HOST, served.port, alice, alice_pins, expect_name="LAMP-0001"
        ) as connection,
    ):
        assert connection.peer_member is None
        assert connection.peer_pin == bob.pin
        reply = await connection.request("hello", {"from": "alice"})
    assert reply == {"echo": {"from": "alice"}, "peer": "alice-laptop"}
    [seen] = served.peers
    assert seen.peer_pin == alice.pin


async def test_unpinned_third_party_refused_both_ways(
    alice: PeerIdentity, bob: PeerIdentity, carol: PeerIdentity
) -> None:
    async with peer_server(bob, lambda: PinSet([alice.pin])) as served:
        with pytest.raises(PeerRefused):
            # carol even pins bob: bob has not pinned carol.
            await open_peer_connection(HOST, served.port, carol, PinSet([bob.pin]))
    assert served.peers == []
    async with peer_server(carol, lambda: PinSet([alice.pin])) as served:
        with pytest.raises(PeerNotTrusted):
            await open_peer_connection(HOST, served.port, alice, PinSet([bob.pin]))
    assert served.peers == []


async def test_impostor_with_a_pinned_name_refused(alice: PeerIdentity, bob: PeerIdentity) -> None:
    impostor = PeerIdentity.create(alice.name, now=NOW)
    async with peer_server(bob, lambda: PinSet([alice.pin])) as served:
        with pytest.raises(PeerRefused):
            await open_peer_connection(HOST, served.port, impostor, PinSet([bob.pin]))
    bob_impostor = PeerIdentity.create(bob.name, now=NOW)
    async with peer_server(bob_impostor, lambda: PinSet([alice.pin])) as served:
        with pytest.raises(PeerNotTrusted):
            await open_peer_connection(HOST, served.port, alice, PinSet([bob.pin]))
    assert served.peers == []


async def test_unbinding_takes_effect_on_the_next_connection(
    alice: PeerIdentity, bob: PeerIdentity
) -> None:
    bob_pins = [PinSet([alice.pin])]
    alice_pins = PinSet([bob.pin])
    async with peer_server(bob, lambda: bob_pins[0]) as served:
        async with await open_peer_connection(HOST, served.port, alice, alice_pins) as c:
            await c.request("ping", {})
        bob_pins[0] = bob_pins[0].remove(alice.name)  # bob unbinds alice
        with pytest.raises(PeerRefused):
            await open_peer_connection(HOST, served.port, alice, alice_pins)
        bob_pins[0] = bob_pins[0].add(alice.pin)  # and binds her again
        async with await open_peer_connection(HOST, served.port, alice, alice_pins) as c:
            await c.request("ping", {})
    assert len(served.peers) == 2
    # alice unbinds bob: she refuses him.
    async with peer_server(bob, lambda: PinSet([alice.pin])) as served:
        with pytest.raises(PeerNotTrusted):
            await open_peer_connection(HOST, served.port, alice, alice_pins.remove(bob.name))


async def test_pinned_but_not_the_expected_peer(
    alice: PeerIdentity, bob: PeerIdentity, carol: PeerIdentity
) -> None:
    async with peer_server(bob, lambda: PinSet([alice.pin])) as served:
        with pytest.raises(UnexpectedPeer):
            await open_peer_connection(
                HOST, served.port, alice, PinSet([bob.pin, carol.pin]), expect_name="carol"
            )
