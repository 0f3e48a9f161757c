"""The framing state machine, driven by hand: no radio, no event loop."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.errors import (
    ChannelClosed,
    CreditViolation,
    LocalProtocolError,
    MalformedFrame,
    MessageTimeout,
    OpenTimeout,
    OversizedMessage,
    PeerReset,
    SequenceError,
    TruncatedMessage,
    UnsupportedVersion,
)
from bleprov.core.frames import (
    BLUEZ_MAX_WRITE_VALUE,
    ChannelOpened,
    ChannelState,
    FrameChannel,
    FrameKind,
    MessageReceived,
    Role,
    frame_size_for_mtu,
)

MTUS = [23, 185, 247, 517]


def opened_pair(
    mtu: int = 23, *, device_window: int = 16, host_window: int = 16, max_message: int = 65536
) -> tuple[FrameChannel, FrameChannel]:
    host = FrameChannel(Role.HOST, rx_window=host_window, max_message=max_message)
    device = FrameChannel(Role.DEVICE, rx_window=device_window, max_message=max_message)
    host.connection_made(mtu)
    device.connection_made(mtu)
    host.open(peer_rx_window=device.rx_window, peer_max_message=device.max_message, now=0.0)
    events = [e for f in host.data_to_send(0.0) for e in device.receive_frame(f, 0.0)]
    assert events == [ChannelOpened(mtu, host_window, max_message)]
    return host, device


def pump(a: FrameChannel, b: FrameChannel, now: float = 0.0) -> list[bytes]:
    """Move frames both ways until quiet; return the messages b and a received, in order."""
    received: list[bytes] = []
    while True:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for frame in src.data_to_send(now):
                moved = True
                for ev in dst.receive_frame(frame, now):
                    assert isinstance(ev, MessageReceived)
                    received.append(ev.payload)
        if not moved:
            return received


def data_frames(channel: FrameChannel) -> list[bytes]:
    return [f for f in channel.data_to_send(0.0) if f[0] >> 6 == FrameKind.DATA]


@pytest.mark.parametrize("mtu", MTUS)
def test_64k_both_ways_at_each_mtu(mtu: int) -> None:
    host, device = opened_pair(mtu)
    up, down = os.urandom(65536), os.urandom(65536)
    host.send_message(up, 0.0)
    device.send_message(down, 0.0)
    got = pump(host, device)
    assert sorted(got) == sorted([up, down])
    size = frame_size_for_mtu(mtu)
    assert host.stats.bytes_sent // max(1, host.stats.frames_sent) <= size
    assert host.is_idle and device.is_idle
    # Every frame fits one ATT value at this MTU.
    assert size == min(mtu - 3, 512)


@pytest.mark.parametrize("mtu", MTUS)
def test_frames_never_exceed_the_frame_size(mtu: int) -> None:
    host, _ = opened_pair(mtu, device_window=127)
    host.send_message(os.urandom(5000), 0.0)
    frames = host.data_to_send(0.0)
    assert frames and all(len(f) <= frame_size_for_mtu(mtu) for f in frames)


@pytest.mark.parametrize("mtu", MTUS)
def test_a_sender_with_send_overhead_leaves_room_and_the_peer_reads_it(mtu: int) -> None:
    """A device on BlueZ: bluetoothd's Multiple Handle Value Notification puts a 2-byte
    length before each value and cuts one above MTU - 5. The device's frames leave that
    room; the host's frames may still be MTU - 3 long."""
    host = FrameChannel(Role.HOST)
    device = FrameChannel(Role.DEVICE, send_overhead=2)
    host.connection_made(mtu)
    device.connection_made(mtu)
    host.open(peer_rx_window=device.rx_window, peer_max_message=device.max_message, now=0.0)
    for frame in host.data_to_send(0.0):
        device.receive_frame(frame, 0.0)
    down, up = os.urandom(3000), os.urandom(3000)
    device.send_message(down, 0.0)
    host.send_message(up, 0.0)
    device_frames = device.data_to_send(0.0)
    assert device_frames and max(len(f) for f in device_frames) == min(mtu - 5, 512)
    host_frames = host.data_to_send(0.0)
    assert max(len(f) for f in host_frames) == frame_size_for_mtu(mtu)
    events = [e for f in host_frames for e in device.receive_frame(f, 0.0)]
    events += [e for f in device_frames for e in host.receive_frame(f, 0.0)]
    got = [e.payload for e in events if isinstance(e, MessageReceived)] + pump(host, device)
    assert sorted(got) == sorted([down, up])
    assert device.stats.bytes_sent // device.stats.frames_sent <= min(mtu - 5, 512)
    with pytest.raises(LocalProtocolError):
        FrameChannel(Role.DEVICE, send_overhead=3)


