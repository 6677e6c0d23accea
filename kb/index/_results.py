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
    """The snippet's fragment with matched words wrapped in ** (Markdown bold, plain to read),
    widened to whole words: Tantivy cuts at its tokens, so `KB_INDEX_DIR` could start as `DIR`."""
    ranges = snippet.highlighted()
    if not ranges:
        # Matched only in the title or heading: show where the passage starts instead.
        text = " ".join(body.split())
        if len(text) <= SNIPPET_CHARS:
            return text
        cut = text.rfind(" ", SNIPPET_CHARS - _WORD_REACH, SNIPPET_CHARS + 1)
        return text[: cut if cut > 0 else SNIPPET_CHARS].rstrip() + "…"
    span = snippet.fragment_range()
    data = body.encode("utf-8")  # Tantivy's ranges are byte offsets
    start, end = _word_start(data, span.start), _word_end(data, span.end)
    fragment, shift = data[start:end], span.start - start
    out, last = [], 0
    for r in ranges:
        out.append(fragment[last : r.start + shift].decode("utf-8", "replace"))
        out.append("**" + fragment[r.start + shift : r.end + shift].decode("utf-8", "replace") + "**")
        last = r.end + shift
    out.append(fragment[last:].decode("utf-8", "replace"))
    return " ".join("".join(out).split())


_WORD_REACH = 40  # how far a snippet's edge may move to take in the rest of a word


def _word_start(data: bytes, start: int) -> int:
    """`start`, moved back to just after a whitespace (or the start) if one is within reach."""
    floor = max(0, start - _WORD_REACH)
    for i in range(start, floor - 1, -1):
        if i == 0 or data[i - 1 : i].isspace():
            return i
    return start


def _word_end(data: bytes, end: int) -> int:
    """`end`, moved on to a whitespace (or the end) if one is within reach."""
    ceiling = min(len(data), end + _WORD_REACH)
    for i in range(end, ceiling + 1):
        if i == len(data) or data[i : i + 1].isspace():
            return i
    return end
