"""Run many ``bleprov`` commands as separate processes, fast: import the CLI once, then
fork one child per command (its own argv, environment, output files and /dev/null for
stdin), a few at a time. A fresh ``python -m bleprov`` that runs a command costs over a
second of imports; a fork costs milliseconds, so a matrix of a hundred commands stays
well under a minute.

Usage: ``python -m tests.cli_fork CASES.json`` where the file holds a list of batches,
each a list of ``{"argv": [...], "env": {...}}``; batches run in order, the cases of one
batch in parallel. Prints a JSON list of ``{"code", "stdout", "stderr", "seconds"}``
(per batch, in the same order). A child still running after its ``timeout`` is killed
and reported with code ``None``.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

#: Children at a time: the machine's cores, at least two (most children wait on I/O).
PARALLEL = max(2, min(6, os.cpu_count() or 2))


def _child(case: dict[str, Any], out: Path, err: Path) -> None:
    """In the forked child: become ``bleprov ARGV`` and exit with its code."""
    code: int = 99
    try:
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        os.environ.clear()
        os.environ.update(case["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = ["bleprov", *case["argv"]]
        try:
            runpy.run_module("bleprov", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_batch(cases: list[dict[str, Any]], work: Path) -> list[dict[str, Any]]:
    """Every case of one batch, ``PARALLEL`` at a time; results in the cases' order."""
    results: list[dict[str, Any]] = [{} for _ in cases]
    pending = list(enumerate(cases))
    running: dict[int, tuple[int, float, float]] = {}  # pid -> (index, start, deadline)
    while pending or running:
        while pending and len(running) < PARALLEL:
            index, case = pending.pop(0)
            out, err = work / f"{id(cases)}-{index}.out", work / f"{id(cases)}-{index}.err"
            pid = os.fork()
            if pid == 0:
                _child(case, out, err)
            start = time.monotonic()
            running[pid] = (index, start, start + float(case.get("timeout", 30)))
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (index, start, deadline) in list(running.items()):
                if now > deadline:
                    os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    del running[child]
                    results[index] = {"code": None, "seconds": now - start}
            time.sleep(0.01)
            continue
        index, start, _ = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        results[index] = {"code": code, "seconds": time.monotonic() - start}
    for index, result in enumerate(results):
        out, err = work / f"{id(cases)}-{index}.out", work / f"{id(cases)}-{index}.err"
        result["stdout"] = out.read_text(errors="replace") if out.exists() else ""
        result["stderr"] = err.read_text(errors="replace") if err.exists() else ""
    return results


def preload() -> None:
    """Import every bleprov module once, before any fork. The CLI imports what a command
    needs when it runs (``--help`` stays fast), so without this each child would import
    bumble, cryptography and the rest again."""
    import contextlib
    import importlib
    import pkgutil

    import bleprov

    for module in pkgutil.walk_packages(bleprov.__path__, "bleprov."):
        if module.name.endswith("__main__") or ".migrations" in module.name:
            continue  # the command itself; Alembic's scripts run when imported
        # An optional stack this machine lacks: the child reports it if a command uses it.
        with contextlib.suppress(ImportError):
            importlib.import_module(module.name)


def main() -> None:
    preload()
    batches = json.loads(Path(sys.argv[1]).read_text())
    with tempfile.TemporaryDirectory(prefix="bleprov-fork-") as work:
        print(json.dumps([run_batch(batch, Path(work)) for batch in batches]))


if __name__ == "__main__":
    main()
