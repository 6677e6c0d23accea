"""kb's speed benchmark: one command, one table. See benchmarks/README.md for what each figure means.

python benchmarks/run.py [--corpus DIR | --markdown-tar PATH] [--pdf-tar PATH] [--synthetic N] [--quick]
                         [--skip-freshness]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import _corpus
import _freshness
import _mcp
from _procs import Measured, measure

HERE = Path(__file__).resolve().parent
CORPORA = HERE.parent.parent / "shared" / "corpora"
MB = 2**20


class BenchFailure(RuntimeError):
    pass


def kb_index(root: Path, index_dir: Path, *flags: str) -> tuple[Measured, dict[str, Any]]:
    """`kb index --json` in a fresh process: its measurement and its own JSON report."""
    command = [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir), "--json"]
    run = measure([*command, *flags])
    if run.returncode not in (0, 1):  # 1 = some files failed, the rest indexed
        raise BenchFailure(f"kb index exited {run.returncode}: {run.stderr.strip()[-600:]}")
    try:
        return run, json.loads(run.stdout)
    except ValueError:
        raise BenchFailure(
            f"kb index exited {run.returncode} without a JSON report; stdout: {run.stdout[:300]!r}; "
            f"stderr: {run.stderr.strip()[-600:]}"
        ) from None


def _run_figures(run: Measured, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "wall_s": run.wall,
        "kb_seconds": report["seconds"],
        "documents": report["added"] + report["updated"] + report["unchanged"],
        "failed": len(report["failed"]),
        "peak_rss_mb": run.peak_rss_mb,
        "peak_tree_mb": run.peak_tree_mb,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time, and every run's wall time beside it."""
    chosen = dict(sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2])
    chosen["walls"] = [r["wall_s"] for r in runs]
    return chosen


def _naive(root: Path, index_dir: Path) -> dict[str, Any]:
    shutil.rmtree(index_dir, ignore_errors=True)
    run = measure([sys.executable, str(HERE / "_naive.py"), str(root), str(index_dir)])
    if run.returncode:
        raise BenchFailure(f"naive pipeline failed: {run.stderr.strip()[-600:]}")
    return {"wall_s": run.wall, "seconds": json.loads(run.stdout)["seconds"], "peak_rss_mb": run.peak_rss_mb}


def _cold(root: Path, index_dir: Path) -> dict[str, Any]:
    shutil.rmtree(index_dir, ignore_errors=True)
    return _run_figures(*kb_index(root, index_dir))


def bench_markdown(root: Path, tmp: Path, repeat: int) -> dict[str, Any]:
    """Naive and cold kb runs alternate, `repeat` times each, so that both meet the same machine."""
    files, size = _corpus.files_and_bytes(root)
    naive_runs, cold_runs = [], []
    for _ in range(repeat):
        naive_runs.append(_naive(root, tmp / "naive-index"))
        cold_runs.append(_cold(root, tmp / "md-index"))  # the last one stays for the MCP sections
    naive, cold = _median(naive_runs), _median(cold_runs)
    again = _median([_run_figures(*kb_index(root, tmp / "md-index")) for _ in range(repeat)])
    return {
        "files": files,
        "mb": size / MB,
        "naive": naive,
        "cold": cold,
        "nochange": again,
        "speedup_wall": naive["wall_s"] / cold["wall_s"],
        "speedup_own": naive["seconds"] / cold["kb_seconds"],
        "nochange_pct_wall": 100 * again["wall_s"] / cold["wall_s"],
        "nochange_pct_own": 100 * again["kb_seconds"] / cold["kb_seconds"],
    }


def bench_pdf(root: Path, tmp: Path, repeat: int) -> dict[str, Any]:
    files, size = _corpus.files_and_bytes(root)
    pages = _corpus.pdf_pages(root)  # counted once, outside the timing
    cold = _median([_cold(root, tmp / "pdf-index") for _ in range(repeat)])
    return {
        "files": files,
        "mb": size / MB,
        "pages": pages,
        "cold": cold,
        "pages_per_s_wall": pages / cold["wall_s"],
        "pages_per_s_own": pages / cold["kb_seconds"],
    }


