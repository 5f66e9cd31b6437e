"""Dynamic batching: requests that arrive together share one forward, whichever model they ask.

Each request's texts are encoded on arrival (bad input never reaches the queue), then queued as
one job. A single loop takes the first waiting job, adds those that follow until the batch holds
`max_batch_size` texts or its padded size would pass `max_batch_tokens`, or `max_wait_ms` has
passed since it started waiting, and runs the batch in one worker thread, off the event loop.
A job is never split, so a request's answers come from one forward. A forward that fails fails
the request that caused it only: the batch's jobs are retried one by one. The loop itself never
dies of an error; whatever goes wrong is set on the futures of the jobs it held.

A job names the model it is for (`liftkit.many.Member`). A batch holds the jobs of every model
that arrived together, and `run` (`Many.logits_many`) computes it: the bottom layers of a base
once for all its models' rows. A request to several models is one job per model, queued together.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from liftkit.predict import sequences

Run = Callable[[list[tuple[Any, list[Any]]]], list[np.ndarray]]  # [(model, rows)] -> logits per job


class QueueFull(Exception):
    """More requests in flight than the server admits (--max-concurrent-requests)."""


@dataclass
class _Job:
    model: Any  # a liftkit.many.Member
    rows: list[list[int]]
    future: asyncio.Future = field(repr=False)

    @property
    def width(self) -> int:
        return max(len(row) for row in self.rows)

    @property
    def size(self) -> int:
        """Rows the model computes for this job: a bi-encoder's pair is two."""
        return len(sequences(self.rows))


class Batcher:
    def __init__(
        self,
        max_batch_size: int,
        max_batch_tokens: int,
        max_wait_ms: float,
        max_pending: int,
        run: Run,
        on_batch: Callable[[int, int, dict[str, int]], None] = lambda texts, tokens, by_model: None,
    ):
        self.run = run
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.max_wait = max_wait_ms / 1000
        self.max_pending = max_pending
        self.pending = 0  # requests admitted and not yet answered
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liftkit-forward")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """After the server has drained its requests: end the loop and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():  # nothing should be left; if something is, it must not wait forever
            _fail([self._queue.get_nowait()], RuntimeError("the server is shutting down: retry on another replica"))
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    async def submit(self, work: list[tuple[Any, list[list[int]]]]) -> list[np.ndarray]:
        """The logits of each (model, rows), computed in some batch; QueueFull when the server is
        saturated. One request, however many models it asks."""
        if self.pending >= self.max_pending:
            raise QueueFull
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            jobs = [_Job(model, rows, loop.create_future()) for model, rows in work]
            for job in jobs:
                self._queue.put_nowait(job)
            return list(await asyncio.gather(*(job.future for job in jobs)))
        finally:
            self.pending -= 1

    async def _loop(self) -> None:
        carry: _Job | None = None
        while True:
            jobs = [carry or await self._queue.get()]
            carry = None
            try:
                carry = await self._fill(jobs)
                await self._run(jobs)
            except Exception as exc:  # a bug here must fail these requests, not every later one
                _fail(jobs, exc)

    async def _fill(self, jobs: list[_Job]) -> _Job | None:
        """Add waiting jobs to `jobs` within the limits; return the first that did not fit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        texts, width = jobs[0].size, jobs[0].width
        while texts < self.max_batch_size:
            try:
                wait = deadline - loop.time()
                job = (
                    self._queue.get_nowait()
                    if wait <= 0 or not self._queue.empty()
                    else await asyncio.wait_for(self._queue.get(), wait)
                )
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                return None
            grown = max(width, job.width)
            if texts + job.size > self.max_batch_size or (texts + job.size) * grown > self.max_batch_tokens:
                return job
            jobs.append(job)
            texts, width = texts + job.size, grown
        return None

    async def _run(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # clients that went away
        if not jobs:
            return
        size = sum(job.size for job in jobs)
        by_model: dict[str, int] = {}
        for job in jobs:
            by_model[job.model.name] = by_model.get(job.model.name, 0) + job.size
        self.on_batch(size, size * max(job.width for job in jobs), by_model)
        try:
            logits = await self._forward(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                _fail(jobs, exc)
            else:  # find the request that fails: alone, each of the others still gets its answer
                for job in jobs:
                    await self._run([job])
            return
        for job, values in zip(jobs, logits):
            if not job.future.done():
                job.future.set_result(values)

    async def _forward(self, jobs: list[_Job]) -> list[np.ndarray]:
        """One merged batch in the worker thread, off the event loop."""
        work = [(job.model, job.rows) for job in jobs]
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: self.run(work))


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
