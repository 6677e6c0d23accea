"""One load-generator process of `http_load.py`: SESSIONS concurrent sessions of the official MCP
client over streamable HTTP, each calling the server in a loop for SECONDS.

    python benchmarks/_http_worker.py SPEC.json

SPEC.json: `{"url", "sessions", "seconds", "protocol", "ops": [[op, argument], ...], "starts"}` where op
is `search` (argument: a query), `fetch` (an id) or `read` (a resource URI). Session i starts at
`ops[starts[i]]` (without `starts`, at `ops[i * 7 % len(ops)]`) and walks the list round-robin. The
sessions all connect first; the process then prints `ready` and waits for a line on stdin, so that every
process starts its clock together. At the end it prints one JSON object: per request its op, latency
(ms), whether it failed and when it started (seconds after the start), and the first few error messages.

Bounded: the URL must be loopback, a session stops after SECONDS or MAX_REQUESTS_PER_SESSION
requests, and the whole process gives up SECONDS + 60 s after it started loading.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from mcp import Client

MAX_REQUESTS_PER_SESSION = 200_000
CONNECT_TIMEOUT_SECONDS = 60.0
MAX_ERROR_SAMPLES = 5


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _call(client: Client, op: str, argument: str) -> str | None:
    """One request; None when it succeeded, else what went wrong."""
    if op == "read":
        read = await client.read_resource(argument)
        return None if read.contents else f"resources/read {argument!r}: no contents"
    name, key = ("search", "query") if op == "search" else ("fetch", "id")
    result = await client.call_tool(name, {key: argument})
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        return f"{name} {argument!r}: tool error {text[:200]}"
    return None


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url, sessions, seconds, ops = spec["url"], spec["sessions"], spec["seconds"], spec["ops"]
    if not _loopback(url):
        raise SystemExit(f"refusing a non-loopback URL: {url}")
    connected, go = anyio.Event(), anyio.Event()
    ready = 0
    records: list[tuple[str, float, bool, float]] = []
    errors: list[str] = []
    window: dict[str, float] = {}

    async def session(i: int) -> None:
        nonlocal ready
        async with Client(url, cache=None, read_timeout_seconds=30, mode=spec["protocol"]) as client:
            ready += 1
            if ready == sessions:
                connected.set()
            await go.wait()
            position = spec["starts"][i] if "starts" in spec else i * 7 % len(ops)
            for _ in range(MAX_REQUESTS_PER_SESSION):
                if time.perf_counter() >= window["deadline"]:
                    break
                op, argument = ops[position]
                position = (position + 1) % len(ops)
                started = time.perf_counter()
                try:
                    error = await _call(client, op, argument)
                except Exception as exc:  # a failed request is a figure here, not a crash
                    error = f"{op} {argument!r}: {type(exc).__name__}: {exc}"
                records.append(
                    (
                        op,
                        (time.perf_counter() - started) * 1000,
                        error is not None,
                        started - window["start"],
                    )
                )
                if error is not None and len(errors) < MAX_ERROR_SAMPLES:
                    errors.append(error[:300])

    async with anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(session, i)
        with anyio.fail_after(CONNECT_TIMEOUT_SECONDS):
            await connected.wait()
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        window["start"] = time.perf_counter()
        window["deadline"] = window["start"] + seconds
        go.set()
        tg.cancel_scope.deadline = window["deadline"] + 60
    return {
        "seconds": seconds,
        "wall_s": time.perf_counter() - window["start"],
        "records": records,
        "errors": sum(failed for _, _, failed, _ in records),
        "error_samples": errors,
        "timed_out": tg.cancel_scope.cancelled_caught,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(anyio.run(run, spec)), flush=True)


if __name__ == "__main__":
    main()
