"""Hostile clients for the flood test, in a process of their own.

Run as ``python -m tests.attacks.hostile_clients PLAN_JSON``. Every client loops until the
plan's time is up, as fast as the device lets it, and counts what it did; the process then
prints one ``flood: {json}`` line. Through the broker (raw MQTT, no bleprov host code
unless it is the real host with a wrong secret):

- ``open-stall``: OPEN on a fresh session topic and nothing more (a host that vanished,
  or one holding a slot), as fast as it can publish;
- ``reconnect``: a new MQTT connection for every OPEN;
- ``garbage``: payloads that are no envelope (unknown kinds, empty, oversized, bad topics);
- ``malformed``: OPEN, then session messages that are not well-formed or not allowed
  (none of them gets far enough to count an attempt);
- ``wrong-code``: the real host (``open_broker_session``) with a wrong code: each counts
  on the device's remote code counter;
- ``hello-stall``: a well-formed code HELLO (one attempt counted), then silence.

Over the virtual radio, each central (a bumble device on its own controller) connects
again as soon as the device let it go (after ``ble_pause``), each time as the next of:

- ``squat``: connect and never OPEN; ``open-stall``: OPEN and never HELLO;
- ``garbage``: frames that are no frames; ``malformed``: malformed session messages;
- ``wrong-code``: the real host with a wrong code.

``extra`` adds raw session messages (hex) to the malformed clients' list (F1/F2 inputs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import cbor2
from bleak import BleakClient
from bleak.exc import BleakError

from bleprov.broker.client import BrokerConfig
from bleprov.broker.host import find_broker_device
from bleprov.broker.wire import CloseReason, Envelope, Kind, Topics, close, new_session_id
from bleprov.core.errors import BleprovError
from bleprov.core.identity import TrustPolicy
from bleprov.core.profile import default_profile
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.radio.host_link import CentralRadio, HostLink
from bleprov.radio.virtual import open_hci_device
from bleprov.service.host_session import DeviceAuthentication, open_broker_session
from bleprov.session import SecureHostLink

OPEN = Envelope(Kind.OPEN).encode()
WRONG_CODE = b"00000000"
#: Session messages that are not well formed, or not allowed here: none reaches the
#: point where the device counts an attempt (a HELLO in a mode the link refuses, a code
#: HELLO whose body is no SPAKE2+ share, a message out of order, non-deterministic CBOR).
MALFORMED: list[bytes] = [
    b"\x00",
    b"\xff" * 7,
    b"\x80",  # an empty array
    cbor2.dumps([1, 99, b"x"]),  # unknown mode
    cbor2.dumps([1, 2]),  # a HELLO without a body
    cbor2.dumps([1, int(Mode.CODE), b"junk"]),  # a code HELLO whose body is no share
    cbor2.dumps([1, int(Mode.BUTTON), b""]),  # button: never through the broker
    cbor2.dumps([2, b"handshake before hello"]),
    cbor2.dumps([3, 0x40, 0]),  # hosts do not send REFUSED
    cbor2.dumps([4, bytes(40)]),  # SECURE before any key
    b"\x98\x01\x01",  # not deterministic (a one-element array with a 1-byte length)
    b"\x5b" + b"\xff" * 8,  # a byte string claiming 2^64 - 1 bytes
    b"\x81" * 2000 + b"\x00",  # arrays nested 2000 deep
    cbor2.dumps([1, int(Mode.QR)]),  # a qr HELLO without a body
]


@dataclass
class Plan:
    seconds: float
    broker: str | None = None
    device_id: str | None = None
    broker_clients: list[str] = field(default_factory=list)
    ble: list[str] = field(default_factory=list)  # controller transports, one per central
    ble_clients: list[str] = field(default_factory=list)  # what each central does, in turn
    address: str | None = None
    discriminator: int | None = None
    extra: list[str] = field(default_factory=list)  # more session messages, hex
    #: Messages per second each raw MQTT publisher sends at most (None: as fast as it can).
    rate: float | None = None
    #: Seconds a radio client waits before connecting again.
    ble_pause: float = 0.0
    seed: int = 15


class Flood:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        #: The longest a radio client of each kind held the device before it dropped us.
        self.holds: dict[str, float] = {}
        self.deadline = time.monotonic() + plan.seconds
        self.malformed = MALFORMED + [bytes.fromhex(h) for h in plan.extra]
        self.rng = random.Random(plan.seed)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def pace(self) -> None:
        """Between two publications: the plan's rate, or a bare yield."""
        await asyncio.sleep(0 if self.plan.rate is None else 1 / self.plan.rate)

    def error(self, kind: str, exc: BaseException) -> None:
        self.errors[f"{kind}: {type(exc).__name__}"] += 1

    async def forever(
        self, kind: str, step: Callable[[], Awaitable[None]], *, pause: float = 0.0
    ) -> None:
        """Run ``step`` until the time is up, ``pause`` seconds apart; a failed step is
        counted, then the next."""
        while self.running():
            try:
                async with asyncio.timeout_at(self.loop_deadline):
                    await step()
            except (BleprovError, aiomqtt.MqttError, BleakError, OSError, TimeoutError) as exc:
                if not self.running():
                    return
                self.error(kind, exc)
                await asyncio.sleep(0.01)  # a refused connection: do not spin
            await asyncio.sleep(pause)

    @property
    def loop_deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.deadline - time.monotonic()

    # ----------------------------------------------------------------- broker

    @property
    def config(self) -> BrokerConfig:
        assert self.plan.broker is not None
        return BrokerConfig.from_url(self.plan.broker)

    @property
    def topics(self) -> Topics:
        assert self.plan.device_id is not None
        return Topics(self.plan.device_id)

    async def broker_open_stall(self) -> None:
        async def step() -> None:
            async with self.config.client() as client:
                while self.running():
                    await client.publish(self.topics.up(new_session_id()), OPEN, qos=0)
                    self.counts["broker open-stall"] += 1
                    await self.pace()

        await self.forever("broker open-stall", step)

    async def broker_reconnect(self) -> None:
        async def step() -> None:
            async with self.config.client() as client:
                await client.publish(self.topics.up(new_session_id()), OPEN, qos=1)
            self.counts["broker reconnect"] += 1

        await self.forever("broker reconnect", step)

    def _garbage(self) -> tuple[str, bytes]:
        rng, topics = self.rng, self.topics
        sid = new_session_id()
        which = rng.randrange(6)
        if which == 0:
            return topics.up(sid), rng.randbytes(rng.randrange(1, 200))
        if which == 1:
            return topics.up(sid), bytes([rng.choice([0x00, 0x04, 0x11, 0x12, 0x13, 0xFF])])
        if which == 2:
            return topics.up(sid), bytes([Kind.DATA_UP])  # DATA with no body
        if which == 3:
            return topics.up(sid), close(Kind.CLOSE_UP, CloseReason.NORMAL) + b"\x00"
        if which == 4 and rng.randrange(20) == 0:
            # Above the device's 64 KiB message bound (and under Mosquitto's packet limit).
            return topics.up(sid), bytes([Kind.DATA_UP]) + bytes(65536 + 1)
        if which == 5:
            return f"{topics.base}/s/NOT-A-SESSION/up", OPEN
        return topics.up(sid), Envelope(Kind.DATA_UP, rng.randbytes(40)).encode()

    async def broker_garbage(self) -> None:
        async def step() -> None:
            async with self.config.client() as client:
                while self.running():
                    topic, payload = self._garbage()
                    await client.publish(topic, payload, qos=0)
                    self.counts["broker garbage"] += 1
                    await self.pace()

        await self.forever("broker garbage", step)

    async def broker_malformed(self) -> None:
        async def step() -> None:
            async with self.config.client() as client:
                while self.running():
                    up = self.topics.up(new_session_id())
                    await client.publish(up, OPEN, qos=0)
                    message = self.rng.choice(self.malformed)
                    await client.publish(up, Envelope(Kind.DATA_UP, message).encode(), qos=0)
                    self.counts["broker malformed"] += 1
                    await self.pace()

        await self.forever("broker malformed", step)

    async def broker_wrong_code(self) -> None:
        auth = DeviceAuthentication(Mode.CODE, hst.CodeSecret(WRONG_CODE))
        trust = hst.Trust((), TrustPolicy.WARN)

        async def step() -> None:
            try:
                session = await open_broker_session(
                    self.config, auth, trust, device_id=self.plan.device_id, timeout=5
                )
            except BleprovError as exc:
                self.counts["broker wrong-code"] += 1
                self.error("broker wrong-code", exc)
                return
            await session.close()
            raise AssertionError("a wrong code opened a session")

        await self.forever("broker wrong-code", step)

    async def broker_hello_stall(self) -> None:
        """A well-formed code HELLO (the device counts an attempt), then silence."""
        found = await find_broker_device(self.config, device_id=self.plan.device_id)
        machine = hst.HostSession(
            mode=Mode.CODE,
            secret=hst.CodeSecret(WRONG_CODE),
            device_info=found.info_raw,
            trust=hst.Trust((), TrustPolicy.WARN),
            wall_clock=datetime.now(UTC),
            now=0.0,
        )
        (hello,) = machine.start(0.0)
        assert isinstance(hello, hst.SendMessage)

        async def step() -> None:
            async with self.config.client() as client:
                while self.running():
                    up = self.topics.up(new_session_id())
                    await client.publish(up, OPEN, qos=1)
                    await client.publish(up, Envelope(Kind.DATA_UP, hello.data).encode(), qos=1)
                    self.counts["broker hello-stall"] += 1
                    await asyncio.sleep(0.05)

        await self.forever("broker hello-stall", step)

    # ------------------------------------------------------------------ radio

    async def ble_client(self, transport: str, kinds: list[str], index: int) -> None:
        """One central that connects again and again, each time as the next of ``kinds``
        (one hostile phone in range; the virtual radio serves one initiator at a time)."""
        address = f"C2:B1:F1:00:{index >> 8:02X}:{index & 0xFF:02X}"
        device, hci = await open_hci_device(transport, name="flood", address=address)
        steps = {
            "squat": self._ble_squat,
            "open-stall": self._ble_open_stall,
            "garbage": self._ble_garbage,
            "malformed": self._ble_malformed,
            "wrong-code": self._ble_wrong_code,
        }
        turn = 0
        try:
            await device.power_on()
            radio = CentralRadio.bumble(device, mtu=247)

            async def step() -> None:
                nonlocal turn
                kind = kinds[turn % len(kinds)]
                turn += 1
                try:
                    await steps[kind](radio)
                except (BleprovError, BleakError, OSError, TimeoutError) as exc:
                    if self.running():
                        self.error(f"ble {kind}", exc)

            await self.forever("ble", step, pause=self.plan.ble_pause)
        finally:
            with contextlib.suppress(Exception):
                await hci.close()

    @property
    def target(self) -> str:
        assert self.plan.address is not None
        return self.plan.address

    async def _until_dropped(self, client: BleakClient, kind: str, since: float) -> None:
        """Wait for the device to drop us; keep the longest time it let us hold it."""
        while client.is_connected and self.running():  # noqa: ASYNC110 (bleak's state)
            await asyncio.sleep(0.02)
        if not client.is_connected:
            self.holds[kind] = max(self.holds.get(kind, 0.0), time.monotonic() - since)

    async def _ble_squat(self, radio: CentralRadio) -> None:
        client = BleakClient(self.target, timeout=2, **radio.client_kwargs())
        await client.connect()
        self.counts["ble squat"] += 1
        try:
            await self._until_dropped(client, "squat", time.monotonic())
        finally:
            with contextlib.suppress(BleakError, OSError):
                await client.disconnect()

    async def _ble_open_stall(self, radio: CentralRadio) -> None:
        link = HostLink(self.target, radio, connect_timeout=2)
        await link.connect()
        self.counts["ble open-stall"] += 1
        try:
            await self._until_dropped(link.client, "open-stall", time.monotonic())
        finally:
            await link.close()

    async def _ble_garbage(self, radio: CentralRadio) -> None:
        client = BleakClient(self.target, timeout=2, **radio.client_kwargs())
        await client.connect()
        self.counts["ble garbage"] += 1
        since = time.monotonic()
        try:
            rx = default_profile().rx.uuid
            for _ in range(3):
                frame = self.rng.randbytes(self.rng.randrange(1, 60))
                await client.write_gatt_char(rx, frame, response=False)
            await self._until_dropped(client, "garbage", since)
        finally:
            with contextlib.suppress(BleakError, OSError):
                await client.disconnect()

    async def _ble_malformed(self, radio: CentralRadio) -> None:
        link = HostLink(self.target, radio, connect_timeout=2)
        await link.connect()
        self.counts["ble malformed"] += 1
        since = time.monotonic()
        try:
            link.send(self.rng.choice(self.malformed))
            with contextlib.suppress(BleprovError):
                await link.receive(timeout=3)  # the device's REFUSED, or the drop
            await self._until_dropped(link.client, "malformed", since)
        finally:
            await link.close()

    async def _ble_wrong_code(self, radio: CentralRadio) -> None:
        session = SecureHostLink(
            HostLink(self.target, radio),
            mode=Mode.CODE,
            secret=hst.CodeSecret(WRONG_CODE),
            trust=hst.Trust((), TrustPolicy.WARN),
            handshake_timeout=5,
        )
        try:
            await session.open()
        except BleprovError as exc:
            self.counts["ble wrong-code"] += 1
            self.error("ble wrong-code", exc)
            return
        await session.close()
        raise AssertionError("a wrong code opened a session")

    # -------------------------------------------------------------------- run

    async def run(self) -> dict[str, Any]:
        broker: dict[str, Callable[[], Awaitable[None]]] = {
            "open-stall": self.broker_open_stall,
            "reconnect": self.broker_reconnect,
            "garbage": self.broker_garbage,
            "malformed": self.broker_malformed,
            "wrong-code": self.broker_wrong_code,
            "hello-stall": self.broker_hello_stall,
        }
        clients = [broker[kind]() for kind in self.plan.broker_clients]
        clients += [
            self.ble_client(transport, self.plan.ble_clients, index)
            for index, transport in enumerate(self.plan.ble)
        ]
        started = time.monotonic()
        print("flood: started", flush=True)
        await asyncio.gather(*clients)
        return {
            "seconds": time.monotonic() - started,
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "holds": self.holds,
        }


def main() -> None:
    plan = Plan(**json.loads(sys.argv[1]))
    result = asyncio.run(Flood(plan).run())
    print("flood: " + json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # bumble and aiomqtt leave nothing worth a slow interpreter shutdown


if __name__ == "__main__":
    main()
