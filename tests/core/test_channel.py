"""The secure channel: every replay, reorder, truncation, tamper or reflection ends it."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bleprov.core.channel import (
    ChannelClosedError,
    ChannelError,
    IdleTimeout,
    SecureChannel,
)
from bleprov.core.errors import LocalProtocolError

K_UP, K_DOWN = os.urandom(32), os.urandom(32)


def pair(idle: float = 120.0) -> tuple[SecureChannel, SecureChannel]:
    host = SecureChannel.for_role(
        is_host=True, host_to_device_key=K_UP, device_to_host_key=K_DOWN, idle_timeout=idle, now=0
    )
    device = SecureChannel.for_role(
        is_host=False, host_to_device_key=K_UP, device_to_host_key=K_DOWN, idle_timeout=idle, now=0
    )
    return host, device


def test_round_trip_both_directions() -> None:
    host, device = pair()
    for i in range(5):
        assert device.open(host.seal(b"up %d" % i, 1.0), 1.0) == b"up %d" % i
        assert host.open(device.seal(b"down %d" % i, 1.0), 1.0) == b"down %d" % i
    assert host.messages_sent == device.messages_received == 5


def test_nonce_format_is_noise_compatible() -> None:
    """Counter n as 4 zero bytes + 8-byte little-endian, empty AD: a Noise CipherState."""
    host, _ = pair()
    host.seal(b"first", 0.0)
    second = host.seal(b"second", 0.0)
    nonce = b"\x00" * 4 + (1).to_bytes(8, "little")
    assert ChaCha20Poly1305(K_UP).decrypt(nonce, second, b"") == b"second"


def test_replay_is_rejected_and_closes() -> None:
    host, device = pair()
    m = host.seal(b"pay", 0.0)
    device.open(m, 0.0)
    with pytest.raises(ChannelError):
        device.open(m, 0.0)
    assert device.closed
    with pytest.raises(ChannelClosedError):
        device.open(host.seal(b"next", 0.0), 0.0)


def test_reorder_is_rejected() -> None:
    host, device = pair()
    a, b = host.seal(b"a", 0.0), host.seal(b"b", 0.0)
    with pytest.raises(ChannelError):
        device.open(b, 0.0)
    assert a  # never accepted after the failure either
    with pytest.raises(ChannelClosedError):
        device.open(a, 0.0)


def test_dropped_message_is_detected_at_the_next_one() -> None:
    host, device = pair()
    host.seal(b"lost", 0.0)
    with pytest.raises(ChannelError):
        device.open(host.seal(b"after", 0.0), 0.0)


@pytest.mark.parametrize("position", [0, 1, 7, 16, 20, -17, -1])
def test_tampering_at_sampled_positions(position: int) -> None:
    host, device = pair()
    m = bytearray(host.seal(b"0123456789abcdefghij", 0.0))
    m[position] ^= 0x01
    with pytest.raises(ChannelError):
        device.open(bytes(m), 0.0)


@pytest.mark.parametrize("cut", [0, 1, 15, 16, 30])
def test_truncation(cut: int) -> None:
    host, device = pair()
    m = host.seal(b"0123456789abcdefghij", 0.0)
    with pytest.raises(ChannelError):
        device.open(m[:cut], 0.0)


def test_reflection_is_rejected() -> None:
    """A message sent back to its sender fails: the directions have different keys."""
    host, _ = pair()
    m = host.seal(b"mine", 0.0)
    with pytest.raises(ChannelError):
        host.open(m, 0.0)


def test_same_key_both_ways_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        SecureChannel(send_key=K_UP, receive_key=K_UP, now=0.0)


def test_close_erases_keys() -> None:
    host, _ = pair()
    host.close()
    assert bytes(host._send._key) == bytes(32)
    assert bytes(host._receive._key) == bytes(32)
    with pytest.raises(ChannelClosedError):
        host.seal(b"x", 0.0)


def test_idle_timeout() -> None:
    host, device = pair(idle=10.0)
    device.open(host.seal(b"x", 1.0), 1.0)
    assert device.next_deadline() == 11.0
    device.handle_timer(10.9)
    with pytest.raises(IdleTimeout):
        device.handle_timer(11.0)
    assert device.closed
    with pytest.raises(ChannelClosedError):
        device.open(host.seal(b"y", 11.5), 11.5)
