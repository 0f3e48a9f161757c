"""The fuzzing campaign's short run, in make test (the long one is make fuzz, docs/fuzzing.md).

Per harness of fuzz/harnesses.py: every committed seed decodes without a finding, a few
hundred inputs from the pure-Python mutator (fixed seed; no atheris needed, so this runs
on every supported Python) find nothing new, and each regression case of a finding no
longer finds it. Findings still open on this branch (fuzz.known.OPEN) are tolerated by
the mutation runs, and their regression cases are strict expected failures: once a fix
is merged they pass, the xfail turns into a failure, and the entry comes out of OPEN.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from fuzz.guard import Finding
from fuzz.harnesses import DICTIONARY, HARNESSES, Harness
from fuzz.known import KNOWN, OPEN, classify
from fuzz.mutate import Mutator, load_dictionary, seed_of

REGRESSION_PREFIX = "regress-"


def _all_cases() -> list[tuple[str, str]]:
    return [
        (name, file_name)
        for name, harness in HARNESSES.items()
        for file_name, _ in harness.corpus()
        if file_name.startswith(REGRESSION_PREFIX)
    ]


def _regression_cases() -> list[object]:
    cases: list[object] = []
    for name, harness in HARNESSES.items():
        for file_name, _ in harness.corpus():
            if not file_name.startswith(REGRESSION_PREFIX):
                continue
            finding_id = file_name.removeprefix(REGRESSION_PREFIX).split("-", 1)[0]
            marks = (
                [pytest.mark.xfail(strict=True, reason=OPEN[finding_id])]
                if finding_id in OPEN
                else []
            )
            cases.append(pytest.param(name, file_name, marks=marks, id=f"{name}/{file_name}"))
    return cases


@functools.cache
def _ready(name: str) -> Harness:
    harness = HARNESSES[name]
    harness.warm_up()
    return harness


def _seeds(harness: Harness) -> list[tuple[str, bytes]]:
    return [(f, d) for f, d in harness.corpus() if not f.startswith(REGRESSION_PREFIX)]


def _describe(finding: Finding, data: bytes) -> str:
    shown = data[:48].hex() + ("..." if len(data) > 48 else "")
    return f"{finding.signature}: {finding.message} (input {len(data)} bytes: {shown})"


def test_every_harness_has_seeds_and_a_dictionary() -> None:
    assert len(HARNESSES) >= 40
    empty = [name for name, harness in HARNESSES.items() if not _seeds(harness)]
    assert not empty, f"harnesses without seeds in fuzz/corpus: {empty}"
    assert len(load_dictionary(DICTIONARY)) > 100


def test_the_docs_table_is_the_harness_table() -> None:
    """docs/fuzzing.md shows the table as the code has it (regenerate it with
    ``python -m fuzz --list --markdown``)."""
    from fuzz.__main__ import harness_table

    docs = Path(__file__).resolve().parents[2] / "docs" / "fuzzing.md"
    assert harness_table() in docs.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_seeds_decode_without_findings(name: str) -> None:
    harness = _ready(name)
    found = [
        f"{file_name}: {_describe(finding, data)}"
        for file_name, data in _seeds(harness)
        if (finding := harness.run(data)) is not None
    ]
    assert not found, "\n".join(found)


@functools.cache
def _replay(name: str, file_name: str) -> tuple[bytes, Finding | None]:
    """One corpus file's outcome (once per run: an F2 case costs its 1 s time bound)."""
    data = dict(_ready(name).corpus())[file_name]
    return data, _ready(name).run(data)


@pytest.mark.parametrize(("name", "file_name"), _regression_cases())
def test_regression_case_is_harmless(name: str, file_name: str) -> None:
    data, finding = _replay(name, file_name)
    assert finding is None, _describe(finding, data)


def test_every_open_finding_is_known_and_has_a_case() -> None:
    known = {k.id for k in KNOWN}
    assert set(OPEN) <= known
    ids = {f.removeprefix(REGRESSION_PREFIX).split("-", 1)[0] for _, f in _all_cases()}
    assert ids <= known
    assert set(OPEN) <= ids


def test_an_open_finding_is_recognised_as_itself() -> None:
    """Until its fix is merged, a regression case finds what its name says (so that the
    mutation runs tolerate exactly the open findings, and reports name them right). One
    test over the open cases: none open is nothing to check, not a skip in make test."""
    for name, file_name in _all_cases():
        expected = file_name.removeprefix(REGRESSION_PREFIX).split("-", 1)[0]
        if expected not in OPEN:
            continue
        data, finding = _replay(name, file_name)
        assert finding is not None, f"{expected} no longer found: remove it from fuzz.known.OPEN"
        assert classify(finding) == expected, _describe(finding, data)


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_mutated_inputs_find_nothing_new(name: str) -> None:
    harness = _ready(name)
    seeds = [data for _, data in _seeds(harness)]
    mutator = Mutator(seed_of(name), load_dictionary(DICTIONARY), harness.max_len)
    new: list[str] = []
    for data in mutator.inputs(seeds, harness.quick_runs):
        finding = harness.run(data)
        if finding is not None and classify(finding) not in OPEN:
            new.append(_describe(finding, data))
    assert not new, "\n".join(new[:10])
