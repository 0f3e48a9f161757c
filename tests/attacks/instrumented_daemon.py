"""``bleprov device serve``, unchanged, with a stall meter and a stats line on demand.

Run as ``python -m tests.attacks.instrumented_daemon device serve ...`` (the same argv
as ``bleprov``). Before handing over to the CLI it hooks :class:`DeviceRuntime` so that,
once the daemon's event loop runs:

- a ticker wakes every 10 ms and keeps the longest lateness it saw (how long the loop
  was stalled by whatever ran in between);
- ``SIGRTMIN`` prints one ``flood-stats: {json}`` line (and restarts the stall meter):
  the loop's tasks, the session server's open sessions, both links' slots, the broker's
  queue, the counters, RSS and open file descriptors;
- ``BLEPROV_TEST_OPEN_TIMEOUT`` / ``BLEPROV_TEST_HELLO_TIMEOUT`` (seconds) scale the
  device's deadlines before OPEN and HELLO down, as tests/attacks/test_l3_open_deadline.py
  does, so that a test can watch many of them expire.

Nothing here changes what the daemon does with a connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from bleprov.service.device_runtime import DeviceRuntime

TICK = 0.01
#: A stall this long has the loop thread's stack sampled (where the time went).
SAMPLE_AFTER = 0.1
_runtimes: list[DeviceRuntime] = []
_meter: dict[str, float] = {
    "max_stall": 0.0,
    "max_cpu_stall": 0.0,
    "ticks": 0,
    "last_tick": time.monotonic(),
}
_stall_stacks: list[str] = []


async def _ticker() -> None:
    """How late each 10 ms tick is: on the wall clock (``max_stall``: everything that
    kept the loop from running, the machine's load and a blocking fsync included) and in
    the loop thread's CPU time (``max_cpu_stall``: code that ran on the loop without
    yielding, whatever else the machine did)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + TICK
        cpu = time.thread_time()
        await asyncio.sleep(TICK)
        _meter["max_stall"] = max(_meter["max_stall"], loop.time() - due)
        _meter["max_cpu_stall"] = max(_meter["max_cpu_stall"], time.thread_time() - cpu)
        _meter["ticks"] += 1
        _meter["last_tick"] = time.monotonic()


def _watch(loop_thread: int) -> None:
    """On its own thread: when the ticker is late, sample the loop thread's stack."""
    sampled_for = 0.0
    while True:
        time.sleep(TICK / 2)
        last = _meter["last_tick"]
        if time.monotonic() - last > SAMPLE_AFTER + TICK and sampled_for != last:
            sampled_for = last
            frame = sys._current_frames().get(loop_thread)
            if frame is not None and len(_stall_stacks) < 20:
                _stall_stacks.append("".join(traceback.format_stack(frame)[-12:]))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def stats(runtime: DeviceRuntime) -> dict[str, Any]:
    server, link, broker = runtime.server, runtime.link, runtime.broker
    found: dict[str, Any] = {
        "max_stall": _meter["max_stall"],
        "max_cpu_stall": _meter["max_cpu_stall"],
        "ticks": _meter["ticks"],
        "tasks": len(asyncio.all_tasks()),
        "task_names": sorted(
            getattr(task.get_coro(), "__qualname__", "?") for task in asyncio.all_tasks()
        ),
        "channels": len(server.channels),
        "timers": len(server._timers),
        "enrolments": len(runtime.service.machines),
        "ble_session": link.session is not None,
        "ble_connections": link.counters.sessions,
        "link_errors": len(link.counters.errors),
        "refused_busy": server.refused_busy,
        "ended": len(server.ended),
        "failures": {c.value: lim.failures for c, lim in server.limits.limiters.items()},
        "rss_kib": _status_kib("VmRSS"),
        "fds": len(os.listdir("/proc/self/fd")),
        "stall_stacks": list(_stall_stacks),
    }
    if broker is not None:
        found.update(
            broker_session=broker.session is not None,
            broker_outbox=broker._outbox.qsize(),
            broker_sessions=broker.counters.sessions,
            broker_refused_busy=broker.counters.refused_busy,
            broker_errors=len(broker.counters.errors),
            # (getattr: the same stats from a daemon before the inbox existed)
            broker_shed=getattr(broker.counters, "shed", 0)
            + getattr(getattr(broker, "_inbox", None), "shed", 0),
        )
    if server.remote_limits is not None:
        found["remote_failures"] = {
            c.value: lim.failures for c, lim in server.remote_limits.limiters.items()
        }
    return found


def _report() -> None:
    if os.environ.get("FLOOD_PROFILE"):
        import cProfile
        import pstats

        global _profile
        if _profile is None:
            _profile = cProfile.Profile()
            _profile.enable()
        else:
            _profile.disable()
            pstats.Stats(_profile).sort_stats("cumulative").dump_stats(os.environ["FLOOD_PROFILE"])
            _profile = None
    if _runtimes:
        print("flood-stats: " + json.dumps(stats(_runtimes[-1])), flush=True)
    _meter["max_stall"] = _meter["max_cpu_stall"] = 0.0
    _stall_stacks.clear()


def _install() -> None:
    original = DeviceRuntime.__init__
    open_timeout = os.environ.get("BLEPROV_TEST_OPEN_TIMEOUT")
    hello_timeout = os.environ.get("BLEPROV_TEST_HELLO_TIMEOUT")

    def init(self: DeviceRuntime, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if open_timeout:
            self.link.open_timeout = float(open_timeout)
        if hello_timeout:
            self.server.hello_timeout = float(hello_timeout)
        _runtimes.append(self)
        loop = asyncio.get_running_loop()
        task = loop.create_task(_ticker(), name="stall-meter")
        _tasks.add(task)
        threading.Thread(target=_watch, args=(threading.get_ident(),), daemon=True).start()
        loop.add_signal_handler(signal.SIGRTMIN, _report)

    DeviceRuntime.__init__ = init  # type: ignore[method-assign]


_tasks: set[asyncio.Task[None]] = set()
_profile: Any = None


if __name__ == "__main__":
    _install()
    from bleprov.cli import main

    sys.argv[0] = "bleprov"
    main()
