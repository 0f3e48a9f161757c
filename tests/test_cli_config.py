"""Defaults of --radio, --trust, --zone and --user from the environment and a config file
(issue 13): the option wins over its variable, the variable over the file, the file over
the built-in default; a broken file is one line naming it and the key (exit 2), read only
when one of its defaults is needed; a secret in it is refused, never echoed.

Which default a command used is read from the error it ends with: each radio, root or
hub directory below is one nothing answers or that is not there, named in the message.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner

from bleprov.cli import app, main
from bleprov.cli.config import ConfigError, load_config
from bleprov.core.advertising import OobMode
from bleprov.core.factory import provision_device
from tests.rig import CHEAP, MANUFACTURER, NOW

runner = CliRunner()


def dead(port: int) -> str:
    """A bumble radio at a loopback port nothing listens on (refused at once)."""
    return f"bumble:tcp-client:127.0.0.1:{port}"


@pytest.fixture
def label(tmp_path: Path) -> Path:
    _, made = provision_device(
        MANUFACTURER.issue_device(None, now=NOW), modes=OobMode.QR, cost=CHEAP
    )
    path = tmp_path / "label.txt"
    path.write_text(made.qr_text + "\n")
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def folded_in(expected: str, output: str) -> bool:
    """Whether ``output`` says ``expected``, however rich folded it: at a space (the
    space becomes the line break) or inside a long path (a break is added), so the
    width the tmp path leaves decides where. Whitespace is ignored on both sides."""
    return re.sub(r"\s+", "", expected) in re.sub(r"\s+", "", output)


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = runner.invoke(app, args, env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("option", "variable", "in_file", "used"),
    [
        (3, 2, 1, 3),  # the option wins
        (None, 2, 1, 2),  # then the variable
        (None, None, 1, 1),  # then the file
    ],
)
def test_radio_option_beats_variable_beats_file(
    tmp_path: Path, option: int | None, variable: int | None, in_file: int, used: int
) -> None:
    config = write_config(tmp_path, f'radio = "{dead(in_file)}"\n')
    env = {"BLEPROV_CONFIG": str(config)}
    if variable is not None:
        env["BLEPROV_RADIO"] = dead(variable)
    args = ["scan", "--timeout", "0.5"] + ([] if option is None else ["--radio", dead(option)])
    code, output = invoke(args, env)
    assert code == 1, output
    assert f"127.0.0.1:{used} " in output, output


def test_a_required_radio_is_satisfied_by_the_file(tmp_path: Path) -> None:
    """linktest run has no built-in radio: without one it is a usage error."""
    code, output = invoke(["linktest", "run", "--timeout", "0.5"], {})
    assert code == 2, output
    config = write_config(tmp_path, f'radio = "{dead(4)}"\n')
    code, output = invoke(["linktest", "run", "--timeout", "0.5"], {"BLEPROV_CONFIG": str(config)})
    assert code == 1, output
    assert "127.0.0.1:4 " in output, output


def test_trust_from_option_variable_or_file(tmp_path: Path, label: Path) -> None:
    """Paths in the file are relative to the file; the variable holds a path list."""
    config = write_config(tmp_path, 'trust = ["from-file.pem"]\n')
    base = ["provision", "--radio", dead(1), "--qr-file", str(label), "--peer", "--no-wifi"]
    env = {"BLEPROV_CONFIG": str(config), "BLEPROV_HOST_DIR": str(tmp_path / "host")}

    code, output = invoke(base, env)
    assert code == 1, output
    assert str(config.parent / "from-file.pem") in output.replace("\n", "")

    env["BLEPROV_TRUST"] = f"{tmp_path}/env-1.pem:{tmp_path}/env-2.pem"
    code, output = invoke(base, env)
    # rich folds a long path anywhere (xdist's tmp_path is longer: popen-gw1/): unfold it.
    unfolded = output.replace("\n", "")
    assert "env-1.pem" in unfolded and "from-file" not in unfolded, output

    code, output = invoke([*base, "--trust", str(tmp_path / "option.pem")], env)
    unfolded = output.replace("\n", "")
    assert "option.pem" in unfolded and "env-1" not in unfolded, output


def test_user_and_zone_from_the_file_complete_a_zone_command(tmp_path: Path) -> None:
    args = ["zone", "revoke", "DEV"]
    code, output = invoke(args, {})
    assert code == 2, output  # --dir and --user missing
    config = write_config(tmp_path, 'zone = "no-hub-here"\nuser = "alice"\n')
    env = {"BLEPROV_CONFIG": str(config), "BLEPROV_ZONE_PASSPHRASE": "not needed here"}
    code, output = invoke(args, env)
    assert code == 1, output
    assert "no-hub-here" in output.replace("\n", ""), output
    # BLEPROV_HUB_DIR, the zone commands' own variable, still comes first.
    env["BLEPROV_HUB_DIR"] = str(tmp_path / "hub-dir-hub")
    code, output = invoke(args, env)
    unfolded = output.replace("\n", "")
    assert "hub-dir-hub" in unfolded and "no-hub-here" not in unfolded, output


def test_a_default_zone_is_said_and_yields_to_peer_and_no_zone(tmp_path: Path, label: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(MANUFACTURER.root_certificate.public_bytes(Encoding.PEM))
    config = write_config(tmp_path, 'zone = "hub"\n')
    env = {"BLEPROV_CONFIG": str(config), "BLEPROV_HOST_DIR": str(tmp_path / "host")}
    base = ["provision", "--radio", dead(1), "--qr-file", str(label), "--trust", str(root)]

    code, output = invoke([*base, "--no-wifi"], env)
    assert code == 2, output  # a zone needs its admin
    assert folded_in(f"zone: {config.parent / 'hub'} (from zone in {config}", output), output
    assert "--zone needs --user" in output

    # --no-wifi needs a binding: a Wi-Fi network names the work for --no-zone.
    for chosen in (["--no-wifi", "--peer"], ["--wifi-ssid", "Home", "--no-zone"]):
        code, output = invoke([*base, *chosen], env)
        assert code == 1, output  # on to the radio: no zone
        assert "zone" not in output and "127.0.0.1:1 " in output, output

    code, output = invoke([*base, "--no-wifi", "--peer", "--zone", "hub"], env)
    assert code == 2 and "choose --zone or --peer" in output, output
    code, output = invoke([*base, "--no-wifi", "--no-zone", "--zone", "hub"], env)
    assert code == 2 and "--no-zone" in output, output


def test_help_shows_the_effective_default_and_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path, f'radio = "{dead(7)}"\n')
    code, output = invoke(["scan", "--help"], {"BLEPROV_CONFIG": str(config), "COLUMNS": "200"})
    assert code == 0, output
    assert f"[default: {dead(7)}]" in output
    assert "BLEPROV_RADIO" in output


def test_config_show_says_where_each_default_comes_from(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'radio = "bumble:usb:0"\nuser = "alice"\n')
    env = {"BLEPROV_CONFIG": str(config), "BLEPROV_USER": "bob"}
    code, output = invoke(["config", "show", "--json"], env)
    assert code == 0, output
    shown = json.loads(output)
    assert shown["file"] == str(config) and shown["found"]
    rows = {row["key"]: (row["value"], row["from"]) for row in shown["defaults"]}
    assert rows == {
        "radio": ("bumble:usb:0", "config file"),
        "trust": (None, "built in"),
        "zone": (None, "built in"),
        "user": ("bob", "BLEPROV_USER"),
    }


def test_the_file_is_found_under_xdg_config_home(tmp_path: Path) -> None:
    (tmp_path / "xdg" / "bleprov").mkdir(parents=True)
    (tmp_path / "xdg" / "bleprov" / "config.toml").write_text('user = "carol"\n')
    code, output = invoke(
        ["config", "show", "--json"],
        {"BLEPROV_CONFIG": "", "XDG_CONFIG_HOME": str(tmp_path / "xdg")},
    )
    assert code == 0, output
    assert {"key": "user", "value": "carol", "from": "config file", "variable": "BLEPROV_USER"} in (
        json.loads(output)["defaults"]
    )


# ------------------------------------------------------------------- broken files


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("radio = [\n", "not valid TOML"),
        ('raido = "system"\n', "unknown key 'raido'"),
        ("radio = 3\n", "radio: give a non-empty string"),
        ("trust = [1, 2]\n", "trust: give a path or a list of paths"),
        ('user = ""\n', "user: give a non-empty string"),
        ("[provision]\nradio = 'system'\n", "unknown key 'provision'"),
        ('wifi_password = "hunter2-in-a-file"\n', "never reads a secret"),
        ('zone_passphrase = "hunter2-in-a-file"\n', "never reads a secret"),
        (b"radio = '\xff'\n", "not UTF-8"),
        # N3 (the fuzzing campaign): "~name" of no user raised RuntimeError, a traceback.
        ('trust = ["~no-such-user-hunter2/root.pem"]\n', "trust: a '~' path of no home"),
        ('zone = "~no-such-user-hunter2/zone"\n', "zone: a '~' path of no home"),
    ],
)
def test_a_broken_file_is_named_with_its_key(tmp_path: Path, text: str | bytes, says: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and says in message, message
    assert "hunter2" not in message


def test_a_config_variable_naming_no_home_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """N3: BLEPROV_CONFIG=~name/... of no user raised RuntimeError (a traceback)."""
    from bleprov.cli.config import config_path

    monkeypatch.setenv("BLEPROV_CONFIG", "~no-such-user-hunter2/config.toml")
    with pytest.raises(ConfigError) as caught:
        config_path()
    assert "BLEPROV_CONFIG" in str(caught.value) and "hunter2" not in str(caught.value)


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["bleprov", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_the_command_line_reports_a_broken_file_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, 'radio = "carrier-pigeon"\npassword = "hunter2-x"\n')
    monkeypatch.setenv("BLEPROV_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "200")
    code, _, err = run_main(monkeypatch, capsys, "scan")
    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert f"{config}: password: bleprov never reads a secret" in err
    assert "hunter2" not in err and "Traceback" not in err

    config.write_text('radio = "carrier-pigeon"\n')  # valid TOML, a radio nobody knows
    code, _, err = run_main(monkeypatch, capsys, "scan")
    assert code == 2
    assert f"{config}: radio: unknown radio 'carrier-pigeon'" in err, err
    assert err.strip().count("\n") == 0, err


def test_a_broken_file_does_not_stop_commands_that_need_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "radio = [\n")
    monkeypatch.setenv("BLEPROV_CONFIG", str(config))
    code, out, _ = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith("bleprov "), out
    # An option given on the command line needs no default from the file.
    code, _, err = run_main(monkeypatch, capsys, "scan", "--radio", dead(1), "--timeout", "0.5")
    assert code == 1 and "127.0.0.1:1 " in err, err


def test_a_config_file_named_but_missing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BLEPROV_CONFIG", str(tmp_path / "typo.toml"))
    code, _, err = run_main(monkeypatch, capsys, "config", "show")
    assert code == 2
    assert folded_in("typo.toml: no such file (BLEPROV_CONFIG names it)", err), err
    # At the default place, no file is no config.
    monkeypatch.delenv("BLEPROV_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    code, out, _ = run_main(monkeypatch, capsys, "config", "show")
    assert code == 0 and folded_in("not there", out), out
