"""systemd's notify protocol: ``bleprov device serve`` and ``bleprov zone serve`` under a
stand-in for systemd (a datagram socket bound here, its path in ``NOTIFY_SOCKET``).

They say ``READY=1`` once they serve (the device advertises: a scan finds it; the hub
listens), ping ``WATCHDOG=1`` at half of ``WATCHDOG_USEC`` from their event loop, and
say ``STOPPING=1`` on SIGTERM. Without ``NOTIFY_SOCKET`` they open no socket at all.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer
from bleprov.radio.spec import device_address
from bleprov.service import systemd
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import make_key_provider

from .daemon_process import Process, daemon_env
from .processes import EXAMPLE_NETWORK

CHEAP = ScryptCost(n=16, r=1, p=1)
ZONE_PASSPHRASE = "zone passphrase 5d21"
#: 0.2 s: the daemons ping every 0.1 s.
WATCHDOG_USEC = "200000"


class FakeSystemd:
    """A bound datagram socket that collects what a service sends, on a thread."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, prefix: str, timeout: float = 30.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in list(self.messages):
                if received[1].startswith(prefix):
                    return received
            time.sleep(0.02)
        raise AssertionError(f"no {prefix!r} within {timeout} s: {self.texts()}")

    def texts(self) -> list[str]:
        return [text for _, text in self.messages]

    def stop_reading(self) -> None:
        self._closed.set()
        self._thread.join(2)

    def close(self) -> None:
        self.stop_reading()
        self.sock.close()


@pytest.fixture
def fake_systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    listener = FakeSystemd(str(tmp_path / "notify"))
    yield listener
    listener.close()


# ------------------------------------------------------------------ the protocol


def test_notify_reaches_a_path_and_an_abstract_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for address in (str(tmp_path / "notify"), f"@bleprov-test-{os.getpid()}"):
        listener = FakeSystemd(address)
        try:
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            assert systemd.notify("READY=1\nSTATUS=serving")
            assert listener.wait_for("READY=1", 5)[1] == "READY=1\nSTATUS=serving"
        finally:
            listener.close()


def test_nothing_is_sent_nor_opened_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoSocket:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"socket.{name} used")

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    monkeypatch.setattr(systemd, "socket", NoSocket())
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval() is None

    async def body() -> float | None:
        async with systemd.watchdog() as interval:
            await asyncio.sleep(0.05)
        return interval

    assert asyncio.run(body()) is None


def test_an_unreachable_socket_is_logged_once_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(systemd, "_reported", set())
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    with caplog.at_level(logging.WARNING, logger="bleprov.service.systemd"):
        assert systemd.notify("WATCHDOG=1") is False
        assert systemd.notify("WATCHDOG=1") is False
    assert [r.getMessage() for r in caplog.records] == [
        "could not notify systemd (No such file or directory)"
    ]


def test_a_full_queue_drops_messages_instead_of_blocking(
    fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A systemd that does not read must not stall the daemon's event loop."""
    fake_systemd.stop_reading()  # bound, but nobody reads any more
    monkeypatch.setattr(systemd, "_reported", set())
    monkeypatch.setenv("NOTIFY_SOCKET", fake_systemd.address)
    started = time.monotonic()
    sent = [systemd.notify("WATCHDOG=1") for _ in range(3000)]
    assert time.monotonic() - started < 5
    assert sent[0] and not sent[-1]  # the queue filled up: later ones were dropped


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{pid}"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    environ: dict[str, str], interval: float | None
) -> None:
    environ = {k: v.format(pid=os.getpid()) for k, v in environ.items()}
    assert systemd.watchdog_interval({"NOTIFY_SOCKET": "/run/x", **environ}) == interval
    assert systemd.watchdog_interval(environ) is None  # no socket to ping


