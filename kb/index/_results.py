"""Turning Tantivy hits into results: hits and their highlighted snippets."""

from __future__ import annotations

import tantivy

from kb.index._schema import int_of, text_of
from kb.models import DocId, SearchHit

SNIPPET_CHARS = 240


def hit(
    record: tantivy.Document, score: float, snippets: tantivy.SnippetGenerator, copies: list[str]
) -> SearchHit:
    """A ranked passage; `copies` are the other documents holding the same passage."""
    path = text_of(record, "path")
    body = text_of(record, "body")
    fragment = text_of(record, "fragment")
    return SearchHit(
        id=str(DocId(path, fragment)),
        path=path,
        fragment=fragment,
        title=text_of(record, "title") or path,
        heading=text_of(record, "heading") or None,
        page=int_of(record, "page"),
        score=round(score, 4),
        snippet=mark(snippets.snippet_from_doc(record), body),
        copies=copies,
    )


def mark(snippet: tantivy.Snippet, body: str) -> str:
    """The snippet's fragment with matched words wrapped in ** (Markdown bold, plain to read)."""
    ranges = snippet.highlighted()
    if not ranges:
        # Matched only in the title or heading: show where the passage starts instead.
        text = " ".join(body.split())
        return text[:SNIPPET_CHARS].rstrip() + ("…" if len(text) > SNIPPET_CHARS else "")
    fragment = snippet.fragment().encode("utf-8")  # Tantivy's ranges are byte offsets
    out, last = [], 0
    for r in ranges:
        out.append(fragment[last : r.start].decode("utf-8", "replace"))
        out.append("**" + fragment[r.start : r.end].decode("utf-8", "replace") + "**")
        last = r.end
    out.append(fragment[last:].decode("utf-8", "replace"))
    return " ".join("".join(out).split())
