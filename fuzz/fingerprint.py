"""What a fuzzing run tested, so that a later commit can tell whether the run still counts.

A campaign of 10^6 inputs per harness spans sessions, and main moves under it. Rerunning
every harness after every commit costs hours and is wasted when the commit did not touch
what a harness executes; keeping every old run counts runs of code that is gone. So each
run records a fingerprint: its corpus (the seeds and what libFuzzer kept) is replayed in a
process of its own, under a profiler and an ``open`` audit hook, and the fingerprint holds

- a hash of every function of its packages (bleprov, fuzz) that ran, as a docstring-free AST (a
  reformatted or re-documented function is the same function), keyed
  ``path:qualname``; nested functions, lambdas and comprehensions count as part of the
  function around them;
- a hash of the module-level statements of every file one of them is in (``path:``) and
  of the class-level statements of every class one of them is in (``path:Class``): the
  constants, tables and dataclass fields a decoder reads;
- a hash of every other file of those packages the replay opened (the fixtures);
- the version of every library the replay called into, and of Python.

``python -m fuzz --stale`` recomputes the hashes on the current tree and says, per run,
what changed. It sees what the kept corpus reaches, not every path the run took; a
change it reports is real, a run it calls current is current as far as that corpus goes.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, Final, TypeGuard

#: Packages of this repository: their code is hashed, not versioned.
OWN_PACKAGES: Final = frozenset({"bleprov", "fuzz"})
#: Import hooks that run on every import and decode nothing: setuptools' distutils shim
#: and the finders of editable installs.
IMPORT_HOOKS: Final = ("_distutils_hack", "__editable__")
_THIS_FILE: Final = Path(__file__).resolve()
_DIGEST_CHARS: Final = 16


def repository() -> Path:
    return Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Fingerprint:
    """What one harness's run executed; JSON in ``summary.json``'s row."""

    python: str
    #: ``path:qualname`` (a function), ``path:Class`` (its class-level statements),
    #: ``path:`` (module-level statements) or ``file:path`` (a data file) -> digest.
    code: dict[str, str]
    #: Distribution -> version, for every library the replay called into.
    libraries: dict[str, str]
    #: The commit the run's tree was at, for the reader (the check does not use it).
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "commit": self.commit,
            "libraries": dict(sorted(self.libraries.items())),
            "code": dict(sorted(self.code.items())),
        }

    @classmethod
    def from_json(cls, value: Any) -> Fingerprint:
        if not isinstance(value, dict):
            raise ValueError("a fingerprint is a JSON object")
        python, code, libraries = value.get("python"), value.get("code"), value.get("libraries")
        commit = value.get("commit")
        if not isinstance(python, str) or not _str_map(code) or not _str_map(libraries):
            raise ValueError("a fingerprint has python, code and libraries")
        return cls(python, code, libraries, commit if isinstance(commit, str) else None)


def _str_map(value: object) -> TypeGuard[dict[str, str]]:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


# ------------------------------------------------------------------------------ hashing


class _StripDocstrings(ast.NodeTransformer):
    """A docstring is documentation, not behaviour: drop the first string statement of
    every module, class and function body."""

    def _strip(self, node: ast.AST) -> ast.AST:
        self.generic_visit(node)
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return node

    visit_FunctionDef = _strip  # noqa: N815 (ast.NodeVisitor's naming)
    visit_AsyncFunctionDef = _strip  # noqa: N815
    visit_ClassDef = _strip  # noqa: N815
    visit_Module = _strip  # noqa: N815


_DEFINITIONS: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _digest(nodes: Iterable[ast.AST]) -> str:
    hasher = hashlib.sha256()
    for node in nodes:
        hasher.update(ast.dump(node, include_attributes=False).encode())
        hasher.update(b"\n")
    return hasher.hexdigest()[:_DIGEST_CHARS]


class SourceTree:
    """Digests of the functions, classes and modules of one tree, each file parsed once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._modules: dict[str, ast.Module | None] = {}

    def _module(self, path: str) -> ast.Module | None:
        if path not in self._modules:
            try:
                source = (self.root / path).read_bytes()
                tree = ast.parse(source, filename=path)
            except (OSError, SyntaxError, ValueError):
                self._modules[path] = None
            else:
                self._modules[path] = _StripDocstrings().visit(tree)
        return self._modules[path]

    def digest(self, key: str) -> str | None:
        """The digest of ``key`` in this tree, or None where it no longer exists."""
        if key.startswith("file:"):
            try:
                data = (self.root / key.removeprefix("file:")).read_bytes()
            except OSError:
                return None
            return hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]
        path, _, qualname = key.partition(":")
        module = self._module(path)
        if module is None:
            return None
        if not qualname:
            return _digest(s for s in module.body if not isinstance(s, _DEFINITIONS))
        node: ast.AST = module
        for name in qualname.split("."):
            found = [
                s
                for s in getattr(node, "body", [])
                if isinstance(s, _DEFINITIONS) and s.name == name
            ]
            if not found:
                return None
            node = found[-1]  # a later definition of the same name is the one that runs
        if isinstance(node, ast.ClassDef):
            shell = copy.copy(node)
            shell.body = [s for s in node.body if not isinstance(s, _DEFINITIONS)]
            return _digest([shell])
        return _digest([node])


