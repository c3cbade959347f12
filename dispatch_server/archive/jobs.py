"""The archive's background file jobs (exports, redacted copies): how one runs, whatever it makes.

:class:`JobRunner` owns the running jobs of one kind: :meth:`~JobRunner.start` runs one as a task
of this process, its file work (:attr:`FileJob.build`) in a thread; :meth:`~JobRunner.stop`
cancels them all and waits. The job's row says how it goes, so any dispatch process can answer
for it: running, then its progress about twice a second, then done with what was made, or failed
with why (cancelled: ``error = "cancelled"``). Done and failed are audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.db import Base, Database, utcnow

__all__ = ["PROGRESS_SECONDS", "FileJob", "JobResult", "JobRunner", "JobState", "update_row"]

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5
"""How often a running job's progress is written to its row."""


class JobState(enum.StrEnum):
    """A job's ``state`` column."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    """Failed or cancelled; ``error`` says why."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a job made."""

    values: dict[str, object]
    """For the job's row (besides its state, progress and end time): the file, its size and hash."""
    detail: dict[str, Any]
    """For the audit record of its success."""


@dataclass(frozen=True, slots=True)
class FileJob:
    """One job: its file work, and how to clean up after it."""

    build: Callable[[Callable[[float], None], threading.Event], JobResult]
    """The file work, for a thread: reports its progress (0 to 1) to the first argument; stops with
    the runner's cancelled error soon after the event is set."""
    discard: Callable[[], None]
    """Removes what a failed or cancelled build leaves behind."""
    actor: audit.Actor
    """Who asked for it, for the audit records."""
    detail: dict[str, Any] = field(default_factory=dict)
    """In the detail of each of its audit records, e.g. the stream it is made from."""


async def update_row(database: Database, model: type[Base], row_id: int, **values: object) -> None:
    """Set ``values`` on the job's row, in a transaction of their own (nothing if it is gone)."""
    async with database.sessions() as db_session:
        row = await db_session.get(model, row_id)
        if row is not None:
            for name, value in values.items():
                setattr(row, name, value)
            await db_session.commit()


class JobRunner:
    """Runs the jobs of one kind in this process: one task each, the file work in a thread."""

    def __init__(
        self,
        *,
        database: Database,
        model: type[Base],
        action: AuditAction,
        noun: str,
        cancelled_error: type[Exception],
        expected_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        """``model``: the jobs' rows (columns state, progress, error, finished_at, and what
        :attr:`JobResult.values` names); ``action``: their audit action; ``noun``: what the audit
        records' objects and the logs call one (``export`` is ``export:<id>``);
        ``cancelled_error``: what a build raises when cancelled; ``expected_errors``: failures that
        are the input's fault, recorded and audited but not logged as errors."""
        self._database = database
        self._model = model
        self._action = action
        self._noun = noun
        self._cancelled_error = cancelled_error
        self._expected_errors = expected_errors
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._cancel: dict[int, threading.Event] = {}

    def start(self, job_id: int, job: FileJob) -> None:
        cancelled = threading.Event()
        self._cancel[job_id] = cancelled
        task = asyncio.get_running_loop().create_task(self._run(job_id, job, cancelled))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _task: self._forget(job_id))

    def _forget(self, job_id: int) -> None:
        self._tasks.pop(job_id, None)
        self._cancel.pop(job_id, None)

    async def stop(self) -> None:
        for event in self._cancel.values():
            event.set()
        tasks = tuple(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _set(self, job_id: int, **values: object) -> None:
        await update_row(self._database, self._model, job_id, **values)

    async def _audit(self, job_id: int, job: FileJob, outcome: Outcome, detail: dict[str, Any]) -> None:
        await audit.record_committed(
            database=self._database,
            action=self._action,
            outcome=outcome,
            actor=job.actor,
            object=f"{self._noun}:{job_id}",
            detail=detail,
        )

    async def _run(self, job_id: int, job: FileJob, cancelled: threading.Event) -> None:
        progress = [0.0]
        await self._set(job_id, state=JobState.RUNNING)
        work = asyncio.ensure_future(
            asyncio.to_thread(job.build, lambda value: progress.__setitem__(0, value), cancelled)
        )
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=PROGRESS_SECONDS)
                await self._set(job_id, progress=round(min(progress[0], 0.99), 4))
            result = work.result()
        except (asyncio.CancelledError, self._cancelled_error):
            cancelled.set()
            with contextlib.suppress(BaseException):
                await work
            job.discard()
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._set(job_id, state=JobState.FAILED, error="cancelled", finished_at=utcnow())
                )
            raise
        except Exception as exc:
            if not isinstance(exc, self._expected_errors):
                logger.exception("%s %d failed", self._noun, job_id)
            job.discard()
            await self._set(job_id, state=JobState.FAILED, error=str(exc)[:2000], finished_at=utcnow())
            detail = {"stage": "build", **job.detail, "error": str(exc)[:500]}
            await self._audit(job_id, job, Outcome.FAILURE, detail)
            return
        await self._set(job_id, state=JobState.DONE, progress=1.0, **result.values, finished_at=utcnow())
        await self._audit(job_id, job, Outcome.SUCCESS, {"stage": "built", **job.detail, **result.detail})
