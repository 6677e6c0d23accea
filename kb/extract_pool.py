"""Worker processes that extract files in parallel, each file within a time budget.

A PDF can make pypdf spin for minutes; a thread cannot be stopped, but a process can. Each worker
works through the few files queued to it over a pipe, in order, so the pool knows which file a
worker is on and since when; it kills a worker that overruns its budget (reporting that file as
failed), hands the files queued behind it to others, and starts a fresh worker.
Results come back in submission order, with a bounded number of files in flight.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

_READY = "ready"
STARTUP_TIMEOUT = 120.0
PIPELINE_DEPTH = (
    3  # tasks sent ahead to each worker  # a worker's start (imports) is not part of any file's budget
)

R = TypeVar("R")
Task = tuple[Any, ...]  # the arguments of one call of the work function


def _serve(conn: Connection, work: Callable[..., object]) -> None:
    """A worker's life: say it is ready, then run `work` on each task until told to stop (None)."""
    conn.send(_READY)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(work(*task))


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    queue: deque[int] = field(default_factory=deque)  # its tasks, oldest (the one it is on) first
    started: float = 0.0  # when it started its oldest task, or when it was spawned until it is ready
    ready: bool = False


class ExtractionPool(Generic[R]):
    """`jobs` worker processes applying `work` to task tuples, with a per-task time budget.

    `on_timeout(task)` and `on_crash(task)` build the result reported for a task whose worker was
    killed or died, so a caller always gets one result per task. `preload` names modules the
    workers import before their first task (forked from a server that already has them).
    """

    def __init__(
        self,
        work: Callable[..., R],
        jobs: int,
        timeout: float,
        on_timeout: Callable[[Task], R],
        on_crash: Callable[[Task], R],
        preload: tuple[str, ...] = (),
    ) -> None:
        # forkserver: the parent may run Tantivy's threads, which fork would copy mid-flight.
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([work.__module__, *preload])
        self._work = work
        self._jobs = max(1, jobs)
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._on_crash = on_crash
        self._workers: list[_Worker] = []

    def __enter__(self) -> ExtractionPool[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self._work), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent, started=time.monotonic())

    def _replace(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._spawn()

    def map(self, tasks: Iterable[Task]) -> Iterator[R]:
        """Results of `work(*task)` for each task, in order."""
        while len(self._workers) < self._jobs:
            self._workers.append(self._spawn())
        pending = iter(enumerate(tasks))
        retry: deque[tuple[int, Task]] = deque()  # queued behind a task whose worker was stopped
        inflight: dict[int, Task] = {}
        done: dict[int, R] = {}
        next_out = 0
        exhausted = False
        window = self._jobs * 16  # results held back for order stay bounded behind a slow file
        while True:
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            # Keep a few tasks queued at each worker, so it never idles while we write results.
            for depth in range(PIPELINE_DEPTH):
                for worker in self._workers:
                    if not worker.ready or len(worker.queue) > depth or len(inflight) + len(done) >= window:
                        continue
                    item = retry.popleft() if retry else next(pending, None)
                    if item is None:
                        exhausted = True
                        break
                    seq, task = item
                    worker.conn.send(task)
                    if not worker.queue:
                        worker.started = time.monotonic()
                    worker.queue.append(seq)
                    inflight[seq] = task
            if not inflight and exhausted and not retry and not done:
                return
            self._collect(inflight, done, retry)

    def _deadline(self, worker: _Worker) -> float:
        return worker.started + (self._timeout if worker.ready else STARTUP_TIMEOUT)

    def _collect(self, inflight: dict[int, Task], done: dict[int, R], retry: deque[tuple[int, Task]]) -> None:
        """Wait for the next result or deadline; record results, stop overrunning workers."""
        waiting = [w for w in self._workers if w.queue or not w.ready]
        budget = min(self._deadline(w) for w in waiting) - time.monotonic()
        ready = wait([w.conn for w in waiting], timeout=max(0.0, budget))
        now = time.monotonic()
        for worker in waiting:
            if not worker.ready:
                if worker.conn in ready:
                    try:
                        worker.ready = worker.conn.recv() == _READY
                    except (EOFError, OSError):
                        raise RuntimeError("an extraction worker process failed to start") from None
                elif now >= self._deadline(worker):
                    raise RuntimeError(f"an extraction worker did not start within {STARTUP_TIMEOUT:g}s")
                continue
            seq = worker.queue[0]
            if worker.conn in ready:
                try:
                    done[seq] = worker.conn.recv()
                except (EOFError, OSError):
                    logger.warning("an extraction worker died; restarting it")
                    done[seq] = self._on_crash(inflight[seq])
                    self._stop(worker, inflight, retry)
                else:
                    worker.queue.popleft()
                    worker.started = now  # the next queued task starts now
            elif now >= self._deadline(worker):
                done[seq] = self._on_timeout(inflight[seq])
                self._stop(worker, inflight, retry)
            else:
                continue
            del inflight[seq]

    def _stop(self, worker: _Worker, inflight: dict[int, Task], retry: deque[tuple[int, Task]]) -> None:
        """Replace a worker stopped on its oldest task; the tasks queued behind it go to others."""
        for seq in list(worker.queue)[1:]:
            retry.append((seq, inflight.pop(seq)))
        self._replace(worker)

    def close(self) -> None:
        """Stop every worker."""
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(2)
            worker.conn.close()
        self._workers = []