def code_keys(root: Path, calls: Iterable[tuple[str, str]]) -> set[str]:
    """The keys for functions that ran, given as (file name, ``co_qualname``): the
    function (or the outermost function around a nested one), each class it is in, and
    its module."""
    keys: set[str] = set()
    for filename, qualname in calls:
        relative = _relative(root, filename)
        if relative is None:
            continue
        keys.add(f"{relative}:")
        if qualname == "<module>":
            continue
        outer = qualname.split(".<locals>", 1)[0]
        parts = [p for p in outer.split(".") if not p.startswith("<")]
        for depth in range(1, len(parts) + 1):
            keys.add(f"{relative}:{'.'.join(parts[:depth])}")
    return keys


def _relative(root: Path, filename: str) -> str | None:
    """``filename`` relative to ``root`` if it is in one of this repository's packages:
    a virtual environment inside the checkout (make's ``.venv``) holds libraries, which
    count by version, not by file."""
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return None
    if path == _THIS_FILE or not path.is_relative_to(root):
        return None
    relative = path.relative_to(root)
    if not relative.parts or relative.parts[0] not in OWN_PACKAGES:
        return None
    return relative.as_posix()


# ------------------------------------------------------------------------------ recording


@dataclass
class _Trace:
    codes: set[CodeType] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    opened: set[str] = field(default_factory=set)

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.codes.add(frame.f_code)
            name = frame.f_globals.get("__name__")
            if isinstance(name, str):
                self.modules.add(name)
        elif event == "c_call":
            name = getattr(arg, "__module__", None)
            if isinstance(name, str):
                self.modules.add(name)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and isinstance(args[0], str | Path):
            self.opened.add(str(args[0]))


@contextlib.contextmanager
def _tracing(trace: _Trace) -> Iterator[None]:
    sys.setprofile(trace.profile)
    threading.setprofile(trace.profile)
    try:
        yield
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


def library_versions(modules: Iterable[str]) -> dict[str, str]:
    """Distribution -> version for the top-level packages among ``modules`` that are
    neither the standard library nor this repository."""
    tops = {m.split(".", 1)[0] for m in modules} - OWN_PACKAGES - set(sys.stdlib_module_names)
    tops = {top for top in tops if not top.startswith(IMPORT_HOOKS)}
    by_package = importlib.metadata.packages_distributions()
    versions: dict[str, str] = {}
    for top in tops:
        for distribution in by_package.get(top, []):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[distribution] = importlib.metadata.version(distribution)
    return versions


def _data_files(root: Path, opened: Iterable[str], skip: list[Path]) -> set[str]:
    keys = set()
    for name in opened:
        relative = _relative(root, name)
        if relative is None or relative.endswith((".py", ".pyc")):
            continue
        path = root / relative
        if any(path.is_relative_to(s) for s in skip) or not path.is_file():
            continue
        keys.add(f"file:{relative}")
    return keys


