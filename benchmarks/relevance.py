"""Relevance on the Cranfield collection: kb's MCP `search` tool beside a plain BM25 baseline.

    python benchmarks/relevance.py [--cranfield DIR] [--json] [--per-query] [--ablation]

Lays the collection out in a temporary folder (`to_files.py`), indexes it with kb, sends each of
the 225 queries through the MCP `search` tool exactly as written (an in-memory `mcp.Client`, as
an assistant would send a whole question), and scores the top 10 with nDCG@10 and recall@10.
The baseline, computed in the same run, is its own Tantivy index of whole documents (title +
body, English stemming) queried with an OR of the query's words and nothing else. `--ablation`
reruns kb with one ranking feature switched off at a time, to show what each contributes.

Gains are graded: judgement 1 (complete answer) -> 4, 2 -> 3, 3 -> 2, 4 (minimum interest) -> 1;
-1 means not relevant. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import tantivy
from mcp import Client

from kb import ingest
from kb.config import Settings
from kb.index import DEFAULT_RANKING, Ranking, SearchIndex
from kb.library import embed_missing
from kb.server import KbRuntime, build_server

HERE = Path(__file__).resolve().parent
DEFAULT_CRANFIELD = HERE.parent.parent / "shared" / "corpora" / "cranfield"
GAIN = {1: 4, 2: 3, 3: 2, 4: 1}
K = 10
_WORD = re.compile(r"\w+")

Qrels = dict[str, dict[str, int]]  # query id -> document path -> gain

# Each ranking feature (kb.index.Ranking), and the ranking with it switched off.
ABLATIONS: dict[str, Ranking] = {
    "without pseudo-relevance feedback": dataclasses.replace(DEFAULT_RANKING, feedback_terms=0),
    "without the proximity bonus": dataclasses.replace(DEFAULT_RANKING, proximity_boost=0.0),
    "with field scores summed, not max + tie": dataclasses.replace(DEFAULT_RANKING, field_tie=None),
    "with title and heading weighted as body": dataclasses.replace(
        DEFAULT_RANKING, field_boosts=(("title", 1.0), ("heading", 1.0), ("body", 1.0))
    ),
}


# ---- the collection ---------------------------------------------------------------------------


def lay_out(cranfield: Path, out: Path) -> tuple[list[dict[str, Any]], Qrels]:
    """Write the collection under `out` with its own `to_files.py`; return queries and gains."""
    subprocess.run([sys.executable, str(cranfield / "to_files.py"), str(out)], check=True)
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines() if line]
    qrels: Qrels = {}
    for line in (out / "qrels.tsv").read_text().splitlines():
        qid, path, grade = line.split("\t")
        gain = GAIN.get(int(grade), 0)
        if gain:
            qrels.setdefault(qid, {})[path] = max(gain, qrels.get(qid, {}).get(path, 0))
    return queries, qrels


# ---- scoring ----------------------------------------------------------------------------------


def ndcg(ranked: list[str], gains: dict[str, int], k: int = K) -> float:
    dcg = sum(gains.get(p, 0) / math.log2(i + 2) for i, p in enumerate(ranked[:k]))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(gains.values(), reverse=True)[:k]))
    return dcg / ideal if ideal else 0.0


def recall(ranked: list[str], gains: dict[str, int], k: int = K) -> float:
    return len(set(ranked[:k]) & set(gains)) / len(gains) if gains else 0.0


def score(name: str, run: dict[str, list[str]], qrels: Qrels, seconds: list[float]) -> dict[str, Any]:
    judged = [qid for qid in run if qrels.get(qid)]
    return {
        "system": name,
        "ndcg@10": statistics.fmean(ndcg(run[q], qrels[q]) for q in judged),
        "recall@10": statistics.fmean(recall(run[q], qrels[q]) for q in judged),
        "queries": len(judged),
        "empty": sum(1 for q in run if not run[q]),
        "p50_ms": statistics.median(seconds) * 1000 if seconds else None,
        "per_query": {q: round(ndcg(run[q], qrels[q]), 4) for q in judged},
    }


# ---- the baseline -----------------------------------------------------------------------------


def baseline_run(
    docs: Path, index_dir: Path, queries: list[dict[str, Any]]
) -> tuple[dict[str, list[str]], list[float]]:
    """Plain BM25: whole documents, title + body with English stemming, OR of the query's words."""
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("path", stored=True, tokenizer_name="raw")
    sb.add_text_field("title", stored=False, tokenizer_name="en_stem")
    sb.add_text_field("body", stored=False, tokenizer_name="en_stem")
    index = tantivy.Index(sb.build(), path=str(index_dir))
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    for file in sorted(docs.glob("*.md")):
        heading, _, body = file.read_text().partition("\n")
        writer.add_document(
            tantivy.Document(path=f"docs/{file.name}", title=heading.lstrip("# ").strip(), body=body)
        )
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    run, seconds = {}, []
    for q in queries:
        words = _WORD.findall(q["text"].lower())
        started = time.perf_counter()
        query = (
            index.parse_query(" ".join(words), ["title", "body"]) if words else tantivy.Query.empty_query()
        )
        hits = searcher.search(query, limit=K).hits
        run[str(q["qid"])] = [searcher.doc(a).get_first("path") for _, a in hits]
        seconds.append(time.perf_counter() - started)
    return run, seconds


