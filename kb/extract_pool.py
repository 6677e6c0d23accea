"""Worker processes that extract files in parallel, each file within a time budget.

A PDF can make pypdf spin for minutes; a thread cannot be stopped, but a process can. Each worker
works through the few messages queued to it over a pipe, in order, so the pool knows which message
a worker is on and since when. A message is one file, or a batch of small ones: a pipe round trip
costs about as much as extracting a small file, so small files travel together, each batch within
one file's budget. The pool kills a worker that overruns its budget and starts a fresh one; a file
that overran alone is reported as failed, the files of a batch that overran are retried one by one
(so a bad file costs only itself), and the messages queued behind go to other workers.
Results come back in submission order, with a bounded number of messages in flight.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import multiprocessing
import pickle
import signal
import threading
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
STARTUP_TIMEOUT = 120.0  # a worker's start (imports) is not part of any file's budget
PIPELINE_DEPTH = 3  # messages sent ahead to each worker, so it never idles while the parent writes
WINDOW_PER_WORKER = 16  # messages whose results may be held back for order behind a slow one

R = TypeVar("R")
Task = tuple[Any, ...]  # the arguments of one call of the work function
Batch = list[tuple[int, Task]]  # one message: tasks with their place in the submission order


def _serve(
    conn: Connection,
    work: Callable[..., object],
    complete: Callable[[list[Any]], list[Any]] | None,
    log_levels: dict[str, int],
) -> None:
    """A worker's life: say it is ready, then run `work` on each task of each message it receives,
    answering each message with the list of its results (passed through `complete`), until told to
    stop (None).

    A worker whose parent is gone (its pipe closed) leaves quietly. It starts with SIGINT and
    SIGTERM blocked (see `_spawn`) and keeps SIGINT blocked: the parent decides when it stops.
    SIGTERM is let through, so a worker ends (silently) when the whole group is told to.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _log_to_parent(conn, log_levels)
    try:
        conn.send(_READY)
        while (tasks := conn.recv()) is not None:
            results = [work(*task) for task in tasks]
            conn.send(results if complete is None else complete(results))
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
    queue: deque[Batch] = field(default_factory=deque)  # its messages, oldest (the one it is on) first
    started: float = 0.0  # when it started its oldest message, or when it was spawned until it is ready
    ready: bool = False


class _Feed:
    """The tasks still to send, cut into messages: consecutive tasks while they stay within
    `max_tasks` and `max_weight` together, a task as heavy as `max_weight` alone; messages to send
    again (retries, and those queued behind a stopped worker) first. It also keeps count of what
    was sent and not yet `release`d: the results in flight or held back for order. `take_last`
    hands out the last task instead, for the parent to run itself."""

    def __init__(
        self, tasks: Iterable[Task], max_tasks: int, max_weight: int, weigh: Callable[[Task], int]
    ) -> None:
        self._tasks = list(tasks)
        self._front = 0  # tasks before it were sent (from the front)...
        self._back = len(self._tasks)  # ...and from here on run by the parent (from the back)
        self._max_tasks = max_tasks
        self._max_weight = max_weight
        self._weigh = weigh
        self._weights: dict[int, int] = {}  # of the tasks sent and not released
        self.again: deque[Batch] = deque()
        self.held_weight = 0

    @property
    def empty(self) -> bool:
        return self._front >= self._back and not self.again

    def all_out(self, next_out: int) -> bool:
        """Whether every result has been handed out."""
        return self.empty and next_out == len(self._tasks)

    def held(self, next_out: int) -> int:
        """How many results sent for are not handed out yet (not those the parent made itself)."""
        return self._front - next_out

    def take(self, new: bool) -> Batch | None:
        """The next message: one to send again, else (if `new`) the next tasks; None if neither."""
        if self.again:
            return self.again.popleft()
        batch: Batch = []
        total = 0
        while new and self._front < self._back and len(batch) < self._max_tasks:
            task = self._tasks[self._front]
            weight = min(self._weigh(task), self._max_weight)  # a heavy task weighs one message
            if batch and (total + weight > self._max_weight or weight == self._max_weight):
                break
            batch.append((self._front, task))
            self._weights[self._front] = weight
            self._front += 1
            total += weight
            if total >= self._max_weight:
                break
        self.held_weight += total
        return batch or None

    def take_last(self, allowed: Callable[[Task], bool]) -> tuple[int, Task] | None:
        """The last task not taken yet, if `allowed`."""
        if self._back > self._front and allowed(task := self._tasks[self._back - 1]):
            self._back -= 1
            return self._back, task
        return None

    def release(self, seq: int) -> None:
        self.held_weight -= self._weights.pop(seq, 0)


