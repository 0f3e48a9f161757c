"""One harness in a process of its own: ``python -m fuzz.target NAME --out DIR [-- ARGS]``.

``python -m fuzz`` starts one of these per harness. With ``--engine atheris`` bleprov is
imported under atheris's coverage instrumentation and libFuzzer drives the harness
(``ARGS`` are libFuzzer's: -runs, -dict, -max_len, corpus directories...); with
``--engine python`` the pure-Python mutator does (``--runs`` inputs, no coverage).

Either way a finding does not stop the run: its input is saved in DIR (the smallest one
per finding signature, ``<id>-<signature hash>``, with the traceback beside it) and counted
in ``DIR/findings.json``; libFuzzer's own artifacts (a hang past -timeout, an RSS past
-rss_limit_mb) land in DIR too.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class _Seen:
    finding: Any
    known: str | None
    count: int = 0
    smallest: int = 0
    file: str = ""


@dataclass
class Findings:
    """What one harness's run found, kept in ``directory`` as it goes."""

    directory: Path
    #: The inputs the run will take (libFuzzer's -runs): the file is written after the
    #: last, since libFuzzer ends the process with exit() and no Python clean-up runs.
    runs: int = 0
    seen: dict[str, _Seen] = field(default_factory=dict)
    inputs: int = 0
    started: float = field(default_factory=time.monotonic)
    _next_write: int = 1

    def add(self, finding: Any, data: bytes) -> None:
        from fuzz.known import classify

        entry = self.seen.get(finding.signature)
        new = entry is None
        if entry is None:
            entry = self.seen[finding.signature] = _Seen(finding, classify(finding))
        entry.count += 1
        if new or len(data) < entry.smallest:
            digest = hashlib.sha1(finding.signature.encode(), usedforsecurity=False).hexdigest()
            entry.file = f"{entry.known or 'new'}-{digest[:10]}"
            entry.smallest = len(data)
            entry.finding = finding
            (self.directory / entry.file).write_bytes(data)
            (self.directory / f"{entry.file}.txt").write_text(
                f"{finding.signature}\n{finding.message}\n\n{finding.detail}"
            )
            self.write()
        elif entry.count >= self._next_write:
            self.write()

    def tick(self) -> None:
        """One more input; the file is rewritten every 1000, and after the last."""
        self.inputs += 1
        if self.inputs == 1:
            self.started = time.monotonic()
        if self.inputs % 1000 == 0 or self.inputs == self.runs:
            self.write()

    def write(self) -> None:
        most = max((entry.count for entry in self.seen.values()), default=0)
        self._next_write = max(self._next_write * 2, most + 1)
        rows = [
            {
                "signature": signature,
                "known": entry.known,
                "kind": entry.finding.kind,
                "error": entry.finding.error,
                "where": entry.finding.where,
                "code": entry.finding.code,
                "message": entry.finding.message,
                "count": entry.count,
                "smallest": entry.smallest,
                "file": entry.file,
            }
            for signature, entry in sorted(self.seen.items())
        ]
        seconds = round(time.monotonic() - self.started, 3)
        path = self.directory / "findings.json"
        report = {"inputs": self.inputs, "seconds": seconds, "findings": rows}
        path.write_text(json.dumps(report, indent=1))


def _seed_inputs(directories: list[Path]) -> list[bytes]:
    out: list[bytes] = []
    for directory in directories:
        if directory.is_dir():
            out += [p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()]
    return out


def run_python(name: str, out: Path, runs: int, corpus: list[Path]) -> None:
    from fuzz.harnesses import DICTIONARY, HARNESSES
    from fuzz.mutate import Mutator, load_dictionary, seed_of

    harness = HARNESSES[name]
    harness.warm_up()
    findings = Findings(out)
    seeds = _seed_inputs(corpus)
    started = time.monotonic()
    mutator = Mutator(seed_of(name), load_dictionary(DICTIONARY), harness.max_len)
    for data in [*seeds, *mutator.inputs(seeds, runs)]:
        findings.tick()
        finding = harness.run(data)
        if finding is not None:
            findings.add(finding, data)
    elapsed = time.monotonic() - started
    findings.write()
    # The lines python -m fuzz reads, in libFuzzer's words.
    print(f"stat::number_of_executed_units: {findings.inputs}", file=sys.stderr)
    rate = int(findings.inputs / max(elapsed, 1e-9))
    print(f"stat::average_exec_per_sec:     {rate}", file=sys.stderr)


def run_atheris(name: str, out: Path, runs: int, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["bleprov"]):
        from fuzz.harnesses import HARNESSES

        harness = HARNESSES[name]
        harness.warm_up()  # the harness's own lazy imports, instrumented too
    findings = Findings(out, runs)

    def test_one_input(data: bytes) -> None:
        findings.tick()
        finding = harness.run(data)
        if finding is not None:
            findings.add(finding, data)

    findings.write()
    atexit.register(findings.write)
    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    libfuzzer_args: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, libfuzzer_args = args[:at], args[at + 1 :]
    parser = argparse.ArgumentParser(prog="python -m fuzz.target")
    parser.add_argument("name")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--engine", choices=("atheris", "python"), default="atheris")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--corpus", type=Path, action="append", default=[])
    options = parser.parse_args(args)
    options.out.mkdir(parents=True, exist_ok=True)
    if options.engine == "atheris":
        run_atheris(options.name, options.out, options.runs, libfuzzer_args)
    else:
        run_python(options.name, options.out, options.runs, options.corpus)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
