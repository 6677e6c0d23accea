"""MCP on stdin and stdout: stops promptly on SIGINT and SIGTERM, and answers every request it read.

kb does not use the SDK's `stdio_server`, for two reasons. It reads stdin in a worker thread that
no cancel can interrupt, so a Ctrl-C waits for the next line of input (python-sdk #3551). And at
the end of input it cancels the requests still being answered, so `printf '…' | kb serve` loses the
last replies (python-sdk #2678). Here stdin is read on the event loop (wait until readable, then a
read that returns what is there), and the end of input waits, bounded, until every request read has
been answered before the server sees it.

As in the SDK, while serving fd 0 reads the null device and fd 1 writes to stderr, so a stray print
(kb's, a library's, an extraction worker's) can never corrupt the protocol.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import MCPServer
from mcp.shared.message import SessionMessage
from mcp_types import (
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)

from kb.server import _sdk_compat

logger = logging.getLogger(__name__)

ANSWER_GRACE_SECONDS = 30.0  # at the end of input, how long requests already read may take
DRAIN_SECONDS = 2.0  # after the server stopped, how long its last messages may take to be written
_CHUNK = 64 * 1024
# A listen request is answered by a stream that lasts as long as the connection: never waited for.
_OPEN_ENDED = frozenset({"subscriptions/listen"})


class _Connection:
    """What the reader, the writer and the signal watcher share about one client."""

    def __init__(self) -> None:
        self.unanswered: set[int | str] = set()  # ids of requests read and not yet answered
        self.all_answered: anyio.Event | None = None  # set when `unanswered` empties, once waited on
        self.stopped_by: signal.Signals | None = None
        self.serving = anyio.CancelScope()  # cancelled to stop the server (signal, client gone)
        self.write_abandoned = False

    def read(self, message: JSONRPCMessage) -> None:
        if isinstance(message, JSONRPCRequest) and message.method not in _OPEN_ENDED:
            self.unanswered.add(message.id)
        elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
            # A cancelled request is never answered (the spec forbids it): stop waiting for it.
            request_id = (message.params or {}).get("requestId")
            if isinstance(request_id, int | str):
                self._answered(request_id)

    def written(self, message: JSONRPCMessage) -> None:
        if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
            self._answered(message.id)

    def _answered(self, request_id: int | str) -> None:
        self.unanswered.discard(request_id)
        if not self.unanswered and self.all_answered is not None:
            self.all_answered.set()

    async def wait_answered(self, seconds: float) -> None:
        if not self.unanswered:
            return
        self.all_answered = anyio.Event()
        with anyio.move_on_after(seconds) as waited:
            await self.all_answered.wait()
        if waited.cancelled_caught:
            logger.warning(
                "input ended; %d request(s) still unanswered after %gs are cancelled",
                len(self.unanswered),
                seconds,
            )


async def serve_stdio(server: MCPServer[Any]) -> signal.Signals | None:
    """Serve one client on stdin and stdout until its input ends (and what it asked is answered),
    it stops reading, or SIGINT or SIGTERM arrives. Returns the signal that stopped it, if any.

    The server's lifespan (kb's library) is closed before this returns, whatever stopped it.
    """
    connection = _Connection()
    with _claim_std_streams(connection) as (wire_in, wire_out):
        to_server, from_client = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        to_client, from_server = anyio.create_memory_object_stream[SessionMessage](0)
        async with anyio.create_task_group() as outer:
            outer.start_soon(_write, wire_out, from_server, connection)
            with connection.serving:
                async with anyio.create_task_group() as inner:
                    await inner.start(_stop_on_signal, connection)
                    inner.start_soon(_read, wire_in, to_server, connection)
                    await _sdk_compat.serve_streams(server, from_client, to_client)
                    inner.cancel_scope.cancel()
            to_client.close()  # the server closes it too, unless it failed before serving
            # Let the writer finish the last replies, unless the client stopped reading them.
            outer.cancel_scope.deadline = anyio.current_time() + DRAIN_SECONDS
    return connection.stopped_by


async def _stop_on_signal(
    connection: _Connection, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Stop serving at the first SIGINT or SIGTERM. A second one is handled as Python does by
    default (KeyboardInterrupt, or termination): the way out if the clean stop itself hangs."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            connection.stopped_by = signal.Signals(signum)
            logger.info("%s received: stopping", connection.stopped_by.name)
            connection.serving.cancel()
            return


async def _read(
    fd: int, to_server: MemoryObjectSendStream[SessionMessage | Exception], connection: _Connection
) -> None:
    """Pass each line of input to the server; at its end, wait for the answers, then close."""
    async with to_server:
        async for line in _lines(fd):
            try:
                message = jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValueError as exc:  # pydantic's ValidationError: passed on, as the SDK does
                item: SessionMessage | Exception = exc
            else:
                connection.read(message)
                item = SessionMessage(message)
            try:
                await to_server.send(item)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the server stopped reading
        logger.debug("end of input")
        await connection.wait_answered(ANSWER_GRACE_SECONDS)


async def _lines(fd: int) -> AsyncIterator[bytes]:
    """The non-blank lines read from `fd`, without waiting in a thread that a cancel cannot stop."""
    pollable = True
    pending = b""
    while True:
        if pollable:
            try:
                await anyio.wait_readable(fd)
            except PermissionError:  # a regular file or /dev/null: cannot be polled, never blocks
                pollable = False
        if not pollable:
            await anyio.lowlevel.checkpoint()
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:  # a descriptor another process made non-blocking: wait again
            continue
        except OSError as exc:
            logger.debug("reading stdin failed: %s", exc)
            chunk = b""
        if not chunk:
            if pending.strip():
                yield pending
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line


async def _write(
    fd: int, from_server: MemoryObjectReceiveStream[SessionMessage], connection: _Connection
) -> None:
    """Write each message of the server as one line. If the client stops reading (a broken pipe),
    stop the server and drop what it still sends."""
    client_gone = False
    async with from_server:
        async for session_message in from_server:
            if client_gone:
                continue
            message = session_message.message
            line = message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
            try:
                # A thread: a client slow to read may block the write; abandoned if that outlasts
                # the drain at the end (the process is leaving then).
                await anyio.to_thread.run_sync(_write_all, fd, line, abandon_on_cancel=True)
            except anyio.get_cancelled_exc_class():
                connection.write_abandoned = True
                raise
            except OSError as exc:
                logger.info("the client closed stdout (%s): stopping", exc.strerror or exc)
                client_gone = True
                connection.serving.cancel()
                continue
            connection.written(message)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # a descriptor another process made non-blocking
            select.select([], [fd], [])


@contextlib.contextmanager
def _claim_std_streams(connection: _Connection) -> Iterator[tuple[int, int]]:
    """Private duplicates of fds 0 and 1 for the protocol; meanwhile fd 0 reads the null device
    and fd 1 writes to stderr. Both are restored on the way out."""
    sys.stdout.flush()
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    try:
        yield wire_in, wire_out
    finally:
        sys.stdout.flush()  # a stray print still buffered goes to stderr, not into the protocol
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_in)
        if not connection.write_abandoned:  # else a thread may still write to it: keep it open
            os.close(wire_out)
