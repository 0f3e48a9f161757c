"""The long campaign: ``python -m fuzz`` (``make fuzz``; docs/fuzzing.md).

Each harness runs in a process of its own (``python -m fuzz.target``), one after the
other: atheris (libFuzzer, coverage-guided) where it is installed, else the pure-Python
mutator. The report has a row per harness (inputs run, exec/s, libFuzzer's coverage
counters ``cov``/``ft``, findings) and is printed and written to
``<out>/summary.md`` (and ``summary.json``); each harness's log, working corpus and
findings are in ``<out>/<harness>/``.

Each row also records what the run executed (:mod:`fuzz.fingerprint`), so that
``python -m fuzz --stale --out DIR`` can say later, after main has moved, which runs under
DIR still count for today's code and libraries.

Exit status: 0 when no harness found anything, 1 when one did (known findings included:
the campaign's bar is zero), 2 for bad usage. With ``--stale``: 0 when every run is
current, 1 when one is stale or has no fingerprint.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from fuzz.fingerprint import Fingerprint, check, record_in_subprocess

DEFAULT_RUNS: Final = 1_000_000
DEFAULT_OUT: Final = Path("fuzz-results")
#: libFuzzer's own hang and memory bounds: what the harness's CPU-time bound (fuzz.guard)
#: cannot stop, such as a C routine that never returns, ends the run here.
LIBFUZZER_TIMEOUT: Final = 30
LIBFUZZER_RSS_MB: Final = 2048

_STAT = re.compile(r"stat::(\w+):\s*(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)(?: corp: (\d+)/)?", re.MULTILINE)
_ARTIFACT = re.compile(r"(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+$")


@dataclass
class Row:
    harness: str
    engine: str
    inputs: int = 0
    exec_per_s: int = 0
    cov: int | None = None
    ft: int | None = None
    corpus: int | None = None
    seconds: float = 0.0
    exit_code: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    #: What the run executed (fuzz.fingerprint), for ``--stale`` after main has moved.
    fingerprint: dict[str, Any] | None = None

    @property
    def found(self) -> bool:
        return bool(self.findings or self.artifacts)


def atheris_available() -> bool:
    return importlib.util.find_spec("atheris") is not None


def run_harness(
    name: str, *, engine: str, runs: int, out: Path, max_time: int | None, dictionary: Path
) -> Row:
    from fuzz.harnesses import CORPUS, HARNESSES

    harness = HARNESSES[name]
    directory = (out / name).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():
        if stale.is_file():
            stale.unlink()
    work = directory / "corpus"
    work.mkdir(exist_ok=True)
    seeds = (CORPUS / name).resolve()
    command = [sys.executable, "-m", "fuzz.target", name, "--out", str(directory)]
    if engine == "atheris":
        command += ["--engine", "atheris", "--runs", str(runs), "--"]
        command += [
            f"-runs={runs}",
            f"-dict={dictionary}",
            f"-max_len={harness.max_len}",
            f"-timeout={LIBFUZZER_TIMEOUT}",
            f"-rss_limit_mb={LIBFUZZER_RSS_MB}",
            "-print_final_stats=1",
            f"-artifact_prefix={directory}/",
        ]
        if max_time:
            command.append(f"-max_total_time={max_time}")
        command += [str(work), str(seeds)]  # new inputs go to the first: never the seeds
    else:
        command += ["--engine", "python", "--runs", str(runs), "--corpus", str(seeds)]
    started = time.monotonic()
    with (directory / "fuzz.log").open("w") as log:
        done = subprocess.run(  # noqa: S603 (our own interpreter and module)
            command, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=_repository()
        )
    row = Row(name, engine, seconds=time.monotonic() - started, exit_code=done.returncode)
    text = (directory / "fuzz.log").read_text(errors="replace")
    stats = {key: int(value) for key, value in _STAT.findall(text)}
    progress = _PROGRESS.findall(text)
    if progress:
        last = progress[-1]
        row.cov, row.ft = int(last[1]), int(last[2])
        row.corpus = int(last[3]) if last[3] else None
    report_path = directory / "findings.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    row.inputs = stats.get("number_of_executed_units", report.get("inputs", 0))
    # libFuzzer says 0 exec/s for a run under a second: then the harness's own clock.
    fuzz_seconds = float(report.get("seconds") or row.seconds)
    row.exec_per_s = stats.get("average_exec_per_sec") or int(row.inputs / max(fuzz_seconds, 1e-3))
    row.findings = report.get("findings", [])
    row.artifacts = sorted(p.name for p in directory.iterdir() if _ARTIFACT.match(p.name))
    try:
        row.fingerprint = record_in_subprocess(name, [seeds, work]).to_json()
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as failed:
        print(f"fuzz: {name}: no fingerprint ({failed}); --stale will call it unknown", flush=True)
    return row


def harness_lines() -> str:
    from fuzz.harnesses import HARNESSES

    return "".join(f"{name:22} {harness.source}\n" for name, harness in HARNESSES.items())


def harness_table() -> str:
    """The harness table as docs/fuzzing.md shows it."""
    from fuzz.harnesses import HARNESSES

    lines = [
        "| harness | decoder, and where its input comes from | may raise | max_len |",
        "|---|---|---|---:|",
    ]
    for name, harness in HARNESSES.items():
        allowed = ", ".join(e.__name__ for e in harness.allowed) or "nothing"
        lines.append(f"| `{name}` | {harness.source} | {allowed} | {harness.max_len} |")
    return "\n".join(lines) + "\n"


def _repository() -> Path:
    return Path(__file__).resolve().parents[1]


def _findings_text(row: Row) -> str:
    parts = [
        f"{f['known'] or 'NEW'} x{f['count']}: {f['error']} at {f['where']}" for f in row.findings
    ]
    parts += [f"libFuzzer {a.split('-')[0]}: {a}" for a in row.artifacts]
    if row.exit_code not in (0, 1) and not row.artifacts:
        parts.append(f"exit status {row.exit_code} (see fuzz.log)")
    return "; ".join(parts) or "none"


def summary_markdown(rows: list[Row], *, runs: int, engine: str) -> str:
    lines = [
        "# bleprov fuzzing campaign",
        "",
        f"{len(rows)} harnesses, up to {runs} inputs each, engine {engine}. cov and ft are "
        "libFuzzer's counters (edges and features of bleprov's instrumented Python code).",
        "",
        "| harness | inputs | exec/s | cov | ft | corpus | seconds | findings |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        cells = [
            row.harness,
            str(row.inputs),
            str(row.exec_per_s),
            "-" if row.cov is None else str(row.cov),
            "-" if row.ft is None else str(row.ft),
            "-" if row.corpus is None else str(row.corpus),
            f"{row.seconds:.0f}",
            _findings_text(row).replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    found = [row for row in rows if row.found]
    lines += [
        "",
        f"{len(found)} of {len(rows)} harnesses found something; inputs are in "
        "fuzz-results/<harness>/ (<id>-<hash>, with its traceback in <id>-<hash>.txt).",
    ]
    from fuzz.known import KNOWN

    ids = sorted({f["known"] for row in rows for f in row.findings if f["known"]})
    if ids:
        lines += ["", "Known findings seen:", ""]
        lines += [f"- {k.id}: {k.title}" for k in KNOWN if k.id in ids]
    return "\n".join(lines) + "\n"


def summaries(out: Path) -> list[Path]:
    """The campaign's summaries under ``out``: its own, and those of runs made with
    ``--out out/<name>`` (one harness at a time, as a campaign over sessions is run)."""
    return sorted(p for p in [out / "summary.json", *out.glob("*/summary.json")] if p.is_file())


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "-"
    return commit[:12] + (" (with changes)" if commit.endswith("+changes") else "")


def stale_report(out: Path) -> tuple[str, bool]:
    """Which recorded runs still count for the tree and libraries of today: a Markdown
    table, and whether every run does."""
    lines = [
        "| harness | inputs | run at | today |",
        "|---|---:|---|---|",
    ]
    every_current = True
    files = summaries(out)
    for path in files:
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError) as unreadable:
            lines.append(f"| ({path}) | - | - | unreadable: {unreadable} |")
            every_current = False
            continue
        for row in rows if isinstance(rows, list) else []:
            name = str(row.get("harness", "?"))
            recorded = row.get("fingerprint")
            if recorded is None:
                verdict, commit = "unknown: the run recorded no fingerprint", "-"
            else:
                try:
                    fingerprint = Fingerprint.from_json(recorded)
                except ValueError as bad:
                    verdict, commit = f"unknown: {bad}", "-"
                else:
                    verdict = check(fingerprint).describe()
                    commit = _short_commit(fingerprint.commit)
            every_current = every_current and verdict == "current"
            lines.append(f"| {name} | {row.get('inputs', 0)} | {commit} | {verdict} |")
    if not files:
        return f"no summary.json under {out}\n", False
    return "\n".join(lines) + "\n", every_current


def main(argv: list[str] | None = None) -> int:
    from fuzz.harnesses import DICTIONARY, HARNESSES

    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=int(os.environ.get("FUZZ_RUNS") or DEFAULT_RUNS),
        help="inputs per harness (FUZZ_RUNS; default 10^6)",
    )
    parser.add_argument(
        "--harness",
        action="append",
        default=[h for h in (os.environ.get("FUZZ_HARNESS") or "").replace(",", " ").split() if h],
        help="run only these (repeat, or commas; FUZZ_HARNESS); default: all",
    )
    parser.add_argument(
        "--engine", choices=("auto", "atheris", "python"), default="auto", help="default: auto"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: fuzz-results")
    parser.add_argument(
        "--max-time", type=int, default=None, help="seconds per harness at most (atheris)"
    )
    parser.add_argument("--list", action="store_true", help="list the harnesses and exit")
    parser.add_argument(
        "--stale",
        action="store_true",
        help="say which runs under --out still count for today's code and libraries; exit 1 "
        "if any does not",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="with --list: the table of docs/fuzzing.md"
    )
    args = parser.parse_args(argv)
    if args.list:
        print(harness_table() if args.markdown else harness_lines(), end="")
        return 0
    if args.stale:
        report, every_current = stale_report(args.out)
        print(report, end="")
        return 0 if every_current else 1
    names = [n for group in args.harness for n in group.split(",") if n] or list(HARNESSES)
    unknown = [n for n in names if n not in HARNESSES]
    if unknown:
        print(f"no harness named {', '.join(unknown)} (python -m fuzz --list)", file=sys.stderr)
        return 2
    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris_available() else "python"
    elif engine == "atheris" and not atheris_available():
        print("atheris is not installed: pip install -e '.[fuzz]' (Python 3.11)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for name in names:
        print(f"fuzz: {name} ({engine}, {args.runs} inputs)...", flush=True)
        row = run_harness(
            name,
            engine=engine,
            runs=args.runs,
            out=args.out,
            max_time=args.max_time,
            dictionary=DICTIONARY,
        )
        rows.append(row)
        print(
            f"fuzz: {name}: {row.inputs} inputs, {row.exec_per_s} exec/s, cov {row.cov}, "
            f"ft {row.ft}; findings: {_findings_text(row)}",
            flush=True,
        )
    summary = summary_markdown(rows, runs=args.runs, engine=engine)
    (args.out / "summary.md").write_text(summary)
    (args.out / "summary.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print()
    print(summary, end="")
    print(f"\nwritten: {args.out / 'summary.md'}")
    return 1 if any(row.found for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
