"""Counting and listing what a query matches, where no ranking is wanted."""

from __future__ import annotations

import tantivy


def matching(searcher: tantivy.Searcher, query: tantivy.Query) -> int:
    """How many records `query` matches (counted; no hit is kept)."""
    return result_count(searcher.search(query, limit=1, count=True))


def every_match(searcher: tantivy.Searcher, query: tantivy.Query) -> list[tantivy.DocAddress]:
    """The address of every record `query` matches, in no useful order."""
    count = matching(searcher, query)
    if not count:
        return []
    return [address for _, address in searcher.search(query, limit=count, count=False).hits]


def result_count(result: tantivy.SearchResult) -> int:
    """How many matched (a search run with count=True)."""
    return int(result.count)  # type: ignore[attr-defined]  # set with count=True; missing from the stub
