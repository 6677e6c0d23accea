"""The MCP server, the only package that imports `mcp`: `build_server(settings)` wires tools,
resources and prompts around a `kb.library.Library`; `run_stdio` serves it on stdin/stdout (HTTP and
SSE are in `kb.server.http`).

Shared state lives in a `KbRuntime` (`_runtime`) made by `build_server` and handed to handlers as
the lifespan context.
"""

from __future__ import annotations

import logging
import signal

import anyio
from mcp.server import MCPServer

from kb.config import Settings
from kb.errors import KbError
from kb.library import Library
from kb.server import audit
from kb.server._runtime import KbRuntime
from kb.server._stdio import serve_stdio
from kb.server.prompts import register_prompts
from kb.server.resources import register_resources
from kb.server.tools import register_tools

__all__ = ["INSTRUCTIONS", "KbRuntime", "build_server", "run_stdio"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
kb serves a folder of documents (notes, manuals, specs, papers) kept by the user.
To answer from it: call `search` with a few keywords (Tantivy syntax: words, "phrases", AND/OR/NOT,
field:term; filters for folder, format, tags and date), then `fetch` the ids you need to read the
full passage or document, and cite the id or url you used. Ids are stable: `path` names a whole
document, `path#fragment` one passage; they stay valid across restarts while the file exists.
Long texts come in pages: call `fetch` again with `offset` set to the returned `next_offset`.
Every document is also a resource `kb://doc/<path>`; `kb://status` reports the index.
If a search result says indexing is still running, an empty result may not mean the answer is absent."""


def build_server(settings: Settings, *, runtime: KbRuntime | None = None) -> MCPServer[Library]:
    """An MCP server for the documents under `settings.root`, indexed in `settings.index_dir`.

    Nothing is opened until a transport starts the server's lifespan. Pass a `runtime` to reach
    the server's library from outside (tests, benchmarks).
    """
    runtime = runtime or KbRuntime(settings)
    server: MCPServer[Library] = MCPServer(
        "kb",
        title="kb knowledge base",
        description="Search and read a folder of documents.",
        instructions=INSTRUCTIONS,
        version=_version(),
        lifespan=runtime.lifespan,
        log_level="WARNING",
        subscriptions=runtime.bus,
    )
    audit.install(server)  # first: the outermost middleware, so its duration covers the others
    register_tools(server, runtime)
    register_resources(server, runtime)
    runtime.sessions.install(server)
    register_prompts(server, runtime)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kb")
    except PackageNotFoundError:
        return "0"


# ---- transports ------------------------------------------------------------------------------


def run_stdio(settings: Settings) -> signal.Signals | None:
    """Serve MCP on stdin/stdout until the client's input ends (requests already read are answered
    first, within `_stdio.ANSWER_GRACE_SECONDS`), it stops reading, or SIGINT or SIGTERM arrives;
    the library is closed in every case. Logs go to stderr (set up by the CLI).

    Returns the signal that stopped the server, or None.

    Raises:
        KbError: the library could not be opened (as itself, not inside an exception group).
    """
    try:
        return anyio.run(serve_stdio, build_server(settings))
    except BaseExceptionGroup as group:
        error = _sole_kb_error(group)
        if error is None:
            raise
        raise error from None


def _sole_kb_error(group: BaseExceptionGroup[BaseException]) -> KbError | None:
    """The KbError a group of task failures comes down to, if it is the only failure."""
    errors: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            errors.append(error)
    if len(errors) == 1 and isinstance(errors[0], KbError):
        return errors[0]
    return None
