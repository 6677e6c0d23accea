"""kb under HTTP load beside the floor: one command, one table. See benchmarks/README.md.

python benchmarks/http_load.py [--seconds 60] [--sessions 20] [--procs 2] [--rounds 3]
                               [--mix search|mixed|both] [--protocol auto|legacy]
                               [--disturb none|burst|index|both] [--burst-files 2000]
                               [--scale 1,2,3]
                               [--corpus DIR | --markdown-tar PATH] [--quick] [--json]

`kb serve DIR --http` and the floor (`_floor.py --http`: the same SDK answering kb's own canned results)
run side by side on loopback for the whole run; each round loads one of them, then the other (the
order alternating), with the same sessions of the official client (`_http_worker.py`, in `--procs`
processes of their own). Then, with `--disturb`, one more kb round of searches for each disturbance:
a burst of edits to `--burst-files` files, or a concurrent `kb index --rebuild`, a third of the way in.
With `--scale`, one more round of searches against `kb serve --workers N` for each N given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import _corpus
import anyio
from _procs import _tree_rss
from mcp import Client

HERE = Path(__file__).resolve().parent
CORPORA = HERE.parent.parent / "shared" / "corpora"
MB = 2**20
TICKS = os.sysconf("SC_CLK_TCK")
# Mixed load: of every five requests three are searches, one a fetch, one a resources/read.
MIXED = ("search", "fetch", "search", "read", "search")
DISTURBED_P99_GOAL_MS = 1000.0


class LoadFailure(RuntimeError):
    pass


@dataclass
class Served:
    """A server process under test and what was measured of it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: IO[str]
    rss_mb: list[float] = field(default_factory=list)

    def sample_rss(self) -> None:
        self.rss_mb.append(_tree_rss(self.proc.pid) / MB)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (threads included)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def tail(self) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-8:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> Served:
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by run() when the server is stopped
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
    return Served(name, f"http://127.0.0.1:{port}/mcp", proc, log)


async def _wait_ready(served: Served, timeout: float = 120) -> None:
    """Connect until the server answers and its start-up sync is done (polled: a server starting)."""
    started = time.monotonic()
    while True:
        if served.proc.poll() is not None:
            raise LoadFailure(f"{served.name} exited {served.proc.returncode}:\n{served.tail()}")
        try:
            async with Client(served.url, cache=None, read_timeout_seconds=30) as client:
                while (await client.call_tool("search", {"query": "index"})).structured_content.get(
                    "indexing"
                ):
                    await anyio.sleep(0.1)
                return
        except Exception as exc:
            if time.monotonic() - started > timeout:
                raise LoadFailure(
                    f"{served.name} not ready after {timeout} s: {exc}\n{served.tail()}"
                ) from exc
            await anyio.sleep(0.1)


