"""``bleprov label`` as a person uses it: make, show, decode; secrets only where meant."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bleprov.cli import app
from bleprov.cli.label import LABEL_FILES
from bleprov.core.factory import Label
from bleprov.core.onboarding import parse_qr
from bleprov.labels import decode_qr_image, qr_modules, qr_png
from bleprov.store.factory_files import read_label
from tests.labels.conftest import make_label, terminal_modules

runner = CliRunner()
ENV = {
    "BLEPROV_FACTORY_PASSPHRASE": "factory passphrase 1",
    "BLEPROV_DEVICE_PASSPHRASE": "device passphrase 2",
    "NO_COLOR": None,
}


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("factory")
    result = runner.invoke(
        app, ["factory", "init", "--dir", str(directory), "--name", "Acme"], env=ENV
    )
    assert result.exit_code == 0, result.output
    return directory


def make(factory: Path, out: Path, *extra: str) -> tuple[str, Path]:
    result = runner.invoke(
        app, ["label", "make", "--dir", str(factory), "--out", str(out), *extra], env=ENV
    )
    assert result.exit_code == 0, result.output
    [device_dir] = list(out.iterdir())
    return result.output, device_dir


def secrets_of(label: Label) -> list[str]:
    """Every spelling of the label's secret a leak could take."""
    found = [label.qr_text, label.qr_text.removeprefix("BP:"), label.printed_key]
    found += [label.printed_key.replace("-", ""), label.ndef.hex()]
    if label.manual_code is not None:
        found += [label.manual_code, label.manual_code.replace("-", "")]
    if label.payload.passcode is not None:
        found.append(f"{label.payload.passcode:08d}")
    if label.scratch_card is not None:
        found += [label.scratch_card.password, label.scratch_card.password[:4]]
    return found


def test_make_writes_every_label_file(factory: Path, tmp_path: Path) -> None:
    output, device_dir = make(factory, tmp_path / "devices", "--scratch-card")
    names = {path.name for path in device_dir.iterdir()}
    assert names == {"device.bin", *LABEL_FILES}
    for path in device_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    label = read_label(device_dir)
    assert label.scratch_card is not None
    assert decode_qr_image(device_dir / "label.png") == label.qr_text
    assert (device_dir / "label.png").read_bytes() == qr_png(label)
    sheet = (device_dir / "label-sheet.svg").read_text()
    assert device_dir.name in sheet and label.printed_key[:9] in sheet
    # The output says where the files are and that they are secret, and shows no secret.
    flat = " ".join(output.split())
    assert device_dir.name in flat and "secret" in flat
    for secret in [*secrets_of(label), *ENV.values()]:
        assert secret is None or secret not in output


def test_make_with_terminal_shows_the_label_and_says_it_is_secret(
    factory: Path, tmp_path: Path
) -> None:
    output, device_dir = make(factory, tmp_path / "devices", "--modes", "qr", "--terminal")
    label = read_label(device_dir)
    assert label.manual_code is None
    assert "SECRET" in output
    assert label.printed_key in output
    assert "\u2588" in output and "\x1b[" not in output  # not a terminal: no colour codes


def test_make_refuses_an_unknown_mode(factory: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["label", "make", "--dir", str(factory), "--out", str(tmp_path), "--modes", "qr,magic"],
        env=ENV,
    )
    assert result.exit_code == 2
    assert "unknown mode" in result.output


def test_make_without_a_factory_says_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["label", "make", "--dir", str(tmp_path / "none"), "--out", str(tmp_path)], env=ENV
    )
    assert result.exit_code == 1
    assert "factory init" in " ".join(result.output.split())


def test_show_prints_the_code_to_scan_and_type(factory: Path, tmp_path: Path) -> None:
    _, device_dir = make(factory, tmp_path / "devices", "--scratch-card")
    label = read_label(device_dir)
    result = runner.invoke(app, ["label", "show", str(device_dir)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "SECRET" in result.output
    assert device_dir.name in result.output
    assert label.printed_key in result.output
    assert label.manual_code is not None and label.manual_code in result.output
    assert label.scratch_card is not None and label.scratch_card.password[:4] in result.output
    glyphs = set("\u2588\u2580\u2584 ")
    rows = [line for line in result.output.splitlines() if line and set(line) <= glyphs]
    assert len(rows) == 23  # 45 module rows (version 5 and quiet zone), two per line
    modules = terminal_modules("\n".join(rows) + "\n", ansi=False)
    assert modules[:45] == qr_modules(label)


def test_show_a_directory_without_a_label(tmp_path: Path) -> None:
    result = runner.invoke(app, ["label", "show", str(tmp_path)], env=ENV)
    assert result.exit_code == 1
    # rich folds a path longer than the line anywhere (xdist's tmp_path is longer: popen-gw1/)
    assert "label.ndefismissing" in "".join(result.output.split())


def test_show_refuses_label_files_that_disagree(factory: Path, tmp_path: Path) -> None:
    _, device_dir = make(factory, tmp_path / "devices")
    other = make_label(card=False)
    (device_dir / "label.txt").write_text(other.text())
    result = runner.invoke(app, ["label", "show", str(device_dir)], env=ENV)
    assert result.exit_code == 1
    assert "disagree" in result.output
    assert other.printed_key not in result.output


@pytest.mark.parametrize("as_json", [False, True])
def test_decode_prints_only_public_fields(tmp_path: Path, as_json: bool) -> None:
    label = make_label(discriminator=0x1F3)
    path = tmp_path / "photo.png"
    path.write_bytes(qr_png(label))
    result = runner.invoke(app, ["label", "decode", str(path), *(["--json"] if as_json else [])])
    assert result.exit_code == 0, result.output
    if as_json:
        assert json.loads(result.output) == {
            "discriminator": 0x1F3,
            "modes": ["qr", "code"],
            "passcode_on_label": True,
            "version": 1,
        }
    else:
        assert "0x1F3" in result.output and "qr, code" in result.output
    for secret in secrets_of(label):
        assert secret not in result.output
    assert label.payload.device_public_key.hex() not in result.output
    assert parse_qr(label.qr_text).discriminator == 0x1F3


def test_decode_errors_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("shopping list")
    result = runner.invoke(app, ["label", "decode", str(path)])
    assert result.exit_code == 1
    assert "not an image" in result.output
    result = runner.invoke(app, ["label", "decode", str(tmp_path / "missing.png")])
    assert result.exit_code == 1
    assert "cannot read" in result.output


def test_show_refuses_a_corrupt_nfc_file(factory: Path, tmp_path: Path) -> None:
    _, device_dir = make(factory, tmp_path / "devices")
    ndef = bytearray((device_dir / "label.ndef").read_bytes())
    ndef[0] ^= 0x07  # another TNF
    (device_dir / "label.ndef").write_bytes(bytes(ndef))
    result = runner.invoke(app, ["label", "show", str(device_dir)], env=ENV)
    assert result.exit_code == 1
    assert "corrupt" in result.output