def record(name: str, corpus: list[Path], *, root: Path | None = None) -> Fingerprint:
    """Replay harness ``name`` over every file in ``corpus`` (directories) and fingerprint
    what ran. Meant for a process of its own (:func:`record_in_subprocess`): the audit
    hook cannot be removed."""
    from fuzz.harnesses import HARNESSES

    root = root or repository()
    harness = HARNESSES[name]
    trace = _Trace()
    sys.addaudithook(trace.audit)
    inputs = [
        path.read_bytes()
        for directory in corpus
        if directory.is_dir()
        for path in sorted(directory.iterdir())
        if path.is_file()
    ]
    with _tracing(trace):
        harness.warm_up()
        for data in inputs:
            # The replay's own time bound is generous: a profiled input is slower, and a
            # finding here changes nothing in what ran.
            harness.run(data, time_bound=max(harness.time_bound * 20, 20.0))
    calls = {(code.co_filename, code.co_qualname) for code in trace.codes}
    keys = code_keys(root, calls)
    keys |= _data_files(root, trace.opened, [d.resolve() for d in corpus])
    tree = SourceTree(root)
    code = {key: digest for key in keys if (digest := tree.digest(key)) is not None}
    return Fingerprint(
        python=python_version(),
        code=code,
        libraries=library_versions(trace.modules),
        commit=_commit(root),
    )


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 (fixed arguments)
            ["git", *args],  # noqa: S607 (git from PATH, as a developer runs it)
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _commit(root: Path) -> str | None:
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return None
    changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{commit}+changes" if changes else commit


def record_in_subprocess(name: str, corpus: list[Path], *, timeout: float = 600) -> Fingerprint:
    """:func:`record` in a fresh interpreter (uninstrumented, no audit hook left behind)."""
    command = [sys.executable, "-m", "fuzz.fingerprint", name]
    for directory in corpus:
        command += ["--corpus", str(directory)]
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        command, capture_output=True, text=True, check=False, timeout=timeout, cwd=repository()
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"fingerprinting {name} failed: {last}")
    return Fingerprint.from_json(json.loads(done.stdout))


# ------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class Staleness:
    """How a run's fingerprint compares with the tree and libraries of today."""

    changed: list[str]
    gone: list[str]
    libraries: list[str]
    python: str | None

    @property
    def current(self) -> bool:
        return not (self.changed or self.gone or self.libraries or self.python)

    def describe(self, limit: int = 6) -> str:
        if self.current:
            return "current"
        parts = []
        if self.changed:
            parts.append("changed " + _shorten(self.changed, limit))
        if self.gone:
            parts.append("gone " + _shorten(self.gone, limit))
        if self.libraries:
            parts.append("libraries " + _shorten(self.libraries, limit))
        if self.python:
            parts.append(f"python {self.python}")
        return "stale: " + "; ".join(parts)


def _shorten(items: list[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check(fingerprint: Fingerprint, *, root: Path | None = None) -> Staleness:
    tree = SourceTree(root or repository())
    changed, gone = [], []
    for key, digest in sorted(fingerprint.code.items()):
        now = tree.digest(key)
        if now is None:
            gone.append(key)
        elif now != digest:
            changed.append(key)
    libraries = []
    for distribution, version in sorted(fingerprint.libraries.items()):
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            installed = "absent"
        if installed != version:
            libraries.append(f"{distribution} {version} -> {installed}")
    python = python_version()
    moved = f"{fingerprint.python} -> {python}" if fingerprint.python != python else None
    return Staleness(changed, gone, libraries, moved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.fingerprint")
    parser.add_argument("name")
    parser.add_argument("--corpus", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    from fuzz.harnesses import CORPUS, HARNESSES

    if args.name not in HARNESSES:
        print(f"no harness named {args.name}", file=sys.stderr)
        return 2
    corpus = args.corpus or [CORPUS / args.name]
    with contextlib.redirect_stdout(sys.stderr):  # a harness that prints cannot spoil the JSON
        fingerprint = record(args.name, corpus)
    print(json.dumps(fingerprint.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