def test_a_host_never_sends_a_frame_bluez_5_66_would_drop() -> None:
    """BlueZ 5.66 drops a written value above 510 bytes without a word (seen in the lab:
    the zone step's three 512-byte frames never reached the device). A channel with
    ``max_send_frame`` sends no longer frame at any MTU, and still takes 512 from its
    peer."""
    host = FrameChannel(Role.HOST, max_send_frame=BLUEZ_MAX_WRITE_VALUE)
    device = FrameChannel(Role.DEVICE)
    host.connection_made(517)
    device.connection_made(517)
    host.open(peer_rx_window=device.rx_window, peer_max_message=device.max_message, now=0.0)
    for frame in host.data_to_send(0.0):
        device.receive_frame(frame, 0.0)
    up, down = os.urandom(2000), os.urandom(2000)
    host.send_message(up, 0.0)
    device.send_message(down, 0.0)
    host_frames = host.data_to_send(0.0)
    assert max(len(f) for f in host_frames) == BLUEZ_MAX_WRITE_VALUE == 510
    device_frames = device.data_to_send(0.0)
    assert max(len(f) for f in device_frames) == 512
    events = [e for f in host_frames for e in device.receive_frame(f, 0.0)]
    events += [e for f in device_frames for e in host.receive_frame(f, 0.0)]
    got = [e.payload for e in events if isinstance(e, MessageReceived)] + pump(host, device)
    assert sorted(got) == sorted([up, down])
    with pytest.raises(LocalProtocolError):
        FrameChannel(Role.HOST, max_send_frame=513)


def test_frame_size_caps_at_512_and_rejects_bad_mtu() -> None:
    assert frame_size_for_mtu(517) == 512
    assert frame_size_for_mtu(23) == 20
    with pytest.raises(LocalProtocolError):
        frame_size_for_mtu(22)
    with pytest.raises(LocalProtocolError):
        frame_size_for_mtu(518)


def test_empty_and_one_byte_messages() -> None:
    host, device = opened_pair()
    host.send_message(b"", 0.0)
    host.send_message(b"x", 0.0)
    assert pump(host, device) == [b"", b"x"]


def test_several_messages_keep_their_order_and_boundaries() -> None:
    host, device = opened_pair(185)
    msgs = [os.urandom(n) for n in (1, 181, 182, 183, 1000, 0, 7)]
    for m in msgs:
        host.send_message(m, 0.0)
    assert pump(host, device) == msgs


def test_sender_stops_at_the_credit_window() -> None:
    host, device = opened_pair(23, device_window=4)
    host.send_message(os.urandom(1000), 0.0)
    assert len(data_frames(host)) == 4
    assert data_frames(host) == []  # no credit left until the device grants more


def test_credit_is_granted_at_half_window() -> None:
    host, device = opened_pair(23, device_window=8)
    host.send_message(os.urandom(1000), 0.0)
    frames = data_frames(host)
    for f in frames[:3]:
        device.receive_frame(f, 0.0)
    assert device.data_to_send(0.0) == []
    device.receive_frame(frames[3], 0.0)
    credit = device.data_to_send(0.0)
    assert len(credit) == 1 and credit[0][0] >> 6 == FrameKind.CREDIT
    host.receive_frame(credit[0], 0.0)
    assert len(data_frames(host)) == 4  # 8 - 4 in flight + 4 new


def test_sequence_numbers_wrap_past_255() -> None:
    host, device = opened_pair(23, device_window=127)
    msg = os.urandom(20 * 600)  # about 670 frames: the 8-bit sequence wraps twice
    host.send_message(msg, 0.0)
    assert pump(host, device) == [msg]
    assert host.stats.frames_sent > 600