class ExtractionPool(Generic[R]):
    """`jobs` worker processes applying `work` to task tuples, with a per-task time budget.

    `on_timeout(task)` and `on_crash(task)` build the result reported for a task whose worker was
    killed or died, so a caller always gets one result per task. `preload` names modules the
    workers import before their first task (forked from a server that already has them).
    Up to `batch` consecutive tasks whose `weigh(task)` adds up to at most `batch_weight` go to a
    worker in one message, within one task's budget; a task that weighs `batch_weight` goes alone.
    While the workers start, the parent runs the last tasks itself for as long as `inline(task)`
    says it may (without a budget: only for tasks that cannot take long). `complete(results)`, if
    given, finishes the results of each message together, in the worker, within the budget (work
    that costs less done for many tasks at once).
    """

    def __init__(
        self,
        work: Callable[..., R],
        jobs: int,
        timeout: float,
        on_timeout: Callable[[Task], R],
        on_crash: Callable[[Task], R],
        preload: tuple[str, ...] = (),
        batch: int = 1,
        batch_weight: int = 1,
        weigh: Callable[[Task], int] = lambda _task: 0,
        inline: Callable[[Task], bool] | None = None,
        complete: Callable[[list[R]], list[R]] | None = None,
    ) -> None:
        # forkserver: the parent may run Tantivy's threads, which fork would copy mid-flight.
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__, work.__module__, *preload])
        self._work = work
        self._complete = complete
        self._jobs = max(1, jobs)
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._on_crash = on_crash
        self._batch = max(1, batch)
        self._batch_weight = batch_weight
        self._weigh = weigh
        self._inline = inline
        self._workers: list[_Worker] = []

    def __enter__(self) -> ExtractionPool[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self._work, self._complete, _parent_log_levels()), daemon=True
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
        feed = _Feed(tasks, self._batch, self._batch_weight, self._weigh)
        done: dict[int, R] = {}
        self._start_workers(feed, done)
        next_out = 0
        while True:
            while next_out in done:
                yield done.pop(next_out)
                feed.release(next_out)
                next_out += 1
            # Keep a few messages queued at each worker, so it never idles while we write results.
            for depth in range(PIPELINE_DEPTH):
                for worker in self._workers:
                    if not worker.ready or len(worker.queue) > depth:
                        continue
                    batch = feed.take(new=not self._held_back(feed, next_out))
                    if batch is None:
                        break
                    self._send(worker, batch, feed.again)
            if feed.all_out(next_out):
                return
            self._collect(done, feed.again)

    def _start_workers(self, feed: _Feed, done: dict[int, R]) -> None:
        """Start the missing workers; meanwhile (the first start boots the forkserver, which imports
        the work's modules) the parent runs the last tasks that `inline` allows itself."""
        missing = self._jobs - len(self._workers)
        if missing <= 0:
            return
        if self._inline is None:
            self._workers.extend(self._spawn() for _ in range(missing))
            return
        started: list[_Worker] = []
        failure: list[BaseException] = []

        def start() -> None:
            try:
                started.extend(self._spawn() for _ in range(missing))
            except BaseException as exc:  # re-raised below, in the caller's thread
                failure.append(exc)

        starter = threading.Thread(target=start, name="kb-extract-start", daemon=True)
        starter.start()
        try:
            while starter.is_alive() and (item := feed.take_last(self._inline)) is not None:
                seq, task = item
                result = self._work(*task)
                done[seq] = result if self._complete is None else self._complete([result])[0]
        finally:  # the workers started are the pool's to stop, whatever happened here
            starter.join()
            self._workers.extend(started)
        if failure:
            raise failure[0]

    def _send(self, worker: _Worker, batch: Batch, again: deque[Batch]) -> None:
        try:
            worker.conn.send([task for _, task in batch])
        except OSError:
            # It died on a message sent before this one (`_collect` sees that and retries what it
            # had), or while idle: either way this message goes to the next worker that is free.
            again.appendleft(batch)
            if not worker.queue:
                logger.warning("an extraction worker died; restarting it")
                self._replace(worker)
            return
        if not worker.queue:
            worker.started = time.monotonic()
        worker.queue.append(batch)

    def _held_back(self, feed: _Feed, next_out: int) -> bool:
        """Whether enough results are in flight or held back for order (a slow task holds back
        every later result): so many messages' worth, by count and by weight."""
        window = self._jobs * WINDOW_PER_WORKER
        return feed.held(next_out) >= window * self._batch or feed.held_weight >= window * self._batch_weight

    def _deadline(self, worker: _Worker) -> float:
        return worker.started + (self._timeout if worker.ready else STARTUP_TIMEOUT)

    def _collect(self, done: dict[int, R], again: deque[Batch]) -> None:
        """Wait for the next results or deadline; record results, stop overrunning workers."""
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
            if worker.conn in ready:
                try:
                    message = _receive(worker.conn)
                except (EOFError, OSError):
                    logger.warning("an extraction worker died; restarting it")
                    self._stop(worker, self._on_crash, done, again)
                    continue
                if message is _NOTHING:
                    continue
                batch = worker.queue.popleft()
                for (seq, _), result in zip(batch, message, strict=True):
                    done[seq] = result
                worker.started = now  # the next queued message starts now
            elif now >= self._deadline(worker):
                self._stop(worker, self._on_timeout, done, again)

    def _stop(
        self, worker: _Worker, failed: Callable[[Task], R], done: dict[int, R], again: deque[Batch]
    ) -> None:
        """Replace a worker stopped on its oldest message. A task that was alone in it gets the
        `failed` result; the tasks of a batch are sent again one by one (which of them overran is
        unknown), before the messages queued behind it, which go to other workers as they were."""
        first, *behind = worker.queue
        if len(first) == 1:
            seq, task = first[0]
            done[seq] = failed(task)
            retries = behind
        else:
            logger.debug("a batch of %d tasks was stopped; retrying each alone", len(first))
            retries = [[item] for item in first] + behind
        again.extendleft(reversed(retries))
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
