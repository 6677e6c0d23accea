"""The results of recent searches, served again while nothing they were made from has changed.

Assistants repeat themselves: the same search from several agents or sessions, a retry, a search
asked again after reading its hits. A search costs milliseconds of CPU; a repeat found here costs
microseconds. An entry's key holds the versions of what the results depend on (the index's
commit, the vectors, whether the encoder is loaded) beside the query and its options, so a change
to any of them makes the old entries unreachable, and they age out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from kb.models import SearchResults

if TYPE_CHECKING:
    from kb.index import SearchIndex
    from kb.semantic import Semantic

ENTRIES = 512  # a page of 10 hits is about 10-20 KB


class SearchCache:
    """The last `ENTRIES` searches' results, the least recently used dropped first; safe for threads."""

    def __init__(self, entries: int = ENTRIES) -> None:
        self._entries = entries
        self._results: OrderedDict[Hashable, SearchResults] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0  # searches answered from here
        self._misses = 0  # searches made, then kept here

    def status(self) -> dict[str, int]:
        """For `kb://status`: how many results are kept, and how many searches were answered here
        (hits) or made (misses)."""
        with self._lock:
            return {"entries": len(self._results), "hits": self._hits, "misses": self._misses}

    def get(self, key: Hashable) -> SearchResults | None:
        with self._lock:
            results = self._results.get(key)
            if results is not None:
                self._results.move_to_end(key)
                self._hits += 1
            return results

    def put(self, key: Hashable, results: SearchResults) -> None:
        """Keep `results` (never changed afterwards: callers get them as they are)."""
        with self._lock:
            self._misses += 1
            self._results[key] = results
            self._results.move_to_end(key)
            while len(self._results) > self._entries:
                self._results.popitem(last=False)


def search_key(
    index: SearchIndex, semantic: Semantic | None, query: str, options: Mapping[str, Any], *, look: bool
) -> tuple[Hashable, ...] | None:
    """What a search's results depend on: the index's commit and the vectors (both taken in first
    if `look`; else None while there is something to take in, which only a search may do), the
    query and its options (lists as tuples, in a fixed order)."""
    by_meaning = None
    if semantic is not None and semantic.encoder is not None:
        if look:
            semantic.store.refresh(wait=False)  # vectors another process wrote count from now on
        elif not semantic.store.settled():
            return None
        by_meaning = semantic.store.version
    version = index.version(take_in=look)
    if version is None:
        return None
    listed = sorted((name, tuple(v) if isinstance(v, list) else v) for name, v in options.items())
    return (version, by_meaning, query, tuple(listed))