# --------------------------------------------------------------- framing errors


def expect_reset(channel: FrameChannel, code: int) -> None:
    """After an error the channel holds nothing and has one RESET frame to send."""
    assert channel.state is ChannelState.RESET
    assert channel.buffered_bytes == 2
    assert channel.data_to_send(0.0) == [bytes([FrameKind.RESET << 6, code])]
    assert channel.is_idle and channel.buffered_bytes == 0


def test_malformed_frame_too_short() -> None:
    _, device = opened_pair()
    with pytest.raises(MalformedFrame):
        device.receive_frame(b"\x00", 0.0)
    expect_reset(device, MalformedFrame.code)


def test_malformed_frame_reserved_bits() -> None:
    _, device = opened_pair()
    with pytest.raises(MalformedFrame):
        device.receive_frame(bytes([0x10, 0]) + b"abc", 0.0)
    expect_reset(device, MalformedFrame.code)


def test_malformed_frame_larger_than_frame_size() -> None:
    host, device = opened_pair(23)
    with pytest.raises(MalformedFrame):
        device.receive_frame(bytes([0x20, 0]) + (3).to_bytes(3, "big") + b"x" * 16, 0.0)
    expect_reset(device, MalformedFrame.code)


def test_malformed_first_frame_without_length() -> None:
    _, device = opened_pair()
    with pytest.raises(MalformedFrame):
        device.receive_frame(bytes([0x20, 0, 1]), 0.0)
    expect_reset(device, MalformedFrame.code)


def test_empty_continuation_frame_is_malformed() -> None:
    host, device = opened_pair()
    host.send_message(os.urandom(100), 0.0)
    device.receive_frame(data_frames(host)[0], 0.0)
    with pytest.raises(MalformedFrame):
        device.receive_frame(bytes([0x00, 1]), 0.0)


def test_oversized_message_is_refused_at_its_first_frame() -> None:
    host, device = opened_pair(max_message=1000)
    frame = bytes([0x20, 0]) + (1001).to_bytes(3, "big") + b"x"
    with pytest.raises(OversizedMessage):
        device.receive_frame(frame, 0.0)
    expect_reset(device, OversizedMessage.code)


def test_sender_refuses_a_message_above_the_peer_bound() -> None:
    host, _ = opened_pair(max_message=1000)
    with pytest.raises(LocalProtocolError):
        host.send_message(b"x" * 1001, 0.0)
    assert host.state is ChannelState.OPEN  # a local mistake does not reset the exchange


def test_out_of_order_frame() -> None:
    host, device = opened_pair()
    host.send_message(os.urandom(100), 0.0)
    frames = data_frames(host)
    device.receive_frame(frames[0], 0.0)
    with pytest.raises(SequenceError):
        device.receive_frame(frames[2], 0.0)
    expect_reset(device, SequenceError.code)


def test_duplicated_frame() -> None:
    host, device = opened_pair()
    host.send_message(os.urandom(100), 0.0)
    frames = data_frames(host)
    device.receive_frame(frames[0], 0.0)
    with pytest.raises(SequenceError):
        device.receive_frame(frames[0], 0.0)


def test_continuation_without_a_first_frame() -> None:
    _, device = opened_pair()
    with pytest.raises(SequenceError):
        device.receive_frame(bytes([0x00, 0]) + b"abc", 0.0)
    expect_reset(device, SequenceError.code)


def test_truncated_message_followed_by_a_new_one() -> None:
    host, device = opened_pair()
    host.send_message(os.urandom(100), 0.0)
    device.receive_frame(data_frames(host)[0], 0.0)
    new_first = bytes([0x20, 1]) + (5).to_bytes(3, "big") + b"hello"
    with pytest.raises(TruncatedMessage):
        device.receive_frame(new_first, 0.0)
    expect_reset(device, TruncatedMessage.code)


def test_frames_overrunning_the_announced_length() -> None:
    _, device = opened_pair()
    device.receive_frame(bytes([0x20, 0]) + (12).to_bytes(3, "big") + b"x" * 10, 0.0)
    with pytest.raises(TruncatedMessage):
        device.receive_frame(bytes([0x00, 1]) + b"abc", 0.0)


