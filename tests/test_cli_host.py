"""The host commands' parts that need no radio: where secrets come from, trust roots, the
Wi-Fi chooser, exit codes, and usage errors as a person meets them."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from rich.console import Console
from typer.testing import CliRunner

from bleprov.cli import app
from bleprov.cli.host import (
    EXIT_AUTHENTICATION,
    EXIT_NOT_FOUND,
    EXIT_WIFI,
    HostError,
    LabelSource,
    PromptingChooser,
    WifiChoice,
    exit_code_for,
    load_roots,
)
from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment.messages import WifiState, WifiStatus
from bleprov.core.errors import MalformedData
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer
from bleprov.core.onboarding import encode_user_password
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import AuthenticationFailed
from bleprov.core.wifi import JoinFailure, ScanResult, WifiSecurity
from bleprov.radio.host_link import DeviceNotFound, LinkError
from bleprov.service.provisioning import WifiNotJoined

runner = CliRunner()
QUIET = Console(file=io.StringIO())
NOW = datetime.now(UTC)
MANUFACTURER = Manufacturer.create("Acme", now=NOW)
DEVICE, LABEL = provision_device(
    MANUFACTURER.issue_device(now=NOW),
    modes=OobMode.QR | OobMode.CODE,
    cost=ScryptCost(n=16, r=1, p=1),
    scratch_card=True,
)
HOME = ScanResult(b"Home", "02:00:00:00:00:01", -40, 6, WifiSecurity.WPA2_PERSONAL)
CAFE = ScanResult(b"Cafe", "02:00:00:00:00:02", -60, 1, WifiSecurity.OPEN)


def test_exactly_one_way_to_authenticate() -> None:
    with pytest.raises(HostError, match="exactly once"):
        LabelSource().authentication()
    with pytest.raises(HostError, match="exactly once"):
        LabelSource(compare=True, button=True).authentication()


def test_a_label_file_gives_qr_mode_and_the_discriminator(tmp_path: Path) -> None:
    label_txt = tmp_path / "label.txt"
    label_txt.write_text(f"Device ABC\nQR code text:  {LABEL.qr_text}\nManual code: x\n")
    auth = LabelSource(qr_file=label_txt).authentication()
    assert auth.mode is Mode.QR
    assert auth.discriminator == DEVICE.discriminator
    assert LABEL.qr_text not in repr(auth)  # the secret stays out of logs


def test_a_damaged_label_says_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "label.txt"
    bad.write_text("BP:AAAA")
    with pytest.raises(HostError, match="not a valid bleprov label"):
        LabelSource(qr_file=bad).authentication()
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing here")
    with pytest.raises(HostError, match="no bleprov QR text"):
        LabelSource(qr_file=empty).authentication()
    with pytest.raises(HostError, match="cannot read"):
        LabelSource(qr_file=tmp_path / "missing.txt").authentication()


def test_codes_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LABEL.manual_code is not None and LABEL.scratch_card is not None
    monkeypatch.setenv("BLEPROV_MANUAL_CODE", LABEL.manual_code)
    auth = LabelSource(manual_code=True).authentication()
    assert auth.mode is Mode.CODE and auth.matches is not None
    user, password = encode_user_password(LABEL.scratch_card).split(" ", 1)
    monkeypatch.setenv("BLEPROV_CARD_USER", LABEL.scratch_card.user)
    monkeypatch.setenv("BLEPROV_CARD_PASSWORD", LABEL.scratch_card.password)
    card = LabelSource(scratch_card=True, discriminator=7).authentication()
    assert card.mode is Mode.CODE and card.discriminator == 7
    assert user and password


class Typist:
    """Answers typer.prompt with each text in turn; records how it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[dict[str, object]] = []

    def __call__(self, text: str, **options: object) -> str:
        self.asked.append({"text": text, **options})
        return self.answers.pop(0)


@pytest.fixture
def at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLEPROV_PRINTED_KEY", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)


def _short_group_7(key: str) -> str:
    groups = key.split("-")
    return "-".join([*groups[:6], groups[6][:3], *groups[7:]])


