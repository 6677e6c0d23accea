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
import stat
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import tantivy

from kb.errors import DocumentNotFoundError
from kb.index import _lock
from kb.index._batch import IndexBatch
from kb.index._copies import one_slot_per_passage
from kb.index._folder import VECTORS_FOLDER, open_folder
from kb.index._fusion import MAX_HITS_SCANNED, by_meaning, filtered_keys, fuse, place
from kb.index._matches import every_match, matching, result_count
from kb.index._english import asks_in_english
from kb.index._query import DEFAULT_RANKING, QueryPlan, Ranking, plan_query, prefix_regex
from kb.index._results import SNIPPET_CHARS, hit
from kb.index._schema import (
    SCHEMA_VERSION,
    build_schema,
    doc_num,
    file_record_query,
    int_of,
    passage_text,
    section_from_record,
    text_of,
)
from kb.index._variants import originals_first
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

MAX_COPIES_NAMED = 5
MAX_PREFIX_QUERY = 64
# Tantivy's aggregations stop at 65,000 buckets.
PATHS_PER_AGGREGATION = 50_000

# The vector keys nearest the query in meaning, best first, with their similarity: of every passage,
# or of `among` only.
Nearest = Callable[[Collection[int] | None], list[tuple[int, float]]]


class FileStats(Mapping[str, tuple[int, int]]):
    """(size, mtime_ns) of indexed files, by path. Looking a path up costs a hash (its doc_num);
    only listing the paths reads them, from the searcher of the moment the stats were taken (a
    sync that finds every indexed file in the folder never lists them: 60 ms at 50,000 files)."""

    def __init__(self, by_num: dict[int, tuple[int, int]], paths: Callable[[], list[str]]) -> None:
        self._by_num = by_num
        self._list = paths
        self._paths: list[str] | None = None

    def __getitem__(self, path: str) -> tuple[int, int]:
        return self._by_num[doc_num(path)]

    def __len__(self) -> int:
        return len(self._by_num)

    def __iter__(self) -> Iterator[str]:
        if self._paths is None:
            self._paths = self._list()
        return iter(self._paths)


