"""The lab's scenarios: bleprov through the real daemons on both sides.

Each scenario runs ``bleprov device serve`` on the device's adapter and ``bleprov
provision`` (bleak's BlueZ backend) on the host's, as separate processes started the way a
person starts them, with secrets in the environment only. The same functions run inside
the lab VM (:mod:`lab.guest`, daemons from :mod:`lab.stack`) and on real machines
(``hw_tests/test_hw_lab.py``, daemons run by systemd): a scenario asks its
:class:`Daemons` to restart bluetoothd or NetworkManager and never starts them itself.

A scenario returns a :class:`ScenarioResult`: its steps with their times, and the windows
in which a host process talked to the device, which :mod:`lab.btsnoop` later turns into ATT
round trips and bytes as BlueZ saw them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

#: The lab's test secrets (a throwaway factory, device stores and zone); scenarios check
#: that none of them and none of the Wi-Fi passphrases appears in any output or file.
SECRETS: Final = {
    "BLEPROV_FACTORY_PASSPHRASE": "lab factory passphrase 11",
    "BLEPROV_DEVICE_PASSPHRASE": "lab device passphrase 12",
    "BLEPROV_ZONE_PASSPHRASE": "lab zone passphrase 13",
    "BLEPROV_USER_PASSPHRASE": "lab alice passphrase 14",
}
WRONG_PASSPHRASE: Final = "not the lab passphrase"
#: Python under emulation starts slowly (``import bleak`` alone ~10-20 s): generous bounds.
DAEMON_READY_TIMEOUT: Final = 300.0
PROVISION_TIMEOUT: Final = 600.0


class ScenarioFailed(AssertionError):
    """A scenario's expectation did not hold: the message says which."""


@dataclass(frozen=True)
class WifiNetwork:
    ssid: str
    passphrase: str
    security: str  # as --wifi-security names it
    subnet: str  # "10.42.1": addresses the device must get


class Daemons(Protocol):
    """What a scenario may ask of the machine's daemons."""

    def restart_bluetoothd(self) -> None:
        """bluetoothd killed (as a crash would) and started again."""

    def reboot_networkmanager(self) -> None:
        """NetworkManager stopped and started, as at a reboot (in-memory profiles gone)."""

    def use_wpa_supplicant(self) -> None:
        """NetworkManager stopped; wpa_supplicant (with a control socket) and a DHCP client
        run on the station instead."""

    def station_address(self) -> str | None: ...


@dataclass
class Lab:
    """Where a scenario runs: prepared state (:func:`prepare`), adapters and networks."""

    work: Path
    out: Path
    device_radio: str
    host_radio: str
    station: str
    wpa2: WifiNetwork
    wpa3: WifiNetwork
    daemons: Daemons
    #: A bumble central on the same air (its ATT MTU is ours to choose: 23).
    bumble_host_radio: str = ""
    python: str = sys.executable
    verbose: bool = True


@dataclass
class Step:
    name: str
    seconds: float
    detail: str = ""


@dataclass
class Window:
    """A host process's life: the btsnoop records between ``start`` and ``end`` (Unix
    time) are its traffic."""

    name: str
    start: float
    end: float
    #: The controller whose capture shows the traffic (hci0 the device's, hci1 the
    #: host's), and whether it is the central's (else the device's).
    controller: int = 1
    central: bool = True
    #: What the capture must show (checked by :func:`check_capture`): ``mtu`` the ATT
    #: MTU, ``max_write`` the longest value the central wrote, ``min_write`` a value at
    #: least that long (the negotiated MTU was used), ``min_read_blobs`` long reads.
    expect: dict[str, int] = field(default_factory=dict)


