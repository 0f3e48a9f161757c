"""The real Linux stack inside the lab VM: D-Bus, bluetoothd on two vhci controllers,
hostapd with a WPA2-PSK and a WPA3-SAE network, dnsmasq, and NetworkManager or
wpa_supplicant on the station radio.

Standard library only, so that it starts fast under emulation. Every start waits for its
daemon by polling what the daemon itself reports (a socket, a D-Bus object, a log line, an
interface state), never for a fixed time, and a daemon that does not come up raises
:class:`StackError` naming it and its log.

Radios: ``hci0`` is the device's controller and ``hci1`` the host's, both bumble virtual
controllers attached through ``/dev/vhci`` and joined by bumble's local link. ``wlan0``
and ``wlan1`` are the access points (mac80211_hwsim), ``wlan2`` the device's station.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

DEVICE_ADAPTER: Final = "hci0"
HOST_ADAPTER: Final = "hci1"
STATION: Final = "wlan2"
#: The third controller's loopback port: a bumble central (``bumble:tcp-client:...``).
BUMBLE_HOST_PORT: Final = 9160
SYSTEM_BUS_SOCKET: Final = Path("/run/dbus/system_bus_socket")
WPA_CTRL_DIR: Final = Path("/run/wpa_supplicant")
NM_CONF_DIR: Final = Path("/etc/NetworkManager/conf.d")


class StackError(Exception):
    """A piece of the stack did not start: the message names it and where its log is."""


@dataclass(frozen=True)
class Network:
    """An access point the lab runs: ``security`` as ``bleprov provision --wifi-security``
    names it."""

    interface: str
    ssid: str
    passphrase: str
    security: str
    subnet: str  # the first three octets: the AP is .1, leases .10-.50

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"


#: The lab's networks. Their passphrases are the lab's, not anyone's secret, but scenarios
#: treat them as secrets: they must appear nowhere on disk or in a log.
WPA2: Final = Network("wlan0", "LabHome-WPA2", "lab wpa2 passphrase 7391", "wpa2", "10.42.1")
WPA3: Final = Network("wlan1", "LabHome-SAE", "lab sae passphrase 5288", "wpa3", "10.42.2")
NETWORKS: Final = (WPA2, WPA3)


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, *, log: Path | None = None
) -> float:
    """Poll ``check`` until it is true; the seconds it took. :class:`StackError` naming
    ``what`` (and ``log``) when it stays false for ``timeout`` seconds."""
    start = time.monotonic()
    delay = 0.05
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            where = f"; see {log}" if log else ""
            raise StackError(f"{what} not ready after {timeout:.0f} s{where}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60) -> str:
    """Run a command to its end; its output. Raises :class:`StackError` on failure."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"{argv[0]}: {exc}") from exc
    if check and done.returncode != 0:
        raise StackError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def log_contains(path: Path, pattern: str, count: int = 1) -> bool:
    try:
        text = path.read_text(errors="replace")
        return len(re.findall(pattern, text, flags=re.MULTILINE)) >= count
    except FileNotFoundError:
        return False


