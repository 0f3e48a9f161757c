"""Inside the lab VM: bring the stack up, run the chosen scenarios, write ``results.json``.

``python -m lab.guest --out DIR --work DIR [--scenario NAME ...]``: the daemons' logs go to
``DIR/stack/``, each scenario's to ``DIR/<scenario>/``. Standard library only (the
scenarios start bleprov as child processes), so this process itself starts fast under
emulation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from lab import stack as st
from lab.scenarios import SCENARIOS, Lab, ScenarioResult, WifiNetwork, run_scenario

#: On the VM's own tmpfs (its root file system is read-only).
LOCAL_WORK = Path("/tmp/bleprov-lab-work")


class VmDaemons:
    """:class:`lab.scenarios.Daemons` on the lab's own stack."""

    def __init__(self, stack: st.Stack) -> None:
        self.stack = stack

    def restart_bluetoothd(self) -> None:
        self.stack.restart_bluetoothd()

    def reboot_networkmanager(self) -> None:
        self.stack.stop_networkmanager()
        self.stack.start_networkmanager()

    def use_wpa_supplicant(self) -> None:
        self.stack.stop_networkmanager()
        self.stack.start_wpa_supplicant()

    def station_address(self) -> str | None:
        return self.stack.station_address()


def _network(network: st.Network) -> WifiNetwork:
    return WifiNetwork(network.ssid, network.passphrase, network.security, network.subnet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.guest")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    # The prepared state moves onto the VM's own file system, as on a device: the shared
    # folder (9p) has no shared memory for SQLite's write-ahead log. Copied back at the end.
    work = LOCAL_WORK
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(args.work, work, symlinks=True)
    stack_out = args.out / "stack"
    stack_out.mkdir(parents=True, exist_ok=True)
    results: list[ScenarioResult] = []
    report: dict[str, object] = {"scenarios": results, "stack": {}, "error": ""}
    started = time.monotonic()
    try:
        with st.running_stack(stack_out) as stack:
            report["stack"] = stack.timings
            report["adapters"] = {
                st.DEVICE_ADAPTER: stack.adapter_address(0),
                st.HOST_ADAPTER: stack.adapter_address(1),
            }
            _write(args.out, report)
            daemons = VmDaemons(stack)
            for name in names:
                out = args.out / name
                out.mkdir(parents=True, exist_ok=True)
                lab = Lab(
                    work=work,
                    out=out,
                    device_radio=f"bluez:{st.DEVICE_ADAPTER}",
                    host_radio=f"system:{st.HOST_ADAPTER}",
                    bumble_host_radio=f"bumble:tcp-client:127.0.0.1:{st.BUMBLE_HOST_PORT}",
                    station=st.STATION,
                    wpa2=_network(st.WPA2),
                    wpa3=_network(st.WPA3),
                    daemons=daemons,
                )
                print(f"lab: scenario {name} ...", flush=True)
                result = run_scenario(name, lab)
                results.append(result)
                verdict = "passed" if result.passed else f"FAILED: {result.error}"
                print(f"lab: scenario {name} {verdict} in {result.seconds:.0f} s", flush=True)
                _write(args.out, report)
    except st.StackError as exc:
        report["error"] = f"the stack did not start: {exc}"
        print(f"lab: {report['error']}", file=sys.stderr, flush=True)
    except Exception:
        report["error"] = traceback.format_exc()
        print(report["error"], file=sys.stderr, flush=True)
    shutil.copytree(work, args.out / "work-after", symlinks=True, dirs_exist_ok=True)
    report["seconds"] = round(time.monotonic() - started, 2)
    _write(args.out, report)
    ok = not report["error"] and len(results) == len(names) and all(r.passed for r in results)
    return 0 if ok else 1


def _write(out: Path, report: dict[str, object]) -> None:
    def default(value: object) -> object:
        if isinstance(value, ScenarioResult):
            return value.to_json()
        raise TypeError(type(value).__name__)

    (out / "results.json").write_text(json.dumps(report, indent=2, default=default))


if __name__ == "__main__":
    sys.exit(main())
