"""H2, the terminal: `bleprov provision --compare` asked its question inside a rich
spinner (console.status) that redrew the line and erased it, so the user could only type
`y` blind. Here the command runs in a real terminal (a tmux pane: a terminal emulator, so
what the test reads is what a person would see), against `bleprov device serve` in
another process over the loopback virtual radio; while the prompt waits, the number must
be on the screen. The passkey prompt is checked the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import HOME_PASSWORD, child_env, read_until, served_device
from tests.terminal import Terminal, command_script, needs_tmux, open_terminal

pytestmark = [pytest.mark.multiprocess, needs_tmux]


@dataclass
class Rig:
    work: Path
    host_radio: str
    device: subprocess.Popen[str]

    def displayed(self, timeout: float = 30) -> str:
        """The next number the device's display shows (its console UI prints it)."""
        deadline = time.monotonic() + timeout
        while True:
            line = read_until(self.device, "display: ", deadline - time.monotonic())[-1]
            shown = line.split()[1]
            if shown.isdigit():  # not "cleared", from the session before
                return shown


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    modes = os.environ.get("BLEPROV_TEST_PTY_MODES", "qr,compare,passkey")
    work = tmp_path_factory.mktemp("pty")
    with served_device(work, modes=modes, serve=["--device-confirms"]) as served:
        yield Rig(work, served.host_radio, served.daemon)


def _provision_script(rig: Rig, how: str, name: str) -> Path:
    """A shell script running `bleprov provision` (the Wi-Fi password in its environment,
    as a person's shell would have it; the simulated network's, no secret)."""
    argv = [
        sys.executable, "-m", "bleprov", "provision", "--radio", rig.host_radio, how,
        "--trust", str(rig.work / "factory" / "root.pem"),
        "--wifi-ssid", "Home", "--timeout", "20",
    ]  # fmt: skip
    env = {k: v for k, v in child_env().items() if k.startswith(("BLEPROV_", "PYTHON", "PATH"))}
    env["BLEPROV_WIFI_PASSWORD"] = HOME_PASSWORD
    return command_script(rig.work / f"{name}.sh", argv, env)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    with open_terminal() as term:
        yield term


def test_the_compare_prompt_shows_the_number_while_it_waits(rig: Rig, terminal: Terminal) -> None:
    terminal.start(_provision_script(rig, "--compare", "compare"))
    number = rig.displayed()
    prompt = rf"Does the device show {number}\?"
    terminal.wait_for(prompt, 30)
    time.sleep(1.0)  # a spinner redraws a dozen times a second: it would have erased it
    screen = terminal.screen()
    assert re.search(prompt, screen), f"the number is not on the screen:\n{screen}"
    assert rig.device.stdin is not None
    rig.device.stdin.write("b\n")  # the device's user presses its button: same number
    rig.device.stdin.flush()
    terminal.type("y")
    terminal.wait_for(r"EXIT=\d+", 60)
    assert "EXIT=0" in terminal.screen(), terminal.screen()
    assert "provisioned" in terminal.screen()


def test_the_passkey_prompt_waits_with_its_question_visible(rig: Rig, terminal: Terminal) -> None:
    terminal.start(_provision_script(rig, "--passkey", "passkey"))
    number = rig.displayed()
    terminal.wait_for(r"Type the number shown on the device", 30)
    time.sleep(1.0)
    screen = terminal.screen()
    assert "Type the number shown on the device" in screen, screen
    terminal.type(number)
    terminal.wait_for(r"EXIT=\d+", 60)
    assert "EXIT=0" in terminal.screen(), terminal.screen()
    assert "provisioned" in terminal.screen()