# ---- kb through MCP ---------------------------------------------------------------------------


async def kb_run(
    settings: Settings, queries: list[dict[str, Any]], ranking: Ranking = DEFAULT_RANKING
) -> tuple[dict[str, list[str]], list[float], int]:
    """Each query through the MCP `search` tool; returns the ranked paths, times, approximate count."""
    runtime = KbRuntime(settings, ranking)
    run, seconds, approximate = {}, [], 0
    async with Client(build_server(settings, runtime=runtime), cache=None) as client:
        with anyio.fail_after(300):
            await runtime.wait_synced()
            embedder = runtime.library.embedder
            if embedder is not None:  # the vectors exist already: this loads the encoder
                await anyio.to_thread.run_sync(embedder.idle.wait)
        for q in queries:
            started = time.perf_counter()
            result = await client.call_tool("search", {"query": q["text"], "limit": K})
            seconds.append(time.perf_counter() - started)
            if result.is_error:
                text = " ".join(getattr(c, "text", "") for c in result.content)
                raise RuntimeError(f"query {q['qid']} failed: {text[:300]}")
            data = result.structured_content or {}
            hits = data.get("results", [])
            run[str(q["qid"])] = [hit["path"] for hit in hits]
            approximate += bool(data.get("approximate"))
    return run, seconds, approximate


def index_with_kb(settings: Settings) -> float:
    """`kb index`'s work: the sync, then (with semantic search on) the passages' vectors."""
    started = time.perf_counter()
    index = SearchIndex.open(settings.index_dir, settings.root)
    try:
        report = ingest.sync(settings, index)
        if settings.semantic:
            embed_missing(settings, index, report)
    finally:
        index.close()
    return time.perf_counter() - started


# ---- the command ------------------------------------------------------------------------------


def ablate(settings: Settings, queries: list[dict[str, Any]], qrels: Qrels) -> list[dict[str, Any]]:
    """kb's figures with each of ABLATIONS in turn, and without semantic search."""
    rows = []
    lexical = settings.model_copy(update={"semantic": False})
    for name, ranking in ABLATIONS.items():
        run, seconds, _ = anyio.run(kb_run, settings, queries, ranking)
        rows.append(score(f"  {name}", run, qrels, seconds))
        if settings.semantic and ranking.feedback_terms == 0:
            run, seconds, _ = anyio.run(kb_run, lexical, queries, ranking)
            rows.append(score(f"  {name}, without semantic search", run, qrels, seconds))
    run, seconds, _ = anyio.run(kb_run, lexical, queries)
    rows.append(score("  without semantic search", run, qrels, seconds))
    return rows


def measure(
    cranfield: Path, work: Path, log: Callable[[str], None], *, ablation: bool = False
) -> dict[str, Any]:
    queries, qrels = lay_out(cranfield, work / "cranfield")
    docs_root = work / "cranfield"
    base, base_seconds = baseline_run(docs_root / "docs", _mkdir(work / "baseline"), queries)
    log(f"baseline done ({len(queries)} queries)")
    settings = Settings(root=docs_root, index_dir=work / "kb-index", jobs=0, watch=False)
    index_seconds = index_with_kb(settings)
    log(f"kb indexed in {index_seconds:.1f} s")
    run, seconds, approximate = anyio.run(kb_run, settings, queries)
    baseline = score("BM25 baseline (title+body, OR of words)", base, qrels, base_seconds)
    kb = score("kb search (MCP tool)", run, qrels, seconds)
    kb["approximate"] = approximate
    return {
        "collection": "cranfield",
        "documents": len(list((docs_root / "docs").glob("*.md"))),
        "baseline": baseline,
        "kb": kb,
        "ratio": kb["ndcg@10"] / baseline["ndcg@10"] if baseline["ndcg@10"] else None,
        "ablation": ablate(settings, queries, qrels) if ablation else [],
    }


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def print_table(report: dict[str, Any]) -> None:
    rows = [report["baseline"], report["kb"], *report["ablation"]]
    print(f"Cranfield: {report['documents']} documents, {rows[0]['queries']} judged queries, top {K}")
    print(f"{'system':44} {'nDCG@10':>8} {'recall@10':>10} {'empty':>6} {'p50 ms':>7}")
    for row in rows:
        p50 = f"{row['p50_ms']:.2f}" if row["p50_ms"] is not None else "-"
        print(f"{row['system']:44} {row['ndcg@10']:8.4f} {row['recall@10']:10.4f} {row['empty']:6d} {p50:>7}")
    print(f"ratio kb / baseline (nDCG@10): {report['ratio']:.3f}   (goal >= 1.15, no empty results)")
    print("p50 for kb includes the in-memory MCP round trip; the baseline's is the bare Tantivy query.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cranfield", type=Path, default=DEFAULT_CRANFIELD, help="the cranfield corpus folder"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--per-query", action="store_true", help="include each query's nDCG@10 in --json")
    parser.add_argument(
        "--ablation", action="store_true", help="also run kb with each ranking feature switched off"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-relevance-") as tmp:
        report = measure(
            args.cranfield.resolve(), Path(tmp), lambda m: print(m, file=sys.stderr), ablation=args.ablation
        )
    if not args.per_query:
        for row in (report["baseline"], report["kb"], *report["ablation"]):
            row.pop("per_query")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0 if report["kb"]["empty"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
