"""What search by meaning costs: embedding throughput, memory, vector size, and search latency.

    python benchmarks/semantic.py [--markdown-tar PATH] [--limit-files N] [--queries N] [--json]

On the shared Markdown corpus (unpacked into a temporary folder), each step a fresh `kb` process:
1. `kb index --semantic off`: the cold lexical index, as before semantic search existed;
2. `kb index` again with semantic search on: nothing to re-read, every passage to embed. Its JSON
   gives the passages embedded and the seconds; the process's CPU time and peak RSS come from the
   kernel (the encoder's preparation is done before, outside the timing);
3. the size of the vectors on disk;
4. search latency in this process, `Library.search` with and without the vectors (the same queries,
   alternating), and the query encoding alone. MCP's own cost is measured by `run.py`'s floor.
Goals (issue 13): >= 100 passages/s on 2 cores (aim 300); peak RSS <= 600 MB with the model loaded;
vectors <= 25 MB per 50,000 passages; search p50 within 5 ms of the lexical search.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _corpus import queries as sample_queries
from _corpus import subset, unpack

from kb.config import Settings
from kb.library import Library
from kb.semantic import Semantic

HERE = Path(__file__).resolve().parent
DEFAULT_TAR = HERE.parent.parent / "shared" / "corpora" / "markdown.tar.gz"


def kb_index(root: Path, index_dir: Path, *flags: str) -> dict[str, Any]:
    """One `kb index --json` in a fresh process: its report, wall time, CPU seconds and peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir), "--json", *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"kb index failed: {done.stderr[-2000:]}")
    return {
        "report": json.loads(done.stdout),
        "wall": wall,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_mb": after.ru_maxrss / 1024,  # the largest of any child so far (kernel's figure)
    }


def latency(settings: Settings, queries: list[str]) -> dict[str, float]:
    """p50/p99 (ms) of `Library.search` with the vectors and without, alternating query by query."""
    on = Library.open(settings)
    on.start()  # the sync finds nothing to do; the embedder loads the encoder, and finds all embedded
    off = Library.open(settings.model_copy(update={"semantic": False}))
    assert on.synced.wait(600) and on.embedder is not None and on.embedder.idle.wait(600)
    assert on.semantic is not None and on.semantic.encoder is not None
    encoder = on.semantic.encoder
    times: dict[str, list[float]] = {"semantic": [], "lexical": [], "query encoding": []}
    try:
        for query in queries[:20]:  # warm-up
            on.search(query)
            off.search(query)
        for query in queries:
            for name, library in (("semantic", on), ("lexical", off)):
                started = time.perf_counter()
                library.search(query, limit=10)
                times[name].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            encoder.query(query)
            times["query encoding"].append((time.perf_counter() - started) * 1000)
    finally:
        on.close()
        off.close()
    figures = {}
    for name, values in times.items():
        values.sort()
        figures[f"{name} p50 ms"] = statistics.median(values)
        figures[f"{name} p99 ms"] = values[min(len(values) - 1, int(len(values) * 0.99))]
    return figures


def measure(tar: Path, work: Path, limit_files: int | None, n_queries: int) -> dict[str, Any]:
    root = subset(unpack(tar, work / "corpus"), limit_files)
    index_dir = work / "index"
    settings = Settings(root=root, index_dir=index_dir, watch=False)
    Semantic(index_dir / "vectors", settings.cache_dir).load(threads=1)  # prepared before any timing
    lexical = kb_index(root, index_dir, "--semantic", "off")
    semantic = kb_index(root, index_dir, "--semantic", "on")
    embedded = semantic["report"]["embedded"]
    seconds = semantic["report"]["embedding_seconds"]
    vectors = index_dir / "vectors"
    size = sum(f.stat().st_size for f in vectors.iterdir() if f.is_file())
    return {
        "files": lexical["report"]["added"],
        "cold lexical index s (wall)": lexical["wall"],
        "passages embedded": embedded,
        "embedding s": seconds,
        "passages/s": embedded / seconds if seconds else None,
        "CPU-s per passage": semantic["cpu"] / embedded if embedded else None,
        "cores": os.cpu_count(),
        "peak RSS MB (kb index, model loaded)": semantic["peak_rss_mb"],
        "vectors MB": size / 1e6,
        "vectors MB per 50,000 passages": size / 1e6 / embedded * 50_000 if embedded else None,
        **latency(settings, sample_queries(root, n_queries)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown-tar", type=Path, default=DEFAULT_TAR)
    parser.add_argument("--limit-files", type=int, default=None, help="only the first N files (a quick run)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-semantic-") as tmp:
        figures = measure(args.markdown_tar.resolve(), Path(tmp), args.limit_files, args.queries)
    show(figures, as_json=args.json)
    return 0


def show(figures: dict[str, Any], *, as_json: bool) -> None:
    """The figures as JSON, or as a table of names and values."""
    if as_json:
        print(json.dumps(figures, indent=2))
    else:
        for name, value in figures.items():
            shown = f"{value:10.4g}" if isinstance(value, float) else f"{value!s:>10}"
            print(f"{name:40} {shown}")


if __name__ == "__main__":
    sys.exit(main())
