"""Turning Tantivy hits into results: the vocabulary the planner consults, hits and snippets."""

from __future__ import annotations

import tantivy

from kb.index._query import edit_distance
from kb.index._schema import int_of, text_of
from kb.models import SearchHit

SNIPPET_CHARS = 240


class Vocabulary:
    """The searcher's term dictionaries, as the query planner's `Vocabulary`."""

    FIELDS = ("body", "title", "heading")
    NEAREST = 3

    def __init__(self, searcher: tantivy.Searcher) -> None:
        self._searcher = searcher

    def known(self, term: str) -> bool:
        return any(self._searcher.doc_freq(f, term) for f in self.FIELDS)

    def near(self, term: str, distance: int) -> list[str]:
        # Typos rarely hit the first letters; reading only the terms that share them keeps this fast.
        prefix = term[:2]
        found: dict[str, tuple[int, int]] = {}
        for field in self.FIELDS:
            for candidate, count in self._searcher.terms_with_prefix(field, prefix):
                if not -distance <= len(term) - len(candidate) <= 3:
                    continue
                edits = edit_distance(term, candidate, distance)
                if edits > distance and len(candidate) >= 4 and 0 < len(term) - len(candidate) <= 3:
                    # The index holds stems ('morn' for morning), a typo is not stemmed ('mornnig').
                    edits = max(1, edit_distance(term[: len(candidate)], candidate, distance))
                if edits <= distance:
                    found[candidate] = (edits, found.get(candidate, (edits, 0))[1] + count)
        ranked = sorted(found, key=lambda t: (found[t][0], -found[t][1], t))
        return ranked[: self.NEAREST]


def hit(record: tantivy.Document, score: float, snippets: tantivy.SnippetGenerator) -> SearchHit:
    path = text_of(record, "path")
    body = text_of(record, "body")
    return SearchHit(
        id=f"{path}#{text_of(record, 'fragment')}",
        path=path,
        title=text_of(record, "title") or path,
        heading=text_of(record, "heading") or None,
        page=int_of(record, "page"),
        score=round(score, 4),
        snippet=mark(snippets.snippet_from_doc(record), body),
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
