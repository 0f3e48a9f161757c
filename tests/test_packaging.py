"""What a wheel ships, and what an installed user gets out of it.

The wheel is built as a person would (``pip wheel --no-deps``, here without build
isolation: hatchling is in the dev extra, so no download), then read: the systemd units,
their sysusers.d and tmpfiles.d files, the Mosquitto example, the simulated Wi-Fi example
and the docs are inside the package, and the metadata names the project's URLs, its one
version and the photo extra. Unpacked (as pip installs it) and run from there, ``bleprov
contrib`` finds them. ``bleprov contrib install-systemd`` writes units that
``systemd-analyze verify`` accepts and users that ``systemd-sysusers`` creates.
"""

from __future__ import annotations

import email
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bleprov
from bleprov.cli import app
from bleprov.cli.contrib import CONTRIB_FILES, UNIT_COMMAND, adapt_unit, this_bleprov
from bleprov.extras import EXTRA_OF_MODULE
from tests.without_extras import NON_BASE

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _run(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling (the dev extra's build backend) is not installed")
    out = tmp_path_factory.mktemp("wheel")
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", str(out), str(ROOT),
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    [path] = out.glob("bleprov-*.whl")
    return path


@pytest.fixture(scope="module")
def unpacked(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's files as pip lays them into site-packages."""
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def test_the_wheel_ships_contrib_docs_and_examples(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"bleprov/_contrib/{name}" for name in CONTRIB_FILES}
    wanted |= {f"bleprov/_docs/{doc.name}" for doc in (ROOT / "docs").glob("*.md")}
    wanted |= {
        "bleprov/network/simulated_example.toml",
        "bleprov/py.typed",
        "bleprov/_gatt_profiles/bleprov-provisioning-v1.toml",
    }
    assert "bleprov/_docs/raspberry-pi.md" in wanted
    assert wanted <= names, sorted(wanted - names)
    assert not [name for name in names if "bootstrap-pip" in name]  # the Makefile's only
    assert not [name for name in names if name.startswith(("tests/", "hw_tests/"))]


def test_the_wheel_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    assert metadata["Version"] == bleprov.__version__  # one version: bleprov/__init__.py
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert set(urls) == {"Homepage", "Documentation", "Issues", "Source"}
    assert all(url.startswith("https://github.com/bleprov/bleprov") for url in urls.values())
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    requires = metadata.get_all("Requires-Dist")
    # A 32-bit Pi installs: zxing-cpp and Pillow (no armv7 wheels) only in the photo extra.
    base = [r for r in requires if "extra ==" not in r]
    assert not [r for r in base if r.lower().startswith(("zxing", "pillow"))], base
    photo = [r.split(";")[0] for r in requires if "extra == 'photo'" in r]
    assert sorted(r.split(">")[0] for r in photo) == ["pillow", "zxing-cpp"]
    assert any(r.startswith("gpiozero") and "extra == 'gpio'" in r for r in requires)


#: What ``pip install bleprov`` brings: the core and the host side.
BASE = {"bleak", "bumble", "construct", "cryptography", "pycryptodome", "rich",
        "typer"}  # fmt: skip


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=;\s]", requirement, maxsplit=1)[0].lower()


def test_the_base_install_is_the_host_side(wheel: Path, unpacked: Path, tmp_path: Path) -> None:
    """The wheel's Requires-Dist: the host's packages, the rest in the extras; and that
    wheel, unpacked with every extra's packages refused at import, runs the host side."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    requires = metadata.get_all("Requires-Dist")
    extras: dict[str | None, set[str]] = {}
    for requirement in requires:
        extra = re.search(r"extra == '([a-z0-9-]+)'", requirement)
        extras.setdefault(extra.group(1) if extra else None, set()).add(
            _requirement_name(requirement)
        )
    assert extras[None] == BASE
    # hatchling writes an extra that names others (bleprov[broker]) as their packages.
    assert extras["device"] == {"bless", "dbus-fast", "aiomqtt"}
    assert extras["hub"] == {"sqlalchemy", "alembic"}
    assert extras["labels"] == {"segno"}
    assert extras["broker"] == {"aiomqtt"}
    runtime = set().union(*(extras[extra] for extra in ("device", "hub", "labels", "broker")))
    assert extras["all"] == runtime
    assert runtime <= extras["dev"]  # make test runs every side
    assert {"device", "hub", "labels", "broker"} <= set(EXTRA_OF_MODULE.values())

    env = {**os.environ, "PYTHONPATH": str(unpacked), "COLUMNS": "200"}
    run = functools.partial(_run, env=env, cwd=tmp_path)  # not in the checkout: its bleprov/
    blocked = [sys.executable, str(ROOT / "tests" / "without_extras.py"), NON_BASE]
    helped = run(*blocked, "-m", "bleprov", "provision", "--help")
    assert helped.returncode == 0, helped.stdout + helped.stderr
    code = (
        "import bleprov; bleprov.open_session; bleprov.provision; bleprov.CentralRadio; "
        "bleprov.DeviceAuthentication; print(bleprov.__file__)"
    )
    imported = run(*blocked, "-c", code)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert imported.stdout.strip() == str(unpacked / "bleprov" / "__init__.py")


def test_an_installed_wheel_gets_its_files_out(unpacked: Path, tmp_path: Path) -> None:
    """``bleprov contrib`` run from the unpacked wheel, not from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(unpacked), "COLUMNS": "200"}
    run = functools.partial(_run, env=env, cwd=tmp_path)  # not in the checkout: its bleprov/
    where = run(sys.executable, "-c", "import bleprov; print(bleprov.__file__)")
    assert where.stdout.strip() == str(unpacked / "bleprov" / "__init__.py")

    listed = run(sys.executable, "-m", "bleprov", "contrib", "list")
    assert listed.returncode == 0, listed.stderr
    paths = dict(line.split(None, 1) for line in listed.stdout.splitlines())
    assert paths["bleprov-device.service"] == str(
        unpacked / "bleprov/_contrib/bleprov-device.service"
    )
    assert paths["docs/raspberry-pi.md"] == str(unpacked / "bleprov/_docs/raspberry-pi.md")
    assert paths["simulated_example.toml"] == str(
        unpacked / "bleprov/network/simulated_example.toml"
    )
    assert all(Path(path).is_file() for path in paths.values())

    shown = run(sys.executable, "-m", "bleprov", "contrib", "show", "bleprov-hub.sysusers")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (ROOT / "contrib/bleprov-hub.sysusers").read_text()

    installed = run(
        sys.executable, "-m", "bleprov", "contrib", "install-systemd", "device",
        "--root", str(tmp_path / "sysroot"), "--command", "/opt/site/bin/bleprov",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    unit = (tmp_path / "sysroot/etc/systemd/system/bleprov-device.service").read_text()
    guide = (unpacked / "bleprov/_docs/raspberry-pi.md").as_uri()
    assert f"\nDocumentation={guide} https://" in unit
    assert "\nExecStart=/opt/site/bin/bleprov device serve " in unit


def test_install_systemd_writes_units_users_and_directories(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["contrib", "install-systemd", "hub", "device", "--root", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    command = this_bleprov()
    for stem in ("bleprov-device", "bleprov-hub"):
        unit = (tmp_path / f"etc/systemd/system/{stem}.service").read_text()
        assert unit == adapt_unit(
            (ROOT / f"contrib/{stem}.service").read_text(), command, ROOT / "docs/raspberry-pi.md"
        )
        assert UNIT_COMMAND not in unit and f"ExecStart={command} " in unit
        for kind, directory in (("sysusers", "sysusers.d"), ("tmpfiles", "tmpfiles.d")):
            written = (tmp_path / f"etc/{directory}/{stem}.conf").read_bytes()
            assert written == (ROOT / f"contrib/{stem}.{kind}").read_bytes()
    assert "systemd-sysusers --root" in result.output

    again = runner.invoke(app, ["contrib", "install-systemd", "device", "--root", str(tmp_path)])
    assert again.exit_code == 0 and "unchanged" in again.output and "wrote" not in again.output

    edited = tmp_path / "etc/systemd/system/bleprov-device.service"
    edited.write_text(edited.read_text() + "# a local change\n")
    refused = runner.invoke(app, ["contrib", "install-systemd", "device", "--root", str(tmp_path)])
    assert refused.exit_code == 1 and "--force" in refused.output
    assert edited.read_text().endswith("# a local change\n")  # left alone
    forced = runner.invoke(
        app, ["contrib", "install-systemd", "device", "--root", str(tmp_path), "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert not edited.read_text().endswith("# a local change\n")


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    result = runner.invoke(
        app, ["contrib", "install-systemd", "device", "hub", "--root", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_units_pass_systemd_analyze_verify(sysroot: Path) -> None:
    units = sorted(str(p) for p in (sysroot / "etc/systemd/system").glob("*.service"))
    assert len(units) == 2
    verified = _run("systemd-analyze", "verify", "--man=no", *units)
    # Unknown or misspelt directives are only warned about: any output is a failure.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
    for unit in units:
        text = Path(unit).read_text()
        for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure"):
            assert f"\n{line}\n" in text, (unit, line)
        assert "\nWatchdogSec=" in text


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="no systemd-sysusers or systemd-tmpfiles here",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="giving directories to the users needs root")
def test_one_command_creates_the_users_and_their_directories(sysroot: Path) -> None:
    """`systemd-sysusers` (the documented one command) on what install-systemd wrote."""
    conf = sorted(str(p) for p in (sysroot / "etc/sysusers.d").glob("*.conf"))
    created = _run("systemd-sysusers", f"--root={sysroot}", *conf)
    assert created.returncode == 0, created.stderr
    users = {line.split(":")[0]: line for line in (sysroot / "etc/passwd").read_text().splitlines()}
    assert {"bleprov", "bleprov-hub"} <= set(users)
    assert users["bleprov"].endswith(":/var/lib/bleprov:/usr/sbin/nologin")
    groups = {
        line.split(":")[0]: line.split(":")[3].split(",")
        for line in (sysroot / "etc/group").read_text().splitlines()
    }
    for group in ("bluetooth", "netdev", "gpio"):  # the unit's SupplementaryGroups=
        assert "bleprov" in groups[group], (group, groups)
    assert "bleprov-hub" not in [m for members in groups.values() for m in members]

    tmpfiles = sorted(str(p) for p in (sysroot / "etc/tmpfiles.d").glob("*.conf"))
    made = _run("systemd-tmpfiles", f"--root={sysroot}", "--create", *tmpfiles)
    assert made.returncode == 0, made.stderr
    for directory in ("etc/bleprov", "var/lib/bleprov/factory", "var/lib/bleprov-hub"):
        assert (sysroot / directory).is_dir()
        assert (sysroot / directory).stat().st_mode & 0o777 == 0o700
