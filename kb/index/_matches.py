"""Counting and listing what a query matches, where no ranking is wanted."""

from __future__ import annotations

import tantivy


def matching(searcher: tantivy.Searcher, query: tantivy.Query) -> int:
    """How many records `query` matches (counted; no hit is kept)."""
    return result_count(searcher.search(query, limit=1, count=True))


def every_match(
    searcher: tantivy.Searcher, query: tantivy.Query, count: int | None = None
) -> list[tantivy.DocAddress]:
    """The address of every record `query` matches, in no useful order; `count` is how many
    there are, if the caller counted them already."""
    count = matching(searcher, query) if count is None else count
    if not count:
        return []
    return [address for _, address in searcher.search(query, limit=count, count=False).hits]


def result_count(result: tantivy.SearchResult) -> int:
    """How many matched (a search run with count=True)."""
    return int(result.count)  # type: ignore[attr-defined]  # set with count=True; missing from the stub