def test_connection_lost_mid_message_is_truncation_and_leaves_nothing() -> None:
    host, device = opened_pair()
    host.send_message(os.urandom(100), 0.0)
    device.receive_frame(data_frames(host)[0], 0.0)
    with pytest.raises(TruncatedMessage):
        device.connection_lost()
    assert device.state is ChannelState.CLOSED and device.buffered_bytes == 0


def test_connection_lost_between_messages_is_clean() -> None:
    _, device = opened_pair()
    device.connection_lost()
    assert device.state is ChannelState.CLOSED


def test_message_timeout_on_receive() -> None:
    host, device = opened_pair()
    host.send_message(os.urandom(100), 0.0)
    device.receive_frame(data_frames(host)[0], 10.0)
    deadline = device.next_deadline()
    assert deadline == 10.0 + device.message_timeout
    device.handle_timer(deadline - 0.001)  # not yet
    with pytest.raises(MessageTimeout):
        device.handle_timer(deadline)
    expect_reset(device, MessageTimeout.code)


def test_message_timeout_when_the_peer_grants_no_credit() -> None:
    host, _ = opened_pair(device_window=2)
    host.send_message(os.urandom(200), 5.0)
    assert len(host.data_to_send(5.0)) == 2
    assert host.next_deadline() == 5.0 + host.message_timeout
    with pytest.raises(MessageTimeout):
        host.handle_timer(5.0 + host.message_timeout)


def test_the_device_waits_for_open_only_so_long() -> None:
    """A central that connects and never sends OPEN: the deadline is reported (sans-IO:
    the adapter arms the timer), then a typed error and a RESET frame."""
    device = FrameChannel(Role.DEVICE, open_timeout=15.0)
    device.connection_made(23, now=100.0)
    assert device.next_deadline() == 115.0
    device.handle_timer(114.9)  # not yet
    with pytest.raises(OpenTimeout) as timed_out:
        device.handle_timer(115.0)
    assert timed_out.value.code == 0x1A
    expect_reset(device, OpenTimeout.code)
    assert device.next_deadline() is None


def test_open_in_time_clears_the_open_deadline() -> None:
    host, device = FrameChannel(Role.HOST), FrameChannel(Role.DEVICE)
    host.connection_made(23, now=0.0)
    device.connection_made(23, now=0.0)
    assert host.next_deadline() is None  # the host has no OPEN to wait for
    assert device.next_deadline() == device.open_timeout
    host.open(peer_rx_window=16, peer_max_message=65536, now=1.0)
    for frame in host.data_to_send(1.0):
        device.receive_frame(frame, 1.0)
    assert device.state is ChannelState.OPEN
    assert device.next_deadline() is None
    device.handle_timer(1e9)  # nothing due


def test_no_deadline_when_idle() -> None:
    host, device = opened_pair()
    assert host.next_deadline() is None and device.next_deadline() is None


def test_credit_violation() -> None:
    """A host that ignores the device's window is caught at the first frame past it."""
    host = FrameChannel(Role.HOST)
    device = FrameChannel(Role.DEVICE, rx_window=2)
    host.connection_made(23)
    device.connection_made(23)
    host.open(peer_rx_window=4, peer_max_message=65536, now=0.0)  # the host thinks 4
    for f in host.data_to_send(0.0):
        device.receive_frame(f, 0.0)
    host.send_message(os.urandom(200), 0.0)
    frames = data_frames(host)
    assert len(frames) == 4
    device.receive_frame(frames[0], 0.0)
    device.receive_frame(frames[1], 0.0)  # credit is due, but not sent yet
    with pytest.raises(CreditViolation):
        device.receive_frame(frames[2], 0.0)
    expect_reset(device, CreditViolation.code)


def test_credit_limit_cannot_jump_beyond_the_window() -> None:
    host, _ = opened_pair()
    with pytest.raises(MalformedFrame):
        host.receive_frame(bytes([FrameKind.CREDIT << 6, 200]), 0.0)


