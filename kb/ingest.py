"""Sync a root into the index: walk, diff against the manifest, extract what changed, write.

An unchanged file (same size and mtime) is never opened. A file whose stat changed is hashed; if
its content did not change only its manifest record is rewritten. Extraction runs in worker
processes when there is enough of it to pay for them, and results are written in a stable order
(largest file first).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kb.config import Settings
from kb.errors import ExtractionError, PathRefusedError, RootMissingError
from kb.extractors import extract, extractor_modules
from kb.index import IndexBatch, PassageKeys, SearchIndex, passage_keys
from kb.models import RENDERED_FORMATS, Document, FileProblem, ManifestEntry, SkippedFile, SyncReport
from kb.sources import NOT_FOUND, SourceFile, read_inside, walk

logger = logging.getLogger(__name__)

# Below this much work, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 16
PARALLEL_MIN_BYTES = 2 * 1024 * 1024
# A file this large is extracted in a worker, within the time budget, even alone: hostile markup
# can make a parser slow.
INLINE_MAX_BYTES = 256 * 1024
# The most bytes of files one message to a worker carries; a file this large (or of a rendered
# format, whose parser may unpack far more than its bytes) goes alone.
BATCH_MAX_BYTES = 256 * 1024

Progress = Callable[[int, int], None]


@dataclass
class Loaded:
    """What a worker made of one changed file (only this crosses back from the worker)."""

    sha256: str = ""
    document: Document | None = None  # None when the content matched the known hash, or on error
    keys: list[PassageKeys] | None = None  # its `passage_keys`, computed here rather than in the writer
    error: str | None = None
    refused: str | None = None  # why the file may not be read after all (it changed since the walk)


def _load(root: str, path: str, known_sha: str | None, max_bytes: int, allow_hardlinks: bool) -> Loaded:
    """Read (confined to `root`, see `sources.read_inside`), hash and (if the content is new)
    extract one file. Runs in a worker process, so it takes and returns plain values: pickling
    Path objects both ways cost the parent real time."""
    try:
        data, _ = read_inside(root, path, max_bytes, allow_hardlinks=allow_hardlinks)
    except PathRefusedError as exc:
        return Loaded(refused=exc.reason)
    except OSError as exc:
        return Loaded(error=f"cannot read: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if sha == known_sha:
        return Loaded(sha)
    try:
        return Loaded(sha, extract(path, data))
    except ExtractionError as exc:
        return Loaded(sha, error=exc.reason)
    except Exception as exc:  # an extractor bug must cost one file, not the whole sync
        logger.exception("extracting %s failed unexpectedly", path)
        return Loaded(sha, error=f"unexpected {type(exc).__name__}: {exc}")


def _with_keys(loaded: list[Loaded]) -> list[Loaded]:
    """`loaded`, each document with its `passage_keys`, computed in the worker that loaded them (the
    writer's time is the sync's) and for all of them at once (a fraction of each alone)."""
    extracted = [(item, item.document) for item in loaded if item.document is not None]
    for (item, _), keys in zip(extracted, passage_keys([doc for _, doc in extracted]), strict=True):
        item.keys = keys
    return loaded


def _stopped(seconds: float) -> Loaded:
    return Loaded(error=f"extraction took longer than {seconds:g}s and was stopped")


def _crashed() -> Loaded:
    return Loaded(error="extraction crashed its worker process")


def _load_all(todo: list[tuple[SourceFile, str | None]], settings: Settings, root: str) -> Iterator[Loaded]:
    """Load every file of `todo`, in order: in worker processes when it pays or when a file needs a
    time budget (pypdf can spin on hostile files, Office and EPUB parsers unpack whole archives, and
    large files are where hostile markup hurts), else inline."""
    jobs = settings.jobs or os.cpu_count() or 1
    total_bytes = sum(s.size for s, _ in todo)
    small = len(todo) < PARALLEL_MIN_FILES or total_bytes < PARALLEL_MIN_BYTES
    cap, hardlinks = settings.max_file_bytes, settings.allow_hardlinks
    tasks = [(root, source.path, known, cap, hardlinks) for source, known in todo]
    if small and all(_inline_ok(s) for s, _ in todo):
        yield from _with_keys([_load(*task) for task in tasks])
        return
    from kb.extract_pool import ExtractionPool  # multiprocessing: not for a sync that extracts nothing

    timeout = settings.extract_timeout
    weights = {s.path: BATCH_MAX_BYTES if s.format in RENDERED_FORMATS else s.size for s, _ in todo}
    inline_ok = {s.path: _inline_ok(s) for s, _ in todo}  # while the workers start
    pool: ExtractionPool[Loaded]
    with ExtractionPool(
        _load,
        jobs=1 if small else jobs,
        timeout=timeout,
        on_timeout=lambda _task: _stopped(timeout),
        on_crash=lambda _task: _crashed(),
        # numpy: every passage written gets its near-copy sketch (see `kb.index.passage_keys`).
        preload=(*extractor_modules({source.format for source, _ in todo}), "numpy"),
        batch=settings.extract_batch,
        batch_weight=BATCH_MAX_BYTES,
        weigh=lambda task: weights[task[1]],
        inline=lambda task: inline_ok[task[1]],
        complete=_with_keys,
    ) as pool:
        yield from pool.map(tasks)


def _inline_ok(source: SourceFile) -> bool:
    """Whether this process may extract the file itself, without a time budget."""
    return source.format not in RENDERED_FORMATS and source.size <= INLINE_MAX_BYTES


def _entry(source: SourceFile, sha: str, document: Document) -> ManifestEntry:
    return ManifestEntry(
        path=source.path,
        size=source.size,
        mtime_ns=source.mtime_ns,
        sha256=sha,
        format=source.format,
        title=document.title,
        tags=document.tags,
    )


def sync(
    settings: Settings,
    index: SearchIndex,
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> SyncReport:
    """Bring the index in line with the files under `settings.root`.

    With `rebuild`, every file is re-read and re-extracted, whatever the manifest says. Once `stop`
    is set, the sync ends after the file it is writing and commits what it wrote; the next sync
    resumes from there.

    Raises:
        IndexLockedError: another process held the index writer for longer than `settings.lock_wait`.
        RootMissingError: the root is gone or not a folder (the index is left as it was).
    """
    return _sync(settings, index, None, rebuild=rebuild, progress=progress, stop=stop)


def sync_paths(settings: Settings, index: SearchIndex, paths: Iterable[str]) -> SyncReport:
    """Bring the index in line for these root-relative paths only: files or folders, present or gone.

    The watcher's step: a folder named here is walked, and every indexed document at or below a
    named path that no longer qualifies is removed.

    Raises:
        IndexLockedError: another process held the index writer for longer than `settings.lock_wait`.
        RootMissingError: the root is gone or not a folder (the index is left as it was).
    """
    return _sync(settings, index, sorted(set(paths)), rebuild=False, progress=None)


def root_identity(root: Path) -> tuple[int, int]:
    """The root folder's (device, inode): one cheap stat, also the watcher's check for its return.

    Raises:
        RootMissingError: the root does not exist, cannot be looked at, or is not a folder.
    """
    try:
        st = os.stat(root)
    except FileNotFoundError as exc:
        raise RootMissingError(str(root), "does not exist") from exc
    except OSError as exc:
        raise RootMissingError(str(root), f"cannot be looked at ({exc.strerror or exc})") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise RootMissingError(str(root), "is not a folder")
    return st.st_dev, st.st_ino


def _sync(
    settings: Settings,
    index: SearchIndex,
    paths: list[str] | None,
    *,
    rebuild: bool,
    progress: Progress | None,
    stop: threading.Event | None = None,
) -> SyncReport:
    started = time.monotonic()
    report = SyncReport(root=str(index.root), index_dir=str(index.index_dir))
    # A root that is gone looks like a folder whose every file was deleted: checked before and
    # after the walk, so a root deleted or swapped meanwhile removes nothing.
    before = root_identity(index.root)
    try:
        found = walk(
            index.root,
            max_file_bytes=settings.max_file_bytes,
            exclude=index.index_dir,
            paths=paths,
            allow_hardlinks=settings.allow_hardlinks,
        )
    except OSError:
        root_identity(index.root)  # gone under the walk: say so rather than the walk's own error
        raise
    if root_identity(index.root) != before:
        raise RootMissingError(str(index.root), "was replaced by another folder while it was being read")
    report.skipped = [SkippedFile(path=p, reason=r) for p, r in found.skipped]
    report.unsupported = dict(sorted(found.unsupported.items()))
    # A named path that is not UTF-8 was skipped by the walk, and no document can have it.
    indexed = index.file_stats(under=None if paths is None else [p for p in paths if _is_utf8(p)])
    changed: list[SourceFile] = []
    reread: list[str] = []  # the changed files that are indexed
    still_there = unchanged = 0
    for source in found.files:
        stat_then = indexed.get(source.path)
        if stat_then is None:
            changed.append(source)
            continue
        still_there += 1
        if not rebuild and stat_then == (source.size, source.mtime_ns):
            unchanged += 1
        else:
            changed.append(source)
            reread.append(source.path)
    report.unchanged = unchanged
    gone: list[str] = []
    if still_there < len(indexed):  # only then are the indexed paths listed
        current = {f.path for f in found.files}
        gone = sorted(p for p in indexed if p not in current)
    # Whole manifest records only for the files that changed: their hash may show the content did not.
    manifest = index.entries(reread)
    todo: list[tuple[SourceFile, str | None]] = []
    for source in changed:
        known = manifest.get(source.path)
        todo.append((source, None if rebuild or known is None else known.sha256))
    # Largest first, so the sync ends on small files instead of one worker finishing a big PDF
    # while the others idle. Still a stable order: the same tree is always written the same way.
    todo.sort(key=lambda item: (-item[0].size, item[0].path))
    _apply(settings, index, todo, gone, manifest, report, progress, stop)
    report.seconds = round(time.monotonic() - started, 3)
    log = logger.info if paths is None or report.failed else logger.debug
    log(
        "sync of %s: %d added, %d updated, %d removed, %d unchanged, %d failed, %d skipped in %.2fs",
        index.root,
        report.added,
        report.updated,
        report.removed,
        report.unchanged,
        len(report.failed),
        len(report.skipped),
        report.seconds,
    )
    return report


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _apply(
    settings: Settings,
    index: SearchIndex,
    todo: list[tuple[SourceFile, str | None]],
    gone: Iterable[str],
    manifest: dict[str, ManifestEntry],
    report: SyncReport,
    progress: Progress | None,
    stop: threading.Event | None = None,
) -> None:
    gone = list(gone)
    if not todo and not gone:
        return
    with index.batch(wait=settings.lock_wait) as batch:
        last_commit = time.monotonic()
        for path in gone:
            batch.delete(path)
            report.removed += 1
            report.removed_paths.append(path)
        results = _load_all(todo, settings, str(index.root))
        for done, ((source, _), loaded) in enumerate(zip(todo, results, strict=True), 1):
            _write_one(batch, source, loaded, manifest.get(source.path), report)
            if progress is not None:
                progress(done, len(todo))
            # By count, to bound the work a commit flushes; by time, so that a sync stopped at any
            # moment (a client closing kb after a few seconds, kill -9) keeps what it did.
            if batch.pending >= settings.commit_every_files or (
                batch.pending and time.monotonic() - last_commit >= settings.commit_every_seconds
            ):
                batch.commit()
                last_commit = time.monotonic()
            if stop is not None and stop.is_set():
                # Leaving the loop drops the loader, whose pool then stops its workers; what was
                # written commits as the batch ends.
                logger.info("sync stopped after %d of %d changed files", done, len(todo))
                break


def _write_one(
    batch: IndexBatch, source: SourceFile, loaded: Loaded, known: ManifestEntry | None, report: SyncReport
) -> None:
    if loaded.refused is not None:  # as the walk would say now: it is no document any more
        if loaded.refused != NOT_FOUND:  # a file deleted since the walk is simply gone
            report.skipped.append(SkippedFile(path=source.path, reason=loaded.refused))
        if known is not None:
            batch.delete(source.path)
            report.removed += 1
            report.removed_paths.append(source.path)
    elif loaded.error is not None:
        logger.warning("not indexed: %s: %s", source.path, loaded.error)
        report.failed.append(FileProblem(path=source.path, error=loaded.error))
    elif loaded.document is None and known is not None:
        batch.put_manifest(known.model_copy(update={"size": source.size, "mtime_ns": source.mtime_ns}))
        report.unchanged += 1
    elif loaded.document is not None:
        for warning in loaded.document.warnings:
            logger.warning("%s: %s", source.path, warning)
        batch.put(loaded.document, _entry(source, loaded.sha256, loaded.document), loaded.keys)
        if known is None:
            report.added += 1
            report.added_paths.append(source.path)
        else:
            report.updated += 1
            report.updated_paths.append(source.path)
