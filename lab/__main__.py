"""``python -m lab`` (``make lab``): the real Linux stack in a VM, and the scenarios on it.

On the machine that runs it: check (as root: install) the Debian packages, prepare the
factory, devices and zone (no radio needed), boot a Debian kernel under qemu with
virtme-ng (this machine's root file system visible, so the project's venv runs inside),
run :mod:`lab.guest` there, then read the HCI capture and print one line per scenario:
time, negotiated ATT MTU, round trips and bytes as BlueZ saw them. Exit 0 when every
scenario passed, 1 when one failed, 2 when the lab cannot run here (what is missing is
named, with the one apt line that installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from lab import btsnoop
from lab.scenarios import KNOWN_FAILURES, SCENARIOS, Window, check_capture, prepare

ROOT: Final = Path(__file__).resolve().parents[1]
#: Debian packages the lab uses, on the machine and (the same root) in the VM.
PACKAGES: Final = (
    "qemu-system-x86", "linux-image-amd64", "bluez", "network-manager", "hostapd",
    "wpasupplicant", "iw", "busybox-static", "dnsmasq-base", "dbus", "iproute2", "kmod",
    "procps",
)  # fmt: skip
#: Programs each package gives, as checked before booting.
PROGRAMS: Final = {
    "qemu-system-x86_64": "qemu-system-x86", "bluetoothd": "bluez", "btmgmt": "bluez",
    "btmon": "bluez", "NetworkManager": "network-manager", "hostapd": "hostapd",
    "wpa_supplicant": "wpasupplicant", "iw": "iw", "busybox": "busybox-static",
    "dnsmasq": "dnsmasq-base", "dbus-daemon": "dbus", "ip": "iproute2", "modprobe": "kmod",
    "pkill": "procps",
}  # fmt: skip
SEARCH_PATH: Final = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/libexec/bluetooth"]
)
#: The whole lab's bound (the issue's budget is 20 minutes on 2 cores).
VM_TIMEOUT: Final = 1500.0


def missing_packages() -> list[str]:
    missing = {pkg for prog, pkg in PROGRAMS.items() if not shutil.which(prog, path=SEARCH_PATH)}
    if not kernels():
        missing.add("linux-image-amd64")
    return sorted(missing)


def kernels() -> list[Path]:
    """Debian kernels this machine has, newest last (the VM boots the newest)."""
    return sorted(Path("/boot").glob("vmlinuz-*"), key=lambda p: p.stat().st_mtime)


def install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def vng_command(vng: str, kernel: Path, out: Path, work: Path, names: list[str]) -> list[str]:
    guest = [sys.executable, "-m", "lab.guest", "--out", str(out), "--work", str(work)]
    for name in names:
        guest += ["--scenario", name]
    script = f"cd {ROOT} && exec {' '.join(guest)}"
    return [
        vng, "--disable-kvm", "--run", str(kernel), "--memory", "2G", "--cpus", "2",
        "--rwdir", str(out), "--exec", script,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                        help="run only this scenario (repeatable); default: all")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "lab-results")
    parser.add_argument("--vng", default=shutil.which("vng") or str(ROOT / ".venv-lab/bin/vng"))
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)

    missing = missing_packages()
    if missing and os.geteuid() == 0:
        print(f"lab: installing {' '.join(missing)}", flush=True)
        install(missing)
        missing = missing_packages()
    if missing:
        print(
            "lab: missing Debian packages; install them with:\n"
            f"  sudo apt-get install --no-install-recommends {' '.join(PACKAGES)}",
            file=sys.stderr,
        )
        return 2
    if not Path(args.vng).exists():
        print(f"lab: virtme-ng not found at {args.vng}: run make lab", file=sys.stderr)
        return 2
    if os.geteuid() != 0 and not os.access("/boot/" + kernels()[-1].name, os.R_OK):
        print(f"lab: {kernels()[-1]} is not readable: run as root", file=sys.stderr)
        return 2

    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    work = out / "work"
    start = time.monotonic()
    prepare(work)
    prepared = time.monotonic() - start
    print(f"lab: factory, devices and zone prepared in {prepared:.1f} s", flush=True)

    command = vng_command(args.vng, kernels()[-1], out, work, names)
    console = out / "console.log"
    boot = time.monotonic()
    with console.open("w") as handle:
        try:
            vm = subprocess.run(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=VM_TIMEOUT,
                check=False,
                env={**os.environ, "PATH": os.pathsep.join(
                    [str(Path(args.vng).parent), os.environ.get("PATH", "")])},
            )  # fmt: skip
            vm_rc: int | str = vm.returncode
        except subprocess.TimeoutExpired:
            vm_rc = f"killed after {VM_TIMEOUT:.0f} s"
    vm_seconds = time.monotonic() - boot
    return report(out, names, vm_rc, vm_seconds)


def report(out: Path, names: list[str], vm_rc: int | str, vm_seconds: float) -> int:
    results_file = out / "results.json"
    if not results_file.exists():
        print(f"lab: the VM (exit {vm_rc}) wrote no results; see {out / 'console.log'}",
              file=sys.stderr)  # fmt: skip
        return 1
    results: dict[str, Any] = json.loads(results_file.read_text())
    capture = out / "stack" / "hci.btsnoop"
    packets = btsnoop.read(capture) if capture.exists() else []
    stack = results.get("stack", {})
    print(f"lab: VM {vm_seconds:.0f} s (exit {vm_rc}); stack up in {stack.get('stack', '?')} s: "
          + ", ".join(f"{k} {v}" for k, v in stack.items() if k != "stack"))  # fmt: skip
    failed = bool(results.get("error"))
    if failed:
        print(f"lab: {results['error']}", file=sys.stderr)
    done = {s["name"]: s for s in results.get("scenarios", [])}
    for name in names:
        scenario = done.get(name)
        if scenario is None:
            print(f"  {name}: not run")
            failed = True
            continue
        # The capture first: its checks can fail a scenario that passed inside the VM.
        lines = []
        for window in scenario["windows"]:
            att = btsnoop.att_summary(
                packets,
                window.get("controller", 1),
                window["start"],
                window["end"],
                central=window.get("central", True),
            )
            scenario.setdefault("att", {})[window["name"]] = att
            lines.append(f"      {window['name']}: {btsnoop.describe(att)}")
            broken = check_capture(Window(**window), att)
            if broken and scenario["passed"]:
                scenario["passed"] = False
                scenario["error"] = "the capture says: " + "; ".join(broken)
        known = KNOWN_FAILURES.get(name)
        if scenario["passed"]:
            verdict = "passed" if known is None else "PASSED, but listed as a known failure"
        else:
            verdict = "FAILED" if known is None else "failed, as known"
        print(f"  {name}: {verdict} in {scenario['seconds']:.0f} s")
        for step in scenario["steps"]:
            detail = f" ({step['detail']})" if step["detail"] else ""
            print(f"      {step['name']}: {step['seconds']:.1f} s{detail}")
        for line in lines:
            print(line)
        if not scenario["passed"]:
            print(f"      error: {scenario['error'][:3000]}")
            failed = failed or known is None
            if known is not None:
                print(f"      known failure: {known}")
        elif known is not None:
            print("      it is fixed: take it out of lab.scenarios.KNOWN_FAILURES")
            failed = True
    results_file.write_text(json.dumps(results, indent=2))
    print(f"lab: logs in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
