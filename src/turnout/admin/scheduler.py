"""ProxySQL's scheduler: runs `filename arg1 ... arg5` every interval_ms for each active job of the
runtime scheduler table.

- One run at a time per job: a tick that comes while the previous run is still going is skipped.
- Timeout: admin-scheduler_timeout_ms when above 0, else 5 x interval_ms. A run past its timeout
  is killed with its whole process group (scripts often start children: mariadb, perl...).
- stdout goes to the log at INFO, stderr at WARNING, a non-zero exit at WARNING.
- Jobs run in their own process group, outside the data path: a failing or hanging job costs
  nothing but its own runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from turnout.config.model import SchedulerJob

log = logging.getLogger(__name__)


@dataclass
class JobStats:
    runs: int = 0
    skipped: int = 0  # ticks that came while a run was still going
    timeouts: int = 0
    failures: int = 0  # non-zero exit, or could not start
    last_exit: int | None = None


def timeout_for(job: SchedulerJob, timeout_ms: int) -> float:
    """Seconds a run of `job` may take."""
    return (timeout_ms if timeout_ms > 0 else 5 * job.interval_ms) / 1000


def argv(job: SchedulerJob) -> list[str]:
    """ProxySQL passes the non-NULL args in order."""
    return [job.filename, *[a for a in (job.arg1, job.arg2, job.arg3, job.arg4, job.arg5) if a is not None]]


class Scheduler:
    def __init__(self) -> None:
        self._tasks: dict[int, tuple[SchedulerJob, int, asyncio.Task[None]]] = {}
        self.stats: dict[int, JobStats] = {}

    def update(self, jobs: Sequence[SchedulerJob], timeout_ms: int = 0) -> None:
        """Run exactly the active `jobs` from now on; unchanged jobs keep their rhythm."""
        wanted = {job.id: job for job in jobs if job.active}
        for job_id, (job, old_timeout, task) in list(self._tasks.items()):
            if wanted.get(job_id) != job or old_timeout != timeout_ms:
                task.cancel()
                del self._tasks[job_id]
        for job_id, job in wanted.items():
            if job_id not in self._tasks:
                self.stats.setdefault(job_id, JobStats())
                task = asyncio.get_running_loop().create_task(self._loop(job, timeout_ms), name=f"scheduler-{job_id}")
                self._tasks[job_id] = (job, timeout_ms, task)

    async def stop(self) -> None:
        tasks = [task for _, _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, job: SchedulerJob, timeout_ms: int) -> None:
        interval = job.interval_ms / 1000
        next_tick = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            await self._run(job, timeout_for(job, timeout_ms))
            now = time.monotonic()
            missed = int((now - next_tick) // interval)
            if missed > 0:
                self.stats[job.id].skipped += missed
            next_tick += interval * (missed + 1)

    async def _run(self, job: SchedulerJob, timeout: float) -> None:
        stats = self.stats[job.id]
        stats.runs += 1
        try:
            process = await asyncio.create_subprocess_exec(
                *argv(job),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            stats.failures += 1
            log.warning("scheduler job %d: cannot run %s: %s", job.id, job.filename, exc)
            return
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            stats.timeouts += 1
            log.warning("scheduler job %d: %s ran past its %.1fs timeout, killed", job.id, job.filename, timeout)
            await _kill(process)
            return
        except asyncio.CancelledError:
            await _kill(process)
            raise
        stats.last_exit = process.returncode
        _log_output(job, out, logging.INFO)
        _log_output(job, err, logging.WARNING)
        if process.returncode != 0:
            stats.failures += 1
            log.warning("scheduler job %d: %s exited with %s", job.id, job.filename, process.returncode)


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    # Drain the pipes to their end (the group is dead, so it comes) so their transports close now.
    with contextlib.suppress(Exception):
        await process.communicate()
    await process.wait()


def _log_output(job: SchedulerJob, data: bytes, level: int) -> None:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            log.log(level, "scheduler job %d: %s", job.id, line)
