"""MCP figures through the official SDK client over stdio, against a real `kb serve` subprocess and,
alternating with it in the same run, the floor (`_floor.py`: the same SDK answering a canned kb result).

What a client sees: each figure includes JSON-RPC framing, pipes and the client's own validation; the
floor's figure is what those cost alone, so kb's minus the floor's is kb's own cost.
"""

from __future__ import annotations

import contextlib
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client


class McpFailure(RuntimeError):
    """A step of the MCP conversation failed; the message says which, with the server's last log lines."""


HERE = Path(__file__).resolve().parent
WARM_UP = 20  # searches before the timed ones, not timed


def kb_server(root: Path, index_dir: Path, semantic: str = "off") -> list[str]:
    """`kb serve` as measured: lexical unless `semantic` is "on" (the SDK starts a server with a
    minimal environment, so this is a flag, not KB_SEMANTIC)."""
    # JSON logs: the audit records carry the server's own time per call (see _server_times).
    return [
        *("-m", "kb", "serve", str(root), "--index-dir", str(index_dir)),
        *("--log-format", "json", "--semantic", semantic),
    ]


def floor_server(canned: Path) -> list[str]:
    return [str(HERE / "_floor.py"), str(canned)]


def _client(server: list[str], errlog: Any) -> Client:
    params = StdioServerParameters(command=sys.executable, args=server)
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


async def _ready_once(server: list[str], errlog: Any) -> float:
    started = time.perf_counter()
    async with _client(server, errlog) as client:
        tools = await client.list_tools()
        if "search" not in {t.name for t in tools.tools}:
            raise McpFailure("tools/list has no 'search' tool")
        await _search(client, "install")
        return time.perf_counter() - started


async def _settled(client: Client, query: str, pending: set[str], limit_s: float) -> dict[str, Any]:
    """The result of `query` once it has none of the `pending` keys ("indexing": the start-up sync;
    "semantic_coverage": the embedding), searched again every 0.1 s for at most `limit_s`."""
    started = time.perf_counter()
    while pending & set(result := await _search(client, query)):
        if time.perf_counter() - started > limit_s:
            raise McpFailure(f"the server still reports {' or '.join(sorted(pending))} after {limit_s:g} s")
        await anyio.sleep(0.1)
    return result


async def _canned(server: list[str], query: str, errlog: Any) -> dict[str, Any]:
    """One real kb result and kb's published output schema, for the floor to answer with."""
    async with _client(server, errlog) as client:
        result = await _settled(client, query, {"indexing"}, 120)
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        return {"result": result, "output_schema": tools["search"].output_schema}


async def _latency(server: list[str], queries: list[str], errlog: Any) -> dict[str, Any]:
    async with _client(server, errlog) as client:
        started = time.perf_counter()
        # Let the start-up sync finish first, and (with semantic search on) the embedding.
        await _settled(client, "index", {"indexing", "semantic_coverage"}, 600)
        settled = time.perf_counter() - started
        # Each query asked once: kb answers a repeat from its cache of recent searches.
        distinct = list(dict.fromkeys(queries))
        warm_up, timed = distinct[:WARM_UP], distinct[WARM_UP:]
        for query in warm_up:
            await _search(client, query)
        times, empty = [], 0
        with _client_collector_paused():
            for query in timed:
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


@contextlib.contextmanager
def _client_collector_paused() -> Iterator[None]:
    """Keep this process's own full collections out of the timings: one of them paused the same page
    of a listing of 10,000 resources (the 51st) by 30-70 ms in every run, whatever the server did."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _listing(server: list[str], errlog: Any) -> dict[str, Any]:
    async with _client(server, errlog) as client:
        await _settled(client, "index", {"indexing"}, 600)  # list a whole index, not a growing one
        times, sizes, cursor = [], [], None
        with _client_collector_paused():
            while True:
                t0 = time.perf_counter()
                page = await client.list_resources(cursor=cursor)
                times.append((time.perf_counter() - t0) * 1000)
                sizes.append(len(page.resources))
                if not (cursor := page.next_cursor):
                    break
    return {
        "pages": len(times),
        "listed": sum(sizes),
        "page_size": max(sizes),
        "slowest_page": times.index(max(times)) + 1,
        "first_ms": times[0],
        "p50_ms": statistics.median(times),
        "max_ms": max(times),
        "all_s": sum(times) / 1000,
    }


def resource_pages(root: Path, index_dir: Path) -> dict[str, Any]:
    """Time every page of `resources/list` from a `kb serve` of the whole index, once its start-up
    sync has settled: the first page (which reads the sorted list of paths), then each page on."""
    return _run(_listing, kb_server(root, index_dir))


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


def canned_result(root: Path, index_dir: Path, query: str, out: Path) -> Path:
    """Write kb's result for `query` and its output schema to `out`, for `floor_server(out)`."""
    out.write_text(json.dumps(_run(_canned, kb_server(root, index_dir), query)))
    return out


def search_latency(
    root: Path, index_dir: Path, queries: list[str], canned: Path, rounds: int = 3, semantic: str = "off"
) -> dict[str, Any]:
    """Time each `search` call (ms) of kb (after its start-up sync) and of the floor, connecting to
    each `rounds` times in turn so both meet the same machine; each round times all `queries`."""
    kb_rounds, floor_rounds = [], []
    for _ in range(rounds):
        kb_rounds.append(_run(_latency, kb_server(root, index_dir, semantic), queries))
        floor_rounds.append(_run(_latency, floor_server(canned), queries))
    kb, floor = _median_round(kb_rounds), _median_round(floor_rounds)
    return {
        **kb,
        "floor_p50_ms": floor["p50_ms"],
        "floor_p99_ms": floor["p99_ms"],
        "over_floor_p50_ms": kb["p50_ms"] - floor["p50_ms"],
        "over_floor_p99_ms": kb["p99_ms"] - floor["p99_ms"],
        "rounds_p50_ms": [r["p50_ms"] for r in kb_rounds],
        "floor_rounds_p50_ms": [r["p50_ms"] for r in floor_rounds],
    }


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(rounds, key=lambda r: r["p50_ms"])[len(rounds) // 2]


def time_to_ready(root: Path, index_dir: Path, canned: Path, runs: int) -> dict[str, Any]:
    """Seconds from spawning `kb serve` (and, alternating, the floor) to the first search result
    (connect + tools/list + one call)."""
    kb, floor = [], []
    for _ in range(runs):
        kb.append(_run(_ready_once, kb_server(root, index_dir)))
        floor.append(_run(_ready_once, floor_server(canned)))
    return {
        "runs": runs,
        "p50_s": statistics.median(kb),
        "max_s": max(kb),
        "floor_p50_s": statistics.median(floor),
        "over_floor_p50_s": statistics.median(kb) - statistics.median(floor),
    }