def check_capture(window: Window, summary: dict[str, Any]) -> list[str]:
    """What in ``summary`` (:func:`lab.btsnoop.att_summary`) breaks the window's
    expectations: the frame size and MTU as BlueZ saw them on air."""
    broken: list[str] = []
    expect = window.expect
    if not expect:
        return broken
    if not summary.get("packets"):
        return [f"{window.name}: no ATT traffic captured"]
    if "mtu" in expect and summary["mtu"] != expect["mtu"]:
        broken.append(f"{window.name}: ATT MTU {summary['mtu']}, not {expect['mtu']}")
    if "max_write" in expect and summary["largest_write_value"] > expect["max_write"]:
        broken.append(
            f"{window.name}: a {summary['largest_write_value']}-byte write, above "
            f"{expect['max_write']}"
        )
    if "min_write" in expect and summary["largest_write_value"] < expect["min_write"]:
        broken.append(
            f"{window.name}: no write above {summary['largest_write_value']} bytes: the "
            "negotiated MTU was not used"
        )
    if summary["read_blob_requests"] < expect.get("min_read_blobs", 0):
        broken.append(f"{window.name}: no Read Blob: info was not read in parts")
    return broken


@dataclass
class ScenarioResult:
    name: str
    passed: bool = False
    seconds: float = 0.0
    error: str = ""
    steps: list[Step] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- preparation (no radio: on the machine that boots the lab, before it boots) -----------


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **SECRETS, **extra}


