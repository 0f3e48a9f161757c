"""Link test: prove a radio path by echoing whole messages through the framing layer.

The device side (:class:`EchoApplication`) sends every message back unchanged; the host
side (:func:`run_link_test`) sends messages of given sizes, checks each echo byte for byte
and reports time and frames. It is what ``bleprov linktest`` and the hardware tests run,
and what the foundation demo shows; it carries no secrets and needs no session.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from bleprov.core.advertising import DeviceInfo, DeviceState, OobMode
from bleprov.core.errors import BleprovError
from bleprov.core.frames import DEFAULT_MAX_MESSAGE, DEFAULT_RX_WINDOW
from bleprov.core.profile import default_profile
from bleprov.radio.device_link import DeviceSession
from bleprov.radio.host_link import HostLink


class EchoApplication:
    """Device application that returns every message to its sender."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.sessions_closed: list[BleprovError | None] = []

    def session_opened(self, session: DeviceSession) -> None:
        pass

    def message_received(self, session: DeviceSession, payload: bytes) -> None:
        self.messages += 1
        self.bytes += len(payload)
        session.send(payload)

    def session_closed(self, session: DeviceSession, error: BleprovError | None) -> None:
        self.sessions_closed.append(error)


def linktest_info(discriminator: int, *, max_message: int = DEFAULT_MAX_MESSAGE) -> DeviceInfo:
    """The info a link-test device publishes (a virgin device offering qr and code)."""
    profile = default_profile()
    return DeviceInfo(
        protocol_version=profile.protocol_version,
        state=DeviceState.VIRGIN,
        modes=OobMode.QR | OobMode.CODE,
        discriminator=discriminator,
        max_message=max_message,
        rx_window=DEFAULT_RX_WINDOW,
        profile_version=profile.version,
    )


class EchoMismatch(BleprovError):
    """The echo differs from what was sent: the link corrupted or lost data."""


@dataclass(frozen=True)
class EchoResult:
    size: int
    seconds: float
    frames_sent: int
    frames_received: int
    mtu: int


def _pattern(size: int, seed: int) -> bytes:
    """Deterministic, non-repeating test data (a repeating pattern hides reordering)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed.to_bytes(4, "big") + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:size])


async def run_link_test(
    link: HostLink, sizes: list[int], *, timeout: float = 120.0
) -> list[EchoResult]:
    """Send one message of each size, wait for its echo, compare, time it."""
    results = []
    for seed, size in enumerate(sizes):
        payload = _pattern(size, seed)
        sent0 = link.channel.stats.frames_sent
        recv0 = link.channel.stats.frames_received
        start = time.perf_counter()
        echo = await link.request(payload, timeout=timeout)
        elapsed = time.perf_counter() - start
        if echo != payload:
            raise EchoMismatch(f"echo of a {size}-byte message differs from what was sent")
        results.append(
            EchoResult(
                size=size,
                seconds=elapsed,
                frames_sent=link.channel.stats.frames_sent - sent0,
                frames_received=link.channel.stats.frames_received - recv0,
                mtu=link.mtu,
            )
        )
    return results
