"""The knowledge base without MCP: the open index, its startup sync and watcher, status, and every
confined read.

The CLI, the MCP server and its read-only replicas all go through a `Library`. Every path a client
names passes `confine` at read time (the index may hold a path that has since become a link out of
the root), and every read of a file goes through `sources.read_inside`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb import ingest, sources
from kb.config import Settings
from kb.errors import DocumentNotFoundError, ExtractionError, KbError, NotIndexedYetError, PathRefusedError
from kb.extractors import decode, extract, format_for
from kb.follower import Follower
from kb.index import DEFAULT_RANKING, Nearest, Ranking, SearchIndex, plain_words
from kb.models import (
    RENDERED_FORMATS,
    DocId,
    Format,
    ManifestEntry,
    SearchResults,
    StoredDocument,
    SyncReport,
)
from kb.search_cache import SearchCache, search_key
from kb.watcher import Watcher

if TYPE_CHECKING:
    from kb.semantic import Embedder, Semantic

logger = logging.getLogger(__name__)

OnSynced = Callable[[SyncReport | None], None]
OnCommit = Callable[[SyncReport], None]

# How often a replica looks for the writer's commits and vectors (a stat of the index's meta.json).
FOLLOW_SECONDS = 0.5


@dataclass(frozen=True)
class Reading:
    """What `fetch` (and a passage's resource) serves: a document's or passage's text, and the
    indexed record it belongs to."""

    doc_id: DocId
    doc: StoredDocument
    text: str
    stale: bool = False  # the file changed so the passage is no longer there: this is the indexed text


class Library:
    """One root's documents, as indexed in one index folder."""

    def __init__(
        self,
        settings: Settings,
        index: SearchIndex,
        *,
        replica: bool = False,
        writer_synced: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        # A replica only reads: another process (`kb serve --workers`' first) syncs, watches and
        # embeds; this one follows its commits and vectors, and is syncing until `writer_synced()`.
        self.follower = Follower(settings, index) if replica else None
        self._writer_synced = writer_synced
        self.synced = threading.Event()  # set once the startup sync has finished (or failed)
        self.watching = threading.Event()  # set once the watcher runs after it (if it is to run)
        self.last_sync: SyncReport | None = None
        self.sync_error: str | None = None
        self.watcher: Watcher | None = None
        self._paths: tuple[tuple[int, ...], list[str]] | None = None  # (index generation, sorted paths)
        self._lifecycle = threading.Lock()
        self._closing = False
        self._stop = threading.Event()  # tells a running startup sync to end early
        self._sync_thread: threading.Thread | None = None
        # Made by the sync thread once the first sync is done (numpy and the model load there, off
        # the path to the first answer); it keeps `semantic`, the vectors and the encoder.
        self.embedder: Embedder | None = None
        self.semantic_error: str | None = None  # why the embedder could not be made
        self._recent = SearchCache()

    @classmethod
    def open(
        cls,
        settings: Settings,
        ranking: Ranking = DEFAULT_RANKING,
        *,
        replica: bool = False,
        writer_synced: Callable[[], bool] | None = None,
    ) -> Library:
        """Open (or create) the index of `settings.root` in `settings.index_dir`; a `replica` only
        reads it, following another process's commits (`start`), and counts as syncing until
        `writer_synced()` says that process's startup sync is done (None: it is).

        Raises:
            ConfigError: the index folder cannot hold kb's index (`IndexMismatchError`: another root).
        """
        index = SearchIndex.open(settings.index_dir, settings.root, ranking=ranking)
        return cls(settings, index, replica=replica, writer_synced=writer_synced)

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, on_synced: OnSynced | None = None, on_commit: OnCommit | None = None) -> None:
        """Sync the folder in the background, then watch it (unless `settings.watch` is off); a
        replica instead follows the writer's commits.

        `on_synced(report)` runs in the sync thread when the sync ends (`None` if it failed, and for
        a replica); `on_commit(report)` runs in the watcher's thread after each commit it makes (a
        replica's: after each commit of the writer's it sees, the changes told by the files' stats).
        """
        # A plain thread: whoever asked (one client connection) may be gone before it ends.
        self._sync_thread = threading.Thread(
            target=self._sync_then_watch if self.follower is None else self._follow,
            args=(on_synced, on_commit),
            name="kb-sync" if self.follower is None else "kb-follow",
            daemon=True,
        )
        self._sync_thread.start()

    def close(self) -> None:
        """Stop watching, stop a running sync after the file it is on (it commits what it wrote),
        and release the index."""
        with self._lifecycle:
            self._closing = True
        self._stop.set()
        if self._sync_thread is not None:
            self._sync_thread.join()
        if self.watcher is not None:
            self.watcher.stop()
        if self.embedder is not None:
            self.embedder.stop()
        if self.follower is not None:
            self.follower.close()
        self.index.close()

    def _sync_then_watch(self, on_synced: OnSynced | None, on_commit: OnCommit | None) -> None:
        try:
            self.last_sync = ingest.sync(self.settings, self.index, stop=self._stop)
            self.index.reload()
        except KbError as exc:
            self.sync_error = str(exc)
            logger.warning("background sync failed: %s", exc)
        except Exception as exc:  # the thread's top: keep answering from the last commit
            self.sync_error = f"{type(exc).__name__}: {exc}"
            logger.exception("background sync crashed")
        if self.settings.semantic:
            try:
                from kb.semantic import Embedder, Semantic

                semantic = Semantic(self.index.vectors_dir, self.settings.cache_dir, serving=True)
                self.embedder = Embedder(
                    semantic, self.index.passages, self.index.vector_keys, threads=_serving_threads()
                )
            except Exception as exc:  # the thread's top: the server goes on, by words only
                self.semantic_error = f"{type(exc).__name__}: {exc}"
                logger.exception("semantic search is unavailable; search stays lexical")
        self.synced.set()
        self._list_again(always=True)
        if on_synced is not None:
            on_synced(self.last_sync)
        with self._lifecycle:
            if self._closing:
                return
            if self.embedder is not None:
                # After the first sync: until then the cores are the extraction's, for BM25 first.
                self.embedder.start()
            if not self.settings.watch:
                return
            self.watcher = Watcher(self.settings, self.index, on_commit=self._committed(on_commit))
            self.watcher.start()  # if the folder cannot be observed, it falls back to periodic rescans
        if self.watcher.state == "watching":
            logger.info("watching %s for changes", self.settings.root)
        self.watching.set()

    def _follow(self, on_synced: OnSynced | None, on_commit: OnCommit | None) -> None:
        """A replica's thread: take in the writer's commits and vectors as they land, until closed."""
        follower = self.follower
        assert follower is not None
        if self.settings.semantic:
            try:
                follower.load_semantic()
            except Exception as exc:  # the thread's top: the replica answers by words only
                self.semantic_error = f"{type(exc).__name__}: {exc}"
                logger.warning("semantic search is unavailable here (%s); search stays lexical", exc)
        while True:
            # Read before the step: the writer's last commit of its sync precedes the flag, so a
            # step after a look that saw the flag has taken that commit in.
            writer_synced = self._writer_synced is None or self._writer_synced()
            try:
                if (report := follower.step()) is not None:
                    self._list_again()
                    if on_commit is not None:
                        on_commit(report)
            except Exception:  # the thread's top: the replica goes on answering from what it has
                logger.exception("following the index's writer failed; trying again")
            if writer_synced and not self.synced.is_set():
                self.synced.set()
                if on_synced is not None:
                    on_synced(None)
            if self._stop.wait(FOLLOW_SECONDS):
                return

    def _committed(self, on_commit: OnCommit | None) -> OnCommit:
        def committed(report: SyncReport) -> None:
            if self.embedder is not None:
                self.embedder.changed([*report.added_paths, *report.updated_paths])
            self._list_again()
            if on_commit is not None:
                on_commit(report)

        return committed

    def _list_again(self, *, always: bool = False) -> None:
        """Read the sorted paths anew after a commit, before clients hear of it (told of a change,
        they list again): the first page then costs what the others do (at 50,000 documents,
        35 ms less). Only if a client has listed them since the start, or `always`."""
        if always or self._paths is not None:
            try:
                self.document_paths()
            except Exception as exc:  # a listing will try again, and say what failed
                logger.warning("reading the indexed paths failed: %s", exc)

    @property
    def syncing(self) -> bool:
        return not self.synced.is_set()

    def status(self) -> dict[str, Any]:
        """What the index holds and how the sync and the watcher are doing (the `kb://status` JSON)."""
        report, watcher = self.last_sync, self.watcher
        return {
            **self.index.stats().model_dump(mode="json"),
            "process": {"role": "writer" if self.follower is None else "replica", "pid": os.getpid()},
            "syncing": self.syncing,
            "sync_error": self.sync_error,
            **(watcher.status() if watcher is not None else {"watcher": "off", "last_commit": None}),
            "semantic": self._semantic_status(),
            "search_cache": self._recent.status(),
            "last_sync": None
            if report is None
            else {
                "added": report.added,
                "updated": report.updated,
                "removed": report.removed,
                "unchanged": report.unchanged,
                "failed": len(report.failed),
                "skipped": len(report.skipped),
                "seconds": report.seconds,
            },
        }

    @property
    def semantic(self) -> Semantic | None:
        """The vectors and the encoder, once the first sync is done (None when off)."""
        if self.follower is not None:
            return self.follower.semantic
        return self.embedder.semantic if self.embedder is not None else None

    def _semantic_status(self) -> dict[str, Any]:
        if not self.settings.semantic:
            return {"state": "off"}
        if self.semantic_error is not None:
            return {"state": "unavailable", "error": self.semantic_error}
        if self.follower is not None:
            follower = self.follower
            if follower.semantic is None:
                return {"state": "loading", "vectors": None, "coverage": 0.0}
            state = "ready" if follower.coverage == 1.0 else "embedding"  # by the writer
            return {"state": state, "vectors": len(follower.semantic.store), "coverage": follower.coverage}
        semantic, embedder = self.semantic, self.embedder
        if semantic is None or embedder is None:
            return {"state": "loading", "vectors": None, "coverage": 0.0}
        if embedder.coverage is not None and semantic.encoder is None:
            state = "loading"
        elif embedder.coverage is None:
            return {"state": "unavailable", "error": embedder.error}
        else:
            state = "ready" if embedder.idle.is_set() else "embedding"
        return {
            "state": state,
            "vectors": len(semantic.store),
            "coverage": embedder.coverage,
        }

    @property
    def semantic_coverage(self) -> float | None:
        """The share of passages search finds by meaning too; None when semantic search is off here."""
        if not self.settings.semantic or self.semantic_error is not None:
            return None
        if self.follower is not None:
            return self.follower.coverage
        return self.embedder.coverage if self.embedder is not None else 0.0

    # ---- reading -------------------------------------------------------------------------

    def search(self, query: str, **options: Any) -> SearchResults:
        """Search this library's index, by words and by meaning (see `search`).

        A search asked again while the index and the vectors are as they were is answered from
        `SearchCache`.

        Raises:
            QueryError: a filter is malformed.
        """
        key = search_key(self.index, self.semantic, query, options, look=True)
        results = self._recent.get(key) if key else None
        if results is None:
            results = search(self.index, self.semantic, query, None, **options)
            if key:
                self._recent.put(key, results)
        return self._with_coverage(results)

    def searched_lately(self, query: str, **options: Any) -> SearchResults | None:
        """`search`'s results if `SearchCache` has them and nothing they depend on has changed,
        else None: a stat or two and a lookup, nothing read from disk (for the event loop)."""
        key = search_key(self.index, self.semantic, query, options, look=False)
        results = self._recent.get(key) if key else None
        return None if results is None else self._with_coverage(results)

    def _with_coverage(self, results: SearchResults) -> SearchResults:
        """A copy of (cached) results that says how far embedding has come now."""
        return results.model_copy(update={"semantic_coverage": self.semantic_coverage})

    def document_paths(self) -> list[str]:
        """Every indexed document's path, sorted; read from the index again only after a commit."""
        generation = self.index.generation()
        cached = self._paths
        if cached is None or cached[0] != generation:
            self.index.reload()  # the commit may be another process's, not yet seen
            cached = self._paths = (generation, self.index.document_paths())
        return cached[1]

    def listing(self, offset: int, limit: int) -> tuple[list[ManifestEntry], int]:
        """One page of the indexed documents' manifest records, sorted by path, and how many there are."""
        paths = self.document_paths()
        page = paths[offset : offset + limit]
        entries = self.index.entries(page)
        return [entries[path] for path in page if path in entries], len(paths)

    def confine(self, path: str) -> Path:
        """The gate for every path a client names: `sources.confine` against the root, with the
        size cap, at read time.

        Raises:
            DocumentNotFoundError: nothing is there (say so, and point the model at search).
            PathRefusedError: the path may not be served (escapes the root, also through a symlink made
                after indexing; hidden, ignored, not a regular file, too large).
        """
        try:
            return sources.confine(
                self.settings.root,
                path,
                max_file_bytes=self.settings.max_file_bytes,
                allow_hardlinks=self.settings.allow_hardlinks,
            )
        except PathRefusedError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                raise DocumentNotFoundError(path) from exc
            raise

    def servable(self, path: str) -> bool:
        """Whether an indexed path still passes confinement (it may have become a link out since)."""
        try:
            self.confine(path)
        except KbError:
            return False
        return True

    def resolve(self, text: str) -> tuple[DocId, Path]:
        """The id that `text` names (see `DocId.readings`) and its document's confined file.

        Raises:
            DocumentNotFoundError: no file has this id's path.
            PathRefusedError: the id's path may not be served.
        """
        whole, *split = DocId.readings(text)
        try:
            return whole, self.confine(whole.path)
        except (DocumentNotFoundError, PathRefusedError):
            if not split:
                raise
        try:
            return split[0], self.confine(split[0].path)
        except DocumentNotFoundError:
            raise DocumentNotFoundError(text) from None

    def load(self, text: str) -> tuple[DocId, StoredDocument]:
        """A document or passage by id, for fetch: from the index, after confining its path again.

        While the first sync runs, a document it has not reached is extracted from the file instead,
        so a read never claims that a file which is there is absent (see `_extract_unindexed`).

        Raises:
            DocumentNotFoundError: no such document or passage (`NotIndexedYetError` while indexing).
            PathRefusedError: the id's path may not be served.
            ExtractionError: an unindexed file could not be extracted.
        """
        doc_id, _, doc = self._load(text)
        return doc_id, doc

    def _load(self, text: str | DocId) -> tuple[DocId, Path, StoredDocument]:
        """`load`, and the confined file. A `DocId` (from a URI, where path and passage are already
        apart) is taken as it is; a str is read as `resolve` reads it."""
        if isinstance(text, DocId):
            doc_id, file = text, self.confine(text.path)
        else:
            doc_id, file = self.resolve(text)
        try:
            return doc_id, file, self.index.get(doc_id)
        except DocumentNotFoundError:
            if not self.syncing:
                raise
        doc = self._extract_unindexed(doc_id, file)
        if doc_id.fragment is not None:
            doc.sections = [s for s in doc.sections if s.fragment == doc_id.fragment]
            if not doc.sections:
                raise NotIndexedYetError(str(doc_id))
        return doc_id, file, doc

    def read(self, text: str | DocId) -> Reading:
        """A document or passage by id, as `fetch` serves it: Markdown as written (the whole file, or
        a passage's own lines, fences, lists and tables included), other formats as `render` has them.

        A Markdown passage is cut from the file by the line range the index recorded. If the file
        has changed since so that the passage is no longer at those lines, the indexed text is
        served instead and the reading is marked `stale`.

        Raises:
            DocumentNotFoundError: no such document or passage (`NotIndexedYetError` while indexing).
            PathRefusedError: the id's path may not be served.
            ExtractionError: an unindexed file could not be extracted.
        """
        doc_id, file, doc = self._load(text)
        if doc.format != "md":
            return Reading(doc_id, doc, render(doc))
        data, st = self._read(file)
        try:
            source = decode(doc.path, data)
        except ExtractionError:  # binary now: only the indexed text is left to serve
            return Reading(doc_id, doc, render(doc), stale=True)
        if doc_id.fragment is None:
            return Reading(doc_id, doc, source)
        section = doc.sections[0]
        if (st.st_size, st.st_mtime_ns) != (doc.size, doc.mtime_ns):
            # Changed since indexing: the passage is served from the file only if it is still there,
            # word for word, wherever it has moved.
            now = next((s for s in extract(doc.path, data).sections if s.fragment == section.fragment), None)
            if now is None or now.text != section.text:
                return Reading(doc_id, doc, render(doc), stale=True)
            section = now
        if section.line_start is None or section.line_end is None:
            return Reading(doc_id, doc, render(doc))
        lines = source.split("\n")[section.line_start - 1 : section.line_end]
        return Reading(doc_id, doc, "\n".join(lines))

    def read_text(self, path: str) -> tuple[str, Format]:
        """The text of a document as its resource serves it, and its format.

        Markdown, text, reStructuredText and HTML are the file as written (read again, through
        confinement, decoded as the extractors decode it); a file that is not text (`RENDERED_FORMATS`:
        PDF, Office, EPUB, notebooks) is its extracted text, see `render`. While the first sync
        runs, a text file it has not reached yet is read from disk all the same.

        Raises:
            DocumentNotFoundError: the path is not an indexed document (`NotIndexedYetError` while indexing).
            PathRefusedError: the path may not be served.
            ExtractionError: the file's bytes are no longer text.
        """
        file = self.confine(path)
        try:
            doc = self.index.get(DocId(path))
        except DocumentNotFoundError:
            unindexed = format_for(path)
            if not self.syncing or unindexed is None:
                raise
            if unindexed in RENDERED_FORMATS:
                raise NotIndexedYetError(path) from None
            fmt = unindexed
        else:
            if doc.format in RENDERED_FORMATS:
                return render(doc), doc.format
            fmt = doc.format  # the text is the file as written
        data, _ = self._read(file)
        return decode(path, data), fmt

    def _extract_unindexed(self, doc_id: DocId, file: Path) -> StoredDocument:
        """A file the running first sync has not indexed yet, extracted the way the sync would.

        Markdown, text, reStructuredText and HTML extract in microseconds and are bounded by the size
        cap, so they are served at once. The `RENDERED_FORMATS` are not: a PDF's extraction can spin
        for minutes, an Office file or EPUB unpacks a whole archive, and only the sync's worker
        processes can stop them, so the model is told to try again shortly instead.
        """
        path = doc_id.path
        fmt = format_for(path)
        if fmt is None:  # the walk passes over other extensions; so does every read
            raise DocumentNotFoundError(str(doc_id))
        if fmt in RENDERED_FORMATS:
            raise NotIndexedYetError(str(doc_id))
        data, st = self._read(file)
        document = extract(path, data)
        return StoredDocument(
            path=path,
            format=document.format,
            title=document.title,
            tags=document.tags,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            sections=document.sections,
        )

    def _read(self, file: Path) -> tuple[bytes, os.stat_result]:
        """A confined file's bytes, read through the one safe open (no link followed, no block)."""
        return sources.read_inside(
            self.settings.root,
            file,
            self.settings.max_file_bytes,
            allow_hardlinks=self.settings.allow_hardlinks,
        )


FILTERS = ("path", "formats", "tags", "modified_after")


def search(
    index: SearchIndex, semantic: Semantic | None, query: str, coverage: float | None, **options: Any
) -> SearchResults:
    """`index.search`, fused with the passages nearest in meaning once `semantic`'s encoder is
    loaded; `coverage` is reported with the results.

    Raises:
        QueryError: a filter is malformed.
    """
    nearest: Nearest | None = None
    # Query syntax is searched as written: nothing to start by meaning (the index would not use it).
    if semantic is not None and semantic.encoder is not None and plain_words(query):
        count = index.ranking.vector_candidates
        filtered = any(options.get(name) for name in FILTERS)
        if filtered:
            count *= 10  # the filters will keep only some of them (unless they are all ranked)
        pending = semantic.nearest_soon(query, count, filtered=filtered)

        def nearest_keys(among: Collection[int] | None) -> list[tuple[int, float]]:
            try:
                return pending(among)
            except Exception:  # the words' ranking stands on its own
                logger.exception("search by meaning failed for %r; searching by words only", query[:80])
                return []

        nearest = nearest_keys
    results = index.search(query, nearest=nearest, **options)
    results.semantic_coverage = coverage
    return results


def embed_missing(
    settings: Settings, index: SearchIndex, report: SyncReport, progress: ingest.Progress | None = None
) -> None:
    """Give every passage that lacks one its vector, using every core (a stop or a crash keeps
    what was written), then drop the vectors no passage uses; counted in `report`.

    Raises:
        SemanticUnavailableError: the encoder cannot run here (the index stays lexical).
    """
    started = time.monotonic()
    from kb.semantic import Semantic

    semantic = Semantic(index.vectors_dir, settings.cache_dir)
    if missing := semantic.store.missing(index.vector_keys()):  # else the model is not even loaded
        semantic.load(threads=os.cpu_count() or 1)
        todo = index.passages(lambda key: not semantic.store.has(key))
        report.embedded = semantic.embed(todo, progress=progress, total=len(missing))
    live = semantic.store.compact(index.vector_keys)
    report.semantic_coverage = round(semantic.coverage(live), 4)
    report.embedding_seconds = round(time.monotonic() - started, 3)


def _serving_threads() -> int:
    """Threads for embedding while serving: all cores but one, which stays for the clients."""
    return max(1, (os.cpu_count() or 1) - 1)


def render(doc: StoredDocument) -> str:
    """A document's indexed text, sections in order: headings as Markdown, pages and slides marked.

    This is what `fetch` pages through and what the resource of a `RENDERED_FORMATS` file serves.
    A section under a heading starts with the heading's own words; they become a `#` line at the
    heading trail's depth.
    """
    blocks: list[str] = []
    marker = "slide" if doc.format == "pptx" else "page"
    for section in doc.sections:
        text = section.text
        if section.page is not None:
            blocks.append(f"--- {marker} {section.page} ---\n{text}")
        elif section.heading:
            trail = section.heading.split(" > ")
            first, _, rest = text.partition("\n")
            body = rest if first.strip() == trail[-1].strip() else text
            blocks.append(f"{'#' * min(len(trail), 6)} {trail[-1]}\n{body}".rstrip())
        else:
            blocks.append(text)
    return "\n\n".join(blocks)