def bleprov(
    python: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = [python, "-m", "bleprov", *args]
    for secret in SECRETS.values():
        assert secret not in argv
    return subprocess.run(
        argv,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0:
        raise ScenarioFailed(f"{what} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def prepare(work: Path, python: str = sys.executable) -> None:
    """A factory, two devices issued by it (one with a QR label, one with a manual code),
    their device stores, and a zone hub with admin ``alice``: everything the scenarios
    need that no radio is needed for."""
    work.mkdir(parents=True, exist_ok=True)
    factory = work / "factory"
    _ok(bleprov(python, "factory", "init", "--dir", str(factory), "--name", "LabCo"), "factory")
    for kind, modes in (("qr", "qr"), ("code", "qr,code")):
        out = work / f"issued-{kind}"
        issued = bleprov(
            python, "factory", "device", "--dir", str(factory), "--out", str(out),
            "--modes", modes,
        )  # fmt: skip
        _ok(issued, f"factory device --modes {modes}")
        [device_dir] = list(out.iterdir())
        store = work / f"store-{kind}"
        _ok(bleprov(python, "device", "init", "--store", str(store), "--from", str(device_dir)),
            "device init")  # fmt: skip
    hub = bleprov(python, "zone", "init", "--dir", str(work / "hub"), "--name", "Lab",
                  "--admin", "alice")  # fmt: skip
    _ok(hub, "zone init")


def device_dir(work: Path, kind: str) -> Path:
    [found] = list((work / f"issued-{kind}").iterdir())
    return found


# -- processes -----------------------------------------------------------------------------


class Served:
    """A running ``bleprov device serve``, its output kept in a file and read as it comes."""

    def __init__(self, lab: Lab, kind: str, network: str, name: str) -> None:
        self.log = lab.out / f"{name}.log"
        argv = [lab.python, "-m", "bleprov", *(["-vv"] if lab.verbose else [])]
        argv += ["device", "serve", "--store", str(lab.work / f"store-{kind}")]
        argv += ["--radio", lab.device_radio, "--network", network, "--name", "labdev"]
        self._handle = self.log.open("w")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, pattern: str, *, count: int = 1, timeout: float) -> float:
        """Seconds until ``count`` lines match ``pattern``; fails if the process exits."""
        start = time.monotonic()
        while len(re.findall(pattern, self.text(), flags=re.MULTILINE)) < count:
            if self.proc.poll() is not None:
                raise ScenarioFailed(
                    f"device serve exited {self.proc.returncode} before {pattern!r}; "
                    f"last lines: {self.text()[-1500:]}"
                )
            if time.monotonic() - start > timeout:
                raise ScenarioFailed(f"device serve: no {pattern!r} in {timeout:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - start

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._handle.close()
        return self.proc.returncode


@contextmanager
def served(lab: Lab, kind: str, network: str, name: str) -> Iterator[Served]:
    daemon = Served(lab, kind, network, name)
    try:
        yield daemon
    finally:
        daemon.stop()


@dataclass
class HostRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.stdout)
        except ValueError as exc:
            raise ScenarioFailed(f"provision printed no JSON: {self.stdout[-500:]!r}") from exc
        if not isinstance(parsed, dict):
            raise ScenarioFailed("provision's JSON is not an object")
        return parsed


def host(
    lab: Lab,
    result: ScenarioResult,
    name: str,
    args: Sequence[str],
    *,
    seen_by_device: bool = False,
    **env: str,
) -> HostRun:
    """One ``bleprov`` host command on the host's adapter, its traffic window recorded."""
    argv = [lab.python, "-m", "bleprov", *(["-vv"] if lab.verbose else []), *args]
    start_wall, start = time.time(), time.monotonic()
    stdout_file, stderr_file = lab.out / f"{name}.stdout", lab.out / f"{name}.stderr"
    # Into files as it runs (a slow step can be watched), read back at the end.
    with stdout_file.open("w") as stdout, stderr_file.open("w") as stderr:
        done = subprocess.run(
            argv,
            env=child_env(**env),
            stdout=stdout,
            stderr=stderr,
            text=True,
            timeout=PROVISION_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    seconds = time.monotonic() - start
    if seen_by_device:  # a central BlueZ does not run: the device's controller shows it
        # At MTU 23: info (longer than 22 bytes) in several reads, frames of 20 bytes.
        expect = {"mtu": 23, "max_write": 20, "min_read_blobs": 1}
        result.windows.append(Window(name, start_wall, time.time(), 0, False, expect))
    else:
        result.windows.append(Window(name, start_wall, time.time()))
    out_text, err_text = stdout_file.read_text(), stderr_file.read_text()
    run = HostRun(done.returncode, out_text, err_text, seconds)
    _no_secret_in(f"{name}'s output", out_text + err_text, lab)
    return run


def _secrets(lab: Lab) -> list[str]:
    return [*SECRETS.values(), lab.wpa2.passphrase, lab.wpa3.passphrase]


def _no_secret_in(where: str, text: str, lab: Lab) -> None:
    for secret in _secrets(lab):
        if secret in text:
            raise ScenarioFailed(f"a secret appears in {where}")


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise ScenarioFailed(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - start


def _in_subnet(address: str | None, network: WifiNetwork) -> bool:
    return bool(address) and str(address).startswith(network.subnet + ".")


def _step(result: ScenarioResult, name: str, seconds: float, detail: str = "") -> None:
    result.steps.append(Step(name, round(seconds, 2), detail))


# -- scenarios -----------------------------------------------------------------------------


class Terminal:
    """A command in a pseudo-terminal, as a person at a terminal runs it: it sees a TTY,
    so it asks its questions, and :meth:`answer` types the replies."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], transcript: Path) -> None:
        import pty

        self.transcript = transcript
        self._master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            # The terminal becomes the session's controlling terminal, as a login's is:
            # getpass opens /dev/tty (without one it reads stdin, echoing the password).
            preexec_fn=_take_controlling_terminal,
        )
        #: Kept to see the terminal's modes: a hidden prompt turns echo off.
        self._slave = slave
        self._raw = bytearray()
        self._seen = 0

    def _pump(self, timeout: float) -> None:
        import select

        ready, _, _ = select.select([self._master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            self._raw += chunk
            self.transcript.write_bytes(bytes(self._raw))

    def text(self) -> str:
        return ANSI.sub("", self._raw.decode(errors="replace")).replace("\r", "")

    def expect(self, pattern: str, timeout: float) -> str:
        """Wait for ``pattern`` after what earlier calls matched; the text up to it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            found = re.compile(pattern).search(text, self._seen)
            if found:
                self._seen = found.end()
                return text[: found.end()]
            if self.proc.poll() is not None:
                self._pump(0.2)
                if not re.compile(pattern).search(self.text(), self._seen):
                    raise ScenarioFailed(
                        f"exited {self.proc.returncode} before {pattern!r}: {self.text()[-1500:]}"
                    )
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"no {pattern!r} within {timeout:.0f} s: {text[-800:]}")
            self._pump(0.5)

    def answer(self, text: str, *, hidden: bool = False) -> None:
        """Type ``text`` and Enter. ``hidden``: first wait until the prompt has turned the
        terminal's echo off, as it has long done when a person starts typing (typed at
        once, the terminal would still echo it)."""
        if hidden:
            import termios

            deadline = time.monotonic() + 30
            while termios.tcgetattr(self._slave)[3] & termios.ECHO:
                if time.monotonic() > deadline:
                    raise ScenarioFailed("the password prompt never turned echo off")
                self._pump(0.05)
        os.write(self._master, text.encode() + b"\r")

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise ScenarioFailed(f"still running after {timeout:.0f} s")
            self._pump(0.5)
        for _ in range(10):
            self._pump(0.05)
        os.close(self._master)
        os.close(self._slave)
        return self.proc.returncode


def _take_controlling_terminal() -> None:
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def zone_networkmanager(lab: Lab, result: ScenarioResult) -> None:
    """QR label + zone enrolment through NetworkManager on the WPA2 network, at a terminal
    in one host process: a wrong passphrase first (hostapd's 4-way handshake fails; the
    host says "wrong password" and asks again), then the right one (a DHCP address; the
    zone certificate; commit). Then NetworkManager restarts as at a reboot, and the
    restarted daemon re-applies the stored Wi-Fi."""
    network = f"networkmanager:{lab.station}"
    label = device_dir(lab.work, "qr") / "label.txt"
    args = ["provision", "--radio", lab.host_radio, "--qr-file", str(label)]
    args += ["--trust", str(lab.work / "factory" / "root.pem")]
    args += ["--wifi-ssid", lab.wpa2.ssid, "--wifi-security", lab.wpa2.security]
    args += ["--zone", str(lab.work / "hub"), "--user", "alice", "--json"]
    with served(lab, "qr", network, "serve-1") as daemon:
        _step(result, "device serve ready", _ready(daemon))
        argv = [lab.python, "-m", "bleprov", *(["-v"] if lab.verbose else []), *args]
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            start_wall, start = time.time(), time.monotonic()
            name = "provision" if attempt == 1 else f"provision-{attempt}"
            terminal = Terminal(argv, child_env(), lab.out / f"{name}.transcript")
            # MTU 517 used: the host's frames go up to 510 bytes (BlueZ 5.66's limit).
            expect = {"mtu": 517, "max_write": 510, "min_write": 100}
            try:
                _provision_at_terminal(lab, result, terminal, start)
            except ScenarioFailed:
                if attempt < CONNECT_ATTEMPTS and _connection_failed(terminal):
                    # As a person would: the same command again (counted in the results).
                    result.facts["connection_retries"] = attempt
                    expect = {}  # the lost connection's traffic is only reported
                    continue
                raise
            finally:
                if terminal.proc.poll() is None:
                    terminal.proc.kill()
                result.windows.append(Window(name, start_wall, time.time(), expect=expect))
            break
        code = terminal.proc.returncode
        output = terminal.text()
        _step(result, "provision (zone, Wi-Fi) done", time.monotonic() - start, f"exit {code}")
        _no_secret_in("provision's terminal", output, lab)
        if code != 0:
            raise ScenarioFailed(f"provision exited {code}: {output[-2000:]}")
        summary = _last_json(output)
        result.facts["provision"] = summary
        wifi = summary.get("wifi") or {}
        if wifi.get("state") != "connected" or not _in_subnet(wifi.get("ip"), lab.wpa2):
            raise ScenarioFailed(f"Wi-Fi not joined with a DHCP address: {wifi}")
        if (summary.get("zone") or {}).get("owner") != "alice":
            raise ScenarioFailed(f"not enrolled to alice: {summary.get('zone')}")
        address = lab.daemons.station_address()
        if not _in_subnet(address, lab.wpa2):
            raise ScenarioFailed(f"the station's address is {address}")
        result.facts["dhcp_address"] = address
    _step(result, "device serve stopped", 0, f"exit {daemon.proc.returncode}")
    if daemon.proc.returncode != 0:
        raise ScenarioFailed(f"device serve exited {daemon.proc.returncode} on SIGTERM")

    start = time.monotonic()
    lab.daemons.reboot_networkmanager()
    _step(result, "NetworkManager restarted", time.monotonic() - start)
    if _in_subnet(lab.daemons.station_address(), lab.wpa2):
        raise ScenarioFailed("the station kept its address across NetworkManager's restart")
    with served(lab, "qr", network, "serve-2") as daemon:
        _step(result, "device serve ready again", _ready(daemon))
        rejoined = wait_until(
            "stored Wi-Fi re-applied",
            lambda: _in_subnet(lab.daemons.station_address(), lab.wpa2),
            180,
        )
        address = lab.daemons.station_address()
        _step(result, "stored Wi-Fi re-applied (DHCP address)", rejoined, str(address))
    _no_secret_in("device serve's log", daemon.text(), lab)


#: Tries at a provisioning whose connection fails before the first question: under
#: emulation bleak's BlueZ backend now and then loses the link during service discovery
#: ("failed to discover services, device disconnected"); a person runs it again.
CONNECT_ATTEMPTS: Final = 2


def _connection_failed(terminal: Terminal) -> bool:
    """The command ended with "connection failed" before asking anything."""
    text = terminal.text()
    return (
        terminal.proc.poll() is not None
        and "error: connection failed" in text
        and ("Password for" not in text)
    )


def _provision_at_terminal(
    lab: Lab, result: ScenarioResult, terminal: Terminal, start: float
) -> None:
    """A person at the terminal: the wrong password, "type it again", the right one."""
    terminal.expect(rf"Password for {re.escape(lab.wpa2.ssid)}", PROVISION_TIMEOUT)
    _step(result, "provision: asked the Wi-Fi password", time.monotonic() - start)
    terminal.answer(WRONG_PASSPHRASE, hidden=True)
    refused = terminal.expect(r"Type the password again\?", 240)
    said = [line for line in refused.splitlines() if line.startswith("wifi:")]
    result.facts["wrong_password_message"] = said[-1] if said else ""
    if not said or "wrong password" not in said[-1].lower():
        raise ScenarioFailed(f"a wrong passphrase not reported as such: {said}")
    if _in_subnet(lab.daemons.station_address(), lab.wpa2):
        raise ScenarioFailed("the station has an address after a refused join")
    _step(result, "provision: wrong password reported", time.monotonic() - start)
    terminal.answer("y")
    terminal.expect(rf"Password for {re.escape(lab.wpa2.ssid)}", 60)
    terminal.answer(lab.wpa2.passphrase, hidden=True)
    terminal.wait(PROVISION_TIMEOUT)


def _last_json(output: str) -> dict[str, Any]:
    """The JSON summary printed last (after the prompts, on the same terminal)."""
    start = output.rfind("\n{")
    try:
        parsed = json.loads(output[start + 1 :] if start >= 0 else output)
    except ValueError as exc:
        raise ScenarioFailed(f"no JSON summary at the end: {output[-600:]!r}") from exc
    if not isinstance(parsed, dict):
        raise ScenarioFailed("the JSON summary is not an object")
    return parsed


def code_mtu23_wpa_supplicant(lab: Lab, result: ScenarioResult) -> None:
    """Manual code + peer binding through wpa_supplicant on the WPA3-SAE network, after
    bluetoothd was killed and restarted under ``device serve``. The central is a bumble
    host on the same air asking no MTU above 23 (BlueZ itself cannot be held there), so
    bluetoothd serves the ``info`` value in several reads (Read Blob) and every frame
    must fit 20 bytes."""
    lab.daemons.use_wpa_supplicant()
    network = f"wpa-supplicant:{lab.station}"
    with served(lab, "code", network, "serve-code") as daemon:
        _step(result, "device serve ready", _ready(daemon))
        start = time.monotonic()
        lab.daemons.restart_bluetoothd()
        _step(result, "bluetoothd killed and restarted", time.monotonic() - start)
        outcome = _after_bluez_restart(daemon)
        result.facts["after_bluez_restart"] = outcome
        if outcome == "exited":
            if daemon.proc.returncode == 0:
                raise ScenarioFailed(
                    "device serve exited 0 when BlueZ went away: systemd would not restart it"
                )
            _step(result, "device serve exited for systemd", 0, f"exit {daemon.proc.returncode}")
            daemon.stop()
            daemon = Served(lab, "code", network, "serve-code-restarted")
            _step(result, "device serve ready after its restart", _ready(daemon))
        else:
            _step(result, "device serve re-registered", 0)
        try:
            code = _manual_code(device_dir(lab.work, "code") / "label.txt")
            args = ["provision", "--radio", lab.bumble_host_radio, "--mtu", "23"]
            args += ["--manual-code", "--peer", "--host-dir", str(lab.work / "laptop")]
            args += ["--trust", str(lab.work / "factory" / "root.pem")]
            args += ["--wifi-ssid", lab.wpa3.ssid, "--wifi-security", lab.wpa3.security]
            args += ["--json"]
            done = host(lab, result, "provision-code", args, seen_by_device=True,
                        BLEPROV_MANUAL_CODE=code,
                        BLEPROV_WIFI_PASSWORD=lab.wpa3.passphrase)  # fmt: skip
            exited = f"exit {done.returncode}"
            _step(result, "provision (code, peer, WPA3-SAE)", done.seconds, exited)
            if done.returncode != 0:
                raise ScenarioFailed(f"provision exited {done.returncode}: {done.stderr[-2000:]}")
            summary = done.json()
            result.facts["provision"] = summary
            wifi = summary.get("wifi") or {}
            if wifi.get("state") != "connected" or not _in_subnet(wifi.get("ip"), lab.wpa3):
                raise ScenarioFailed(f"Wi-Fi not joined with a DHCP address: {wifi}")
            result.facts["dhcp_address"] = lab.daemons.station_address()
        finally:
            result.facts["serve_exit"] = daemon.stop()
        _no_secret_in("device serve's log", daemon.text(), lab)


def _ready(daemon: Served) -> float:
    return daemon.wait_for_line(r"^ready:", timeout=DAEMON_READY_TIMEOUT)


def _after_bluez_restart(daemon: Served) -> str:
    """``re-registered`` when the daemon says ready again, ``exited`` when it ends."""
    deadline = time.monotonic() + DAEMON_READY_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            return "exited"
        if len(re.findall(r"^ready:", daemon.text(), flags=re.MULTILINE)) >= 2:
            return "re-registered"
        time.sleep(0.3)
    raise ScenarioFailed("after bluetoothd's restart device serve neither exited nor re-registered")


def _manual_code(label: Path) -> str:
    for line in label.read_text().splitlines():
        if line.startswith("Manual code"):
            return line.split(":", 1)[1].strip()
    raise ScenarioFailed(f"no manual code in {label}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


#: Where the Wi-Fi backends and the daemons could leave a copy of a network.
SEARCHED: Final = (
    "/etc/NetworkManager",
    "/var/lib/NetworkManager",
    "/run/NetworkManager",
    "/etc/wpa_supplicant",
    "/var/lib/bluetooth",
    "/var/log",
)


def no_wifi_secret_on_disk(lab: Lab, result: ScenarioResult) -> None:
    """After the other scenarios: neither passphrase is in any file the daemons or
    bleprov wrote (NetworkManager's and wpa_supplicant's configuration and state, every
    daemon's log, syslog, the device stores, the host's state), and neither SSID is in a
    file bleprov wrote or in a configuration a backend could have saved. The daemons' own
    logs may name the SSIDs (NetworkManager and wpa_supplicant log what they join), and
    NetworkManager's in-memory profile under /run (a tmpfs, gone at power-off) names the
    network it is on, without its key: they are listed, not failed."""
    # Every log of the run: the daemons' (stack/) and each scenario's, beside this one's.
    results = lab.out.parent
    roots = [Path(p) for p in SEARCHED] + [results, lab.work]
    # The access points' own configuration holds the passphrases by necessity.
    skip = {p.resolve() for p in results.rglob("hostapd-*.conf")}
    passphrases = [lab.wpa2.passphrase.encode(), lab.wpa3.passphrase.encode()]
    ssids = [lab.wpa2.ssid.encode(), lab.wpa3.ssid.encode()]
    scanned = 0
    with_passphrase: list[str] = []
    ssid_in_config: list[str] = []
    ssid_in_daemon_log: list[str] = []
    ssid_in_memory: list[str] = []
    for path in _files(roots):
        if path.resolve() in skip:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        if any(p in data for p in passphrases):
            with_passphrase.append(str(path))
        if any(s in data for s in ssids) and not _host_output(path, lab):
            if _is_volatile(path) and not _written_by_bleprov(path, lab):
                ssid_in_memory.append(str(path))
            elif _written_by_bleprov(path, lab) or _is_configuration(path):
                ssid_in_config.append(str(path))
            else:
                ssid_in_daemon_log.append(str(path))
    result.facts.update(
        files_scanned=scanned,
        files_with_a_passphrase=with_passphrase,
        bleprov_or_config_files_with_an_ssid=ssid_in_config,
        daemon_logs_naming_an_ssid=ssid_in_daemon_log,
        in_memory_files_naming_an_ssid=ssid_in_memory,
    )
    _step(result, "files scanned", 0, str(scanned))
    if with_passphrase:
        raise ScenarioFailed(f"a Wi-Fi passphrase rests in {with_passphrase}")
    if ssid_in_config:
        raise ScenarioFailed(f"an SSID rests in {ssid_in_config}")
    if scanned < 20:
        raise ScenarioFailed(f"only {scanned} files scanned: the search found nothing to search")


def _files(roots: Sequence[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
            continue
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def _written_by_bleprov(path: Path, lab: Lab) -> bool:
    """The device's and the host's state, and the device daemon's log (its journal, which
    names networks by a keyed tag only). The host's printed output is not: the person who
    typed the SSID sees it there."""
    if path.is_relative_to(lab.work):
        return True
    return path.is_relative_to(lab.out.parent) and path.name.startswith("serve-")


def _host_output(path: Path, lab: Lab) -> bool:
    return path.is_relative_to(lab.out.parent) and (
        path.name.startswith("provision") or path.name == "results.json"
    )


def _is_volatile(path: Path) -> bool:
    """Under /run: a tmpfs, gone at power-off (NetworkManager keeps its in-memory profile
    of the joined network there, with the SSID but, agent-owned, without the key)."""
    return path.is_relative_to(Path("/run"))


def _is_configuration(path: Path) -> bool:
    return not path.name.endswith(".log") and not path.is_relative_to(Path("/var/log"))


#: Scenarios known to fail, and why: the lab reports them and does not fail for them, but
#: fails when one passes (then it is fixed: take it out of here). Each is an open bug.
KNOWN_FAILURES: Final[dict[str, str]] = {}

#: Scenario name -> function, in the order a full lab runs them.
SCENARIOS: Final[dict[str, Callable[[Lab, ScenarioResult], None]]] = {
    "zone-networkmanager": zone_networkmanager,
    "code-mtu23-wpa-supplicant": code_mtu23_wpa_supplicant,
    "no-wifi-secret-on-disk": no_wifi_secret_on_disk,
}


def run_scenario(name: str, lab: Lab) -> ScenarioResult:
    """One scenario, timed; a failure is recorded, never raised."""
    result = ScenarioResult(name)
    start = time.monotonic()
    try:
        SCENARIOS[name](lab, result)
        result.passed = True
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = round(time.monotonic() - start, 2)
    return result
