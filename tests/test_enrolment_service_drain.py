"""EnrolmentService.drain returns once every effect in flight is done.

Python 3.12's gather completes at once when every task it is given has already finished,
and awaiting a finished future does not yield to the loop. drain used to loop on
``gather`` while its task set was non-empty: a task that had just finished, whose
done-callback (which takes it out of the set) had not run yet, kept it spinning forever
without ever letting that callback run (the py312 CI run's 120 s timeout in
tests/broker/test_broker_e2e.py, every time in the full suite).
"""

from __future__ import annotations

import asyncio

from bleprov.service.enrolment import EnrolmentService


async def test_drain_returns_when_a_task_has_just_finished() -> None:
    service = EnrolmentService.__new__(EnrolmentService)  # drain needs only its task set
    service._tasks = set()

    async def effect() -> None:
        return None

    task = asyncio.get_running_loop().create_task(effect())
    service._tasks.add(task)
    task.add_done_callback(service._tasks.discard)
    await asyncio.sleep(0)  # the task runs and finishes; its done-callback is only queued
    assert task.done() and task in service._tasks
    async with asyncio.timeout(5):
        await service.drain()
    assert not service._tasks
