"""Questions an assistant asks, on the shared Markdown corpus: kb's MCP `search` beside plain BM25.

    python benchmarks/questions.py [--markdown-tar PATH] [--kb-arg FLAG ...] [--json] [--per-question]

Unpacks the corpus into a temporary folder, indexes it with a fresh `kb index` process, starts
`kb serve` over stdio and sends each question of `questions.json` through the `search` tool of an
MCP client session, whole, as an assistant would. The baseline, built in the same run, is a
Tantivy index of each file's whole raw text (default tokenizer, no kb code) queried with an OR of
the question's words. Figures: the share of questions with a right file in the top 3 and in the
top 5, and MRR@10 (1 / rank of the first right file, 0 past rank 10), overall and for each kind
of question (keyword: the documents' own terms; paraphrase: other words). For kb, also how many
of its top-5 slots hold a passage that is a near-identical copy of a hit ranked above it (word
3-gram Jaccard >= NEAR_COPY of their prose, code blocks left out; passages read with `fetch`).

Nothing is written into the repository. Exit status 1 if an answer file of questions.json is
missing from the corpus, or kb returned no result for some question.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _corpus
import _mcp
import anyio
import tantivy

HERE = Path(__file__).resolve().parent
DEFAULT_TAR = HERE.parent.parent / "shared" / "corpora" / "markdown.tar.gz"
DEFAULT_QUESTIONS = HERE / "questions.json"
K = 10
NEAR_COPY = 0.8  # word 3-gram Jaccard at or above which two passages count as one text in two places
_WORD = re.compile(r"\w+")
# Copies of one page often differ only in how code is given (the book's src/ includes listing files
# that its nostarch/ tree inlines): passages are compared by their prose alone.
_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
_TAG = re.compile(r"<[^>\n]*>")


# ---- scoring ----------------------------------------------------------------------------------


def first_right(ranked: list[str], answers: set[str]) -> int | None:
    """1-based rank of the first right file in `ranked`, or None."""
    return next((i + 1 for i, path in enumerate(ranked) if path in answers), None)


def score(name: str, run: dict[str, list[str]], questions: list[dict[str, Any]]) -> dict[str, Any]:
    def figures(subset: list[dict[str, Any]]) -> dict[str, Any]:
        ranks = [first_right(run[q["id"]][:K], set(q["answers"])) for q in subset]
        return {
            "questions": len(subset),
            "top3": sum(1 for r in ranks if r and r <= 3) / len(subset),
            "top5": sum(1 for r in ranks if r and r <= 5) / len(subset),
            "mrr@10": statistics.fmean(1 / r if r else 0.0 for r in ranks),
        }

    kinds = sorted({q["kind"] for q in questions})
    return {
        "system": name,
        **figures(questions),
        "by_kind": {kind: figures([q for q in questions if q["kind"] == kind]) for kind in kinds},
        "empty": sum(1 for q in questions if not run[q["id"]]),
        "per_question": {q["id"]: first_right(run[q["id"]][:K], set(q["answers"])) for q in questions},
    }


def prose(text: str) -> str:
    """`text` without fenced code blocks and HTML tags (all of it when nothing else is left)."""
    stripped = _TAG.sub(" ", _FENCE.sub(" ", text))
    return stripped if _WORD.search(stripped) else text


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = _WORD.findall(prose(text).lower())
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def near_copies(passages: list[str]) -> int:
    """How many of `passages` are near-identical to one ranked above them (slots spent twice)."""
    grams = [shingles(p) for p in passages]
    copies = 0
    for i, mine in enumerate(grams):
        for above in grams[:i]:
            union = len(mine | above)
            if union and len(mine & above) / union >= NEAR_COPY:
                copies += 1
                break
    return copies


# ---- the baseline -----------------------------------------------------------------------------


def baseline_run(root: Path, index_dir: Path, questions: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Plain BM25: one document per file, its whole raw text, the default tokenizer, OR of words."""
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("path", stored=True, tokenizer_name="raw")
    sb.add_text_field("body", stored=False)
    index = tantivy.Index(sb.build(), path=str(index_dir))
    writer = index.writer(heap_size=128_000_000, num_threads=1)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        body = file.read_text(errors="replace")
        writer.add_document(tantivy.Document(path=file.relative_to(root).as_posix(), body=body))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    run = {}
    for q in questions:
        words = _WORD.findall(q["question"].lower())
        query = index.parse_query(" ".join(words), ["body"]) if words else tantivy.Query.empty_query()
        hits = searcher.search(query, limit=K).hits
        run[q["id"]] = [searcher.doc(address).get_first("path") for _, address in hits]
    return run


# ---- kb ---------------------------------------------------------------------------------------


