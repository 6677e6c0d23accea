"""Several `kb serve --http` processes on one listening socket and one index.

The process the user started is the writer: it syncs, watches and embeds, and serves. It spawns
the others, replicas that serve from the same index and follow its commits (`Library` in replica
mode). The kernel hands each new connection to whichever process accepts it first, so every
request must stand alone: the app is stateless (no 2025-era session outlives its request).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import Protocol

logger = logging.getLogger(__name__)

STOP_SECONDS = 10.0  # a replica's graceful stop (uvicorn finishing its requests), then a kill
PARENT_CHECK_SECONDS = 1.0


class Flag(Protocol):
    """A flag shared between processes (a `multiprocessing` event)."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...


ReplicaMain = Callable[[socket.socket, Flag], None]


@contextlib.contextmanager
def replicas(sock: socket.socket, count: int, main: ReplicaMain) -> Iterator[Flag]:
    """`count` processes running `main(sock, writer_synced)`, stopped (SIGTERM, then SIGKILL) when
    the block ends, also when this process is told to stop by a SIGTERM (it then exits 143, as it
    would have). The block is given `writer_synced`, to set once this process's startup sync is
    done: until then a replica answers as the writer does during it, saying the index is incomplete."""
    # uvicorn stops on SIGTERM, then raises it again with the handler it found: SIG_DFL would end
    # this process there, before its replicas are stopped.
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    # Spawned, not forked: the parent holds threads and Tantivy's state, which a fork would copy.
    context = multiprocessing.get_context("spawn")
    synced = context.Event()
    processes: list[BaseProcess] = [
        context.Process(target=main, args=(sock, synced), name=f"kb-replica-{i + 1}", daemon=True)
        for i in range(count)
    ]
    try:
        for process in processes:
            process.start()
        logger.info("serving from %d processes: this one writes, %d replicas read", count + 1, count)
        yield synced
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_with_parent() -> None:
    """In a replica: stop as if told to (SIGTERM) once the process that started it is gone, even
    killed with no chance to stop its replicas."""
    parent = os.getppid()

    def watch() -> None:
        stopped = threading.Event()  # never set: a bounded wait between looks
        while os.getppid() == parent:
            stopped.wait(PARENT_CHECK_SECONDS)
        logger.info("the writer process is gone; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="kb-parent-watch", daemon=True).start()
