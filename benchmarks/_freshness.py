"""Live freshness through MCP (issue 4): how soon a saved file is found, and how fast a burst is absorbed.

Against a real `kb serve ROOT` subprocess (watcher on, as by default), through the official SDK client
over stdio. ROOT must be a scratch copy that is already indexed in INDEX_DIR: this edits its files and
adds a folder to it.

- save-to-searchable: each edit appends a unique new word to an existing file (alternately a plain
  write and an editor's atomic save: temp file + os.replace), then `search` is polled for that word
  every POLL seconds until it returns that file. The clock starts just before the write.
- burst: BURST new small Markdown files written into a new folder as fast as possible; the clock stops
  when a search finds the last one written and `kb://status` counts all of them as documents.

Also a script: `python benchmarks/_freshness.py DIR` copies DIR, indexes the copy and prints the JSON.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from _mcp import McpFailure, _client, _run, _search, kb_server
from mcp import Client

POLL = 0.01  # seconds between two polls of the server
EDIT_TIMEOUT = 10.0  # an edit not found by then counts as a timeout
BURST_TIMEOUT = 120.0
IDLE = 0.3  # untimed pause between edits, longer than the watcher's debounce: each save starts idle


async def _status(client: Client) -> dict[str, Any]:
    result = await client.read_resource("kb://status")
    return json.loads(getattr(result.contents[0], "text", "") or "{}")


async def _found(client: Client, word: str, rel: str) -> bool:
    found = await _search(client, word)
    return any(hit.get("path") == rel for hit in found.get("results", []))


async def _settle(client: Client) -> float:
    """Wait for the start-up sync to finish; seconds waited."""
    started = time.perf_counter()
    while (await _search(client, "index")).get("indexing"):
        if time.perf_counter() - started > 120:
            raise McpFailure("the server still reports indexing after 120 s")
        await anyio.sleep(0.1)
    return time.perf_counter() - started


def _segments(index_dir: Path) -> int | None:
    """Tantivy segments in the index (a diagnostic: each commit adds some, merges remove them)."""
    try:
        return len(json.loads((index_dir / "meta.json").read_text())["segments"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(path: Path, text: str, atomic: bool) -> None:
    if atomic:  # as editors do: write a hidden temp file beside it, rename it over the original
        tmp = path.with_name(f".{path.name}.kb-bench.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


def _targets(root: Path, n: int, seed: int = 4) -> list[Path]:
    files = sorted(root.rglob("*.md"))
    if not files:
        raise McpFailure(f"no Markdown files under {root} to edit")
    rng = random.Random(seed)
    return rng.sample(files, n) if len(files) >= n else [files[i % len(files)] for i in range(n)]


def _quantiles(ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"p50": statistics.median(ms), "p90": cuts[89], "p99": cuts[98], "max": max(ms)}


async def _edits(client: Client, root: Path, n: int, poll: float) -> dict[str, Any]:
    rng = random.Random(5)
    latencies: list[float] = []
    to_commit: list[float] = []
    by_kind: dict[str, list[float]] = {"plain": [], "atomic": []}
    timeouts = 0
    for i, path in enumerate(_targets(root, n)):
        rel = path.relative_to(root).as_posix()
        word = f"fresh{i:02d}q{rng.getrandbits(40):010x}"  # one token, far from every other one
        text = path.read_text(errors="replace").rstrip("\n") + f"\n\nFreshness probe {word}.\n"
        atomic = i % 2 == 1
        await anyio.sleep(IDLE)
        saved_wall = time.time()
        t0 = time.perf_counter()
        _save(path, text, atomic)
        while not await _found(client, word, rel):
            if time.perf_counter() - t0 > EDIT_TIMEOUT:
                timeouts += 1
                break
            await anyio.sleep(poll)
        else:
            ms = (time.perf_counter() - t0) * 1000
            latencies.append(ms)
            by_kind["atomic" if atomic else "plain"].append(ms)
            # The server records the time of its last commit (wall clock, same machine).
            last = (await _status(client)).get("last_commit")
            if last:
                commit_ms = (datetime.fromisoformat(last).timestamp() - saved_wall) * 1000
                if 0 <= commit_ms <= ms + 50:
                    to_commit.append(commit_ms)
    if not latencies:
        raise McpFailure(f"none of {n} edits became searchable within {EDIT_TIMEOUT:.0f} s")
    return {
        "edits": n,
        "timeouts": timeouts,
        "timeout_s": EDIT_TIMEOUT,
        "poll_ms": poll * 1000,
        **{f"{k}_ms": v for k, v in _quantiles(latencies).items()},
        "first10_p50_ms": statistics.median(latencies[:10]),
        "last10_p50_ms": statistics.median(latencies[-10:]),
        "plain_p50_ms": statistics.median(by_kind["plain"]) if by_kind["plain"] else None,
        "atomic_p50_ms": statistics.median(by_kind["atomic"]) if by_kind["atomic"] else None,
        "to_commit_p50_ms": statistics.median(to_commit) if to_commit else None,
        "to_commit_samples": len(to_commit),
    }


def _burst_file(i: int) -> str:
    return (
        f"---\ntitle: Burst note {i}\ntags: [burst]\n---\n\n# Burst note {i}\n\n"
        f"A small note written in a burst, number {i}, word burstword{i:05d}.\n"
    )


async def _count_listed(client: Client, prefix: str) -> int:
    """Documents under `prefix` that resources/list names (all pages), to confirm the status count."""
    count, cursor = 0, None
    while True:
        page = await client.list_resources(cursor=cursor)
        count += sum(str(r.uri).startswith(f"kb://doc/{prefix}") for r in page.resources)
        cursor = page.next_cursor
        if not cursor:
            return count


async def _burst(client: Client, root: Path, n: int, poll: float) -> dict[str, Any]:
    before = (await _status(client))["documents"]
    folder = root / "kb-bench-burst"
    folder.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        (folder / f"burst{i:05d}.md").write_text(_burst_file(i))
    written = time.perf_counter() - t0
    last_rel = f"{folder.name}/burst{n - 1:05d}.md"
    last_found = all_indexed = None
    documents = before
    while last_found is None or all_indexed is None:
        now = time.perf_counter() - t0
        if now > BURST_TIMEOUT:
            raise McpFailure(
                f"burst of {n}: after {BURST_TIMEOUT:.0f} s, last file found: {last_found is not None}, "
                f"{documents - before} of {n} new documents counted"
            )
        if last_found is None and await _found(client, f"burstword{n - 1:05d}", last_rel):
            last_found = time.perf_counter() - t0
        if all_indexed is None:
            documents = (await _status(client))["documents"]
            if documents >= before + n:
                all_indexed = time.perf_counter() - t0
        await anyio.sleep(poll)
    return {
        "files": n,
        "write_s": written,
        "last_found_s": last_found,
        "all_indexed_s": all_indexed,
        "documents_before": before,
        "documents_after": documents,
        "listed": await _count_listed(client, f"{folder.name}/"),
    }


async def _freshness(
    root: Path, index_dir: Path, edits: int, burst: int, poll: float, errlog: Any
) -> dict[str, Any]:
    async with _client(kb_server(root, index_dir), errlog) as client:
        settled = await _settle(client)
        status = await _status(client)
        if status.get("watcher") != "watching":
            raise McpFailure(f"the server's watcher is {status.get('watcher')!r}, not 'watching'")
        figures: dict[str, Any] = {
            "protocol": client.protocol_version,
            "documents": status["documents"],
            "sync_settled_s": settled,
            "segments_before": _segments(index_dir),
        }
        figures["save"] = await _edits(client, root, edits, poll)
        figures["segments_after_edits"] = _segments(index_dir)
        await anyio.sleep(IDLE)
        figures["burst"] = await _burst(client, root, burst, poll)
        figures["segments_after_burst"] = _segments(index_dir)
    return figures


def freshness(
    root: Path, index_dir: Path, edits: int = 50, burst: int = 1000, poll: float = POLL
) -> dict[str, Any]:
    """Save-to-searchable latency over `edits` edits and the time to absorb a `burst` of new files.

    `root` must be a scratch copy, already indexed in `index_dir`: its files are edited.
    """
    return _run(_freshness, root, index_dir, edits, burst, poll)


def main() -> int:
    import shutil
    import subprocess
    import tempfile

    if len(sys.argv) != 2:
        print("usage: python benchmarks/_freshness.py DIR", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kb-fresh-") as name:
        root, index_dir = Path(name) / "docs", Path(name) / "index"
        shutil.copytree(sys.argv[1], root, ignore=shutil.ignore_patterns(".*"))
        cmd = [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir)]
        subprocess.run(cmd, check=True, capture_output=True)
        print(json.dumps(freshness(root, index_dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