class SearchIndex:
    """The Tantivy index behind kb: write in batches, search, fetch, list."""

    def __init__(self, index: tantivy.Index, index_dir: Path, root: Path, ranking: Ranking) -> None:
        self._index = index
        self._schema = index.schema
        self._ranking = ranking
        self.index_dir = index_dir
        self.root = root
        self._meta_name = os.fspath(index_dir / "meta.json")  # stated for every search: no Path built
        self._taken_in: tuple[int, ...] | None = None  # the generation `version` last reloaded at
        self._version = 0
        self._reloading = threading.Lock()

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

    def _files_query(self, under: list[str] | None) -> tantivy.Query:
        """The query of the file records at or below `under` (of them all with None)."""
        query = self._term("kind", "file")
        if under is None:
            return query
        regex = "|".join(f"({prefix_regex(p)})" for p in under)
        return tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, query),
                (tantivy.Occur.Must, tantivy.Query.regex_query(self._schema, "path", regex)),
            ]
        )

    def _paths(
        self,
        searcher: tantivy.Searcher,
        query: tantivy.Query,
        count: int,
        within: tuple[int, int] = (-(2**63), 2**63 - 1),
    ) -> list[str]:
        """The paths of the `count` records `query` matches (one record a path), read from the
        path column by a terms aggregation: no record is loaded (loading 50,000 took 0.15-0.25 s,
        this 0.04 s). One aggregation answers at most `PATHS_PER_AGGREGATION`; more are read in
        halves of the `within` range of the records' doc_num (a hash, so the halves come out even)."""
        lower, upper = within
        if count <= PATHS_PER_AGGREGATION or lower == upper:
            terms = {"terms": {"field": "path", "size": max(count, 1)}}
            return [bucket["key"] for bucket in searcher.aggregate(query, {"paths": terms})["paths"]["buckets"]]
        middle = (lower + upper) // 2
        paths = []
        for half in ((lower, middle), (middle + 1, upper)):
            in_half = tantivy.Query.range_query(self._schema, "doc_num", tantivy.FieldType.Integer, *half)
            part = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, in_half)])
            paths.extend(self._paths(searcher, part, matching(searcher, part), half))
        return paths

    def manifest(self, under: list[str] | None = None) -> dict[str, ManifestEntry]:
        """The manifest record of every indexed file, by path; or only those at or below `under`."""
        return self.entries(sorted(self.file_stats(under)))

    def file_stats(self, under: list[str] | None = None) -> FileStats:
        """(size, mtime_ns) of every indexed file, by path, or of those at or below `under`: what a
        sync compares with the folder, from the file records' columns (no record is loaded)."""
        searcher = self._searcher()
        if searcher.num_docs == 0 or under == []:
            return FileStats({}, list)
        # One regex of thousands of alternatives compiles slower than reading every file's stat.
        many = under if under is not None and len(under) > MAX_PREFIX_QUERY else None
        query = self._files_query(None if many else under)
        addresses = every_match(searcher, query)
        nums, sizes, mtimes = (searcher.fast_field_values(f, addresses) for f in ("doc_num", "size", "mtime_ns"))
        by_num = {
            int(num or 0): (int(size or 0), int(mtime or 0))
            for num, size, mtime in zip(nums, sizes, mtimes, strict=True)
        }
        stats = FileStats(by_num, lambda: self._paths(searcher, query, len(addresses)))
        if many:
            prefixes = tuple(p.strip("/") for p in many)
            below = tuple(f"{p}/" for p in prefixes)
            kept = [path for path in stats if path in prefixes or path.startswith(below)]
            stats = FileStats({doc_num(path): stats[path] for path in kept}, lambda: kept)
        return stats

    def document_paths(self) -> list[str]:
        """Every indexed document's path, sorted."""
        searcher = self._searcher()
        query = self._files_query(None)
        count = matching(searcher, query) if searcher.num_docs else 0
        return sorted(self._paths(searcher, query, count)) if count else []

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
        (passages of `paths` only, if given); each key once, a document's passages together and
        in their order, the documents in an order of their paths' hashes.

        That order depends on the documents alone, not on where the index's commits put them: the
        encoder's vectors depend a little on the passages encoded beside them (see
        `kb.semantic._model.BATCH`), and an order that followed the commits' timing made two
        builds of one folder rank differently."""
        searcher = self._searcher()
        found = self._vector_keys(searcher, paths)
        addresses = [address for address, _ in found]
        documents, ordinals = (searcher.fast_field_values(f, addresses) for f in ("doc_num", "ordinal"))
        order = sorted(range(len(found)), key=lambda i: (int(documents[i] or 0), int(ordinals[i] or 0)))
        seen: set[int] = set()
        for address, key in (found[i] for i in order):
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
        addresses = every_match(searcher, query) if paths != [] else []
        keys = searcher.fast_field_values("vector_key", addresses)
        return [(address, int(key or 0)) for address, key in zip(addresses, keys, strict=True)]

    @staticmethod
    def _passage_text(searcher: tantivy.Searcher, address: tantivy.DocAddress) -> str:
        record = searcher.doc(address)
        return passage_text(text_of(record, "title"), text_of(record, "heading"), text_of(record, "body"))

    def generation(self) -> tuple[int, ...]:
        """Changes whenever a commit lands (ours or another process's): cheap, for caches.

        Each commit renames a new meta.json over the last. Its inode, time and size alone do not
        tell commits apart: the inode comes back two renames later, the size rarely changes, and a
        coarse file-system clock (a 4 ms tick here, 1 s or 2 s elsewhere; another machine's, over
        NFS) can give a later commit an earlier one's time. Its bytes do (each commit's opstamp
        differs): the file is read too, from the descriptor that is stated (5 us against 2). It is
        opened without blocking (this runs on a server's event loop: a FIFO put in its place must
        not stall it) and read only if it is a regular file.
        """
        try:
            descriptor = os.open(self._meta_name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return ()
        try:
            st = os.fstat(descriptor)
            if not stat.S_ISREG(st.st_mode):
                return ()
            data = b"".join(iter(lambda: os.read(descriptor, 65536), b""))
        except OSError:
            return ()
        finally:
            os.close(descriptor)
        return (st.st_ino, st.st_mtime_ns, st.st_size, zlib.crc32(data))

    def version(self, *, take_in: bool = True) -> int | None:
        """A number that changes whenever searches may see another commit, for caches of results.

        A commit found on disk (ours or another process's) is taken in first, so a search that
        follows sees at least what the number stands for (the reader's own reloads only ever
        bring it later commits). Without `take_in` (no reload: it may take milliseconds), None
        while there is one to take in."""
        generation = self.generation()
        if generation != self._taken_in:
            if not take_in:
                return None
            with self._reloading:
                if generation != self._taken_in:
                    self._index.reload()
                    self._taken_in = generation
                    self._version += 1
        return self._version

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
        documents = matching(searcher, self._term("kind", "file"))
        sections = matching(searcher, self._term("kind", "section"))
        # A commit meanwhile creates and deletes files: one gone between the listing and its stat
        # is not counted, rather than failing the status.
        size = 0
        for entry in os.scandir(self.index_dir):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_size
        last = None
        if documents:
            with contextlib.suppress(FileNotFoundError):
                last = datetime.fromtimestamp(os.stat(self._meta_name).st_mtime, UTC)
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
                among = filtered_keys(searcher, by_words) if filtered else None
                return by_meaning(searcher, self._schema, by_words, nearest(among), all_passages)

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
            hits, total, copies = fuse(
                searcher, self._schema, plan, (hits, total, copies), head, found, all_passages, self._ranking.rrf_k
            )
        page = list(zip(hits, copies, strict=True))[offset : offset + limit]
        if asks_in_english(query):
            page = originals_first(searcher, page)
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
            return list(result.hits), result_count(result), [[] for _ in result.hits], min(depth, len(result.hits))
        scan = min(max(wanted * 10, 100, depth), MAX_HITS_SCANNED)
        while True:
            # No count: fewer hits than asked for already says the scan saw them all, and without
            # counting Tantivy may skip passages that cannot reach the top (~15% of a search).
            result = searcher.search(plan.query, limit=scan, count=False)
            best: dict[int, tuple[float, tantivy.DocAddress]] = {}
            nums = searcher.fast_field_values("doc_num", [address for _, address in result.hits])
            for (score, address), num in zip(result.hits, nums, strict=True):
                best.setdefault(int(num or 0), (score, address))
            slots, copies = one_slot_per_passage(searcher, self._schema, list(best.values()))
            exhausted = len(result.hits) < scan
            if len(slots) >= wanted or exhausted or scan >= MAX_HITS_SCANNED:
                # When the scan was cut short there are at least this many, maybe more; but when
                # it reached its cap with too few, no later page would find more.
                total = len(slots) if exhausted or len(slots) < wanted else max(len(slots), wanted + 1)
                # The slots' best passages come in the scan's order: the first `head` are its first `depth`.
                within = {place(address) for _, address in result.hits[:depth]}
                head = next((i for i, (_, a) in enumerate(slots) if place(a) not in within), len(slots))
                return slots, total, copies, head
            scan = min(scan * 4, MAX_HITS_SCANNED)
