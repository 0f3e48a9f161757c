"""The ``cryptography.hazmat`` quarantine (issue 16): only a handful of bleprov's modules
import it; everything else calls :mod:`bleprov.core.crypto.primitives` or
:mod:`bleprov.core.crypto.pki`.

ruff's banned-api (TID251) enforces it in ``make test``; this test reads the code itself
(imports at any depth, also inside functions) so the list cannot drift from pyproject's
per-file ignores, and would catch an ignore added to the wrong file.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "bleprov"

#: The modules allowed to import ``cryptography.hazmat``: the quarantine in core/crypto/.
ALLOWED = {
    "bleprov/core/crypto/loading.py",
    "bleprov/core/crypto/pki.py",
    "bleprov/core/crypto/primitives.py",
}
MAX_HAZMAT_MODULES = 5


def _is_hazmat(module: str) -> bool:
    return module == "cryptography.hazmat" or module.startswith("cryptography.hazmat.")


def imports_hazmat(source: str) -> bool:
    """Whether a module's code imports ``cryptography.hazmat`` anywhere in its tree."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(_is_hazmat(a.name) for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if _is_hazmat(node.module):
                return True
            if node.module == "cryptography" and any(a.name == "hazmat" for a in node.names):
                return True
    return False


def hazmat_modules() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if imports_hazmat(path.read_text(encoding="utf-8"))
    }


def test_the_detector_sees_every_import_form() -> None:
    forms = [
        "import cryptography.hazmat.primitives.hashes",
        "from cryptography.hazmat.primitives import hashes",
        "from cryptography import hazmat",
        "def f():\n    from cryptography.hazmat.primitives.kdf.hkdf import HKDF\n",
        "if True:\n    import cryptography.hazmat as h\n",
    ]
    assert all(imports_hazmat(form) for form in forms)
    assert not imports_hazmat("from cryptography import x509\nimport cryptography.exceptions")
    assert not imports_hazmat("from .hazmat import thing")


def test_only_the_quarantined_modules_import_hazmat() -> None:
    assert hazmat_modules() == ALLOWED
    assert len(ALLOWED) <= MAX_HAZMAT_MODULES


def test_ruff_bans_hazmat_everywhere_else_in_bleprov() -> None:
    """pyproject's banned-api names hazmat, and its TID251 ignores inside bleprov/ are
    exactly :data:`ALLOWED` (so ``ruff check`` in ``make test`` enforces this list)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "cryptography.hazmat" in lint["flake8-tidy-imports"]["banned-api"]
    assert "TID" in lint["select"] or "TID251" in lint["select"]
    ignored = {
        pattern
        for pattern, codes in lint["per-file-ignores"].items()
        if "TID251" in codes and pattern.startswith("bleprov")
    }
    assert ignored == ALLOWED