def test_the_watchdog_pings_from_the_loop_and_a_stuck_loop_stops_it(
    fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", fake_systemd.address)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 0.05 s

    async def body() -> tuple[float, float]:
        async with systemd.watchdog() as interval:
            assert interval == 0.05
            await asyncio.sleep(0.5)
            stuck = time.monotonic()
            time.sleep(0.5)  # noqa: ASYNC251  (the point: a blocked loop)
            resumed = time.monotonic()
            await asyncio.sleep(0.3)
        return stuck, resumed

    stuck, resumed = asyncio.run(body())
    time.sleep(0.2)  # the receiving thread catches up
    pings = [at for at, text in fake_systemd.messages if text == "WATCHDOG=1"]
    assert len([at for at in pings if at < stuck]) >= 5
    assert not [at for at in pings if stuck + 0.01 < at < resumed - 0.01]
    assert [at for at in pings if at > resumed]
    count = len(fake_systemd.messages)
    time.sleep(0.2)
    assert len(fake_systemd.messages) == count  # the pings end with the body


# ------------------------------------------------------------ the two daemons


@pytest.fixture(scope="module")
def controllers() -> Iterator[list[str]]:
    """Two virtual controllers: the device daemon's and a scanner's."""
    radio = Process(
        [sys.executable, "-m", "bleprov.radio.virtual", "hub", "--ports", "0,0"], daemon_env()
    )
    try:
        radio.wait_for("ready")
        yield [line.split()[2] for line in radio.lines if line.startswith("controller ")]
    finally:
        assert radio.stop() == 0


def _device_store(tmp_path: Path) -> tuple[Path, str]:
    manufacturer = Manufacturer.create("Acme", now=datetime.now(UTC))
    record, _label = provision_device(
        manufacturer.issue_device(now=datetime.now(UTC)), modes=OobMode.QR, cost=CHEAP
    )
    store = tmp_path / "store"
    DeviceStore(store, make_key_provider("file", directory=store)).put_provisioning(record)
    return store, record.identity.device_id


def _env(**extra: str) -> dict[str, str]:
    env = daemon_env(BLEPROV_ZONE_PASSPHRASE=ZONE_PASSPHRASE, **extra)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        if name not in extra:
            env.pop(name, None)
    return env


def _watchdog_pings(listener: FakeSystemd, after: float) -> list[float]:
    return [at for at, text in listener.messages if text == "WATCHDOG=1" and at > after]


@pytest.mark.multiprocess
def test_device_serve_is_ready_once_advertising_pings_and_says_stopping(
    tmp_path: Path, controllers: list[str], fake_systemd: FakeSystemd
) -> None:
    store, device_id = _device_store(tmp_path)
    daemon = Process(
        [
            *(sys.executable, "-m", "bleprov", "device", "serve", "--store", str(store)),
            *("--radio", f"bumble:{controllers[0]}", "--network", f"simulated:{EXAMPLE_NETWORK}"),
        ],
        _env(NOTIFY_SOCKET=fake_systemd.address, WATCHDOG_USEC=WATCHDOG_USEC),
    )
    try:
        ready_at, ready = fake_systemd.wait_for("READY=1")
        assert ready == (
            f"READY=1\nSTATUS=device {device_id} advertising on bumble:{controllers[0]}, "
            "state virgin"
        )
        assert daemon.wait_for("ready:").startswith(f"ready: device {device_id} advertising")
        # Ready means found: a scan on the other controller sees it.
        scan = subprocess.run(
            [
                *(sys.executable, "-m", "bleprov", "scan", "--radio", f"bumble:{controllers[1]}"),
                *("--timeout", "3", "--json"),
            ],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert scan.returncode == 0, scan.stdout + scan.stderr
        addresses = {row["address"].upper() for row in json.loads(scan.stdout)}
        assert device_address(device_id) in addresses
        time.sleep(1.0)
        pings = _watchdog_pings(fake_systemd, ready_at)
        assert len(pings) >= 5, fake_systemd.texts()
        # Every WatchdogSec/2 (0.1 s); the median, as a loaded machine delays some.
        assert 0.05 < statistics.median(b - a for a, b in itertools.pairwise(pings)) < 0.15

        assert daemon.stop(signal.SIGTERM) == 0
        assert "STOPPING=1\nSTATUS=stopping" in fake_systemd.texts()
        assert daemon.rest()[-1] == "stopped"
    finally:
        daemon.kill()


@pytest.mark.multiprocess
def test_zone_serve_is_ready_once_listening_pings_and_says_stopping(
    tmp_path: Path, fake_systemd: FakeSystemd
) -> None:
    hub = Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=ZONE_PASSPHRASE.encode(),
        admin="admin",
        admin_passphrase="admin passphrase 0c11",
        now=datetime.now(UTC),
        passphrase_cost=CHEAP,
    )
    zone_id = hub.zone.zone_id
    hub.close()
    server = Process(
        [
            *(sys.executable, "-m", "bleprov", "zone", "serve", "--dir", str(tmp_path / "hub")),
            *("--listen", "127.0.0.1:0"),
        ],
        _env(NOTIFY_SOCKET=fake_systemd.address, WATCHDOG_USEC=WATCHDOG_USEC),
    )
    try:
        ready_at, ready = fake_systemd.wait_for("READY=1")
        assert ready.startswith(f"READY=1\nSTATUS=serving zone {zone_id} on 127.0.0.1:")
        port = int(ready.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # listening when it said so
        time.sleep(1.0)
        assert len(_watchdog_pings(fake_systemd, ready_at)) >= 5, fake_systemd.texts()

        assert server.stop(signal.SIGTERM) == 0
        assert "STOPPING=1" in fake_systemd.texts()
        assert server.rest()[-1] == "stopped"
    finally:
        server.kill()


@pytest.mark.multiprocess
def test_without_notify_socket_the_hub_serves_and_says_nothing_of_systemd(
    tmp_path: Path,
) -> None:
    Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=ZONE_PASSPHRASE.encode(),
        admin="admin",
        admin_passphrase="admin passphrase 0c11",
        now=datetime.now(UTC),
        passphrase_cost=CHEAP,
    ).close()
    server = Process(
        [
            *(sys.executable, "-m", "bleprov", "zone", "serve", "--dir", str(tmp_path / "hub")),
            *("--listen", "127.0.0.1:0"),
        ],
        _env(WATCHDOG_USEC=WATCHDOG_USEC),  # a watchdog asked for, but no socket
    )
    try:
        server.wait_for("ready:")
        time.sleep(0.3)
        assert server.stop(signal.SIGTERM) == 0
        lines = server.rest()
        assert lines[-1] == "stopped"
        assert not [line for line in lines if "systemd" in line or "notify" in line.lower()]
    finally:
        server.kill()