def kb_index(root: Path, index_dir: Path, extra: list[str]) -> dict[str, Any]:
    """A fresh `kb index` process, as a user would run it; its JSON summary."""
    command = [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir), "--json"]
    done = subprocess.run([*command, *extra], capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: some files failed, the rest is indexed
        raise RuntimeError(f"kb index exited {done.returncode}: {done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


async def _ask(
    server: list[str], questions: list[dict[str, Any]], errlog: Any
) -> tuple[dict[str, list[str]], dict[str, int], int]:
    """Each question through `search` over stdio; the ranked paths, near copies in each top 5,
    and how many top-5 hits name other copies of themselves (`copies`)."""
    run, copies, named = {}, {}, 0
    async with _mcp._client(server, errlog) as client:
        with anyio.fail_after(600):
            # The start-up sync first, and every passage's vector (with semantic search on).
            while {"indexing", "semantic_coverage"} & set(await _search(client, "install")):
                await anyio.sleep(0.2)
        for q in questions:
            hits = (await _search(client, q["question"]))["results"]
            run[q["id"]] = [hit["path"] for hit in hits]
            named += sum(1 for hit in hits[:5] if hit.get("copies"))
            passages = [await _passage(client, hit["id"]) for hit in hits[:5]]
            copies[q["id"]] = near_copies(passages)
    return run, copies, named


async def _search(client: Any, query: str) -> dict[str, Any]:
    result = await client.call_tool("search", {"query": query, "limit": K})
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise _mcp.McpFailure(f"search {query!r} returned a tool error: {text[:300]}")
    return result.structured_content or {}


async def _passage(client: Any, hit_id: str) -> str:
    result = await client.call_tool("fetch", {"id": hit_id, "max_chars": 20_000})
    if result.is_error:
        raise _mcp.McpFailure(f"fetch {hit_id!r} returned a tool error")
    return str((result.structured_content or {}).get("text", ""))


def kb_run(
    root: Path, index_dir: Path, questions: list[dict[str, Any]], extra: list[str]
) -> tuple[dict[str, list[str]], dict[str, int], int]:
    server = ["-m", "kb", "serve", str(root), "--index-dir", str(index_dir), *extra]
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            return anyio.run(_ask, server, questions, errlog)
        except Exception as exc:
            tail = _mcp._tail(errlog)
            raise _mcp.McpFailure(f"{type(exc).__name__}: {exc}\n--- kb serve stderr:\n{tail}") from exc


# ---- the command ------------------------------------------------------------------------------


def load(path: Path) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = json.loads(path.read_text())["questions"]
    return questions


def missing_answers(root: Path, questions: list[dict[str, Any]]) -> list[str]:
    return [f"{q['id']}: {a}" for q in questions for a in q["answers"] if not (root / a).is_file()]


def measure(
    tar: Path, questions: list[dict[str, Any]], work: Path, serve_args: list[str], index_args: list[str]
) -> dict[str, Any]:
    root = _corpus.unpack(tar, work / "corpus")
    if missing := missing_answers(root, questions):
        raise SystemExit("answer files missing from the corpus:\n  " + "\n  ".join(missing))
    (work / "baseline").mkdir()
    base = baseline_run(root, work / "baseline", questions)
    _log("baseline done")
    summary = kb_index(root, work / "kb-index", index_args)
    _log(f"kb index done: {summary.get('seconds', '?')} s")
    run, copies, named = kb_run(root, work / "kb-index", questions, serve_args)
    kb = score("kb search (MCP, stdio)", run, questions)
    kb["near_copies_top5"] = sum(copies.values())
    kb["slots_top5"] = sum(min(5, len(run[q["id"]])) for q in questions)
    kb["questions_with_near_copies"] = sum(1 for c in copies.values() if c)
    kb["hits_naming_copies_top5"] = named
    kb["per_question_near_copies"] = copies
    return {
        "corpus": tar.name,
        "files": _corpus.files_and_bytes(root)[0],
        "serve_args": serve_args,
        "index_args": index_args,
        "kb_index": {k: summary[k] for k in ("seconds",) if k in summary},
        "baseline": score("BM25 baseline (whole file, OR of words)", base, questions),
        "kb": kb,
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def print_table(report: dict[str, Any]) -> None:
    kb, base = report["kb"], report["baseline"]
    kinds = list(kb["by_kind"])
    counts = ", ".join(f"{kb['by_kind'][k]['questions']} {k}" for k in kinds)
    print(f"{report['corpus']}: {report['files']} files; {kb['questions']} questions ({counts})")
    if report["serve_args"] or report["index_args"]:
        print(f"kb serve args: {report['serve_args']}   kb index args: {report['index_args']}")
    print(f"{'system':42} {'questions':>10} {'top 3':>7} {'top 5':>7} {'MRR@10':>7}")
    for row in (base, kb):
        for label, figures in (("all", row), *((k, row["by_kind"][k]) for k in kinds)):
            name = row["system"] if label == "all" else f"  {label}"
            print(
                f"{name:42} {figures['questions']:>10} {figures['top3']:7.1%} {figures['top5']:7.1%} "
                f"{figures['mrr@10']:7.3f}"
            )
    share = kb["near_copies_top5"] / kb["slots_top5"] if kb["slots_top5"] else 0.0
    print(
        f"kb top 5: {kb['near_copies_top5']} of {kb['slots_top5']} slots ({share:.0%}) hold a near-identical "
        f"copy of a hit above them, in {kb['questions_with_near_copies']} questions; "
        f"{kb['hits_naming_copies_top5']} hits name other copies"
    )
    print(f"empty results: kb {kb['empty']}, baseline {base['empty']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown-tar", type=Path, default=DEFAULT_TAR, help="the Markdown corpus tarball")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="the question set")
    parser.add_argument(
        "--kb-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra argument for kb serve",
    )
    parser.add_argument(
        "--kb-index-arg", action="append", default=[], metavar="FLAG", help="extra argument for kb index"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--per-question", action="store_true", help="include each question's first right rank in --json"
    )
    args = parser.parse_args(argv)
    questions = load(args.questions)
    with tempfile.TemporaryDirectory(prefix="kb-questions-") as tmp:
        report = measure(args.markdown_tar.resolve(), questions, Path(tmp), args.kb_arg, args.kb_index_arg)
    if not args.per_question:
        for row in (report["baseline"], report["kb"]):
            row.pop("per_question")
        report["kb"].pop("per_question_near_copies")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0 if report["kb"]["empty"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
