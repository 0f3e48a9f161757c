"""Link-layer benchmark: framing and flow control on the connection-interval model.

Measures, on the virtual radio with a modelled connection interval:
- a 64 KiB message each way (echo) with credit-based flow control at MTU 23 and 247;
- one direction (host to device) with credits against one write-with-response per frame,
  the alternative flow-control scheme, at MTU 23 and 247.

Figures: wall time under the model, frames, L2CAP PDUs, bytes on air, and GATT round trips
(ATT requests that wait for a response: the info read, the CCCD write, and, in the
write-with-response scheme, every frame).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from bleprov.core.errors import BleprovError
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink, DeviceSession
from bleprov.radio.host_link import CentralRadio, HostLink, find_device
from bleprov.radio.linktest import EchoApplication, linktest_info, run_link_test
from bleprov.radio.virtual import VirtualLink, make_virtual_device


class SinkApplication:
    """Acknowledges each message with its length: measures one direction."""

    def session_opened(self, session: DeviceSession) -> None:
        pass

    def message_received(self, session: DeviceSession, payload: bytes) -> None:
        session.send(len(payload).to_bytes(4, "big"))

    def session_closed(self, session: DeviceSession, error: BleprovError | None) -> None:
        pass


@dataclass
class Row:
    scenario: str
    mtu: int
    interval_ms: float
    size: int
    seconds: float
    frames_up: int
    frames_down: int
    pdus: int
    air_bytes: int
    round_trips: int


async def measure(
    *, scenario: str, mtu: int, interval_ms: float, size: int, echo: bool, with_response: bool
) -> Row:
    link = VirtualLink(connection_interval=interval_ms / 1000 if interval_ms else None)
    device = make_virtual_device(link, name="dev", address="F0:B1:E9:00:00:01")
    app = EchoApplication() if echo else SinkApplication()
    dlink = DeviceLink(BumblePeripheral(device), app, lambda: linktest_info(1))
    await dlink.start()
    host = make_virtual_device(link, name="host", address="C0:B1:E9:00:00:01")
    await host.power_on()
    radio = CentralRadio.bumble(host, mtu=mtu)
    try:
        found = await find_device(radio, discriminator=1, timeout=10)
        link.stats.reset()
        start = asyncio.get_running_loop().time()
        async with HostLink(found.device, radio, write_with_response=with_response) as hl:
            payload = bytes(size)
            if echo:
                await run_link_test(hl, [size], timeout=900)
            else:
                assert await hl.request(payload, timeout=900) == size.to_bytes(4, "big")
            elapsed = asyncio.get_running_loop().time() - start
            stats = hl.channel.stats
            return Row(
                scenario,
                mtu,
                interval_ms,
                size,
                elapsed,
                stats.frames_sent,
                stats.frames_received,
                link.stats.total.pdus,
                link.stats.total.air_bytes,
                hl.write_round_trips,
            )
    finally:
        await dlink.close()
        link.close()


SCENARIOS = [
    # (scenario, mtu, interval, size, echo, write-with-response)
    ("64 KiB each way, credits", 23, 30.0, 65536, True, False),
    ("64 KiB each way, credits", 247, 30.0, 65536, True, False),
    ("8 KiB up, credits", 23, 30.0, 8192, False, False),
    ("8 KiB up, write-with-response", 23, 30.0, 8192, False, True),
    ("8 KiB up, credits", 247, 30.0, 8192, False, False),
    ("8 KiB up, write-with-response", 247, 30.0, 8192, False, True),
]
#: Smoke run for the test suite: tiny messages on a 7.5 ms interval.
QUICK = [(s, m, 7.5, min(z, 512), e, w) for (s, m, _i, z, e, w) in SCENARIOS]


def render(rows: list[Row]) -> str:
    lines = [
        "| scenario | MTU | interval | bytes | time (s) | frames up/down | PDUs | bytes on air "
        "| GATT round trips |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.mtu} | {r.interval_ms:g} ms | {r.size} | {r.seconds:.2f} "
            f"| {r.frames_up}/{r.frames_down} | {r.pdus} | {r.air_bytes} | {r.round_trips} |"
        )
    by = {(r.scenario, r.mtu): r for r in rows}
    for mtu in (23, 247):
        credit = by.get(("8 KiB up, credits", mtu))
        wwr = by.get(("8 KiB up, write-with-response", mtu))
        if credit and wwr:
            lines.append(
                f"\nMTU {mtu}: write-with-response takes {wwr.seconds / credit.seconds:.1f}x "
                "the time of credit-based flow control for the same message."
            )
    return "\n".join(lines)


async def run_all(quick: bool) -> list[Row]:
    rows = []
    for scenario, mtu, interval, size, echo, wwr in QUICK if quick else SCENARIOS:
        t = time.perf_counter()
        rows.append(
            await measure(
                scenario=scenario,
                mtu=mtu,
                interval_ms=interval,
                size=size,
                echo=echo,
                with_response=wwr,
            )
        )
        print(f"  {scenario} MTU {mtu}: {time.perf_counter() - t:.1f} s wall", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    print(render(asyncio.run(run_all(args.quick))))


if __name__ == "__main__":
    main()
