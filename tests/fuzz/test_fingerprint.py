"""``python -m fuzz --stale``: a run counts until what it executed changes, and no longer.

The campaign's 10^6-input runs span sessions while main moves; these tests pin what the
fingerprint sees (the functions that ran, the statements around them, the data files and
libraries they read) and what it deliberately does not (docstrings, layout, code that
never ran).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest

from fuzz.__main__ import main as fuzz_main
from fuzz.__main__ import stale_report
from fuzz.fingerprint import (
    Fingerprint,
    SourceTree,
    _Trace,
    _tracing,
    check,
    code_keys,
    python_version,
)

MODULE = '''\
"""A decoder."""

LIMIT = 8


class Frame:
    """A frame."""

    header = 2

    def decode(self, data):
        """Decode it."""
        check = lambda n: n <= LIMIT  # noqa: E731
        return [b for b in data if check(b)]


def never_called(data):
    return data
'''


def _traced_tree(root: Path) -> Fingerprint:
    """Write the module under ``root``, run ``Frame().decode`` on it under the trace, and
    fingerprint what ran, as fuzz.fingerprint.record does for a harness."""
    path = root / "bleprov" / "decoder.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("bleprov_fingerprint_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trace = _Trace()
    with _tracing(trace):
        module.Frame().decode(b"\x01\x09")
    calls = {(code.co_filename, code.co_qualname) for code in trace.codes}
    keys = code_keys(root, calls)
    tree = SourceTree(root)
    code = {key: digest for key in keys if (digest := tree.digest(key)) is not None}
    return Fingerprint(python=python_version(), code=code, libraries={})


def _edit(root: Path, old: str, new: str) -> None:
    path = root / "bleprov" / "decoder.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_fingerprint_holds_what_ran_and_what_it_reads_and_nothing_else(
    tmp_path: Path,
) -> None:
    fingerprint = _traced_tree(tmp_path)
    assert set(fingerprint.code) == {
        "bleprov/decoder.py:",  # LIMIT
        "bleprov/decoder.py:Frame",  # header
        "bleprov/decoder.py:Frame.decode",  # with its lambda and comprehension
    }
    assert check(fingerprint, root=tmp_path).current


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"""Decode it."""', '"""Decode it, differently worded."""'),
        ('        """Decode it."""\n', ""),
        (
            "return [b for b in data if check(b)]",
            "return [\n            b for b in data if check(b)\n        ]",
        ),
        ("    return data", "    return data[:1]"),  # never ran
        ("# noqa: E731", ""),
    ],
    ids=["docstring", "docstring-removed", "layout", "code-that-never-ran", "comment"],
)
def test_what_does_not_change_behaviour_keeps_a_run_current(
    tmp_path: Path, old: str, new: str
) -> None:
    fingerprint = _traced_tree(tmp_path)
    _edit(tmp_path, old, new)
    assert check(fingerprint, root=tmp_path).current


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ("if check(b)]", "if not check(b)]", "bleprov/decoder.py:Frame.decode"),
        ("n <= LIMIT", "n < LIMIT", "bleprov/decoder.py:Frame.decode"),  # inside the lambda
        ("LIMIT = 8", "LIMIT = 9", "bleprov/decoder.py:"),
        ("header = 2", "header = 3", "bleprov/decoder.py:Frame"),
        ("class Frame:", "class Frame(int):", "bleprov/decoder.py:Frame"),
    ],
    ids=["function", "lambda", "module-constant", "class-attribute", "class-bases"],
)
def test_a_change_to_what_ran_makes_the_run_stale_and_names_it(
    tmp_path: Path, old: str, new: str, changed: str
) -> None:
    fingerprint = _traced_tree(tmp_path)
    _edit(tmp_path, old, new)
    staleness = check(fingerprint, root=tmp_path)
    assert staleness.changed == [changed]
    assert staleness.describe().startswith(f"stale: changed {changed}")


def test_a_function_renamed_or_a_file_removed_is_gone(tmp_path: Path) -> None:
    fingerprint = _traced_tree(tmp_path)
    _edit(tmp_path, "def decode(", "def decode_frame(")
    assert check(fingerprint, root=tmp_path).gone == ["bleprov/decoder.py:Frame.decode"]
    (tmp_path / "bleprov" / "decoder.py").unlink()
    assert len(check(fingerprint, root=tmp_path).gone) == 3


def test_a_library_or_python_that_moved_makes_the_run_stale() -> None:
    pytest_version = importlib.metadata.version("pytest")
    same = Fingerprint(python=python_version(), code={}, libraries={"pytest": pytest_version})
    assert check(same).current
    moved = Fingerprint(python=python_version(), code={}, libraries={"pytest": "0.0.1"})
    assert check(moved).libraries == [f"pytest 0.0.1 -> {pytest_version}"]
    gone = Fingerprint(python=python_version(), code={}, libraries={"no-such-dist-x": "1"})
    assert check(gone).libraries == ["no-such-dist-x 1 -> absent"]
    other = Fingerprint(python="CPython 3.0.0", code={}, libraries={})
    assert not check(other).current and check(other).python


def test_a_campaign_run_records_what_its_harness_executed_and_stale_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: ``python -m fuzz`` (pure-Python engine, a few inputs) records the
    replay's fingerprint of a real harness, and ``--stale`` calls it current, then stale
    once a recorded hash no longer matches the tree, then unknown without one."""
    out = tmp_path / "results"
    assert fuzz_main(["--engine", "python", "--runs", "20", "--harness", "device_session",
                      "--out", str(out)]) == 0  # fmt: skip
    [row] = json.loads((out / "summary.json").read_text())
    recorded = Fingerprint.from_json(row["fingerprint"])
    # The decoder under test and the fixtures it loads are in it; so is the library.
    assert "bleprov/core/session/device.py:DeviceSession.receive" in recorded.code
    assert "file:fuzz/fixtures/device.identity" in recorded.code
    assert "cryptography" in recorded.libraries
    assert recorded.python == python_version()
    # Only this repository's packages are hashed; libraries are versions, also when the
    # venv lies inside the checkout (make's .venv) and their files are under its root.
    paths = {key.removeprefix("file:").split(":")[0] for key in recorded.code}
    assert paths and all(p.startswith(("bleprov/", "fuzz/")) for p in paths), sorted(paths)
    report, every_current = stale_report(out)
    assert every_current, report
    assert "| device_session | " in report and report.rstrip().endswith("| current |")

    row["fingerprint"]["code"]["bleprov/core/session/device.py:DeviceSession.receive"] = "0" * 16
    (out / "summary.json").write_text(json.dumps([row]))
    report, every_current = stale_report(out)
    assert not every_current
    assert "stale: changed bleprov/core/session/device.py:DeviceSession.receive" in report
    capsys.readouterr()
    assert fuzz_main(["--stale", "--out", str(out)]) == 1
    assert "stale: changed" in capsys.readouterr().out

    row["fingerprint"] = None
    (out / "summary.json").write_text(json.dumps([row]))
    assert "unknown: the run recorded no fingerprint" in stale_report(out)[0]
    assert fuzz_main(["--stale", "--out", str(tmp_path / "nothing-here")]) == 1


def test_the_docs_describe_the_check() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "fuzzing.md"
    assert "python -m fuzz --stale" in docs.read_text(encoding="utf-8")
