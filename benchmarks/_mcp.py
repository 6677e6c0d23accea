"""MCP figures through the official SDK client over stdio, against a real `kb serve` subprocess.

What a client sees: each figure includes JSON-RPC framing, pipes and the client's own validation.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client


class McpFailure(RuntimeError):
    """A step of the MCP conversation failed; the message says which, with the server's last log lines."""


def _client(root: Path, index_dir: Path, errlog: Any) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        # JSON logs: the audit records carry the server's own time per call (see _server_times).
        args=["-m", "kb", "serve", str(root), "--index-dir", str(index_dir), "--log-format", "json"],
    )
    # cache=None: every search must reach the server.
    return Client(stdio_client(params, errlog=errlog), cache=None, read_timeout_seconds=30)


async def _search(client: Client, query: str) -> dict[str, Any]:
    result = await client.call_tool("search", {"query": query})
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise McpFailure(f"search {query!r} returned a tool error: {text[:300]}")
    return result.structured_content or {}


def _tail(errlog: Any) -> str:
    errlog.seek(0)
    return "".join(errlog.readlines()[-8:])


async def _ready_once(root: Path, index_dir: Path, errlog: Any) -> float:
    started = time.perf_counter()
    async with _client(root, index_dir, errlog) as client:
        tools = await client.list_tools()
        if "search" not in {t.name for t in tools.tools}:
            raise McpFailure("tools/list has no 'search' tool")
        await _search(client, "install")
        return time.perf_counter() - started


async def _latency(root: Path, index_dir: Path, queries: list[str], errlog: Any) -> dict[str, Any]:
    async with _client(root, index_dir, errlog) as client:
        started = time.perf_counter()
        while (await _search(client, "index")).get("indexing"):  # let the start-up sync finish first
            if time.perf_counter() - started > 120:
                raise McpFailure("the server still reports indexing after 120 s")
            await anyio.sleep(0.1)
        settled = time.perf_counter() - started
        for query in queries[:20]:  # warm-up, not timed
            await _search(client, query)
        times, empty = [], 0
        for query in queries:
            t0 = time.perf_counter()
            found = await _search(client, query)
            times.append((time.perf_counter() - t0) * 1000)
            empty += not found.get("results")
        protocol = client.protocol_version
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    server = _server_times(errlog)[-len(times) :]
    server_cuts = statistics.quantiles(server, n=100, method="inclusive") if len(server) > 1 else [0.0] * 99
    return {
        "server_p50_ms": statistics.median(server) if server else None,
        "server_p99_ms": server_cuts[98] if server else None,
        "protocol": protocol,
        "queries": len(times),
        "empty_results": empty,
        "p50_ms": statistics.median(times),
        "p90_ms": cuts[89],
        "p99_ms": cuts[98],
        "max_ms": max(times),
        "sync_settled_s": settled,
    }


def _server_times(errlog: Any) -> list[float]:
    """The server's own milliseconds per search call, from its audit records, in order."""
    errlog.seek(0)
    times = []
    for line in errlog:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("action") == "tools/call" and record.get("name") == "search":
            times.append(float(record["duration_ms"]))
    errlog.seek(0, 2)
    return times


def _run(fn: Any, *args: Any) -> Any:
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            return anyio.run(fn, *args, errlog)
        except Exception as exc:
            raise McpFailure(f"{type(exc).__name__}: {exc}\n--- kb serve stderr:\n{_tail(errlog)}") from exc


def search_latency(root: Path, index_dir: Path, queries: list[str]) -> dict[str, Any]:
    """Connect once, wait for the start-up sync, then time each `search` call (ms)."""
    return _run(_latency, root, index_dir, queries)


def time_to_ready(root: Path, index_dir: Path, runs: int) -> dict[str, Any]:
    """Seconds from spawning `kb serve` to the first search result (connect + tools/list + one call)."""
    times = [_run(_ready_once, root, index_dir) for _ in range(runs)]
    return {"runs": runs, "p50_s": statistics.median(times), "max_s": max(times)}