async def _sample_kb(url: str, queries: list[str]) -> dict[str, Any]:
    """From kb itself: ids and resource URIs for the mixed load, and the canned results of the floor
    (the median-sized result of 40 searches; kb's own fetch of each id and read of each URI, the
    median-sized ones for any other), so that the client validates and parses as much from the
    floor as from kb: the documents read are 6 KB at the median but 18 KB on average."""
    async with Client(url, cache=None, read_timeout_seconds=30) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        ids: list[str] = []
        searched = []
        for query in queries[:40]:
            result = await client.call_tool("search", {"query": query})
            searched.append((len(result.content[0].text), query, result.structured_content or {}))
            ids.extend(hit["id"] for hit in searched[-1][2].get("results", ())[:2])
        searched.sort(key=lambda s: s[0])  # the floor answers with the median-sized result
        canned: dict[str, Any] = {"result": searched[len(searched) // 2][2]}
        canned["output_schema"] = tools["search"].output_schema
        ids = sorted(set(ids))[:40]
        paths = sorted({i.partition("#")[0] for i in ids})
        fetched = []
        for doc_id in ids:
            result = await client.call_tool("fetch", {"id": doc_id})
            fetched.append((len(result.content[0].text), doc_id, result.structured_content))
        read = []
        for path in paths:
            contents = (await client.read_resource(f"kb://doc/{path}")).contents[0]
            read.append((len(contents.text), path, contents.text))
    fetched.sort(key=lambda f: f[0])
    read.sort(key=lambda r: r[0])
    canned["fetch"] = {
        "result": fetched[len(fetched) // 2][2],
        "output_schema": tools["fetch"].output_schema,
        "by_id": {doc_id: result for _, doc_id, result in fetched},
    }
    canned["resource"] = {
        "uri": f"kb://doc/{read[len(read) // 2][1]}",
        "text": read[len(read) // 2][2],
        "by_path": {path: text for _, path, text in read},
    }
    return {"canned": canned, "ids": ids, "uris": [f"kb://doc/{path}" for path in paths]}


def _ops(mix: str, queries: list[str], ids: list[str], uris: list[str]) -> list[tuple[str, str]]:
    if mix == "search":
        return [("search", q) for q in queries]
    sources = {"search": queries, "fetch": ids, "read": uris}
    return [(op, sources[op][i % len(sources[op])]) for i, op in enumerate(MIXED * (len(queries) // 3))]


Disturbance = Callable[[], dict[str, Any]]


def _load(
    served: Served,
    args: argparse.Namespace,
    ops: list[tuple[str, str]],
    tmp: Path,
    disturb: Disturbance | None = None,
) -> dict[str, Any]:
    """One round: `args.sessions` sessions in `args.procs` processes, all starting together; with
    `disturb`, that runs a third of the way into the round, in a thread, and the figures add the
    requests that started from then until it ended (or the round did)."""
    share = [args.sessions // args.procs + (i < args.sessions % args.procs) for i in range(args.procs)]
    workers = []
    before = 0  # sessions in the processes before this one
    for i, sessions in enumerate(s for s in share if s):
        # --distinct: each session its own stretch of the list, so that no request repeats another's
        # (kb answers a repeat from its cache of recent searches); else they overlap, 7 apart.
        apart = [(before + j) * len(ops) // args.sessions for j in range(sessions)]
        starts = apart if args.distinct else [j * 7 % len(ops) for j in range(sessions)]
        before += sessions
        spec = tmp / f"spec{i}.json"
        spec.write_text(
            json.dumps(
                {
                    "url": served.url,
                    "sessions": sessions,
                    "seconds": args.seconds,
                    "protocol": args.protocol,
                    "ops": ops,
                    "starts": starts,
                }
            )
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, str(HERE / "_http_worker.py"), str(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for worker in workers:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if line.strip() != "ready":
            raise LoadFailure(f"a load worker did not connect to {served.name}:\n{served.tail()}")
    served.sample_rss()
    cpu = served.cpu_seconds()
    started = time.perf_counter()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    disturbance: dict[str, Any] = {}
    disturber = None
    if disturb is not None:

        def run_disturbance() -> None:
            # A benchmark's schedule, not a synchronization: the load runs meanwhile.
            time.sleep(args.seconds / 3)
            disturbance["start_s"] = time.perf_counter() - started
            disturbance.update(disturb())
            disturbance["end_s"] = time.perf_counter() - started

        disturber = threading.Thread(target=run_disturbance, name="disturb")
        disturber.start()
    outputs, client_cpu = [], 0.0
    for worker in workers:
        assert worker.stdout is not None
        outputs.append(worker.stdout.read())
        _, status, usage = os.wait4(worker.pid, 0)
        worker.returncode = os.waitstatus_to_exitcode(status)
        client_cpu += usage.ru_utime + usage.ru_stime
        if worker.returncode:
            raise LoadFailure(f"a load worker exited {worker.returncode}\n{served.tail()}")
    wall = time.perf_counter() - started
    server_cpu = served.cpu_seconds() - cpu
    served.sample_rss()
    results = [json.loads(out) for out in outputs]
    records = [r for result in results for r in result["records"]]
    figures = _figures(records, results, wall, server_cpu, client_cpu, args.seconds)
    if disturber is not None:
        disturber.join()
        figures["disturbance"] = _window(disturbance, records)
    return figures


def _window(disturbance: dict[str, Any], records: list[list[Any]]) -> dict[str, Any]:
    """The requests that started while the disturbance (and the server's work on it) went on: from
    its start to its end, or to the end of the round if it ended first (the server is still
    catching up after its own part ends)."""
    start = disturbance["start_s"]
    end = disturbance["end_s"] if disturbance.get("until_end") is False else float("inf")
    times = [ms for _, ms, _, began in records if start <= began <= end]
    cuts = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else times * 99
    return {
        **disturbance,
        "window_requests": len(times),
        "window_p50_ms": statistics.median(times) if times else None,
        "window_p99_ms": cuts[98] if times else None,
        "window_max_ms": max(times) if times else None,
        "window_errors": sum(failed for _, _, failed, began in records if start <= began <= end),
    }


def _burst(root: Path, count: int) -> Disturbance:
    """Append a line to `count` Markdown files as fast as they can be written (a checkout, a sed -i)."""

    def burst() -> dict[str, Any]:
        files = sorted(root.rglob("*.md"))[:count]
        for path in files:
            with path.open("a") as file:
                file.write("\n\nEdited under load.\n")
        return {"what": f"burst of {len(files)} edits", "files": len(files), "until_end": True}

    return burst


def _concurrent_index(root: Path, index_dir: Path, semantic: str) -> Disturbance:
    """`kb index --rebuild` on the index kb serve is using: every file re-read and re-written by
    another process, while the server answers."""

    def index() -> dict[str, Any]:
        began = time.perf_counter()
        done = subprocess.run(
            [
                *(sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir)),
                *("--rebuild", "--json", "--semantic", semantic),
            ],
            capture_output=True,
            text=True,
        )
        return {
            "what": "concurrent kb index --rebuild",
            "exit": done.returncode,
            "index_s": time.perf_counter() - began,
            "until_end": False,
        }

    return index


def _figures(
    records: list[list[Any]],
    results: list[dict[str, Any]],
    wall: float,
    server_cpu: float,
    client_cpu: float,
    seconds: float,
) -> dict[str, Any]:
    times = [ms for _, ms, *_ in records]
    cuts = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else [times[0]] * 99
    loaded = max(result["wall_s"] for result in results)
    by_op = {}
    for op in sorted({op for op, *_ in records}):
        mine = [ms for kind, ms, *_ in records if kind == op]
        by_op[op] = {"requests": len(mine), "p50_ms": statistics.median(mine)}
    return {
        "requests": len(records),
        "rps": len(records) / loaded,
        "p50_ms": statistics.median(times),
        "p99_ms": cuts[98],
        "max_ms": max(times),
        "errors": sum(failed for _, _, failed, _ in records),
        "error_samples": [e for result in results for e in result["error_samples"]][:5],
        "timed_out": any(result["timed_out"] for result in results),
        "server_cpu_pct": 100 * server_cpu / wall,
        "client_cpu_pct": 100 * client_cpu / wall,
        "server_cpu_ms": 1000 * server_cpu / len(records),
        "client_cpu_ms": 1000 * client_cpu / len(records),
        "by_op": by_op,
    }


def _summary(kb_rounds: list[dict[str, Any]], floor_rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def median(rounds: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    ratios = [k["rps"] / f["rps"] for k, f in zip(kb_rounds, floor_rounds, strict=True)]
    p99_ratios = [k["p99_ms"] / f["p99_ms"] for k, f in zip(kb_rounds, floor_rounds, strict=True)]
    out: dict[str, Any] = {}
    for name, rounds in (("kb", kb_rounds), ("floor", floor_rounds)):
        out[name] = {
            "rps": median(rounds, "rps"),
            "p50_ms": median(rounds, "p50_ms"),
            "p99_ms": median(rounds, "p99_ms"),
            "errors": sum(r["errors"] for r in rounds),
            "server_cpu_pct": median(rounds, "server_cpu_pct"),
            "client_cpu_pct": median(rounds, "client_cpu_pct"),
            "server_cpu_ms": median(rounds, "server_cpu_ms"),
            "client_cpu_ms": median(rounds, "client_cpu_ms"),
            "rounds_rps": [r["rps"] for r in rounds],
            "rounds_p99_ms": [r["p99_ms"] for r in rounds],
            "error_samples": [e for r in rounds for e in r["error_samples"]][:5],
            "by_op": rounds[len(rounds) // 2]["by_op"],
        }
    out["throughput_pct_of_floor"] = 100 * statistics.median(ratios)
    out["rounds_throughput_pct"] = [100 * r for r in ratios]
    out["p99_ratio"] = statistics.median(p99_ratios)
    out["rounds_p99_ratio"] = p99_ratios
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kb-http-load-") as tmp_name:
        tmp = Path(tmp_name)
        if args.corpus:  # a copy: the burst edits files
            root = Path(shutil.copytree(args.corpus, tmp / "corpus", symlinks=True))
        else:
            root = _corpus.unpack(args.markdown_tar, tmp / "corpus")
        index_dir = tmp / "index"
        queries = _corpus.queries(root, args.queries)
        indexed = subprocess.run(
            [
                *(sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir)),
                *("--json", "--semantic", args.semantic),
            ],
            capture_output=True,
            text=True,
        )
        if indexed.returncode not in (0, 1):
            raise LoadFailure(f"kb index exited {indexed.returncode}: {indexed.stderr[-600:]}")
        kb_port = _free_port()
        kb_cmd = [
            *(sys.executable, "-m", "kb", "serve", str(root), "--index-dir", str(index_dir)),
            *("--semantic", args.semantic),
        ]
        kb = _start("kb", [*kb_cmd, "--http", f"127.0.0.1:{kb_port}", *args.kb_arg], kb_port)
        servers = [kb]
        try:
            anyio.run(_wait_ready, kb)
            sample = anyio.run(_sample_kb, kb.url, queries)
            canned = tmp / "canned.json"
            canned.write_text(json.dumps(sample["canned"]))
            floor_port = _free_port()
            floor_cmd = [sys.executable, str(HERE / "_floor.py"), str(canned), "--http", str(floor_port)]
            floor = _start("floor", floor_cmd, floor_port)
            servers.append(floor)
            anyio.run(_wait_ready, floor)
            figures: dict[str, Any] = {
                "sessions": args.sessions,
                "procs": args.procs,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "protocol": args.protocol,
                "queries": len(queries),
                "distinct": args.distinct,
                "documents": json.loads(indexed.stdout).get("added"),
                "cpus": os.cpu_count(),
            }
            for mix in ("search", "mixed") if args.mix == "both" else (args.mix,):
                ops = _ops(mix, queries, sample["ids"], sample["uris"])
                kb_rounds, floor_rounds = [], []
                for i in range(args.rounds):
                    order = [(kb, kb_rounds), (floor, floor_rounds)]
                    for served, rounds in order if i % 2 == 0 else order[::-1]:
                        rounds.append(_load(served, args, ops, tmp))
                        print(f"  {mix} round {i + 1} {served.name}: {_line(rounds[-1])}", file=sys.stderr)
                figures[mix] = _summary(kb_rounds, floor_rounds)
            disturbances = {
                "burst": _burst(root, args.burst_files),
                "index": _concurrent_index(root, index_dir, args.semantic),
            }
            chosen = list(disturbances) if args.disturb == "both" else [args.disturb]
            figures["disturbed"] = {}
            for name in (n for n in chosen if n in disturbances):
                ops = _ops("search", queries, sample["ids"], sample["uris"])
                disturbed = _load(kb, args, ops, tmp, disturbances[name])
                print(f"  disturbed ({name}) kb: {_line(disturbed)}", file=sys.stderr)
                figures["disturbed"][name] = disturbed
            figures["scaling"] = _scaling(args, root, index_dir, queries, sample, tmp)
            for served in servers:
                figures[f"{served.name}_rss_mb"] = served.rss_mb
            return figures
        finally:
            for served in servers:
                served.proc.terminate()
                try:
                    served.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    served.proc.kill()
                    served.proc.wait()
                served.log.close()


def _scaling(
    args: argparse.Namespace,
    root: Path,
    index_dir: Path,
    queries: list[str],
    sample: dict[str, Any],
    tmp: Path,
) -> list[dict[str, Any]]:
    """One round of searches against `kb serve --workers N` for each N of `--scale`, each started
    afresh on the same index (one worker serves 2025-era sessions statefully, several statelessly:
    the official client negotiates 2026-07-28, stateless either way)."""
    rounds = []
    ops = _ops("search", queries, sample["ids"], sample["uris"])
    for workers in args.scale:
        port = _free_port()
        cmd = [
            *(sys.executable, "-m", "kb", "serve", str(root), "--index-dir", str(index_dir)),
            *("--semantic", args.semantic, "--http", f"127.0.0.1:{port}", "--workers", str(workers)),
        ]
        served = _start(f"kb --workers {workers}", [*cmd, *args.kb_arg], port)
        try:
            anyio.run(_wait_ready, served)
            figures = _load(served, args, ops, tmp)
        finally:
            served.proc.terminate()
            served.proc.wait(timeout=30)
            served.log.close()
        # The replicas' CPU is not in the writer's /proc figures: only requests/s and latency compare.
        print(f"  scaling, {workers} worker(s): {_line(figures)}", file=sys.stderr)
        rounds.append({"workers": workers, **figures})
    return rounds


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['errors']} errors, "
        f"server CPU {r['server_cpu_pct']:.0f}% ({r['server_cpu_ms']:.2f} ms/req), "
        f"clients CPU {r['client_cpu_pct']:.0f}% ({r['client_cpu_ms']:.2f} ms/req)"
    )


def _spread(values: list[float], fmt: str) -> str:
    return "[" + ", ".join(format(v, fmt) for v in values) + "]"


def print_table(f: dict[str, Any]) -> None:
    print(
        f"kb HTTP load: {f['sessions']} sessions in {f['procs']} client processes, "
        f"{f['seconds']:g} s a round, {f['rounds']} rounds each, protocol {f['protocol']}, "
        f"{f['documents']} documents, {f['cpus']} CPUs, {f['queries']} queries "
        + ("(each session its own: no repeats)" if f["distinct"] else "(sessions overlap: repeats)")
    )
    for mix in ("search", "mixed"):
        if mix not in f:
            continue
        m = f[mix]
        print(f"\n{mix} load" + (" (3 search : 1 fetch : 1 resources/read)" if mix == "mixed" else ""))
        for name in ("kb", "floor"):
            s = m[name]
            print(
                f"  {name:5}  {s['rps']:7.1f} req/s {_spread(s['rounds_rps'], '.1f')}"
                f"  p50 {s['p50_ms']:6.1f} ms  p99 {s['p99_ms']:6.1f} ms {_spread(s['rounds_p99_ms'], '.0f')}"
                f"  errors {s['errors']}\n"
                f"         CPU per request: server {s['server_cpu_ms']:.2f} ms,"
                f" clients {s['client_cpu_ms']:.2f} ms"
                f" (server {s['server_cpu_pct']:.0f}% of a core, clients {s['client_cpu_pct']:.0f}%)"
            )
            for sample in s["error_samples"]:
                print(f"         error: {sample}")
        pct, ratio = m["throughput_pct_of_floor"], m["p99_ratio"]
        print(
            f"  kb throughput {pct:.0f}% of the floor's {_spread(m['rounds_throughput_pct'], '.0f')}"
            f" (goal >= 90%: {'met' if pct >= 90 else 'not met'});"
            f" p99 {ratio:.2f}x the floor's {_spread(m['rounds_p99_ratio'], '.2f')}"
            f" (goal <= 1.3x: {'met' if ratio <= 1.3 else 'not met'})"
        )
    if f.get("disturbed"):
        print(f"\nkb disturbed (search load; goal: p99 <= {DISTURBED_P99_GOAL_MS:.0f} ms, 0 errors)")
    for r in f.get("disturbed", {}).values():
        d = r["disturbance"]
        extra = f", {d['index_s']:.1f} s, exit {d['exit']}" if "index_s" in d else ""
        p99 = d["window_p99_ms"]
        met = p99 is not None and p99 <= DISTURBED_P99_GOAL_MS and not d["window_errors"]
        print(
            f"  {d['what']} at {d['start_s']:.0f} s{extra}: whole round {r['rps']:.1f} req/s, "
            f"p99 {r['p99_ms']:.0f} ms; while disturbed ({d['window_requests']} requests) "
            f"p50 {d['window_p50_ms'] or 0:.1f} ms, p99 {p99 or 0:.0f} ms, "
            f"max {d['window_max_ms'] or 0:.0f} ms, {d['window_errors']} errors"
            f" ({'met' if met else 'not met'})"
        )
    if f.get("scaling"):
        print("\nkb --workers N (search load; requests/s, latency; the server CPU is the first process's)")
        one = f["scaling"][0]["rps"]
        for r in f["scaling"]:
            print(
                f"  {r['workers']:2} worker(s): {r['rps']:7.1f} req/s ({r['rps'] / one:.2f}x the first)"
                f"  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}"
            )
    for name in ("kb", "floor"):
        rss = f[f"{name}_rss_mb"]
        print(f"  {name} RSS MB at each round's start and end: {_spread(rss, '.0f')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="length of one round (default 60)")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent client sessions (default 20)")
    parser.add_argument("--procs", type=int, default=2, help="client processes sharing them (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating (default 3)")
    parser.add_argument("--mix", choices=("search", "mixed", "both"), default="both")
    parser.add_argument(
        "--protocol",
        default="auto",
        help="the client's mode: auto (2026-07-28 where served), legacy (2025-11-25 sessions)",
    )
    parser.add_argument("--queries", type=int, default=300, help="queries sampled from the corpus (300)")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="each session walks its own part of the queries: no request repeats (with --queries above "
        "what a round asks, e.g. 20000), so kb's cache of recent searches never answers",
    )
    parser.add_argument("--corpus", type=Path, help="a folder of Markdown documents (used read-only)")
    parser.add_argument("--markdown-tar", type=Path, default=CORPORA / "markdown.tar.gz")
    parser.add_argument(
        "--kb-arg", action="append", default=[], help="one more argument for kb serve (repeatable)"
    )
    parser.add_argument(
        "--semantic",
        choices=("off", "on"),
        default="off",
        help="kb's semantic search (off: the lexical engine, as measured before it existed) [off]",
    )
    parser.add_argument(
        "--disturb",
        choices=("none", "burst", "index", "both"),
        default="both",
        help="after the rounds, a kb round disturbed by a burst of edits, a concurrent kb index, or both",
    )
    parser.add_argument("--burst-files", type=int, default=2000, help="files the burst edits (2000)")
    parser.add_argument(
        "--scale",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[],
        help="comma-separated worker counts: a round against kb serve --workers N for each (e.g. 1,2,3)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 5 s rounds, 1 round, search only, undisturbed"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.mix, args.disturb = 5, 1, "search", "none"
    if not 1 <= args.sessions <= 200 or not 1 <= args.procs <= 16:
        parser.error("--sessions must be 1-200 and --procs 1-16")
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)
    loads = [figures[mix] for mix in ("search", "mixed") if mix in figures]
    bad = (
        any(load[name]["errors"] for load in loads for name in ("kb", "floor"))
        or any(r["errors"] for r in figures.get("disturbed", {}).values())
        or any(r["errors"] for r in figures.get("scaling", []))
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
