"""Worker processes that extract files in parallel, each file within a time budget.

A PDF can make pypdf spin for minutes; a thread cannot be stopped, but a process can. Each worker
works through the few files queued to it over a pipe, in order, so the pool knows which file a
worker is on and since when; it kills a worker that overruns its budget (reporting that file as
failed), hands the files queued behind it to others, and starts a fresh worker.
Results come back in submission order, with a bounded number of files in flight.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import multiprocessing
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

_READY = "ready"
_NOTHING = object()  # what `_receive` returns when a worker sent only log records
STARTUP_TIMEOUT = 120.0
PIPELINE_DEPTH = (
    3  # tasks sent ahead to each worker  # a worker's start (imports) is not part of any file's budget
)

R = TypeVar("R")
Task = tuple[Any, ...]  # the arguments of one call of the work function


def _serve(conn: Connection, work: Callable[..., object], log_levels: dict[str, int]) -> None:
    """A worker's life: say it is ready, then run `work` on each task until told to stop (None).

    A worker whose parent is gone (its pipe closed) leaves quietly. It starts with SIGINT and
    SIGTERM blocked (see `_spawn`) and keeps SIGINT blocked: the parent decides when it stops.
    SIGTERM is let through, so a worker ends (silently) when the whole group is told to.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _log_to_parent(conn, log_levels)
    try:
        conn.send(_READY)
        while (task := conn.recv()) is not None:
            conn.send(work(*task))
    except (EOFError, OSError):  # the parent's end of the pipe is closed: it is gone
        return


def _log_to_parent(conn: Connection, log_levels: dict[str, int]) -> None:
    """Send this worker's log records (and `warnings.warn` output) to the parent, whose handlers
    format them: nothing a worker logs reaches stderr in a format the user did not choose."""
    root = logging.getLogger()
    root.handlers[:] = [_ToParent(conn)]
    for name, level in log_levels.items():
        logging.getLogger(name or None).setLevel(level)
    logging.captureWarnings(True)


def _parent_log_levels() -> dict[str, int]:
    """The levels set on the parent's loggers ("" for the root), for its workers to drop records
    at the source that the parent would drop."""
    loggers = logging.Logger.manager.loggerDict.items()
    levels = {name: lg.level for name, lg in loggers if isinstance(lg, logging.Logger) and lg.level}
    levels[""] = logging.getLogger().level
    return levels


class _ToParent(logging.Handler):
    """A worker's one log handler: each record crosses the task pipe, picklable (message
    formatted, traceback as text), in order with the results."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            portable = copy.copy(record)
            portable.msg, portable.args = record.getMessage(), None
            if record.exc_info:
                portable.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
                portable.exc_info = None
            self._conn.send(portable)
        except OSError:  # the parent is gone: nobody to tell
            pass
        except (TypeError, ValueError, AttributeError, pickle.PicklingError):  # a bad record
            self.handleError(record)


def _receive(conn: Connection) -> Any:
    """A worker's next message (a result, or its ready word), after logging here the log records it
    sent before; `_NOTHING` if only log records were waiting.

    Raises:
        EOFError, OSError: the worker is gone.
    """
    while True:
        message = conn.recv()
        if not isinstance(message, logging.LogRecord):
            return message
        log = logging.getLogger(message.name)
        if log.isEnabledFor(message.levelno):
            log.handle(message)
        if not conn.poll():
            return _NOTHING


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
        process = self._context.Process(
            target=_serve, args=(child, self._work, _parent_log_levels()), daemon=True
        )
        # A Ctrl-C at a terminal (or a service manager's SIGTERM) reaches every process of the
        # group, and would kill the forkserver (started by the first spawn) or a worker before
        # they are ready, tracebacks and all. A blocked signal stays blocked through fork and
        # exec; multiprocessing's resource tracker starts itself that way (bpo-33613), and
        # unblocks both when it does, so it is started first.
        resource_tracker.ensure_running()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
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
                        message = _receive(worker.conn)
                    except (EOFError, OSError):
                        raise RuntimeError("an extraction worker process failed to start") from None
                    worker.ready = message == _READY
                elif now >= self._deadline(worker):
                    raise RuntimeError(f"an extraction worker did not start within {STARTUP_TIMEOUT:g}s")
                continue
            seq = worker.queue[0]
            if worker.conn in ready:
                try:
                    message = _receive(worker.conn)
                except (EOFError, OSError):
                    logger.warning("an extraction worker died; restarting it")
                    done[seq] = self._on_crash(inflight[seq])
                    self._stop(worker, inflight, retry)
                else:
                    if message is _NOTHING:
                        continue
                    done[seq] = message
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
        """Stop every worker; one still busy (its results no longer wanted: a stopped sync) at once."""
        for worker in self._workers:
            if worker.queue:
                worker.process.kill()
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(2)
            worker.conn.close()
        self._workers = []
