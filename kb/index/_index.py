"""SearchIndex: the only module that touches Tantivy.

One index folder holds two kinds of records, committed together so they never drift apart:
a *section* record per passage (what search ranks) and a *file* record per document (the manifest
that lets a sync skip unchanged files). A sidecar `kb-index.json` records the root the index was
built for and the schema version, so an index is never silently reused for another folder.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import tantivy

from kb.errors import ConfigError, DocumentNotFoundError, IndexLockedError, IndexMismatchError
from kb.index._query import QueryPlan, edit_distance, plan_query, prefix_regex
from kb.models import (
    Document,
    Format,
    IndexStats,
    ManifestEntry,
    SearchHit,
    SearchResults,
    Section,
    StoredDocument,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SIDECAR = "kb-index.json"
HOLDER_FILE = "kb-writer.json"
# Files a fresh index folder may already hold (the repo ships index/ with these two).
KEEP_FILES = frozenset({"README.md", ".gitignore"})
SNIPPET_CHARS = 240
MAX_HITS_SCANNED = 5000
MAX_PREFIX_QUERY = 64


def _build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("kind", stored=True, tokenizer_name="raw")  # "section" | "file"
    sb.add_text_field("path", stored=True, tokenizer_name="raw", fast=True)
    sb.add_text_field("fragment", stored=True, tokenizer_name="raw")
    sb.add_text_field("title", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("heading", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("body", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("tags", stored=True, tokenizer_name="raw")
    sb.add_text_field("format", stored=True, tokenizer_name="raw")
    sb.add_integer_field("page", stored=True, indexed=True)
    sb.add_integer_field("ordinal", stored=True, fast=True)
    # A number per document, so search can group hits by document from a fast field instead of
    # loading each hit's stored fields (~30 µs a hit).
    sb.add_integer_field("doc_num", fast=True)
    sb.add_integer_field("line_start", stored=True)
    sb.add_integer_field("line_end", stored=True)
    sb.add_integer_field("mtime", stored=True, indexed=True, fast=True)  # seconds since the epoch
    sb.add_text_field("manifest", stored=True, tokenizer_name="raw")  # ManifestEntry JSON, file records only
    return sb.build()


def _is_lock_busy(exc: ValueError) -> bool:
    return "LockBusy" in str(exc) or "lock" in str(exc).lower()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class IndexBatch:
    """Changes to the index made while holding its writer; each `commit` is atomic."""

    def __init__(self, index: SearchIndex, writer: tantivy.IndexWriter) -> None:
        self._index = index
        self._writer = writer
        self.pending = 0

    def put(self, doc: Document, entry: ManifestEntry) -> None:
        """Replace everything stored for `doc.path` with this document and its manifest record."""
        self._writer.delete_documents_by_term("path", doc.path)
        mtime = entry.mtime_ns // 1_000_000_000
        doc_num = _doc_num(doc.path)
        for ordinal, section in enumerate(doc.sections):
            record = tantivy.Document(
                kind="section",
                path=doc.path,
                fragment=section.fragment,
                title=doc.title,
                heading=section.heading or "",
                body=section.text,
                format=doc.format,
                ordinal=ordinal,
                doc_num=doc_num,
                mtime=mtime,
            )
            for tag in entry.tags:
                record.add_text("tags", tag)
            if section.page is not None:
                record.add_integer("page", section.page)
            if section.line_start is not None and section.line_end is not None:
                record.add_integer("line_start", section.line_start)
                record.add_integer("line_end", section.line_end)
            self._writer.add_document(record)
        self._add_file_record(entry)
        self.pending += 1

    def put_manifest(self, entry: ManifestEntry) -> None:
        """Update only the manifest record (the file's stat changed, its content did not)."""
        self._writer.delete_documents_by_query(self._index.file_record_query(entry.path))
        self._add_file_record(entry)
        self.pending += 1

    def _add_file_record(self, entry: ManifestEntry) -> None:
        record = tantivy.Document(
            kind="file",
            path=entry.path,
            title=entry.title,
            format=entry.format,
            mtime=entry.mtime_ns // 1_000_000_000,
            manifest=entry.model_dump_json(),
        )
        self._writer.add_document(record)

    def delete(self, path: str) -> None:
        """Remove a document's sections and manifest record."""
        self._writer.delete_documents_by_term("path", path)
        self.pending += 1

    def commit(self) -> None:
        """Make every change so far durable and visible, atomically."""
        self._writer.commit()
        self._index.reload()
        self.pending = 0


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

        With `root=None` the index must exist already (for `kb search` and `kb status`).

        Raises:
            IndexMismatchError: the index was built for another root or schema version (unless `rebuild`).
            ConfigError: there is no index and no root, or the folder holds something else.
        """
        index_dir = index_dir.resolve()
        sidecar = index_dir / SIDECAR
        meta = _read_sidecar(sidecar)
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
            _ensure_empty_or_absent(index_dir)
            index_dir.mkdir(parents=True, exist_ok=True)
            # The sidecar goes first: a crash before Tantivy's files exist leaves a folder that the
            # next open recognizes as ours and finishes creating.
            tmp = sidecar.with_suffix(".tmp")
            tmp.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "root": str(root)}))
            tmp.replace(sidecar)
        index = tantivy.Index(_build_schema(), path=str(index_dir), reuse=True)
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
        holder.write_text(json.dumps({"pid": os.getpid(), "command": _command_line(), "since": time.time()}))
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
            with contextlib.suppress(OSError):
                holder.unlink()
            # Tantivy releases its lock file when the writer is dropped, not before.
            del writer
            gc.collect()

    def _acquire_writer(self, wait: float) -> tantivy.IndexWriter:
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            try:
                return self._index.writer(heap_size=128_000_000, num_threads=min(os.cpu_count() or 1, 4))
            except ValueError as exc:
                if not _is_lock_busy(exc) or time.monotonic() >= deadline:
                    if _is_lock_busy(exc):
                        raise IndexLockedError(str(self.index_dir), self.writer_holder(), wait) from exc
                    raise
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def writer_holder(self) -> str | None:
        """Describe the live process holding the writer, if it left its name."""
        try:
            info = json.loads((self.index_dir / HOLDER_FILE).read_text())
        except (OSError, ValueError):
            return None
        pid = int(info.get("pid", 0))
        if not pid or not _pid_alive(pid):
            return None
        return f"pid {pid} ({info.get('command', '?')})"

    # ---- reading -------------------------------------------------------------------------

    def _searcher(self) -> tantivy.Searcher:
        return self._index.searcher()

    def _term(self, field: str, value: str) -> tantivy.Query:
        return tantivy.Query.term_query(self.schema, field, value)

    def file_record_query(self, path: str) -> tantivy.Query:
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, self._term("kind", "file")), (tantivy.Occur.Must, self._term("path", path))]
        )

    def _all_of_kind(self, kind: str, under: list[str] | None = None) -> list[tantivy.Document]:
        searcher = self._searcher()
        total = searcher.num_docs
        if total == 0 or under == []:
            return []
        query = self._term("kind", kind)
        if under is not None:
            regex = "|".join(f"({prefix_regex(p)})" for p in under)
            query = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, query),
                    (tantivy.Occur.Must, tantivy.Query.regex_query(self.schema, "path", regex)),
                ]
            )
        hits = searcher.search(query, limit=total, count=False).hits
        return [searcher.doc(address) for _, address in hits]

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
            entry = ManifestEntry.model_validate_json(record.get_first("manifest"))
            entries[entry.path] = entry
        return entries

    def document_paths(self) -> list[str]:
        """Every indexed document's path, sorted."""
        return sorted(record.get_first("path") for record in self._all_of_kind("file"))

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
        entry = ManifestEntry.model_validate_json(file_hits.get_first("manifest"))
        searcher = self._searcher()
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, self._term("kind", "section")),
                (tantivy.Occur.Must, self._term("path", path)),
            ]
        )
        hits = searcher.search(query, limit=max(1, searcher.num_docs), count=False).hits
        records = sorted((searcher.doc(a) for _, a in hits), key=lambda r: r.get_first("ordinal"))
        sections = [_section(r) for r in records]
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
        documents = searcher.search(self._term("kind", "file"), limit=1, count=True).count
        sections = searcher.search(self._term("kind", "section"), limit=1, count=True).count
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
            vocabulary=_Vocabulary(searcher),
        )
        hits, total = self._collect(searcher, plan, offset + limit, all_passages)
        if not hits and (retry := plan.fuzzy()) is not None:
            plan = retry
            hits, total = self._collect(searcher, plan, offset + limit, all_passages)
        approximate = plan.approximate and bool(hits)
        page = hits[offset : offset + limit]
        snippets = tantivy.SnippetGenerator.create(searcher, plan.text_query, self.schema, "body")
        snippets.set_max_num_chars(SNIPPET_CHARS)
        results = [_hit(searcher.doc(address), score, snippets) for score, address in page]
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
            return list(result.hits), result.count
        scan = min(max(wanted * 10, 100), MAX_HITS_SCANNED)
        while True:
            result = searcher.search(plan.query, limit=scan, count=True)
            best: dict[int, tuple[float, tantivy.DocAddress]] = {}
            nums = searcher.fast_field_values("doc_num", [address for _, address in result.hits])
            for (score, address), num in zip(result.hits, nums, strict=True):
                best.setdefault(int(num or 0), (score, address))
            exhausted = len(result.hits) >= result.count
            if len(best) >= wanted or exhausted or scan >= MAX_HITS_SCANNED:
                # When the scan was cut short there are at least this many documents, maybe more.
                total = len(best) if exhausted else max(len(best), wanted + 1)
                return list(best.values()), total
            scan = min(scan * 4, MAX_HITS_SCANNED)