def test_the_printed_key_is_typed_in_sight_and_read_back_in_groups(
    at_a_terminal: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not blind: shown as typed, read back in the label's groups, a typo located, and
    asked again rather than failing the command (issue 13)."""
    typist = Typist(_short_group_7(LABEL.printed_key), LABEL.printed_key.lower().replace("-", " "))
    monkeypatch.setattr("typer.prompt", typist)
    auth = LabelSource(printed_key=True).authentication()
    assert auth.mode is Mode.QR and auth.discriminator == DEVICE.discriminator
    assert len(typist.asked) == 2
    assert not any(asked.get("hide_input") for asked in typist.asked)
    told = capsys.readouterr().err
    assert "group 7 has 3 characters, not 4" in told and "type it again" in told
    assert f"read as: {LABEL.printed_key}" in told  # the second try, as the label prints it
    [echo, mark] = [line for line in told.splitlines() if "read as:" in line or "^" in line][:2]
    assert mark.index("^") == echo.index("read as: ") + len("read as: ") + 6 * 5


def test_a_printed_key_mistyped_every_time_gives_up_saying_what_else_works(
    at_a_terminal: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = _short_group_7(LABEL.printed_key)
    monkeypatch.setattr("typer.prompt", Typist(*[wrong] * 5))
    with pytest.raises(HostError, match=r"mistyped 5 times.*--manual-code"):
        LabelSource(printed_key=True).authentication()


def test_a_printed_key_from_the_environment_says_where_it_is_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLEPROV_PRINTED_KEY", _short_group_7(LABEL.printed_key))
    with pytest.raises(HostError, match="group 7 has 3 characters") as caught:
        LabelSource(printed_key=True).authentication()
    assert LABEL.printed_key[:9] not in str(caught.value)
    monkeypatch.setenv("BLEPROV_PRINTED_KEY", LABEL.printed_key)
    assert LabelSource(printed_key=True).authentication().mode is Mode.QR
    monkeypatch.delenv("BLEPROV_PRINTED_KEY")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(HostError, match="set BLEPROV_PRINTED_KEY or run interactively"):
        LabelSource(printed_key=True).authentication()


def test_trust_roots_in_pem_or_der(tmp_path: Path) -> None:
    root = MANUFACTURER.root_certificate
    pem, der = tmp_path / "root.pem", tmp_path / "root.der"
    pem.write_bytes(root.public_bytes(Encoding.PEM))
    der.write_bytes(root.public_bytes(Encoding.DER))
    assert load_roots([pem, der]) == (root.public_bytes(Encoding.DER),) * 2
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(HostError, match="not a PEM or DER"):
        load_roots([junk])


async def test_chooser_takes_the_named_network_and_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLEPROV_WIFI_PASSWORD", "correct horse")
    chooser = PromptingChooser(QUIET, WifiChoice("Home", "auto", None, False))
    chooser.interactive = False
    credentials = await chooser.choose([HOME, CAFE])
    assert credentials is not None
    assert credentials.security is WifiSecurity.WPA2_PERSONAL
    assert credentials.passphrase == "correct horse" and not credentials.hidden
    failed = WifiStatus(WifiState.FAILED, 3, reason=JoinFailure.WRONG_PASSWORD)
    assert await chooser.retry(failed, credentials) is None  # nobody to ask: give up


async def test_chooser_open_network_hidden_network_and_missing_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    quiet = QUIET
    monkeypatch.delenv("BLEPROV_WIFI_PASSWORD", raising=False)
    cafe = PromptingChooser(quiet, WifiChoice("Cafe", "auto", None, False))
    cafe.interactive = False
    open_credentials = await cafe.choose([HOME, CAFE])
    assert open_credentials is not None and open_credentials.passphrase is None
    hidden = PromptingChooser(quiet, WifiChoice("Attic", "auto", None, False))
    hidden.interactive = False
    with pytest.raises(HostError, match="--wifi-security"):
        await hidden.choose([HOME])
    secret_file = tmp_path / "wifi.txt"
    secret_file.write_text("attic password\n")
    hidden = PromptingChooser(quiet, WifiChoice("Attic", "wpa3", secret_file, False))
    hidden.interactive = False
    attic = await hidden.choose([HOME])
    assert attic is not None and attic.hidden and attic.passphrase == "attic password"
    nameless = PromptingChooser(quiet, WifiChoice(None, "auto", None, False))
    nameless.interactive = False
    with pytest.raises(HostError, match="--wifi-ssid"):
        await nameless.choose([HOME])
    home = PromptingChooser(quiet, WifiChoice("Home", "auto", None, False))
    home.interactive = False
    with pytest.raises(HostError, match="BLEPROV_WIFI_PASSWORD"):
        await home.choose([HOME])


def test_exit_codes() -> None:
    assert exit_code_for(DeviceNotFound("no bleprov device found within 2 s")) == EXIT_NOT_FOUND
    assert exit_code_for(LinkError("the device was not found in the cache")) == 1
    assert exit_code_for(AuthenticationFailed("wrong code")) == EXIT_AUTHENTICATION
    assert exit_code_for(WifiNotJoined("no")) == EXIT_WIFI
    assert exit_code_for(HostError("x")) == 1


def test_provision_without_a_trust_root_says_what_to_do(tmp_path: Path) -> None:
    label_txt = tmp_path / "label.txt"
    label_txt.write_text(LABEL.qr_text)
    result = runner.invoke(app, ["provision", "--qr-file", str(label_txt), "--no-wifi", "--peer"])
    assert result.exit_code == 2  # a missing option: usage (README, "Exit codes")
    assert "--trust" in result.output
    assert LABEL.qr_text not in result.output


def test_zone_enrolment_refuses_an_unknown_manufacturer_up_front(tmp_path: Path) -> None:
    """The hub certifies attested devices only: refused before any radio or hub work."""
    label_txt = tmp_path / "label.txt"
    label_txt.write_text(LABEL.qr_text)
    result = runner.invoke(
        app,
        [
            *("provision", "--qr-file", str(label_txt), "--no-wifi"),
            *("--allow-unknown-manufacturer", "--zone", str(tmp_path / "hub"), "--user", "alice"),
        ],
    )
    assert result.exit_code == 2  # options that exclude each other: usage
    assert "--allow-unknown-manufacturer" in result.output and "--trust" in result.output


def test_provision_usage_errors() -> None:
    result = runner.invoke(app, ["provision", "--compare", "--wifi-security", "wep"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["provision", "--label-secret", "x"])
    assert result.exit_code == 2  # there is no way to pass a secret on the command line


def test_peer_list_and_unbind_without_bindings(tmp_path: Path) -> None:
    result = runner.invoke(app, ["peer", "list", "--host-dir", str(tmp_path / "h")])
    assert result.exit_code == 0 and "no device is bound" in result.output
    result = runner.invoke(app, ["peer", "unbind", "ABCD", "--host-dir", str(tmp_path / "h")])
    assert result.exit_code == 1 and "peer list" in result.output


async def test_a_typed_wifi_passphrase_is_checked_once_with_the_host_wording(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one rule (core.wifi.check_passphrase) judges what the user typed; a bad length
    keeps the host's wording, bad characters the rule's; neither shows the secret."""
    chooser = PromptingChooser(QUIET, WifiChoice("Home", "auto", None, False))
    chooser.interactive = False
    monkeypatch.setenv("BLEPROV_WIFI_PASSWORD", "short")
    with pytest.raises(HostError, match=r"^a WPA passphrase is 8 to 63 characters$"):
        await chooser.choose([HOME])
    monkeypatch.setenv("BLEPROV_WIFI_PASSWORD", "caf\u00e9 au lait")
    with pytest.raises(MalformedData, match="printable ASCII") as caught:
        await chooser.choose([HOME])
    assert "lait" not in str(caught.value)


async def test_a_network_named_with_its_security_is_sent_without_a_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17: --wifi-ssid with --wifi-security is all the device needs, so the host asks
    for no scan (provision() sends it in the commit's flight); without the security, the
    scan says what it is; --wifi-hidden makes the device probe for it."""
    monkeypatch.setenv("BLEPROV_WIFI_PASSWORD", "correct horse")
    named = PromptingChooser(QUIET, WifiChoice("Home", "wpa2", None, False))
    named.interactive = False
    credentials = named.preset()
    assert credentials is not None and credentials.ssid == b"Home"
    assert credentials.security is WifiSecurity.WPA2_PERSONAL and not credentials.hidden
    assert credentials.passphrase == "correct horse"
    hidden = PromptingChooser(QUIET, WifiChoice("Attic", "wpa3", None, False, hidden=True))
    hidden.interactive = False
    attic = hidden.preset()
    assert attic is not None and attic.hidden
    for choice in (WifiChoice("Home", "auto", None, False), WifiChoice(None, "auto", None, False)):
        assert PromptingChooser(QUIET, choice).preset() is None
