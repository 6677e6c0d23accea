"""SearchIndex: the only module that touches Tantivy.

One index folder holds two kinds of records, committed together so they never drift apart:
a *section* record per passage (what search ranks) and a *file* record per document (the manifest
that lets a sync skip unchanged files). A sidecar `kb-index.json` records the root the index was
built for and the schema version, so an index is never silently reused for another folder.
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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import tantivy

from kb.errors import (
    ConfigError,
    DocumentNotFoundError,
    IndexDamagedError,
    IndexLockedError,
    IndexMismatchError,
)
from kb.index._batch import HOLDER_FILE, IndexBatch, command_line, holder_of, is_lock_busy
from kb.index._query import FEEDBACK_PASSAGES, QueryPlan, plan_query, prefix_regex
from kb.index._results import SNIPPET_CHARS, Vocabulary, hit
from kb.index._schema import SCHEMA_VERSION, build_schema, int_of, section_from_record, text_of
from kb.models import (
    Format,
    IndexStats,
    ManifestEntry,
    SearchResults,
    StoredDocument,
)

logger = logging.getLogger(__name__)

SIDECAR = "kb-index.json"
# Files a fresh index folder may already hold (the repo ships index/ with these two).
KEEP_FILES = frozenset({"README.md", ".gitignore"})
# What kb and Tantivy write in an index folder: kb's files are all named kb-*, Tantivy's are its
# meta files and locks, segment files named by a 32-digit hex id, and its atomic writes' temp files.
_KB_FILE = re.compile(r"kb-[a-z-]+\.(json|tmp|json\.tmp)")
_TANTIVY_META = "meta.json"
_TANTIVY_FILES = frozenset({_TANTIVY_META, ".managed.json", ".tantivy-meta.lock", ".tantivy-writer.lock"})
_SEGMENT_FILE = re.compile(r"[0-9a-f]{32}\.[a-z0-9.]+")
_TANTIVY_FILE = re.compile(rf"{_SEGMENT_FILE.pattern}|\.tmp\w+")
_SEGMENT_COMPONENTS = ("idx", "pos", "term", "store", "fast", "fieldnorm")
_FOOTER_MAGIC = 1337
MAX_HITS_SCANNED = 5000
MAX_PREFIX_QUERY = 64


class SearchIndex:
    """The Tantivy index behind kb: write in batches, search, fetch, list."""

    def __init__(self, index: tantivy.Index, index_dir: Path, root: Path) -> None:
        self._index = index
        self.schema = index.schema
        self.index_dir = index_dir
        self.root = root

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, index_dir: Path, root: Path | None = None, *, rebuild: bool = False) -> SearchIndex:
        """Open the index in `index_dir`, creating it for `root` if the folder holds none.

        With `root=None` the index must exist already (for `kb search` and `kb status`). With
        `rebuild`, an index kb made that is damaged or built for another root is wiped and made anew;
        a folder kb did not make is never touched.

        Raises:
            IndexMismatchError: the index was built for another root or schema version (unless `rebuild`).
            IndexDamagedError: the folder is kb's but its index cannot be read (unless `rebuild`).
            ConfigError: there is no index and no root, or the folder holds something else.
        """
        index_dir = index_dir.resolve()
        sidecar = index_dir / SIDECAR
        try:
            meta = _read_sidecar(sidecar)
            if meta is None:
                _ensure_empty_or_absent(index_dir)
        except IndexDamagedError as exc:
            if root is None:
                raise
            if not rebuild:
                raise IndexDamagedError(exc.index_dir, exc.reason, str(root.resolve())) from exc
            _wipe(index_dir)
            meta = None
        if root is None:
            if meta is None:
                raise ConfigError(
                    f"no kb index at {index_dir}; run `kb index ROOT --index-dir {index_dir}` first"
                )
            root = Path(meta["root"])
        root = root.resolve()
        if meta is not None:
            problem = None
            if meta.get("schema_version") != SCHEMA_VERSION:
                found = meta.get("schema_version")
                problem = f"the index at {index_dir} has schema version {found}, kb needs {SCHEMA_VERSION}"
            elif meta.get("root") != str(root):
                problem = f"the index at {index_dir} was built for {meta.get('root')}, not {root}"
            if problem is not None:
                if not rebuild:
                    raise IndexMismatchError(str(index_dir), problem)
                _wipe(index_dir)
                meta = None
        if meta is None:
            _create(index_dir, root)
        try:
            index = _open_checked(index_dir, root, thorough=rebuild)
        except IndexDamagedError:
            if not rebuild:
                raise
            logger.warning("the index at %s is damaged; wiping it to rebuild", index_dir)
            _wipe(index_dir)
            _create(index_dir, root)
            index = _open_checked(index_dir, root)
        return cls(index, index_dir, root)

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
        writer = self._acquire_writer(wait)
        holder = self.index_dir / HOLDER_FILE
        holder.write_text(json.dumps({"pid": os.getpid(), "command": command_line(), "since": time.time()}))
        try:
            batch = IndexBatch(self, writer)
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
            with contextlib.suppress(OSError):
                holder.unlink()

    def _acquire_writer(self, wait: float) -> tantivy.IndexWriter:
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            try:
                # One indexing thread: the extraction workers already use the other cores, and each
                # thread writes its own segments, which cost merges later (measured on 50,000 files:
                # 13% less CPU than two threads, at the same speed on the Markdown corpus).
                return self._index.writer(heap_size=128_000_000, num_threads=1)
            except ValueError as exc:
                if not is_lock_busy(exc) or time.monotonic() >= deadline:
                    if is_lock_busy(exc):
                        raise IndexLockedError(str(self.index_dir), holder_of(self.index_dir), wait) from exc
                    raise
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    # ---- reading -------------------------------------------------------------------------

    def _searcher(self) -> tantivy.Searcher:
        return self._index.searcher()

    def _term(self, field: str, value: str) -> tantivy.Query:
        return tantivy.Query.term_query(self.schema, field, value)

    def file_record_query(self, path: str) -> tantivy.Query:
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, self._term("kind", "file")), (tantivy.Occur.Must, self._term("path", path))]
        )

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
                    (tantivy.Occur.Must, tantivy.Query.regex_query(self.schema, "path", regex)),
                ]
            )
        matching = _count(searcher.search(query, limit=1, count=True))
        if matching:
            for _, address in searcher.search(query, limit=matching, count=False).hits:
                yield searcher.doc(address)

    def manifest(self, under: list[str] | None = None) -> dict[str, ManifestEntry]:
        """The manifest record of every indexed file, by path; or only those at or below `under`."""
        if under is not None and len(under) > MAX_PREFIX_QUERY:
            # One regex of thousands of alternatives compiles slower than reading the whole manifest.
            prefixes = tuple(p.strip("/") for p in under)
            return {
                path: entry
                for path, entry in self.manifest().items()
                if path in prefixes or path.startswith(tuple(f"{p}/" for p in prefixes))
            }
        entries = {}
        for record in self._all_of_kind("file", under):
            entry = ManifestEntry.model_validate_json(text_of(record, "manifest"))
            entries[entry.path] = entry
        return entries

    def document_paths(self) -> list[str]:
        """Every indexed document's path, sorted."""
        return sorted(text_of(record, "path") for record in self._all_of_kind("file"))

    def get(self, doc_id: str) -> StoredDocument:
        """A whole document (`path`) or one passage (`path#fragment`), sections in order.

        Raises:
            DocumentNotFoundError: no such document or passage.
        """
        path, fragment = doc_id, None
        file_hits = self._file_record(path)
        if file_hits is None and "#" in doc_id:
            path, fragment = doc_id.rsplit("#", 1)
            file_hits = self._file_record(path)
        if file_hits is None:
            raise DocumentNotFoundError(doc_id)
        entry = ManifestEntry.model_validate_json(text_of(file_hits, "manifest"))
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
                raise DocumentNotFoundError(doc_id)
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
        hits = searcher.search(self.file_record_query(path), limit=1, count=False).hits
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
    ) -> SearchResults:
        """Rank passages for `query`; by default each document appears once, with its best passage.

        Raises:
            QueryError: a filter is malformed (the query text itself never fails: it falls back to
                lenient parsing).
        """
        searcher = self._searcher()
        plan = plan_query(
            self._index,
            self.schema,
            query,
            path=path,
            formats=formats,
            tags=tags,
            modified_after=modified_after,
            vocabulary=Vocabulary(searcher),
        )
        if plan.expand is not None:
            # The best passages for the question's own words lend it their vocabulary.
            best = searcher.search(plan.query, limit=FEEDBACK_PASSAGES, count=False).hits
            plan = plan.expand([(score, text_of(searcher.doc(address), "body")) for score, address in best])
        hits, total = self._collect(searcher, plan, offset + limit, all_passages)
        if not hits and (retry := plan.fuzzy()) is not None:
            plan = retry
            hits, total = self._collect(searcher, plan, offset + limit, all_passages)
        approximate = plan.approximate and bool(hits)
        page = hits[offset : offset + limit]
        snippets = tantivy.SnippetGenerator.create(searcher, plan.text_query, self.schema, "body")
        snippets.set_max_num_chars(SNIPPET_CHARS)
        results = [hit(searcher.doc(address), score, snippets) for score, address in page]
        more = offset + limit < total
        return SearchResults(
            query=query,
            results=results,
            total=total,
            next_offset=offset + limit if more else None,
            approximate=approximate,
        )

    def _collect(
        self, searcher: tantivy.Searcher, plan: QueryPlan, wanted: int, all_passages: bool
    ) -> tuple[list[tuple[float, tantivy.DocAddress]], int]:
        """The best `wanted` hits (one per document unless `all_passages`), and how many exist."""
        if all_passages:
            result = searcher.search(plan.query, limit=wanted, count=True)
            return list(result.hits), _count(result)
        scan = min(max(wanted * 10, 100), MAX_HITS_SCANNED)
        while True:
            # No count: fewer hits than asked for already says the scan saw them all, and without
            # counting Tantivy may skip passages that cannot reach the top (~15% of a search).
            result = searcher.search(plan.query, limit=scan, count=False)
            best: dict[int, tuple[float, tantivy.DocAddress]] = {}
            nums = searcher.fast_field_values("doc_num", [address for _, address in result.hits])
            for (score, address), num in zip(result.hits, nums, strict=True):
                best.setdefault(int(num or 0), (score, address))
            exhausted = len(result.hits) < scan
            if len(best) >= wanted or exhausted or scan >= MAX_HITS_SCANNED:
                # When the scan was cut short there are at least this many documents, maybe more.
                total = len(best) if exhausted else max(len(best), wanted + 1)
                return list(best.values()), total
            scan = min(scan * 4, MAX_HITS_SCANNED)


