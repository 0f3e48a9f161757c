"""``bleprov help [TOPIC | COMMAND]`` and ``bleprov completion SHELL`` (issue 13).

The topics are summaries kept beside the code they describe: the tests hold them to it
(README's exit codes, every environment variable the code reads, every way provision
takes a label, the config keys), so a topic cannot silently fall behind. Completion is
tested as bash runs it: the printed script sourced, its function called with the words
typed so far, the candidates read from COMPREPLY.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bleprov.cli import app
from bleprov.cli.config import KEYS
from bleprov.cli.topics import TOPICS
from tests.processes import child_env

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def help_text(*words: str) -> str:
    result = runner.invoke(app, ["help", *words])
    assert result.exit_code == 0, result.output
    return result.output


def test_help_lists_every_topic_and_prints_each() -> None:
    listing = help_text()
    for name, (summary, text) in TOPICS.items():
        assert f"  {name}" in listing and summary in listing
        assert help_text(name) == text


def test_an_unknown_topic_is_bad_usage_in_one_line() -> None:
    result = runner.invoke(app, ["help", "exitcodes"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no help topic or command 'exitcodes'" in lines[0]
    assert "exit-codes" in lines[0]  # the topics are named


def test_help_of_a_command_is_its_usage() -> None:
    assert "Usage: bleprov peer bind [OPTIONS]" in help_text("peer", "bind")
    assert "--labels" in help_text("provision")


def test_topics_fit_a_terminal() -> None:
    for name, (_, text) in TOPICS.items():
        for line in text.splitlines():
            assert len(line) < 80, f"{name}: {line!r}"


def test_exit_codes_are_readmes() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1]
    documented = re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)
    listed = re.findall(r"^  (\d+) ", TOPICS["exit-codes"][1], flags=re.MULTILINE)
    assert documented and listed == documented


def test_every_environment_variable_the_code_reads_is_listed() -> None:
    named = set()
    for path in (ROOT / "bleprov").rglob("*.py"):
        named |= set(re.findall(r"\bBLEPROV_[A-Z_]*[A-Z]\b", path.read_text()))
    text = TOPICS["environment"][1]
    missing = sorted(name for name in named if name not in text)
    assert not missing, f"not in bleprov help environment: {missing}"


def test_every_way_to_give_a_label_is_in_the_modes_topic() -> None:
    options = set(re.findall(r'"(--[a-z-]+)"', (ROOT / "bleprov/cli/host.py").read_text()))
    label_options = {
        "--qr-file", "--qr-image", "--ndef", "--printed-key", "--manual-code",
        "--scratch-card", "--compare", "--passkey", "--button", "--window-code",
    }  # fmt: skip
    assert label_options - {"--qr-file", "--qr-image", "--ndef"} <= options
    text = TOPICS["modes"][1]
    assert not [option for option in label_options if option not in text]


def test_the_config_topic_names_every_key_and_variable() -> None:
    text = TOPICS["config"][1]
    for key, variable in KEYS.items():
        assert re.search(rf"--{key}\s+{variable}\s+{key}\s", text), key


# ------------------------------------------------------------------ completion


def test_completion_prints_a_script_for_each_shell() -> None:
    for shell, marker in (
        ("bash", "complete -o default -F _bleprov_completion bleprov"),
        ("zsh", "#compdef bleprov"),
        ("fish", "complete --command bleprov"),
    ):
        result = runner.invoke(app, ["completion", shell])
        assert result.exit_code == 0, result.output
        assert marker in result.output and "_BLEPROV_COMPLETE" in result.output
    assert runner.invoke(app, ["completion", "zsh"]).output.startswith("#compdef bleprov\n")
    assert runner.invoke(app, ["completion", "tcsh"]).exit_code == 2


@pytest.fixture(scope="module")
def bleprov_on_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose PATH has a ``bleprov`` that runs this tree's CLI."""
    bin_dir = tmp_path_factory.mktemp("bin")
    launcher = bin_dir / "bleprov"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bleprov "$@"\n')
    launcher.chmod(0o755)
    env = child_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def complete_in_bash(env: dict[str, str], typed: str) -> list[str]:
    """What bash offers after ``typed`` (the script sourced, its function called as
    ``complete -F`` calls it)."""
    words = typed.split(" ")
    script = (
        'eval "$(bleprov completion bash)"\n'
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_bleprov_completion bleprov\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    done = subprocess.run(
        [bash, "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_options_and_topics(bleprov_on_path: dict[str, str]) -> None:
    assert complete_in_bash(bleprov_on_path, "bleprov prov") == ["provision"]
    assert complete_in_bash(bleprov_on_path, "bleprov provision --qr") == [
        "--qr-file",
        "--qr-image",
    ]
    assert complete_in_bash(bleprov_on_path, "bleprov zone user ") == ["add", "list"]
    assert complete_in_bash(bleprov_on_path, "bleprov help ex") == ["exit-codes"]
