"""Benchmarks are not timed tests: the suite only checks that they run (tiny counts)."""

from __future__ import annotations

from benchmarks.link import render, run_all


async def test_link_benchmark_runs() -> None:
    rows = await run_all(quick=True)
    assert len(rows) == 6
    assert all(r.seconds > 0 and r.frames_up > 0 for r in rows)
    report = render(rows)
    assert "write-with-response takes" in report


def test_session_benchmark_runs() -> None:
    from benchmarks.session import render
    from benchmarks.session import run as run_sessions

    rows = run_sessions(runs=2)
    assert [r.mode for r in rows] == ["qr", "code", "compare", "button"]
    assert [r.round_trips for r in rows] == [1, 2, 3, 1]
    assert "round trips" in render(rows, None)


async def test_enrolment_benchmark_runs() -> None:
    from benchmarks.enrolment import render as render_enrolment
    from benchmarks.enrolment import run_all as run_enrolment

    rows = await run_enrolment(quick=True)
    assert rows[0].requests == 3
    assert rows[0].air_bytes > 0
    assert "round trips" in render_enrolment(rows)