@dataclass
class Stack:
    """The daemons of one lab run; ``out`` receives every log."""

    out: Path
    python: str = sys.executable
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    # -- processes ---------------------------------------------------------------------

    def spawn(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> Path:
        """Start a daemon in the foreground of its own process; its log file."""
        log = self.out / f"{name}.log"
        handle = log.open("ab")
        self._logs.append(handle)
        self.processes[name] = subprocess.Popen(
            list(argv),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        return log

    def alive(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def close(self) -> None:
        for name in reversed(list(self.processes)):
            self.kill(name)
        for handle in self._logs:
            handle.close()

    def _timed(self, name: str, seconds: float) -> None:
        self.timings[name] = round(seconds, 2)

    # -- pieces ------------------------------------------------------------------------

    def start_dbus(self) -> None:
        Path("/run/dbus").mkdir(parents=True, exist_ok=True)
        log = self.spawn("dbus", ["dbus-daemon", "--system", "--nofork", "--nopidfile"])
        self._timed("dbus", wait_for("the system D-Bus", SYSTEM_BUS_SOCKET.exists, 30, log=log))
        # What bluetoothd and the GATT application say to each other (method calls only).
        self.spawn(
            "dbus-monitor",
            [
                "dbus-monitor",
                "--system",
                "type='method_call',interface='org.bluez.GattCharacteristic1'",
            ],
        )

    def start_syslog(self) -> None:
        """busybox's syslogd stands in for the journal: daemons that log to syslog
        (wpa_supplicant started by NetworkManager) land in ``syslog.log``."""
        target = self.out / "syslog.log"
        self.spawn("syslogd", ["busybox", "syslogd", "-n", "-O", str(target)])
        self._timed("syslogd", wait_for("syslogd", Path("/dev/log").exists, 20))

    def start_btmon(self) -> None:
        """Every HCI packet of both controllers, as BlueZ sees them (btsnoop format)."""
        self.spawn("btmon", ["btmon", "-w", str(self.out / "hci.btsnoop")])
        self._timed("btmon", wait_for("btmon", lambda: (self.out / "hci.btsnoop").exists(), 20))

    def start_controllers(self) -> None:
        """Bumble controllers on one virtual link: two attached to the kernel as hci0 and
        hci1, one for a bumble host on TCP port :data:`BUMBLE_HOST_PORT`."""
        run(["modprobe", "hci_vhci"])
        log = self.spawn(
            "controllers", [self.python, "-m", "lab.controllers", str(BUMBLE_HOST_PORT)]
        )

        def two() -> bool:
            if not self.alive("controllers"):
                raise StackError(f"bumble's vhci controllers exited; see {log}")
            names = (
                os.listdir("/sys/class/bluetooth") if os.path.isdir("/sys/class/bluetooth") else []
            )
            return {DEVICE_ADAPTER, HOST_ADAPTER} <= set(names) and log_contains(log, "^ready")

        self._timed("controllers", wait_for("two vhci controllers", two, 180, log=log))

    def start_bluetoothd(self) -> None:
        """bluetoothd on the system bus, both adapters powered with LE on."""
        binary = next(
            (p for p in ("/usr/libexec/bluetooth/bluetoothd", "/usr/sbin/bluetoothd")
             if Path(p).exists()),
            None,
        )  # fmt: skip
        if binary is None:
            raise StackError("bluetoothd is not installed (Debian package bluez)")
        Path("/var/lib/bluetooth").mkdir(parents=True, exist_ok=True)
        one_att_bearer()
        argv = [binary, "-n", "-d"]
        log = self.spawn("bluetoothd", argv)

        def adapters() -> bool:
            if not self.alive("bluetoothd"):
                raise StackError(f"bluetoothd exited; see {log}")
            listed = run(["bluetoothctl", "list"], check=False, timeout=20)
            return listed.count("Controller ") >= 2

        started = wait_for("bluetoothd with two adapters", adapters, 60, log=log)
        for index in (0, 1):
            run(["btmgmt", "--index", str(index), "le", "on"], check=False)
            run(["btmgmt", "--index", str(index), "power", "on"])

        def both_powered() -> bool:
            return all(
                re.search(
                    r"current settings:[^\n]*\bpowered\b",
                    run(["btmgmt", "--index", str(i), "info"], check=False),
                )
                for i in (0, 1)
            )

        started += wait_for("both adapters powered", both_powered, 30, log=log)
        self._timed("bluetoothd", started)

    def restart_bluetoothd(self) -> None:
        """bluetoothd killed outright (as a crash would) and started again."""
        self.kill("bluetoothd", signal.SIGKILL)
        self.start_bluetoothd()

    def start_access_points(self) -> None:
        """hostapd with the WPA2-PSK network on wlan0 and the WPA3-SAE one on wlan1, each
        with its subnet and dnsmasq's DHCP."""
        run(["modprobe", "mac80211_hwsim", "radios=3"])
        wait_for(
            "three hwsim radios",
            lambda: all(Path(f"/sys/class/net/wlan{i}").exists() for i in range(3)),
            20,
        )
        configs = []
        for network in NETWORKS:
            conf = self.out / f"hostapd-{network.interface}.conf"
            lines = [
                f"interface={network.interface}",
                "driver=nl80211",
                f"ssid={network.ssid}",
                "hw_mode=g",
                f"channel={1 if network is WPA2 else 6}",
                "wpa=2",
                "rsn_pairwise=CCMP",
                f"wpa_passphrase={network.passphrase}",
            ]
            if network.security == "wpa3":
                lines += ["wpa_key_mgmt=SAE", "ieee80211w=2", "sae_pwe=2"]
            else:
                lines += ["wpa_key_mgmt=WPA-PSK"]
            conf.write_text("\n".join(lines) + "\n")
            conf.chmod(0o600)
            configs.append(str(conf))
            run(["ip", "addr", "add", f"{network.gateway}/24", "dev", network.interface])
        log = self.spawn("hostapd", ["hostapd", "-t", *configs])
        started = wait_for(
            "hostapd's two access points",
            lambda: log_contains(log, r"AP-ENABLED", 2),
            60,
            log=log,
        )
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0"]
        argv += ["--bind-interfaces", "--user=root", "--log-dhcp", "--log-facility=-"]
        argv += [f"--pid-file={self.out / 'dnsmasq.pid'}"]
        argv += [f"--dhcp-leasefile={self.out / 'dnsmasq.leases'}"]
        for network in NETWORKS:
            argv += [f"--interface={network.interface}"]
            argv += [f"--dhcp-range={network.subnet}.10,{network.subnet}.50,1h"]
        dns_log = self.spawn("dnsmasq", argv)
        started += wait_for(
            "dnsmasq", lambda: log_contains(dns_log, r"DHCP, IP range", 2), 30, log=dns_log
        )
        self._timed("access points", started)

    def start_networkmanager(self) -> None:
        """NetworkManager on the system bus, managing only the station (wpa_supplicant is
        started by D-Bus activation, logging to syslog)."""
        NM_CONF_DIR.mkdir(parents=True, exist_ok=True)
        (NM_CONF_DIR / "90-bleprov-lab.conf").write_text(
            "[main]\nplugins=keyfile\n"
            "[keyfile]\nunmanaged-devices=interface-name:wlan0;interface-name:wlan1;"
            "interface-name:eth0;interface-name:lo\n"
            "[logging]\nlevel=INFO\n"
        )
        # --debug: its log on stderr (into NetworkManager.log); it would go to the journal.
        log = self.spawn("NetworkManager", ["NetworkManager", "--no-daemon", "--debug"])

        def station_ready() -> bool:
            if not self.alive("NetworkManager"):
                raise StackError(f"NetworkManager exited; see {log}")
            shown = run(["nmcli", "-t", "-f", "DEVICE,STATE", "device"], check=False)
            return f"{STATION}:disconnected" in shown

        self._timed(
            "NetworkManager",
            wait_for(f"NetworkManager managing {STATION}", station_ready, 90, log=log),
        )

    def stop_networkmanager(self) -> None:
        """NetworkManager and the wpa_supplicant it had started, as at a reboot (its
        in-memory profiles are gone)."""
        self.kill("NetworkManager")
        run(["pkill", "-x", "wpa_supplicant"], check=False)
        wait_for(
            "wpa_supplicant to exit",
            lambda: not run(["pgrep", "-x", "wpa_supplicant"], check=False).strip(),
            20,
        )
        run(["ip", "addr", "flush", "dev", STATION], check=False)

    def start_wpa_supplicant(self) -> Path:
        """wpa_supplicant on the station with a control socket (what the device's
        ``wpa-supplicant`` backend talks to), a writable configuration (so a SAVE_CONFIG
        would show on disk) and busybox's udhcpc as the system's DHCP client."""
        conf = Path("/etc/wpa_supplicant/bleprov-lab.conf")
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(f"ctrl_interface={WPA_CTRL_DIR}\nupdate_config=1\n")
        log = self.spawn(
            "wpa_supplicant",
            ["wpa_supplicant", "-i", STATION, "-D", "nl80211", "-c", str(conf), "-dd", "-t"],
        )
        self._timed(
            "wpa_supplicant",
            wait_for(
                "wpa_supplicant's control socket",
                lambda: (WPA_CTRL_DIR / STATION).exists(),
                30,
                log=log,
            ),
        )
        script = self.out / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        self.spawn(
            "udhcpc",
            ["busybox", "udhcpc", "-f", "-i", STATION, "-s", str(script), "-t", "1000",
             "-T", "2", "-A", "1"],
        )  # fmt: skip
        return conf

    # -- reading state -----------------------------------------------------------------

    @staticmethod
    def station_address() -> str | None:
        """The station's IPv4 address, if it has one."""
        shown = run(["ip", "-4", "-o", "addr", "show", "dev", STATION], check=False)
        found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", shown)
        return found.group(1) if found else None

    @staticmethod
    def adapter_address(index: int) -> str:
        shown = run(["btmgmt", "--index", str(index), "info"], check=False)
        found = re.search(r"addr ([0-9A-F:]{17})", shown)
        return found.group(1) if found else ""


def one_att_bearer(conf: Path = Path("/etc/bluetooth/main.conf")) -> None:
    """``[GATT] Channels = 1`` in bluetoothd's main.conf, as docs/raspberry-pi.md has a
    device's owner set it: with BlueZ's default (3 bearers, Enhanced ATT) on both sides
    notifications can overtake each other (docs/lab.md)."""
    text = conf.read_text() if conf.exists() else ""
    if re.search(r"^Channels\s*=\s*1\s*$", text, flags=re.MULTILINE):
        return
    if re.search(r"^\[GATT\]\s*$", text, flags=re.MULTILINE):
        text = re.sub(r"^\[GATT\]\s*$", "[GATT]\nChannels = 1", text, count=1, flags=re.MULTILINE)
    else:
        text += "\n[GATT]\nChannels = 1\n"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text)


#: busybox udhcpc's event script: set the lease's address on the interface.
UDHCPC_SCRIPT: Final = """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew) ip -4 addr flush dev "$interface"
               ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
exit 0
"""


@contextlib.contextmanager
def running_stack(out: Path, *, network: str = "networkmanager") -> Iterator[Stack]:
    """The whole stack, up in dependency order; every daemon stopped afterwards."""
    stack = Stack(out)
    try:
        start = time.monotonic()
        stack.start_dbus()
        stack.start_syslog()
        stack.start_btmon()
        stack.start_controllers()
        stack.start_bluetoothd()
        stack.start_access_points()
        if network == "networkmanager":
            stack.start_networkmanager()
        stack.timings["stack"] = round(time.monotonic() - start, 2)
        yield stack
    finally:
        stack.close()


def tools_missing() -> list[str]:
    """The programs the stack runs that this system lacks."""
    needed = [
        "dbus-daemon", "bluetoothctl", "btmgmt", "btmon", "hostapd", "dnsmasq",
        "NetworkManager", "nmcli", "wpa_supplicant", "iw", "ip", "busybox", "modprobe",
    ]  # fmt: skip
    return [tool for tool in needed if shutil.which(tool, path=_SBIN_PATH) is None]


_SBIN_PATH: Final = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/libexec/bluetooth"]
)
