"""One device, one daemon: a store is served by one process at a time.

Two ``device serve`` on one store would advertise the device twice and race its sessions
and attempt counters. The second is refused at start, with a one-line message; a daemon
killed with SIGKILL leaves nothing claimed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bleprov.store.device_store import DeviceStore, StoreInUse
from bleprov.store.keys import KeyFileProvider
from tests.processes import EXAMPLE_NETWORK, bleprov, child_env, served_device


def _store(path: Path) -> DeviceStore:
    return DeviceStore(path / "store", KeyFileProvider(path / "store.key"))


def test_a_store_is_claimed_once_and_released(tmp_path: Path) -> None:
    first = _store(tmp_path).claim()
    with pytest.raises(StoreInUse, match="another bleprov process"):
        _store(tmp_path).claim()
    first.release()
    _store(tmp_path).claim().release()


def test_a_killed_holder_leaves_the_store_unclaimed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from pathlib import Path;"
            "from bleprov.store.device_store import DeviceStore;"
            "from bleprov.store.keys import KeyFileProvider;"
            f"DeviceStore(Path({str(tmp_path / 'store')!r}),"
            f" KeyFileProvider(Path({str(tmp_path / 'store.key')!r}))).claim();"
            "print('claimed', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
        with pytest.raises(StoreInUse):
            _store(tmp_path).claim()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    _store(tmp_path).claim().release()


@pytest.mark.multiprocess
def test_a_second_device_serve_on_the_same_store_is_refused(tmp_path: Path) -> None:
    with served_device(tmp_path) as served:
        started = time.monotonic()
        second = bleprov(
            "device", "serve", "--store", str(tmp_path / "store"),
            "--radio", f"bumble:{served.controllers[1]}",
            "--network", f"simulated:{EXAMPLE_NETWORK}",
            env=child_env(),
            timeout=60,
        )  # fmt: skip
        assert second.returncode == 1, second.stdout + second.stderr
        assert "another bleprov process serves the store" in second.stdout + second.stderr
        assert "Traceback" not in second.stdout + second.stderr
        assert time.monotonic() - started < 30
        assert served.daemon.poll() is None  # the first one serves on