def bench_synthetic(n: int, tmp: Path, repeat: int, queries: int) -> dict[str, Any]:
    """As `bench_markdown`, on a made-up tree of `n` small files (naive and cold kb runs alternate),
    then MCP search latency beside the floor and every page of resources/list, at that scale."""
    root = tmp / "synthetic"
    _corpus.synthetic(root, n)
    files, size = _corpus.files_and_bytes(root)
    naive_runs, cold_runs = [], []
    for _ in range(repeat):
        naive_runs.append(_naive(root, tmp / "naive-index"))
        cold_runs.append(_cold(root, tmp / "synthetic-index"))
    naive, cold = _median(naive_runs), _median(cold_runs)
    again = _median([_run_figures(*kb_index(root, tmp / "synthetic-index")) for _ in range(repeat)])
    words = _corpus.queries(root, queries)
    canned = _mcp.canned_result(root, tmp / "synthetic-index", words[0], tmp / "synthetic-canned.json")
    return {
        "search": _mcp.search_latency(root, tmp / "synthetic-index", words, canned),
        "listing": _mcp.resource_pages(root, tmp / "synthetic-index"),
        "files": files,
        "mb": size / MB,
        "naive": naive,
        "cold": cold,
        "nochange": again,
        "files_per_s": files / cold["wall_s"],
        "speedup_wall": naive["wall_s"] / cold["wall_s"],
        "speedup_own": naive["seconds"] / cold["kb_seconds"],
        "nochange_pct_wall": 100 * again["wall_s"] / cold["wall_s"],
        "nochange_pct_own": 100 * again["kb_seconds"] / cold["kb_seconds"],
    }


def bench_semantic_search(md: Path, tmp: Path, words: list[str], canned: Path) -> dict[str, Any]:
    """`search_latency` with semantic search on, once `kb index` has embedded every passage."""
    _, report = kb_index(md, tmp / "md-index", "--semantic", "on")
    figures = _mcp.search_latency(md, tmp / "md-index", words, canned, 3, "on")
    return {**figures, "embedded": report["embedded"], "embedding_s": report["embedding_seconds"]}


def bench_freshness(md: Path, tmp: Path) -> dict[str, Any]:
    root, index_dir = md, tmp / "md-index"  # a temporary copy already: edited in place
    if not md.is_relative_to(tmp):  # --corpus DIR is the user's folder: edit an indexed copy instead
        root, index_dir = tmp / "fresh", tmp / "fresh-index"
        shutil.copytree(md, root, ignore=shutil.ignore_patterns(".*"))
        kb_index(root, index_dir)
    return _freshness.freshness(root, index_dir, edits=50, burst=1000)


def _attempt(figures: dict[str, Any], key: str, fn: Any, *args: Any) -> None:
    """Record a section's figures, or what failed, and go on with the others."""
    print(f"... {key}", file=sys.stderr, flush=True)
    try:
        figures[key] = fn(*args)
    except (BenchFailure, _mcp.McpFailure, OSError, ValueError) as exc:
        figures[key] = {"error": str(exc)}