def test_peer_reset_is_reported_and_clears_the_channel() -> None:
    host, device = opened_pair()
    device.send_message(os.urandom(300), 0.0)
    with pytest.raises(PeerReset) as info:
        device.receive_frame(bytes([FrameKind.RESET << 6, 0x13]), 0.0)
    assert info.value.peer_code == 0x13
    assert device.state is ChannelState.RESET
    assert device.data_to_send(0.0) == []  # no RESET in reply to a RESET
    assert device.buffered_bytes == 0


def test_open_only_once_and_only_to_the_device() -> None:
    host = FrameChannel(Role.HOST)
    device = FrameChannel(Role.DEVICE)
    host.connection_made(23)
    device.connection_made(23)
    host.open(peer_rx_window=16, peer_max_message=65536, now=0.0)
    open_frame = host.data_to_send(0.0)[0]
    device.receive_frame(open_frame, 0.0)
    with pytest.raises(MalformedFrame):
        device.receive_frame(open_frame, 0.0)
    host2, _ = opened_pair()
    with pytest.raises(MalformedFrame):
        host2.receive_frame(open_frame, 0.0)


def test_data_before_open_is_rejected() -> None:
    device = FrameChannel(Role.DEVICE)
    device.connection_made(23)
    with pytest.raises(MalformedFrame):
        device.receive_frame(bytes([0x20, 0]) + (1).to_bytes(3, "big") + b"x", 0.0)


def test_unsupported_framing_version() -> None:
    device = FrameChannel(Role.DEVICE)
    device.connection_made(23)
    frame = (
        bytes([FrameKind.OPEN << 6, 9, 16]) + (23).to_bytes(2, "big") + (1000).to_bytes(3, "big")
    )
    with pytest.raises(UnsupportedVersion):
        device.receive_frame(frame, 0.0)


def test_open_teaches_the_device_the_mtu() -> None:
    """A stack that does not report the MTU (bless) learns it from the host."""
    host = FrameChannel(Role.HOST)
    device = FrameChannel(Role.DEVICE)
    host.connection_made(247)
    device.connection_made(23)
    host.open(peer_rx_window=16, peer_max_message=65536, now=0.0)
    device.receive_frame(host.data_to_send(0.0)[0], 0.0)
    assert device.att_mtu == 247


def test_frames_after_reset_or_close_are_refused() -> None:
    _, device = opened_pair()
    with pytest.raises(MalformedFrame):
        device.receive_frame(b"\x3f\x00", 0.0)
    with pytest.raises(ChannelClosed):
        device.receive_frame(b"\x00\x00x", 0.0)
    device.close()
    with pytest.raises(ChannelClosed):
        device.send_message(b"x", 0.0)


def test_a_fresh_exchange_after_reset_works() -> None:
    host, device = opened_pair()
    with pytest.raises(MalformedFrame):
        device.receive_frame(b"\xff", 0.0)
    device.data_to_send(0.0)
    host.connection_lost()
    device.connection_lost()
    host2, device2 = opened_pair()
    host2.send_message(b"again", 0.0)
    assert pump(host2, device2) == [b"again"]


@settings(max_examples=60, deadline=None)
@given(
    mtu=st.sampled_from(MTUS),
    window=st.integers(1, 127),
    messages=st.lists(st.binary(max_size=3000), max_size=6),
)
def test_round_trip_property(mtu: int, window: int, messages: list[bytes]) -> None:
    host, device = opened_pair(mtu, device_window=window, host_window=window)
    for m in messages:
        host.send_message(m, 0.0)
        device.send_message(m[::-1], 0.0)
    got = pump(host, device)
    assert sorted(got) == sorted(messages + [m[::-1] for m in messages])


@settings(max_examples=200, deadline=None)
@given(frame=st.binary(max_size=40))
def test_arbitrary_bytes_never_crash_the_decoder(frame: bytes) -> None:
    """Any input yields events or a typed FramingError; never another exception."""
    from bleprov.core.errors import FramingError

    _, device = opened_pair()
    try:
        device.receive_frame(frame, 0.0)
    except FramingError:
        assert device.state is ChannelState.RESET
        assert device.buffered_bytes <= 2