def _count(result: tantivy.SearchResult) -> int:
    return int(result.count)  # type: ignore[attr-defined]  # set with count=True; missing from the stub


def _read_sidecar(sidecar: Path) -> dict | None:
    """The sidecar's record, or None when there is none.

    Raises:
        IndexDamagedError: the sidecar exists but cannot be read as kb wrote it.
    """
    try:
        data = json.loads(sidecar.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IndexDamagedError(str(sidecar.parent), f"{SIDECAR} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("root"), str) or "schema_version" not in data:
        raise IndexDamagedError(str(sidecar.parent), f"{SIDECAR} does not hold a root and a schema version")
    return data


def _create(index_dir: Path, root: Path) -> None:
    """Make `index_dir` a kb index folder for `root` (Tantivy's files come when it is opened)."""
    _ensure_empty_or_absent(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    # The sidecar goes first: a crash before Tantivy's files exist leaves a folder that the
    # next open recognizes as ours and finishes creating.
    sidecar = index_dir / SIDECAR
    tmp = sidecar.with_suffix(".tmp")
    tmp.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "root": str(root)}))
    tmp.replace(sidecar)


def _open_checked(index_dir: Path, root: Path, *, thorough: bool = False) -> tantivy.Index:
    """Open the Tantivy index and read a little of it, so damage shows here and not at the first search.

    With `thorough`, every committed segment file's checksum is verified too (it reads the whole
    index), which finds damage inside a file that Tantivy would only meet when it reads there.

    Raises:
        IndexDamagedError: Tantivy cannot open or read the index.
    """
    names = [entry.name for entry in index_dir.iterdir()]
    if _TANTIVY_META not in names and any(_SEGMENT_FILE.fullmatch(name) for name in names):
        # Tantivy would quietly start an empty index over the segments.
        raise IndexDamagedError(str(index_dir), f"{_TANTIVY_META} is missing", str(root))
    try:
        index = tantivy.Index(build_schema(), path=str(index_dir), reuse=True)
        searcher = index.searcher()
        if searcher.num_docs:
            # Reading one record touches the term dictionary, the postings and the document store.
            query = tantivy.Query.term_query(index.schema, "kind", "file")
            for _, address in searcher.search(query, limit=1, count=False).hits:
                searcher.doc(address)
    except ValueError as exc:
        if "PermissionDenied" in str(exc):
            raise  # an unreadable folder is not a damaged index, and wiping it would not help
        logger.debug("opening the index at %s failed", index_dir, exc_info=True)
        raise IndexDamagedError(str(index_dir), _damage_reason(str(exc)), str(root)) from exc
    if thorough and (bad := _bad_checksum(index_dir)) is not None:
        raise IndexDamagedError(str(index_dir), f"{bad} does not match its checksum", str(root))
    return index