def _markdown_root(args: argparse.Namespace, tmp: Path) -> Path:
    keep = 300 if args.quick else None
    if args.corpus:
        if not keep:
            return args.corpus
        shutil.copytree(args.corpus, tmp / "md", ignore=shutil.ignore_patterns(".*"))
        return _corpus.subset(tmp / "md", keep)
    return _corpus.subset(_corpus.unpack(args.markdown_tar, tmp / "md"), keep)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--corpus", type=Path, help="a folder of Markdown documents (used read-only)")
    source.add_argument("--markdown-tar", type=Path, default=CORPORA / "markdown.tar.gz")
    parser.add_argument("--pdf-tar", type=Path, default=CORPORA / "pdf.tar.gz", help="'' to skip")
    parser.add_argument(
        "--synthetic", type=int, default=0, metavar="N", help="also cold-index N made-up files"
    )
    parser.add_argument("--queries", type=int, default=300, help="timed MCP searches [300; --quick: 50]")
    parser.add_argument("--ready-runs", type=int, default=5, help="kb serve starts to time [5; --quick: 3]")
    parser.add_argument("--quick", action="store_true", help="smoke test: 300 files, 50 queries, 3 starts")
    parser.add_argument(
        "--skip-freshness", action="store_true", help="skip the live freshness section (about 1 minute)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each timed index, median shown [3; --quick: 1]",
    )
    parser.add_argument(
        "--semantic", action="store_true", help="also time MCP search with semantic search on (embeds first)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args()
    # Every figure is of the lexical engine (comparable with earlier runs and with the naive
    # pipeline), but the --semantic section's (kb serve is given --semantic by _mcp.kb_server).
    os.environ["KB_SEMANTIC"] = "off"
    queries, ready_runs = (min(args.queries, 50), min(args.ready_runs, 3)) if args.quick else (
        args.queries, args.ready_runs
    )  # fmt: skip
    repeat = 1 if args.quick else max(1, args.repeat)

    figures: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as name:
        tmp = Path(name)
        md = _markdown_root(args, tmp)
        figures["corpus"] = str(args.corpus or args.markdown_tar)
        _attempt(figures, "markdown", bench_markdown, md, tmp, repeat)
        if args.pdf_tar and args.pdf_tar.name:
            pdf = _corpus.subset(_corpus.unpack(args.pdf_tar, tmp / "pdf"), 10 if args.quick else None)
            _attempt(figures, "pdf", bench_pdf, pdf, tmp, repeat)
        if "error" not in figures["markdown"]:
            words = _corpus.queries(md, queries)
            canned = _mcp.canned_result(md, tmp / "md-index", words[0], tmp / "canned.json")
            _attempt(figures, "ready", _mcp.time_to_ready, md, tmp / "md-index", canned, ready_runs)
            _attempt(figures, "search", _mcp.search_latency, md, tmp / "md-index", words, canned)
            if args.semantic:
                _attempt(figures, "search_semantic", bench_semantic_search, md, tmp, words, canned)
            if not args.skip_freshness:  # last: it edits the corpus and adds files to it
                _attempt(figures, "freshness", bench_freshness, md, tmp)
        if args.synthetic:
            _attempt(figures, "synthetic", bench_synthetic, args.synthetic, tmp, repeat, queries)
    print(json.dumps(figures, indent=2) if args.json else table(figures))
    return 1 if any(isinstance(v, dict) and "error" in v for v in figures.values()) else 0


def table(f: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []

    def row(label: str, value: str, goal: str = "") -> None:
        rows.append((label, value, goal))

    def section(key: str, title: str) -> dict[str, Any] | None:
        row("", "")
        row(title, "")
        if key not in f:
            row("  (not run)", "")
            return None
        if "error" in f[key]:
            row("  FAILED", f[key]["error"].replace("\n", "\n    "))
            return None
        return f[key]

    def runs(r: dict[str, Any]) -> str:
        walls = r.get("walls", [])
        return f"; runs {', '.join(f'{w:.2f}' for w in walls)}" if len(walls) > 1 else ""

    def run(label: str, r: dict[str, Any], size: float | None = None, goal: str = "") -> None:
        rate = f", {size / r['wall_s']:.2f} MB/s" if size else ""
        row(f"  {label}", f"{r['wall_s']:.2f} s wall{rate} (kb's own: {r['kb_seconds']:.2f} s{runs(r)})")
        row(
            "    peak RSS", f"{r['peak_rss_mb']:.0f} MB largest process, {r['peak_tree_mb']:.0f} MB all", goal
        )

    def latency(s: dict[str, Any]) -> None:
        row(
            "  queries",
            f"{s['queries']} timed ({s['empty_results']} with no result), protocol {s['protocol']}",
        )
        row("  p50 / p99", f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms")
        row("  the floor (same SDK, canned result)", f"{s['floor_p50_ms']:.1f} / {s['floor_p99_ms']:.1f} ms")
        row(
            "  kb over the floor, p50 / p99",
            f"{s['over_floor_p50_ms']:+.1f} / {s['over_floor_p99_ms']:+.1f} ms",
            "<= +2 / +10 ms",
        )
        row(
            "  p50 of each round, kb / floor",
            f"{', '.join(f'{v:.1f}' for v in s['rounds_p50_ms'])} / "
            f"{', '.join(f'{v:.1f}' for v in s['floor_rounds_p50_ms'])} ms",
        )
        row("  p90, max", f"{s['p90_ms']:.1f} ms, {s['max_ms']:.1f} ms")
        if s["server_p50_ms"] is not None:
            row(
                "  of which in the server",
                f"p50 {s['server_p50_ms']:.1f} / p99 {s['server_p99_ms']:.1f} ms",
                "p50 <= 2 ms",
            )
        row("  start-up sync settled after", f"{s['sync_settled_s']:.2f} s (before timing)")

    if m := section("markdown", f"Markdown corpus ({f['corpus']})"):
        n, cold = m["naive"], m["cold"]
        row("  files, size", f"{m['files']:,} files, {m['mb']:.1f} MB ({cold['documents']:,} indexed by kb)")
        naive = f"{n['wall_s']:.2f} s wall, {m['mb'] / n['wall_s']:.2f} MB/s"
        row("  naive pipeline, 1 process", f"{naive} (pipeline alone {n['seconds']:.2f} s{runs(n)})")
        run("kb index, cold", cold, m["mb"])
        row(
            "  speed-up over naive", f"{m['speedup_wall']:.2f}x wall ({m['speedup_own']:.2f}x inner)", ">= 3x"
        )
        run("kb index, no change", m["nochange"])
        row(
            "  no-change / cold",
            f"{m['nochange_pct_wall']:.1f}% wall ({m['nochange_pct_own']:.1f}% inner)",
            "<= 5%",
        )
    if p := section("pdf", "PDF corpus"):
        row("  files, pages, size", f"{p['files']} files, {p['pages']:,} pages, {p['mb']:.1f} MB")
        run("kb index, cold", p["cold"])
        row("  pages/s", f"{p['pages_per_s_wall']:.1f} wall ({p['pages_per_s_own']:.1f} inner)", ">= 50")
    if r := section("ready", "kb serve over stdio, on the indexed Markdown corpus"):
        row(
            "  spawn to first search result",
            f"p50 {r['p50_s']:.2f} s, max {r['max_s']:.2f} s, {r['runs']} starts",
        )
        row(
            "  the floor (same SDK, canned result)",
            f"p50 {r['floor_p50_s']:.2f} s; kb over it {r['over_floor_p50_s'] * 1000:+.0f} ms",
            "<= +200 ms",
        )

    if s := section("search", "MCP search latency (stdio, official SDK client)"):
        latency(s)
    if s := section("search_semantic", "MCP search latency with semantic search on"):
        row("  passages embedded by kb index", f"{s['embedded']} in {s['embedding_s']:.1f} s")
        row("  p50 / p99", f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms")
        row("  the floor (same SDK, canned result)", f"{s['floor_p50_ms']:.1f} / {s['floor_p99_ms']:.1f} ms")
        row("  kb over the floor, p50", f"{s['over_floor_p50_ms']:+.1f} ms", "<= +5 ms")
        if s["server_p50_ms"] is not None:
            row("  of which in the server", f"p50 {s['server_p50_ms']:.1f} / p99 {s['server_p99_ms']:.1f} ms")
    if "freshness" in f and (w := section("freshness", "Live freshness (kb serve's watcher, through MCP)")):
        e, b = w["save"], w["burst"]
        row(
            "  edits",
            f"{e['edits']} ({e['timeouts']} not found within {e['timeout_s']:.0f} s), "
            f"search polled every {e['poll_ms']:.0f} ms",
        )
        row(
            "  save to searchable",
            f"p50 {e['p50_ms']:.0f} / p99 {e['p99_ms']:.0f} ms, max {e['max_ms']:.0f} ms",
            "p50 <= 0.5 s",
        )
        row("  plain write / atomic save", f"p50 {e['plain_p50_ms']:.0f} / {e['atomic_p50_ms']:.0f} ms")
        row("  first 10 / last 10 edits", f"p50 {e['first10_p50_ms']:.0f} / {e['last10_p50_ms']:.0f} ms")
        if (commit := e["to_commit_p50_ms"]) is not None:
            row("  of which save to commit", f"p50 {commit:.0f} ms (debounce 150 ms + the batch's sync)")
        row(
            f"  burst of {b['files']:,} new files",
            f"last found after {b['last_found_s']:.2f} s, all {b['files']:,} counted after "
            f"{b['all_indexed_s']:.2f} s (written in {b['write_s']:.2f} s)",
        )
        row(
            "  index segments",
            f"{w['segments_before']} before, {w['segments_after_edits']} after the edits, "
            f"{w['segments_after_burst']} after the burst",
        )
    if "synthetic" in f and (y := section("synthetic", "Synthetic tree")):
        row("  files, size", f"{y['files']:,} files, {y['mb']:.1f} MB")
        n = y["naive"]
        row(
            "  naive pipeline, 1 process",
            f"{n['wall_s']:.2f} s wall (pipeline alone {n['seconds']:.2f} s{runs(n)})",
        )
        run("kb index, cold", y["cold"], goal="<= 400 MB")
        row("  files/s", f"{y['files_per_s']:.0f}")
        row(
            "  speed-up over naive", f"{y['speedup_wall']:.2f}x wall ({y['speedup_own']:.2f}x inner)", ">= 3x"
        )
        run("kb index, no change", y["nochange"])
        row(
            "  no-change / cold",
            f"{y['nochange_pct_wall']:.1f}% wall ({y['nochange_pct_own']:.1f}% inner)",
            "<= 5%",
        )
        row("", "")
        row(f"MCP search latency on the synthetic tree ({y['files']:,} files)", "")
        latency(y["search"])
        li = y["listing"]
        row(
            "  resources/list, every page",
            f"{li['listed']:,} resources in {li['pages']} pages of {li['page_size']} in {li['all_s']:.2f} s",
        )
        row(
            "    page p50 / max, first page",
            f"{li['p50_ms']:.1f} / {li['max_ms']:.1f} ms (page {li['slowest_page']}), "
            f"first {li['first_ms']:.1f} ms",
            "<= 10 ms a page",
        )
    width = max(len(r[0]) for r in rows)
    lines = [f"kb benchmark: {f['machine']}", f"{'':{width}}  {'figure':66} goal"]
    lines += [f"{a:{width}}  {b:66} {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