class _Vocabulary:
    """The searcher's term dictionaries, as the query planner's `Vocabulary`."""

    FIELDS = ("body", "title", "heading")
    NEAREST = 3

    def __init__(self, searcher: tantivy.Searcher) -> None:
        self._searcher = searcher

    def known(self, term: str) -> bool:
        return any(self._searcher.doc_freq(f, term) for f in self.FIELDS)

    def near(self, term: str, distance: int) -> list[str]:
        # Typos rarely hit the first letters; reading only the terms that share them keeps this fast.
        prefix = term[:2] if len(term) >= 6 else term[:1]
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


def _doc_num(path: str) -> int:
    """A stable signed 64-bit number for a path (a hash; a collision would only merge two
    documents' hits in one result list)."""
    return int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "big", signed=True)


def _section(record: tantivy.Document) -> Section:
    return Section(
        fragment=record.get_first("fragment"),
        heading=record.get_first("heading") or None,
        page=record.get_first("page"),
        text=record.get_first("body") or "",
        line_start=record.get_first("line_start"),
        line_end=record.get_first("line_end"),
    )


def _hit(record: tantivy.Document, score: float, snippets: tantivy.SnippetGenerator) -> SearchHit:
    path = record.get_first("path")
    body = record.get_first("body") or ""
    return SearchHit(
        id=f"{path}#{record.get_first('fragment')}",
        path=path,
        title=record.get_first("title") or path,
        heading=record.get_first("heading") or None,
        page=record.get_first("page"),
        score=round(score, 4),
        snippet=_mark(snippets.snippet_from_doc(record), body),
    )


def _mark(snippet: tantivy.Snippet, body: str) -> str:
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


def _read_sidecar(sidecar: Path) -> dict | None:
    try:
        data = json.loads(sidecar.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {sidecar}: {exc}; delete the index folder to rebuild it") from exc
    return data if isinstance(data, dict) else None


def _ensure_empty_or_absent(index_dir: Path) -> None:
    if not index_dir.exists():
        return
    if not index_dir.is_dir():
        raise ConfigError(f"--index-dir {index_dir} is not a folder")
    stray = [p.name for p in index_dir.iterdir() if p.name not in KEEP_FILES]
    if stray:
        raise ConfigError(
            f"{index_dir} is not empty and holds no kb index ({', '.join(sorted(stray)[:3])}…); "
            "choose another --index-dir"
        )


def _wipe(index_dir: Path) -> None:
    """Delete an old kb index's files, keeping the repo's README and .gitignore."""
    for entry in index_dir.iterdir():
        if entry.name in KEEP_FILES:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _command_line() -> str:
    try:
        return (
            Path("/proc/self/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")
            .strip()[:200]
        )
    except OSError:
        return "kb"
