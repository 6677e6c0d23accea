"""SearchIndex: kb's interface to its Tantivy index (the folder itself is `_folder`'s).

One index folder holds two kinds of records, committed together so they never drift apart:
a *section* record per passage (what search ranks) and a *file* record per document (the manifest
that lets a sync skip unchanged files).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path

import tantivy

from kb.errors import DocumentNotFoundError
from kb.index import _lock
from kb.index._batch import IndexBatch
from kb.index._copies import one_slot_per_passage
from kb.index._folder import VECTORS_FOLDER, open_folder
from kb.index._query import DEFAULT_RANKING, QueryPlan, Ranking, plan_query, prefix_regex
from kb.index._results import SNIPPET_CHARS, hit
from kb.index._schema import (
    SCHEMA_VERSION,
    build_schema,
    file_record_query,
    int_of,
    passage_text,
    section_from_record,
    text_of,
)
from kb.index._vocabulary import Vocabulary
from kb.models import (
    DocId,
    Format,
    IndexStats,
    ManifestEntry,
    SearchResults,
    StoredDocument,
)

logger = logging.getLogger(__name__)

MAX_HITS_SCANNED = 5000
MAX_COPIES_NAMED = 5
MAX_PREFIX_QUERY = 64
# A filter that lets at most this many passages through has them all ranked by meaning; past it,
# the nearest of all passages (ten times as many as unfiltered) are filtered.
MAX_RANKED_BY_MEANING = 5000

# The vector keys nearest the query in meaning, best first, with their similarity: of every passage,
# or of `among` only.
Nearest = Callable[[Collection[int] | None], list[tuple[int, float]]]


class SearchIndex:
    """The Tantivy index behind kb: write in batches, search, fetch, list."""

    def __init__(self, index: tantivy.Index, index_dir: Path, root: Path, ranking: Ranking) -> None:
        self._index = index
        self._schema = index.schema
        self._ranking = ranking
        self.index_dir = index_dir
        self.root = root

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        index_dir: Path,
        root: Path | None = None,
        *,
        rebuild: bool = False,
        ranking: Ranking = DEFAULT_RANKING,
    ) -> SearchIndex:
        """Open the index in `index_dir`, creating it for `root` if the folder holds none.

        With `root=None` the index must exist already (for `kb search` and `kb status`). With
        `rebuild`, an index kb made that is damaged or built for another root is wiped and made anew;
        a folder kb did not make is never touched. `ranking` is how its searches score passages.

        Raises:
            IndexMismatchError: the index was built for another root or schema version (unless `rebuild`).
            IndexDamagedError: the folder is kb's but its index cannot be read (unless `rebuild`).
            ConfigError: there is no index and no root, or the folder holds something else.
        """
        index, index_dir, root = open_folder(index_dir, root, rebuild=rebuild)
        return cls(index, index_dir, root, ranking)

    @property
    def ranking(self) -> Ranking:
        return self._ranking

    @property
    def vectors_dir(self) -> Path:
        """Where the passages' vectors are kept, beside the index (see `kb.semantic`)."""
        return self.index_dir / VECTORS_FOLDER

    def close(self) -> None:
        """Release the index (readers are dropped with the object)."""
        self._index = None  # type: ignore[assignment]
        gc.collect()

    def reload(self) -> None:
        """See the latest commit, ours or another process's."""
        self._index.reload()

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self, *, wait: float = 60.0) -> Iterator[IndexBatch]:
        """Hold the writer for one batch of changes, committed when the block ends without error.

        Raises:
            IndexLockedError: another process kept the writer for longer than `wait` seconds.
        """
        # One indexing thread: the extraction workers already use the other cores, and each thread
        # writes its own segments, which cost merges later.
        writer = _lock.acquire(
            lambda: self._index.writer(heap_size=128_000_000, num_threads=1), self.index_dir, wait
        )
        try:
            with _lock.holding(self.index_dir):
                batch = IndexBatch(writer, self._schema, self.reload)
                try:
                    yield batch
                except BaseException:
                    writer.rollback()
                    raise
                if batch.pending:
                    batch.commit()
        finally:
            # Letting the segment merges finish keeps the index at a few segments: a writer
            # dropped mid-merge abandons them, and per-batch commits would pile up segments that
            # make every later commit slower. This also consumes the writer, releasing its lock.
            writer.wait_merging_threads()

    # ---- reading -------------------------------------------------------------------------

    def _searcher(self) -> tantivy.Searcher:
        return self._index.searcher()

    def _term(self, field: str, value: str) -> tantivy.Query:
        return tantivy.Query.term_query(self._schema, field, value)

    def _all_of_kind(self, kind: str, under: list[str] | None = None) -> Iterator[tantivy.Document]:
        """Every record of one kind (or those at or below `under`), one at a time: holding 50,000
        stored records at once would cost hundreds of MB."""
        searcher = self._searcher()
        if searcher.num_docs == 0 or under == []:
            return
        query = self._term("kind", kind)
        if under is not None:
            regex = "|".join(f"({prefix_regex(p)})" for p in under)
            query = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, query),
                    (tantivy.Occur.Must, tantivy.Query.regex_query(self._schema, "path", regex)),
                ]
            )
        matching = _count(searcher.search(query, limit=1, count=True))
        if matching:
            for _, address in searcher.search(query, limit=matching, count=False).hits:
                yield searcher.doc(address)

    def _manifest_records(self, under: list[str] | None) -> Iterator[tantivy.Document]:
        """The file records of every indexed file, or of those at or below `under`."""
        if under is not None and len(under) > MAX_PREFIX_QUERY:
            # One regex of thousands of alternatives compiles slower than reading the whole manifest.
            prefixes = tuple(p.strip("/") for p in under)
            below = tuple(f"{p}/" for p in prefixes)
            for record in self._all_of_kind("file"):
                path = text_of(record, "path")
                if path in prefixes or path.startswith(below):
                    yield record
            return
        yield from self._all_of_kind("file", under)

    def manifest(self, under: list[str] | None = None) -> dict[str, ManifestEntry]:
        """The manifest record of every indexed file, by path; or only those at or below `under`."""
        entries = {}
        for record in self._manifest_records(under):
            entry = ManifestEntry.model_validate_json(text_of(record, "manifest"))
            entries[entry.path] = entry
        return entries

    def file_stats(self, under: list[str] | None = None) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every indexed file, by path, or of those at or below `under`: what a
        sync compares with the folder, at about half the cost of the whole `manifest` (a tree of
        unchanged files needs no more)."""
        stats = {}
        for record in self._manifest_records(under):
            entry = json.loads(text_of(record, "manifest"))
            stats[entry["path"]] = (entry["size"], entry["mtime_ns"])
        return stats

    def document_paths(self) -> list[str]:
        """Every indexed document's path, sorted."""
        return sorted(text_of(record, "path") for record in self._all_of_kind("file"))

    def entries(self, paths: list[str]) -> dict[str, ManifestEntry]:
        """The manifest records of these paths (those indexed), in one lookup."""
        if not paths:
            return {}
        searcher = self._searcher()
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, self._term("kind", "file")),
                (tantivy.Occur.Must, tantivy.Query.term_set_query(self._schema, "path", paths)),
            ]
        )
        found = {}
        for _, address in searcher.search(query, limit=len(paths), count=False).hits:
            entry = ManifestEntry.model_validate_json(text_of(searcher.doc(address), "manifest"))
            found[entry.path] = entry
        return found

    def passages(
        self, wanted: Callable[[int], bool], paths: list[str] | None = None
    ) -> Iterator[tuple[int, str]]:
        """The vector key of each passage that is `wanted`, and the text its vector is made from
        (passages of `paths` only, if given); each key once."""
        searcher = self._searcher()
        seen: set[int] = set()
        for address, key in self._vector_keys(searcher, paths):
            if key in seen or not wanted(key):
                continue
            seen.add(key)
            yield key, self._passage_text(searcher, address)

    def vector_keys(self) -> set[int]:
        """The vector key of every passage, as of the latest commit (another process's too)."""
        self.reload()
        return {key for _, key in self._vector_keys(self._searcher(), None)}

    def _vector_keys(
        self, searcher: tantivy.Searcher, paths: list[str] | None
    ) -> list[tuple[tantivy.DocAddress, int]]:
        """Each passage (of `paths` only, if given) and its vector key, from the fast field."""
        query = self._term("kind", "section")
        if paths is not None:
            query = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, query),
                    (tantivy.Occur.Must, tantivy.Query.term_set_query(self._schema, "path", paths)),
                ]
            )
        matching = _count(searcher.search(query, limit=1, count=True)) if paths != [] else 0
        if not matching:
            return []
        addresses = [address for _, address in searcher.search(query, limit=matching, count=False).hits]
        keys = searcher.fast_field_values("vector_key", addresses)
        return [(address, int(key or 0)) for address, key in zip(addresses, keys, strict=True)]

    @staticmethod
    def _passage_text(searcher: tantivy.Searcher, address: tantivy.DocAddress) -> str:
        record = searcher.doc(address)
        return passage_text(text_of(record, "title"), text_of(record, "heading"), text_of(record, "body"))

    def generation(self) -> tuple[int, ...]:
        """Changes whenever a commit lands (ours or another process's): cheap, for caches."""
        try:
            st = (self.index_dir / "meta.json").stat()
        except OSError:
            return ()
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def get(self, doc_id: DocId) -> StoredDocument:
        """A whole document or one passage (`doc_id.fragment`), sections in order.

        Raises:
            DocumentNotFoundError: no such document or passage.
        """
        path, fragment = doc_id.path, doc_id.fragment
        file_hit = self._file_record(path)
        if file_hit is None:
            raise DocumentNotFoundError(str(doc_id))
        entry = ManifestEntry.model_validate_json(text_of(file_hit, "manifest"))
        searcher = self._searcher()
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, self._term("kind", "section")),
                (tantivy.Occur.Must, self._term("path", path)),
            ]
        )
        hits = searcher.search(query, limit=max(1, searcher.num_docs), count=False).hits
        records = sorted((searcher.doc(a) for _, a in hits), key=lambda r: int_of(r, "ordinal") or 0)
        sections = [section_from_record(r) for r in records]
        if fragment is not None:
            sections = [s for s in sections if s.fragment == fragment]
            if not sections:
                raise DocumentNotFoundError(str(doc_id))
        return StoredDocument(
            path=path,
            format=entry.format,
            title=entry.title,
            tags=entry.tags,
            size=entry.size,
            mtime_ns=entry.mtime_ns,
            sections=sections,
        )

    def _file_record(self, path: str) -> tantivy.Document | None:
        searcher = self._searcher()
        hits = searcher.search(file_record_query(self._schema, path), limit=1, count=False).hits
        return searcher.doc(hits[0][1]) if hits else None

    def stats(self) -> IndexStats:
        """Counts and sizes for `kb status` and the `kb://status` resource."""
        searcher = self._searcher()
        documents = _count(searcher.search(self._term("kind", "file"), limit=1, count=True))
        sections = _count(searcher.search(self._term("kind", "section"), limit=1, count=True))
        size = sum(f.stat().st_size for f in self.index_dir.iterdir() if f.is_file())
        meta = self.index_dir / "meta.json"
        last = datetime.fromtimestamp(meta.stat().st_mtime, UTC) if documents and meta.exists() else None
        return IndexStats(
            root=str(self.root),
            index_dir=str(self.index_dir),
            documents=documents,
            sections=sections,
            size_bytes=size,
            last_indexed=last,
            schema_version=SCHEMA_VERSION,
        )

    # ---- search --------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        offset: int = 0,
        path: str | None = None,
        formats: list[Format] | None = None,
        tags: list[str] | None = None,
        modified_after: datetime | None = None,
        all_passages: bool = False,
        nearest: Nearest | None = None,
    ) -> SearchResults:
        """Rank passages for `query`; by default each document appears once, with its best passage.

        `nearest(among)` gives the vector keys (see `passages`) most like the query in meaning, best
        first, of all or only `among` those keys: for a query of plain words, their passages are
        fused with the lexical ranking (filters apply to both: when they let few passages through,
        those are all ranked by meaning, else the nearest of all are filtered). It is called once
        the lexical side is done, so that the query's encoding can run meanwhile.

        Raises:
            QueryError: a filter is malformed (the query text itself never fails: it falls back to
                lenient parsing).
        """
        searcher = self._searcher()
        plan = plan_query(
            self._index,
            self._schema,
            query,
            path=path,
            formats=formats,
            tags=tags,
            modified_after=modified_after,
            vocabulary=Vocabulary(searcher),
            ranking=self._ranking,
        )
        meaning = None
        if nearest is not None and plan.natural:
            by_words = plan  # the plans derived from it (feedback, near spellings) lose its filters
            filtered = bool(path or formats or tags or modified_after)

            def meaning() -> list[tantivy.DocAddress]:
                among = self._filtered_keys(searcher, by_words) if filtered else None
                return self._by_meaning(searcher, by_words, nearest(among), all_passages)

        try:
            return self._run(searcher, plan, query, limit, offset, all_passages, meaning)
        except ValueError:
            if plan.as_words is None:
                raise
            # Parsed, but refused when run ('title:*'): the query text never fails, its words are searched.
            logger.debug("query %r refused by the engine; searching its words", query[:80])
            return self._run(searcher, plan.as_words(), query, limit, offset, all_passages, meaning)

    def _run(
        self,
        searcher: tantivy.Searcher,
        plan: QueryPlan,
        query: str,
        limit: int,
        offset: int,
        all_passages: bool,
        meaning: Callable[[], list[tantivy.DocAddress]] | None,
    ) -> SearchResults:
        if plan.expand is not None:
            # The best passages for the question's own words lend it their vocabulary.
            best = searcher.search(plan.query, limit=self._ranking.feedback_passages, count=False).hits
            plan = plan.expand([(score, text_of(searcher.doc(address), "body")) for score, address in best])
        wanted = offset + limit
        fusing = meaning is not None
        hits, total, copies, head = self._collect(searcher, plan, wanted, all_passages, fusing=fusing)
        if not hits and (retry := plan.fuzzy()) is not None:
            plan = retry
            hits, total, copies, head = self._collect(searcher, plan, wanted, all_passages, fusing=fusing)
        approximate = plan.approximate and bool(hits)
        if meaning is not None and (found := meaning()):
            hits, total, copies = self._fuse(searcher, plan, (hits, total, copies), head, found, all_passages)
        page = list(zip(hits, copies, strict=True))[offset : offset + limit]
        snippets = tantivy.SnippetGenerator.create(searcher, plan.text_query, self._schema, "body")
        snippets.set_max_num_chars(SNIPPET_CHARS)
        results = [
            hit(
                searcher.doc(address),
                score,
                snippets,
                [text_of(searcher.doc(c), "path") for c in others[:MAX_COPIES_NAMED]],
            )
            for (score, address), others in page
        ]
        more = offset + limit < total
        return SearchResults(
            query=query,
            results=results,
            total=total,
            next_offset=offset + limit if more else None,
            approximate=approximate,
            corrections=plan.corrections if approximate else {},
        )

    def _collect(
        self,
        searcher: tantivy.Searcher,
        plan: QueryPlan,
        wanted: int,
        all_passages: bool,
        fusing: bool = False,
    ) -> tuple[list[tuple[float, tantivy.DocAddress]], int, list[list[tantivy.DocAddress]], int]:
        """The best `wanted` hits, how many exist, for each hit the copies of its passage in
        other documents, and how many of the first hits come from the best `2 * vector_candidates`
        passages. Unless `all_passages`, a document takes one slot (its best passage) and
        so does a passage found in several documents. When `fusing`, at least twice
        `vector_candidates` passages are scanned: that many are the lexical side of the fusion, as
        deep as the other, and as deep on every page."""
        depth = 2 * self._ranking.vector_candidates if fusing else 0
        if all_passages:
            result = searcher.search(plan.query, limit=max(wanted, depth), count=True)
            return list(result.hits), _count(result), [[] for _ in result.hits], min(depth, len(result.hits))
        scan = min(max(wanted * 10, 100, depth), MAX_HITS_SCANNED)
        while True:
            # No count: fewer hits than asked for already says the scan saw them all, and without
            # counting Tantivy may skip passages that cannot reach the top (~15% of a search).
            result = searcher.search(plan.query, limit=scan, count=False)
            best: dict[int, tuple[float, tantivy.DocAddress]] = {}
            nums = searcher.fast_field_values("doc_num", [address for _, address in result.hits])
            for (score, address), num in zip(result.hits, nums, strict=True):
                best.setdefault(int(num or 0), (score, address))
            slots, copies = one_slot_per_passage(searcher, list(best.values()))
            exhausted = len(result.hits) < scan
            if len(slots) >= wanted or exhausted or scan >= MAX_HITS_SCANNED:
                # When the scan was cut short there are at least this many, maybe more.
                total = len(slots) if exhausted else max(len(slots), wanted + 1)
                # The slots' best passages come in the scan's order: the first `head` are its first `depth`.
                within = {_place(address) for _, address in result.hits[:depth]}
                head = next((i for i, (_, a) in enumerate(slots) if _place(a) not in within), len(slots))
                return slots, total, copies, head
            scan = min(scan * 4, MAX_HITS_SCANNED)

    def _filtered_keys(self, searcher: tantivy.Searcher, plan: QueryPlan) -> list[int] | None:
        """The vector keys of the passages the filters let through, if few enough to rank them all
        by meaning (None: so many that the nearest of all passages hold enough of them)."""
        passing = plan.restrict(tantivy.Query.all_query())
        count = _count(searcher.search(passing, limit=1, count=True))
        if count > MAX_RANKED_BY_MEANING:
            return None
        addresses = [address for _, address in searcher.search(passing, limit=max(count, 1), count=False).hits]
        return list({int(key or 0) for key in searcher.fast_field_values("vector_key", addresses)})

    def _by_meaning(
        self,
        searcher: tantivy.Searcher,
        plan: QueryPlan,
        nearest: list[tuple[int, float]],
        all_passages: bool,
    ) -> list[tantivy.DocAddress]:
        """The passages with the `nearest` vector keys that pass the filters, best first; unless
        `all_passages`, only each document's first."""
        if not nearest:
            return []
        keys = [key for key, _ in nearest]
        query = plan.restrict(tantivy.Query.term_set_query(self._schema, "vector_key", keys))
        # A key is shared by every copy of a passage, so there may be many more passages than keys
        # (one page in every version of a product's docs): all are taken, or the copies of one
        # passage, first in the index, would crowd out the others (every hit scores the same).
        found = searcher.search(query, limit=MAX_HITS_SCANNED, count=False).hits
        addresses = [address for _, address in found]
        rank = {key: i for i, key in enumerate(keys)}
        values = searcher.fast_field_values("vector_key", addresses)
        ranked = sorted(
            zip(addresses, values, strict=True), key=lambda pair: rank.get(int(pair[1] or 0), len(rank))
        )
        if all_passages:
            return [address for address, _ in ranked]
        nums = searcher.fast_field_values("doc_num", [address for address, _ in ranked])
        first: dict[int, tantivy.DocAddress] = {}
        for (address, _), num in zip(ranked, nums, strict=True):
            first.setdefault(int(num or 0), address)
        return list(first.values())

    def _fuse(
        self,
        searcher: tantivy.Searcher,
        plan: QueryPlan,
        lexical: tuple[list[tuple[float, tantivy.DocAddress]], int, list[list[tantivy.DocAddress]]],
        head: int,
        meaning: list[tantivy.DocAddress],
        all_passages: bool,
    ) -> tuple[list[tuple[float, tantivy.DocAddress]], int, list[list[tantivy.DocAddress]]]:
        """Reciprocal rank fusion of the first `head` lexical hits (with their copies) and the
        passages found by meaning: by document, or by passage with `all_passages`; then the rest of
        the lexical hits in their order. A document keeps the passage that ranked it lexically, if any.

        The fused part is the same however deep the page: a deeper lexical side would give a passage
        found by meaning a second vote on a later page only, and it would move ahead of passages
        already shown (shown twice, others never)."""
        hits, total, lexical_copies = lexical
        k = self._ranking.rrf_k

        def identities(ranking: list[tantivy.DocAddress]) -> list[tuple[int, int]]:
            docs = searcher.fast_field_values("doc_num", ranking)
            passages = searcher.fast_field_values("ordinal", ranking) if all_passages else [0] * len(ranking)
            return [(int(d or 0), int(p or 0)) for d, p in zip(docs, passages, strict=True)]

        lexical_ranking = [address for _, address in hits]
        lexical_ids = identities(lexical_ranking)
        scores: dict[tuple[int, int], float] = {}
        shown: dict[tuple[int, int], tantivy.DocAddress] = {}
        for ranking, ids in ((lexical_ranking[:head], lexical_ids[:head]), (meaning, identities(meaning))):
            for rank, (address, identity) in enumerate(zip(ranking, ids, strict=True)):
                scores[identity] = scores.get(identity, 0.0) + 1.0 / (k + rank + 1)
                shown.setdefault(identity, address)
        fused = sorted(((score, shown[key]) for key, score in scores.items()), key=lambda h: -h[0])
        floor = fused[-1][0] if fused else 1.0
        later = [
            (min(1.0 / (k + head + i + 1), floor), address)
            for i, (address, identity) in enumerate(
                zip(lexical_ranking[head:], lexical_ids[head:], strict=True)
            )
            if identity not in scores
        ]
        if all_passages:
            # Every lexical match is counted in `total`; add the passages found by meaning alone.
            keys = {int(v or 0) for v in searcher.fast_field_values("vector_key", meaning)}
            both = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, plan.query),
                    (
                        tantivy.Occur.Must,
                        tantivy.Query.term_set_query(self._schema, "vector_key", list(keys)),
                    ),
                ]
            )
            lexical_too = _count(searcher.search(both, limit=1, count=True))
            ranked = fused + later
            return ranked, max(total + len(meaning) - lexical_too, len(ranked)), [[] for _ in ranked]
        slots, copies = one_slot_per_passage(searcher, fused + later)
        known = {_place(address): others for (_, address), others in zip(hits, lexical_copies, strict=True)}
        for (_, address), others in zip(slots, copies, strict=True):
            named = {_place(c) for c in others}
            others.extend(c for c in known.get(_place(address), []) if _place(c) not in named)
        exhausted = total <= len(hits)  # else `total` says only that there are more
        return slots, len(slots) if exhausted else max(total, len(slots)), copies


def _place(address: tantivy.DocAddress) -> tuple[int, int]:
    return (address.segment_ord, address.doc)


def _count(result: tantivy.SearchResult) -> int:
    return int(result.count)  # type: ignore[attr-defined]  # set with count=True; missing from the stub