def _damage_reason(tantivy_message: str) -> str:
    """Tantivy's error in a few words: which file, and whether it is missing or corrupt."""
    if found := re.search(r"FileDoesNotExist\(\"([^\"]+)\"\)", tantivy_message):
        return f"{Path(found.group(1)).name} is missing"
    if found := re.search(r"(?:in file `\"|filepath: \")([^\"`]+)", tantivy_message):
        return f"{Path(found.group(1)).name} is corrupt"
    text = " ".join(tantivy_message.split())
    return f"Tantivy: {text if len(text) <= 160 else text[:159] + '…'}"


def _bad_checksum(index_dir: Path) -> str | None:
    """The first committed segment file whose contents do not match the CRC32 in its footer.

    Tantivy ends each segment file with a JSON footer holding that checksum, its length (u32 LE)
    and a magic number; a file in another layout is left to Tantivy to judge.
    """
    meta = json.loads((index_dir / _TANTIVY_META).read_text())
    wanted: set[str] = set()
    for segment in meta.get("segments", []):
        segment_id = str(segment.get("segment_id", "")).replace("-", "")
        wanted.update(f"{segment_id}.{ext}" for ext in _SEGMENT_COMPONENTS)
        if deletes := segment.get("deletes"):
            wanted.add(f"{segment_id}.{deletes.get('opstamp')}.del")
    for name in sorted(wanted):
        try:
            data = (index_dir / name).read_bytes()
        except FileNotFoundError:
            continue  # not every segment has every component; a missing one fails Tantivy's open
        if len(data) < 8 or int.from_bytes(data[-4:], "little") != _FOOTER_MAGIC:
            return name
        length = int.from_bytes(data[-8:-4], "little")
        if length > len(data) - 8:
            return name
        try:
            crc = json.loads(data[-8 - length : -8])["crc"]
        except (ValueError, KeyError, TypeError):
            continue
        if zlib.crc32(memoryview(data)[: len(data) - 8 - length]) != crc:
            return name
    return None


