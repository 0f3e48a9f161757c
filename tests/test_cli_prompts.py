"""The host's questions and what it says after them (issue 13), without a terminal: the
Wi-Fi network number asked again when out of range, advice that matches the reason the
device gives for a failed join (each reason produced by the simulated Wi-Fi), the
factory passphrase checked before the device passphrase is asked for, and durations
that leave out the time a person takes to answer.

Ctrl-C at each prompt is tested in a real terminal: tests/test_cli_prompts_pty.py.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from bleprov.cli import app, issue_from_factory
from bleprov.cli.host import (
    EXIT_USAGE,
    EXIT_WIFI,
    HostUsage,
    PromptingChooser,
    Stopwatch,
    WifiChoice,
    exit_code_for,
)
from bleprov.cli.prompts import ask, seconds_at_prompts
from bleprov.core.enrolment.messages import WifiState, WifiStatus
from bleprov.core.wifi import JoinFailure, ScanResult, WifiCredentials, WifiSecurity
from bleprov.service.provisioning import JOIN_ADVICE, WifiNotJoined, provision
from tests.processes import SECRETS
from tests.worlds import World

HOME = ScanResult(b"Home", "02:00:00:00:00:01", -40, 6, WifiSecurity.WPA2_PERSONAL)
CAFE = ScanResult(b"Cafe", "02:00:00:00:00:02", -60, 1, WifiSecurity.OPEN)
ATTIC = ScanResult(b"Attic", "02:00:00:00:00:03", -70, 11, WifiSecurity.WPA2_PERSONAL)


class Person:
    """Answers typer's prompts from a script and remembers the questions (stands in
    for a terminal: typer.prompt and typer.confirm are what every prompt comes down to)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        monkeypatch.setattr(typer, "prompt", self.prompt)
        monkeypatch.setattr(typer, "confirm", self.prompt)

    def prompt(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(text)
        if not self.answers:
            raise AssertionError(f"asked {text!r} with no answer left: {self.asked}")
        return self.answers.pop(0)


def _chooser(choice: WifiChoice) -> tuple[PromptingChooser, io.StringIO]:
    shown = io.StringIO()
    chooser = PromptingChooser(Console(file=shown, width=200), choice)
    chooser.interactive = True
    return chooser, shown


async def test_an_out_of_range_network_number_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It aborted the whole provisioning, after the authentication it had cost."""
    person = Person(monkeypatch, [9, 0, 2])
    chooser, shown = _chooser(WifiChoice(None, "auto", None, False))
    credentials = await chooser.choose([HOME, CAFE])
    assert credentials is not None and credentials.ssid == b"Cafe"
    assert person.asked == ["Network number"] * 3
    assert shown.getvalue().count("choose a network number from 1 to 2") == 2


async def test_no_network_named_and_no_terminal_is_usage() -> None:
    chooser, _ = _chooser(WifiChoice(None, "auto", None, False))
    chooser.interactive = False
    with pytest.raises(HostUsage, match="--wifi-ssid") as refused:
        await chooser.choose([HOME])
    assert exit_code_for(refused.value) == EXIT_USAGE


async def test_a_refused_password_is_asked_for_again(monkeypatch: pytest.MonkeyPatch) -> None:
    person = Person(monkeypatch, [True, "the right one"])
    chooser, shown = _chooser(WifiChoice("Home", "auto", None, False))
    tried = WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase="the wrong one")
    status = WifiStatus(WifiState.FAILED, 4, reason=JoinFailure.WRONG_PASSWORD)
    again = await chooser.retry(status, tried)
    assert again is not None and again.passphrase == "the right one"
    assert person.asked == ["Type the password again?", "Password for Home"]
    assert JOIN_ADVICE[JoinFailure.WRONG_PASSWORD] in " ".join(shown.getvalue().split())


NOT_THE_PASSWORD = [JoinFailure.NETWORK_NOT_FOUND, JoinFailure.TIMEOUT, JoinFailure.DHCP_FAILED]


@pytest.mark.parametrize("reason", NOT_THE_PASSWORD, ids=[r.name.lower() for r in NOT_THE_PASSWORD])
async def test_other_failures_offer_the_same_network_again_not_a_password(
    monkeypatch: pytest.MonkeyPatch, reason: JoinFailure
) -> None:
    """A password that was right must not be retyped because DHCP failed."""
    person = Person(monkeypatch, [True])
    chooser, shown = _chooser(WifiChoice("Home", "auto", None, False))
    tried = WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase="the right one")
    again = await chooser.retry(WifiStatus(WifiState.FAILED, 4, reason=reason), tried)
    assert again == tried
    assert person.asked == ["Try Home again?"]
    assert JOIN_ADVICE[reason] in " ".join(shown.getvalue().split())


#: A simulated Wi-Fi in which each way of failing happens on its own network.
FAILING_WIFI: dict[str, Any] = {
    "access_points": [
        {"ssid": "home", "bssid": "02:00:00:00:00:01", "channel": 6, "rssi": -40,
         "security": "wpa2-personal", "passphrase": "correct horse battery"},
        {"ssid": "cafe", "bssid": "02:00:00:00:00:02", "channel": 1, "rssi": -60,
         "security": "open", "behaviour": "dhcp-failed"},
        {"ssid": "attic", "bssid": "02:00:00:00:00:03", "channel": 11, "rssi": -85,
         "security": "wpa2-personal", "passphrase": "up the ladder", "behaviour": "timeout"},
        {"ssid": "shed", "bssid": "02:00:00:00:00:04", "channel": 3, "rssi": -70,
         "security": "wpa2-personal", "passphrase": "behind the house", "behaviour": "reject"},
    ]
}  # fmt: skip

#: (network, --wifi-security, password): what the device answers, and the advice's words.
FAILURES = {
    JoinFailure.WRONG_PASSWORD: ("home", "auto", "not the password", "type it again"),
    JoinFailure.NETWORK_NOT_FOUND: ("garden", "wpa2", "in the garden", "2.4 GHz"),
    JoinFailure.DHCP_FAILED: ("cafe", "auto", None, "DHCP"),
    JoinFailure.TIMEOUT: ("attic", "auto", "up the ladder", "closer"),
    JoinFailure.OTHER: ("shed", "auto", "behind the house", "MAC filter"),
}


@pytest.mark.parametrize("reason", list(FAILURES), ids=[r.name.lower() for r in FAILURES])
async def test_wifi_advice_matches_the_reason_the_device_gives(
    world: World, tmp_path: Path, reason: JoinFailure
) -> None:
    """The device joins for real (simulated access points); with nobody to ask, the
    provisioning ends with the advice for the reason it reported (exit 5)."""
    ssid, security, password, advice = FAILURES[reason]
    device = await world.new_device(environment=FAILING_WIFI, join_timeout=0.3)
    session, _ = await world.session(device)
    password_file = None
    if password is not None:
        password_file = tmp_path / "wifi.txt"
        password_file.write_text(password)
    shown = io.StringIO()
    chooser = PromptingChooser(
        Console(file=shown, width=200), WifiChoice(ssid, security, password_file, False)
    )
    chooser.interactive = False
    try:
        with pytest.raises(WifiNotJoined) as failed:
            await provision(session, wifi=chooser)
    finally:
        await session.close()
        await device.service.drain()
    message = str(failed.value)
    assert f"({reason.name.lower().replace('_', ' ')})" in message, message
    assert JOIN_ADVICE[reason] in message and advice in message, message
    assert "nothing was changed" in message
    assert exit_code_for(failed.value) == EXIT_WIFI
    others = [text for other, text in JOIN_ADVICE.items() if other is not reason]
    assert not any(text in message for text in others)
    assert device.store.get("wifi") is None  # nothing committed


def test_time_at_a_prompt_is_counted_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_person(text: str, **kwargs: Any) -> str:
        time.sleep(1.0)
        return "an answer"

    monkeypatch.setattr(typer, "prompt", slow_person)
    watch = Stopwatch()
    before = seconds_at_prompts()
    time.sleep(0.1)
    assert ask("Anything") == "an answer"
    assert seconds_at_prompts() - before >= 1.0
    assert watch.at_prompts() >= 1.0
    assert 0.1 <= watch.seconds() < 0.9  # the machine's time, not the person's


class _Terminal(io.StringIO):
    """stdin as a terminal (what secret_input checks before it asks)."""

    def isatty(self) -> bool:
        return True


def test_the_factory_passphrase_is_checked_before_the_device_passphrase_is_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``label make`` and ``factory device``: a typo in the factory passphrase was said
    only after the device passphrase had been typed twice."""
    factory = tmp_path / "factory"
    made = CliRunner().invoke(
        app, ["factory", "init", "--dir", str(factory), "--name", "Acme"], env=SECRETS
    )
    assert made.exit_code == 0, made.output
    for name in ("BLEPROV_FACTORY_PASSPHRASE", "BLEPROV_DEVICE_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", _Terminal())
    person = Person(monkeypatch, ["wrong factory passphrase"])
    with pytest.raises(typer.Exit) as ended:
        issue_from_factory(factory, tmp_path / "devices", "qr", scratch_card=False)
    assert ended.value.exit_code == 1
    assert person.asked == ["Factory passphrase"]
    assert "factory passphrase does not open" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "devices").exists()


def test_no_factory_no_passphrase_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BLEPROV_FACTORY_PASSPHRASE", raising=False)
    monkeypatch.setattr(sys, "stdin", _Terminal())
    person = Person(monkeypatch, [])
    with pytest.raises(typer.Exit):
        issue_from_factory(tmp_path / "nowhere", tmp_path / "devices", "qr", scratch_card=False)
    assert person.asked == []
    assert "factory init" in capsys.readouterr().err
