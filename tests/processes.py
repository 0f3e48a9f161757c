"""Separate ``bleprov`` processes, as a person runs them: helpers the process tests share.

A radio hub (``bleprov radio hub``) serves virtual controllers over loopback; a factory
issues one device, ``bleprov device init`` imports it and ``bleprov device serve`` runs it
on the first controller; hosts use the others. Secrets travel in the environment, never on
a command line (:func:`bleprov` checks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXAMPLE_NETWORK = Path(__file__).resolve().parents[1] / "bleprov/network/simulated_example.toml"
HOME_PASSWORD = "correct horse battery staple"  # the simulated network's (not a secret)
SECRETS = {
    "BLEPROV_FACTORY_PASSPHRASE": "factory passphrase 1",
    "BLEPROV_DEVICE_PASSPHRASE": "device passphrase 2",
    "BLEPROV_ZONE_PASSPHRASE": "zone passphrase 3",
    "BLEPROV_USER_PASSPHRASE": "alice passphrase 4",
}


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: ours, the test's secrets, and ``extra``."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **SECRETS, **extra}


def bleprov(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one ``bleprov`` command to its end."""
    argv = [sys.executable, "-m", "bleprov", *args]
    for value in SECRETS.values():
        assert value not in argv  # secrets never on a command line
    return subprocess.run(
        argv,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start(*args: str) -> subprocess.Popen[str]:
    """A long-running ``bleprov`` command, its output line by line (stdin open)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bleprov", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.PIPE,
        text=True,
        # Fatal signals print every thread's stack (finish_or_dump).
        env=child_env(PYTHONFAULTHANDLER="1"),
    )


def read_until(proc: subprocess.Popen[str], prefix: str, timeout: float) -> list[str]:
    """Lines up to and including the first that starts with ``prefix``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process exited early: {lines}")
        lines.append(line.rstrip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line {prefix!r} within {timeout} s: {lines}")


def finish_or_dump(proc: subprocess.Popen[str], timeout: float) -> str:
    """The rest of a ``start()``ed process's output once it ends; if it does not end
    within ``timeout``, fail with where it hangs: SIGABRT makes Python's faulthandler
    (``PYTHONFAULTHANDLER``, set by :func:`start`) print every thread's stack."""
    try:
        rest, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            rest, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate(timeout=5)
        raise AssertionError(f"still running {timeout:g} s later; its stacks:\n{rest}") from None
    return rest


def stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class ServedDevice:
    """A device issued by a fresh factory, running ``device serve`` on the first
    controller of a radio hub; hosts use the other controllers."""

    work: Path
    controllers: list[str]
    device_dir: Path
    daemon: subprocess.Popen[str]

    @property
    def device_id(self) -> str:
        return self.device_dir.name

    @property
    def label_txt(self) -> Path:
        return self.device_dir / "label.txt"

    @property
    def trust(self) -> list[str]:
        """The host option that trusts the factory's root."""
        return ["--trust", str(self.work / "factory" / "root.pem")]

    @property
    def host_radio(self) -> str:
        return f"bumble:{self.controllers[1]}"


@contextmanager
def served_device(
    work: Path,
    *,
    controllers: int = 2,
    modes: str | None = None,
    serve: Sequence[str] = (),
) -> Iterator[ServedDevice]:
    """Radio hub, factory, ``device init`` and ``device serve`` (with ``serve`` options),
    each a process; everything stopped afterwards."""
    hub = start("radio", "hub", "--ports", ",".join(["0"] * controllers))
    daemon = None
    try:
        lines = read_until(hub, "ready", 30)
        names = [line.split()[2] for line in lines if line.startswith("controller ")]
        assert len(names) == controllers, lines
        factory = str(work / "factory")
        made = bleprov("factory", "init", "--dir", factory, "--name", "Acme")
        assert made.returncode == 0, made.stdout + made.stderr
        issue = ["factory", "device", "--dir", factory, "--out", str(work / "devices")]
        issued = bleprov(*issue, *(["--modes", modes] if modes else []))
        assert issued.returncode == 0, issued.stdout + issued.stderr
        [device_dir] = list((work / "devices").iterdir())
        init = bleprov("device", "init", "--store", str(work / "store"), "--from", str(device_dir))
        assert init.returncode == 0, init.stdout + init.stderr
        daemon = start(
            "device", "serve", "--store", str(work / "store"), "--radio", f"bumble:{names[0]}",
            "--network", f"simulated:{EXAMPLE_NETWORK}", *serve,
        )  # fmt: skip
        read_until(daemon, "ready:", 30)
        yield ServedDevice(work, names, device_dir, daemon)
    finally:
        stop(daemon)
        stop(hub)
