"""The public API: ``import bleprov`` is cheap, every name in ``bleprov.__all__`` resolves
to a documented object, a name whose extra is missing says which extra, and the runnable
example in docs/api.md runs (so it cannot go stale)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import bleprov
from tests.without_extras import NON_BASE

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_EXTRAS = str(ROOT / "tests" / "without_extras.py")


def _python(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )


def test_every_public_name_resolves_to_a_documented_object() -> None:
    names = [name for name in bleprov.__all__ if name != "__version__"]
    assert sorted(names) == sorted(bleprov._MODULE_OF)
    assert len(names) == len(set(names))
    for name in names:
        value = getattr(bleprov, name)
        assert (value.__doc__ or "").strip(), f"bleprov.{name} has no docstring"
        assert value.__module__ == bleprov._MODULE_OF[name], name
    assert set(bleprov.__all__) <= set(dir(bleprov))
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = bleprov.Nothing  # type: ignore[attr-defined]


def test_import_bleprov_loads_no_dependency() -> None:
    heavy = ["bleak", "bumble", "sqlalchemy", "cryptography", "typer", "rich", "aiomqtt"]
    code = f"import sys, bleprov; print([m for m in {heavy!r} if m in sys.modules])"
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_host_names_need_no_extra_and_the_others_name_theirs() -> None:
    """As after ``pip install bleprov``: the host's names import; the hub's, the device's
    and the broker's raise MissingExtra (an ImportError) naming the pip install."""
    code = """
import bleprov
for name in ("open_session", "provision", "DeviceAuthentication", "CentralRadio",
             "RadioSpec", "HostTrust", "Manufacturer", "VirtualLink"):
    getattr(bleprov, name)
for name in ("Hub", "DeviceRuntime"):
    try:
        getattr(bleprov, name)
    except ImportError as exc:
        print(type(exc).__name__, isinstance(exc, bleprov.BleprovError), exc)
"""
    done = _python(WITHOUT_EXTRAS, NON_BASE, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "MissingExtra True the hub extra is not installed (sqlalchemy is missing): "
        "pip install 'bleprov[hub]'",
        "MissingExtra True the broker extra is not installed (aiomqtt is missing): "
        "pip install 'bleprov[broker]'",
    ]


@pytest.mark.multiprocess
def test_the_example_in_docs_api_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    example = tmp_path / "example.py"
    example.write_text(code)
    done = _python(str(example))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "the device sees: Home"
    assert re.fullmatch(
        r"device [0-9A-F]{16} joined Home, IP 192\.168\.1\.50", done.stdout.splitlines()[-1]
    ), done.stdout
