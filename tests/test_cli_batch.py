"""``bleprov provision --labels``: several devices from one host (issue 13).

Processes, as a person runs them: a radio hub, two ``device serve`` daemons each on its
own virtual controller, the host on a third. One command provisions both (one Wi-Fi
choice, one zone admin sign-in) and ends with a table; a second, over a list with the
same devices (now owned), a file that is no label and a device that is not there, goes
on after each failure and exits 1 with a JSON list. The list and directory readers and
the remembered Wi-Fi choice are tested in-process below.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bleprov.cli.batch import LabelEntry, RememberedWifi, read_labels
from bleprov.cli.host import HostUsage
from bleprov.core.enrolment.messages import WifiState, WifiStatus
from bleprov.core.wifi import JoinFailure, ScanResult, WifiCredentials, WifiSecurity
from tests.processes import (
    EXAMPLE_NETWORK,
    HOME_PASSWORD,
    SECRETS,
    bleprov,
    child_env,
    finish_or_dump,
    read_until,
    start,
    stop,
)


@dataclass
class Fleet:
    work: Path
    host_radio: str
    served: list[Path]  # device directories, each running device serve
    absent: Path  # a device issued by the same factory, never switched on


def _issue(work: Path, out: str) -> Path:
    issued = bleprov("factory", "device", "--dir", str(work / "factory"), "--out", str(work / out))
    assert issued.returncode == 0, issued.stdout + issued.stderr
    [made] = [d for d in (work / out).iterdir() if d.is_dir()]
    return made


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("batch")
    hub = start("radio", "hub", "--ports", "0,0,0")
    daemons: list[subprocess.Popen[str]] = []
    try:
        lines = read_until(hub, "ready", 30)
        controllers = [line.split()[2] for line in lines if line.startswith("controller ")]
        made = bleprov("factory", "init", "--dir", str(work / "factory"), "--name", "Acme")
        assert made.returncode == 0, made.stdout + made.stderr
        zone = bleprov("zone", "init", "--dir", str(work / "hub"), "--name", "Home",
                       "--admin", "alice")  # fmt: skip
        assert zone.returncode == 0, zone.stdout + zone.stderr
        served = []
        for index in range(2):
            device = _issue(work, f"issued-{index}")
            target = work / "devices" / device.name
            target.parent.mkdir(exist_ok=True)
            device.rename(target)
            store = str(work / f"store-{index}")
            init = bleprov("device", "init", "--store", store, "--from", str(target))
            assert init.returncode == 0, init.stdout + init.stderr
            daemon = start(
                "device", "serve", "--store", store, "--radio", f"bumble:{controllers[index]}",
                "--network", f"simulated:{EXAMPLE_NETWORK}",
            )  # fmt: skip
            daemons.append(daemon)
            read_until(daemon, "ready:", 30)
            served.append(target)
        yield Fleet(work, f"bumble:{controllers[2]}", served, _issue(work, "spare"))
    finally:
        for daemon in daemons:
            stop(daemon)
        stop(hub)


@pytest.mark.multiprocess
def test_one_command_provisions_every_device_and_tabulates(fleet: Fleet) -> None:
    done = bleprov(
        "provision", "--labels", str(fleet.work / "devices"), "--radio", fleet.host_radio,
        "--trust", str(fleet.work / "factory" / "root.pem"), "--wifi-ssid", "Home",
        "--zone", str(fleet.work / "hub"), "--user", "alice",
        env=child_env(BLEPROV_WIFI_PASSWORD=HOME_PASSWORD),
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 of 2 devices provisioned" in done.stdout
    for device in fleet.served:
        row = next(
            line for line in done.stdout.splitlines() if device.name in line and "s " in line
        )
        assert re.search(
            r"provisioned .*\d+\.\d s .*wifi 192\.168\.\d+\.\d+, zone member for alice", row
        ), row
    for secret in (*SECRETS.values(), HOME_PASSWORD):
        assert secret not in output
    registry = bleprov("zone", "list", "--dir", str(fleet.work / "hub"), "--json")
    enrolled = {r["device_id"]: r["owner"] for r in json.loads(registry.stdout)}
    assert enrolled == {d.name: "alice" for d in fleet.served}


@pytest.mark.multiprocess
def test_a_failure_does_not_stop_the_batch_and_exits_1(fleet: Fleet) -> None:
    """After the test above: both devices have an owner now."""
    garbage = fleet.work / "garbage.txt"
    garbage.write_text("not a label\n")
    first, second = fleet.served
    qr_text = re.search(r"BP:[0-9A-Z.\-]+", (second / "label.txt").read_text())
    assert qr_text is not None
    listing = fleet.work / "labels.list"
    listing.write_text(
        f"# the devices on the bench\ndevices/{first.name}\n\ngarbage.txt\n"
        f"{fleet.absent / 'label.ndef'}\n{qr_text.group(0)}\n"
    )
    done = bleprov(
        "provision", "--labels", str(listing), "--radio", fleet.host_radio,
        "--trust", str(fleet.work / "factory" / "root.pem"), "--no-wifi", "--peer",
        "--host-dir", str(fleet.work / "laptop"), "--timeout", "3", "--json",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    rows = json.loads(done.stdout)  # --json: stdout is the JSON alone
    assert [(r["label"], r["ok"], r["exit_code"]) for r in rows] == [
        (f"devices/{first.name}", False, 4),
        ("garbage.txt", False, 1),
        (str(fleet.absent / "label.ndef"), False, 3),
        ("labels.list:6", False, 4),
    ]
    assert "has an owner" in rows[0]["reason"] and "has an owner" in rows[3]["reason"]
    assert "no bleprov QR text" in rows[1]["reason"]
    assert "Traceback" not in done.stderr
    assert qr_text.group(0) not in done.stdout + done.stderr  # the inline label stays unsaid


@pytest.mark.multiprocess
def test_an_interrupted_batch_still_shows_what_it_did(fleet: Fleet) -> None:
    """Ctrl-C while the host looks for a device that is not there: exit 130, and the
    table says which devices were done, which was interrupted, which not tried."""
    listing = fleet.work / "interrupted.list"
    listing.write_text(f"devices/{fleet.served[0].name}\n{fleet.absent}\n{fleet.served[1]}\n")
    proc = start(
        "provision", "--labels", str(listing), "--radio", fleet.host_radio,
        "--trust", str(fleet.work / "factory" / "root.pem"), "--no-wifi", "--peer",
        "--host-dir", str(fleet.work / "laptop"), "--timeout", "60",
    )  # fmt: skip
    try:
        read_until(proc, "(2/3)", 60)
        time.sleep(0.5)  # into the search for the absent device
        proc.send_signal(signal.SIGINT)
        rest = finish_or_dump(proc, 30)
    finally:
        stop(proc)
    assert proc.returncode == 130, rest
    rows = {line.split()[1]: line for line in rest.splitlines() if line.startswith("│")}
    assert "0 of 3 devices provisioned" in rest, rest
    assert "has an owner" in rows[f"devices/{fleet.served[0].name}"]
    assert "interrupted" in rows[str(fleet.absent)]
    assert "not tried: interrupted before it" in rest
    assert "Traceback" not in rest


# ------------------------------------------------------------------ in-process parts


def test_a_directory_yields_device_directories_label_files_and_photos(tmp_path: Path) -> None:
    (tmp_path / "A1").mkdir()
    (tmp_path / "A1" / "label.txt").write_text("BP:X")
    (tmp_path / "A1" / "label.svg").write_text("<svg/>")
    (tmp_path / "B2").mkdir()
    (tmp_path / "B2" / "label.ndef").write_bytes(b"\x00")
    (tmp_path / "empty").mkdir()
    (tmp_path / "c.JPG").write_bytes(b"")
    (tmp_path / "d.ndef").write_bytes(b"")
    (tmp_path / "notes.md").write_text("not a label")
    (tmp_path / ".hidden.txt").write_text("BP:X")
    entries = read_labels(tmp_path)
    assert [(e.name, _kind(e)) for e in entries] == [
        ("A1", "qr_file"),
        ("B2", "ndef"),
        ("c.JPG", "qr_image"),
        ("d.ndef", "ndef"),
    ]


def _kind(entry: LabelEntry) -> str:
    assert entry.source is not None
    [kind] = [k for k, v in vars(entry.source).items() if v not in (None, False)]
    return kind


def test_a_list_file_with_a_line_that_is_no_label_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    listing = tmp_path / "list"
    listing.write_text("hunter2-typed-here-by-mistake\n")
    with pytest.raises(HostUsage) as refused:
        read_labels(listing)
    assert "list:1" in str(refused.value) and "hunter2" not in str(refused.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HostUsage, match="no labels"):
        read_labels(tmp_path / "empty")
    listing.write_text("# nothing\n\n")
    with pytest.raises(HostUsage, match="lists no labels"):
        read_labels(listing)
    # N3 (the fuzzing campaign): "~name" of no user raised RuntimeError, a traceback.
    listing.write_text("~no-such-user-hunter2/label.txt\n")
    with pytest.raises(HostUsage) as refused:
        read_labels(listing)
    assert "list:1" in str(refused.value) and "hunter2" not in str(refused.value)


class CountingChooser:
    """Stands in for the prompting chooser: counts what it is asked."""

    def __init__(self) -> None:
        self.chosen = 0
        self.retried = 0

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        self.chosen += 1
        return WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase="first try 1")

    async def retry(self, status: WifiStatus, tried: WifiCredentials) -> WifiCredentials | None:
        self.retried += 1
        return WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase="second try 2")


async def test_the_network_is_chosen_once_and_a_retyped_password_is_kept() -> None:
    from rich.console import Console

    inner = CountingChooser()
    remembered = RememberedWifi(Console(file=io.StringIO()), inner)
    first = await remembered.choose([])
    assert await remembered.choose([]) is first and await remembered.choose([]) is first
    assert inner.chosen == 1
    failed = WifiStatus(WifiState.FAILED, attempts_left=2, reason=JoinFailure.WRONG_PASSWORD)
    again = await remembered.retry(failed, first)
    assert again is not None and again.passphrase == "second try 2"
    assert await remembered.choose([]) is again and inner.chosen == 1