def _is_index_file(name: str) -> bool:
    """A file kb or Tantivy writes in an index folder."""
    return name in _TANTIVY_FILES or bool(_KB_FILE.fullmatch(name) or _TANTIVY_FILE.fullmatch(name))


def _ensure_empty_or_absent(index_dir: Path) -> None:
    """Check `index_dir` can become a new kb index.

    Raises:
        IndexDamagedError: the folder is kb's (it holds kb's own files beside Tantivy's) but has lost
            its sidecar.
        ConfigError: it is not a folder, or it holds files that are not kb's.
    """
    if not index_dir.exists():
        return
    if not index_dir.is_dir():
        raise ConfigError(f"--index-dir {index_dir} is not a folder")
    stray = [p.name for p in index_dir.iterdir() if p.name not in KEEP_FILES]
    if all(_KB_FILE.fullmatch(name) for name in stray):
        return  # empty, or kb stopped before Tantivy made anything
    if all(_is_index_file(name) for name in stray) and any(_KB_FILE.fullmatch(name) for name in stray):
        raise IndexDamagedError(str(index_dir), f"{SIDECAR} is missing")
    raise ConfigError(
        f"{index_dir} is not empty and holds no kb index ({', '.join(sorted(stray)[:3])}…); "
        "choose another --index-dir"
    )


def _wipe(index_dir: Path) -> None:
    """Delete a kb index's files, keeping the repo's README and .gitignore.

    Raises:
        ConfigError: the folder also holds files neither kb nor Tantivy wrote (nothing is deleted then).
        IndexLockedError: a live process is writing the index.
    """
    if (holder := holder_of(index_dir)) is not None:
        raise IndexLockedError(str(index_dir), holder, 0)
    entries = [entry for entry in index_dir.iterdir() if entry.name not in KEEP_FILES]
    foreign = sorted(e.name for e in entries if not _is_index_file(e.name) or e.is_dir() or e.is_symlink())
    if foreign:
        raise ConfigError(
            f"{index_dir} holds files kb did not write ({', '.join(foreign[:3])}); "
            "move them away, or delete the folder yourself, to rebuild the index there"
        )
    for entry in entries:
        entry.unlink()
