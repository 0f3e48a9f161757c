"""Across processes over loopback: a hub process serves virtual controllers on TCP, the
device runs as ``bleprov linktest serve`` in another process, and the host (this test
process) reaches it through bleak on bumble over a TCP transport, as a person would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bleprov.radio.host_link import HostLink, find_device
from bleprov.radio.linktest import run_link_test
from bleprov.radio.spec import RadioSpec, open_central

pytestmark = pytest.mark.multiprocess
DISCRIMINATOR = 0x321


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process exited early: {''.join(lines)}")
        lines.append(line.strip())
        if line.strip() == marker:
            return lines
    raise AssertionError(f"no {marker!r} within {timeout} s: {lines}")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


@dataclass
class TwoProcesses:
    host_transport: str
    device: subprocess.Popen[str]


@pytest.fixture(scope="module")
def processes() -> Iterator[TwoProcesses]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hub = subprocess.Popen(
        [sys.executable, "-m", "bleprov.radio.virtual", "hub", "--ports", "0,0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    device = None
    try:
        lines = _read_until(hub, "ready", 20)
        specs = [line.split()[2] for line in lines if line.startswith("controller ")]
        assert len(specs) == 2, lines
        device = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bleprov",
                "linktest",
                "serve",
                "--radio",
                f"bumble:{specs[0]}",
                "--discriminator",
                str(DISCRIMINATOR),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        _read_until(device, "ready", 20)
        yield TwoProcesses(specs[1], device)
    finally:
        if device is not None:
            assert _stop(device) in (0, 1, 130, -15), "device did not stop cleanly"
        assert _stop(hub) == 0, "hub did not exit cleanly"


@pytest.mark.parametrize("mtu", [23, 185, 247, 517])
async def test_64k_both_ways_across_processes(processes: TwoProcesses, mtu: int) -> None:
    spec = RadioSpec.parse(f"bumble:{processes.host_transport}")
    async with open_central(spec, mtu=mtu) as host:
        found = await find_device(host, discriminator=DISCRIMINATOR, timeout=10)
        async with HostLink(found.device, host) as link:
            assert link.mtu == mtu
            [result] = await run_link_test(link, [65536], timeout=60)
    assert result.size == 65536
    assert processes.device.poll() is None, "the device process died"
