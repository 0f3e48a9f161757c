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


async def test_zone_benchmark_runs() -> None:
    from benchmarks.zone import PEER, WIFI, ZONE, render, run_steps, run_throughput

    steps = await run_steps(quick=True)
    assert [(r.variant, r.mtu) for r in steps] == [
        (v, mtu) for mtu in (23, 247) for v in (WIFI, ZONE, PEER)
    ]
    by = {(r.variant, r.mtu): r for r in steps}
    for mtu in (23, 247):
        wifi, zone, peer = by[WIFI, mtu], by[ZONE, mtu], by[PEER, mtu]
        assert wifi.requests == 2  # set (status is pushed) + commit
        assert zone.requests == wifi.requests + 2  # zone/csr + zone/install
        assert peer.requests == wifi.requests + 1  # peer/bind
        # The install carries certificate, chain and root; the device answers a CSR.
        assert zone.bytes_up - wifi.bytes_up > 1000
        assert zone.bytes_down - wifi.bytes_down > 200
        assert zone.air_bytes > peer.air_bytes > wifi.air_bytes > 0
    # A smaller MTU needs more PDUs for the same certificate step.
    assert by[ZONE, 23].pdus > by[ZONE, 247].pdus

    rates = await run_throughput(n=2, connections=2, batches=1)
    assert [r.key for r in rates] == [
        "csr",
        "issue",
        "crl0",
        "crl1000",
        "verify0",
        "verify1000",
        "connection",
    ]
    assert all(r.cpu_rate > 0 and r.wall_rate > 0 for r in rates)
    report = render(steps, rates)
    assert "the certificate step adds 2 round trips" in report
    assert "peer binding adds 1 round trip," in report
    assert "CRL of 1000 revoked" in report


async def test_broker_benchmark_runs() -> None:
    from tests.broker.conftest import require_mosquitto

    require_mosquitto()  # skips with the reason when Debian's mosquitto is missing
    from benchmarks.broker import render as render_broker
    from benchmarks.broker import run_all as run_broker

    rows = await run_broker(runs=1)
    assert [r.via for r in rows] == ["radio", "broker"]
    # Only the link changes: the same round trips and messages either way.
    assert rows[0].round_trips == rows[1].round_trips > 0
    assert (rows[0].messages_up, rows[0].messages_down) == (
        rows[1].messages_up,
        rows[1].messages_down,
    )
    assert "broker" in render_broker(rows)
