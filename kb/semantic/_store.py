"""Passage vectors on disk beside the index, keyed by a hash of the text they were made from.

A vector belongs to a passage's words, not to a document: a renamed file, a re-indexed one or a copy
of a page finds its vectors already there. Each write is a new segment file, complete or absent
(written aside, then renamed), so a crash at any moment loses at most the batch being written and
never leaves a half-written vector; a passage whose vector is missing is simply embedded again.
Vectors no passage uses any more are dropped by `compact`.

Vectors are kept as int8 with one scale per vector (396 bytes each, 19.8 MB per 50,000 passages)
and as float32 in memory (`_rows`), where search multiplies them with the query's.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import threading
import time
import zipfile
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import numpy as np

from kb.semantic._rows import Rows, shortlisted

logger = logging.getLogger(__name__)

SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".npz"
MAX_SEGMENTS = 32  # more and `compact` merges them, so that opening stays quick
COARSE_NS = 3_000_000_000  # the coarsest folder times (FAT's 2 s), and then some


class VectorStore:
    """The vectors of one model in one folder; safe for several threads and processes."""

    def __init__(
        self,
        folder: Path,
        model_id: str,
        dimensions: int,
        *,
        repair: bool = True,
        shortlist_from: int | None = None,
    ) -> None:
        """`repair`: remove damaged segments and stale temporary files as they are met (not for a
        command that only reads, like `kb status`). `shortlist_from`: past how many vectors searches
        first shortlist them by a reduced copy (see `kb.semantic._rows`; None: never, for a process
        that searches once or not at all: the copy takes 0.3 s and 50 MB at 100,000 vectors)."""
        self.folder = folder
        self._folder_name = os.fspath(folder)  # for `settled`, on a server's event loop: no Path to build
        self._repair = repair
        self.model_id = model_id
        self._dimensions = dimensions
        self._lock = threading.Lock()
        self._loaded: set[str] = set()
        self._foreign: set[str] = set()  # segments of another model (an earlier kb's): never read again
        self._shortlist_from = shortlist_from
        self._rows = Rows(dimensions, shortlist_from)
        # The rows as one `View`, replaced whole: a search reads it without the lock.
        self._data = self._rows.view()
        self.version = 0  # counts the replacements of `_data`: for caches of search results
        self._seen: int | None = None  # the folder's mtime when last listed
        _one_blas_thread()
        self.refresh()

    def __len__(self) -> int:
        return len(self._rows.row)

    def has(self, key: int) -> bool:
        return key in self._rows.row

    def missing(self, keys: Iterable[int]) -> list[int]:
        """Those of `keys` that have no vector (each once, in the order given)."""
        row = self._rows.row
        return list(dict.fromkeys(k for k in keys if k not in row))

    def nearest(
        self, query: np.ndarray, limit: int, among: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """The keys of the `limit` vectors most like `query` (cosine), best first; of `among` only,
        if given."""
        view = self._data
        if among is not None:
            keys = view.keys
            row = self._rows.row  # may already be newer than `_data`: each row is checked against its key
            found = [(r, k) for k in among if (r := row.get(k)) is not None and r < len(keys)]
            rows = np.array([r for r, _ in found], dtype=np.int64)
            rows = rows[keys[rows] == np.array([k for _, k in found], dtype=np.int64)]
            keys, matrix = keys[rows], view.vectors[rows]
        else:
            keys, matrix = shortlisted(view, query, limit)
        if not len(keys):
            return []
        scores = matrix @ query
        limit = min(limit, len(keys))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(keys[i]), float(scores[i])) for i in top]

    # ---- writing ---------------------------------------------------------------------------

    def add(self, keys: list[int], vectors: np.ndarray) -> None:
        """Store `vectors` (unit length, float32) under `keys`, durably, as one new segment."""
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = _write_segment(self.folder, self.model_id, np.asarray(keys, dtype=np.int64), vectors)
        with self._lock:
            self._loaded.add(name)
            self._rows.append(np.asarray(keys, dtype=np.int64), vectors.astype(np.float32))
            self._show(self._rows)
        logger.debug("vectors: wrote %d to %s", len(keys), name)

    def compact(self, live: Callable[[], set[int]]) -> set[int]:
        """Drop the vectors whose key is not in `live()`, and merge the segments if they are many.

        `live` is asked after the folder is listed, so it must give the keys of a view of the index
        at least as recent (reload it): another process commits a passage before writing its vector,
        and a view older than the listing would drop a fresh vector as unused.
        Returns the live keys it was given (for the coverage, without asking the index again).
        Segments another process writes meanwhile are kept.
        """
        self.refresh()
        with self._lock:
            for name in self._foreign:  # this index's kb makes no more of them
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / name).unlink()
                logger.info("vectors: removed %s, made by another model", name)
            self._foreign = set()
            alive = live()
            dead = [k for k in self._rows.row if k not in alive]
            if not dead and len(self._loaded) <= MAX_SEGMENTS:
                return alive
            keys, matrix = self._data.keys, self._data.vectors
            if dead:  # else merged as they are: a masked copy of 50,000 vectors is 75 MB more
                kept = np.array([k in alive for k in keys.tolist()], dtype=bool)
                keys, matrix = keys[kept], matrix[kept]
            old = sorted(self._loaded)
            new = _write_segment(self.folder, self.model_id, keys, matrix) if len(keys) else None
            for name in old:
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / name).unlink()
            if dead:  # replaced whole: a search meanwhile sees the old vectors or the new, never none
                self._rows = Rows.of(keys, matrix, self._shortlist_from)
                self._show(self._rows)
            self._loaded = {new} if new else set()
        logger.debug("vectors: dropped %d unused, merged %d segments", len(dead), len(old))
        return alive

    # ---- reading the folder ----------------------------------------------------------------

    def settled(self) -> bool:
        """Whether a look at the folder would find nothing new (a stat; `refresh` reads what it finds)."""
        try:
            return os.stat(self._folder_name).st_mtime_ns == self._seen
        except FileNotFoundError:
            return True

    def refresh(self, *, wait: bool = True) -> None:
        """Take in segments other processes wrote since the last look (a cheap stat when none did).

        With `wait` False (a search), nothing is done while another thread writes."""
        try:
            seen = self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if seen == self._seen:
            return
        if not self._lock.acquire(blocking=wait):
            return  # a write is under way (a merge, with its fsync): a later look takes it in
        try:
            self._take_in(seen)
        finally:
            self._lock.release()

    def _take_in(self, seen: int) -> None:
        """List the folder and read the segments not loaded yet (call with the lock held)."""
        # A folder's time is coarse on many file systems (a kernel tick, 1 s on HFS+, 2 s on
        # FAT): a segment renamed in after this look, within the same tick, would leave it as it
        # is. So a time that recent is not trusted, and the next look lists the folder again.
        self._seen = seen if abs(time.time_ns() - seen) > COARSE_NS else None
        present = {
            e.name
            for e in os.scandir(self.folder)
            if e.name.startswith(SEGMENT_PREFIX) and e.name.endswith(SEGMENT_SUFFIX)
        }
        if self._loaded - present:
            # Merged away by another process: read afresh, aside; searches meanwhile use the old.
            names, rows = set(), Rows(self._dimensions, self._shortlist_from)
        else:
            names, rows = self._loaded, self._rows
        self._foreign &= present
        for name in sorted(present - names - self._foreign):
            loaded = self._read(name)
            if loaded is not None:
                names.add(name)
                rows.append(*loaded)
                if rows is self._rows:
                    self._show(rows)  # each segment searchable as soon as read
        read_afresh = rows is not self._rows
        self._loaded, self._rows = names, rows
        if read_afresh:
            self._show(rows)
        if self._repair:
            _remove_stale_temporaries(self.folder)

    def _read(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.folder / name
        try:
            with path.open("rb") as file, np.load(file, allow_pickle=False) as data:
                model = str(data["model"])
                if model != self.model_id:
                    self._foreign.add(name)
                    return None  # another model's vectors: never mixed with this one's
                keys, scales, codes = data["keys"], data["scales"], data["codes"]
                if codes.shape != (len(keys), self._dimensions) or scales.shape != (len(keys),):
                    raise ValueError(f"arrays of shapes {keys.shape}, {scales.shape}, {codes.shape}")
                vectors = codes.astype(np.float32)
                vectors *= scales[:, None]  # in place: a second float copy of a merged store is 150 MB
                return keys.astype(np.int64), vectors
        except FileNotFoundError:
            return None  # merged away meanwhile
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            # Damaged on disk (cut short, bits flipped: zip's CRC fails): its passages are embedded again.
            if not self._repair:
                logger.warning("vector segment %s is unreadable (%s); kb index will replace it", path, exc)
                return None
            logger.warning("vector segment %s is unreadable (%s); removing it", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _show(self, rows: Rows) -> None:
        """Make `rows` what searches read, then count the change (call with the lock held): a
        search that reads `version` first sees at least the rows it counts."""
        self._data = rows.view()
        self.version += 1

    def reserve(self, extra: int) -> None:
        """Make room for `extra` more vectors at once (a bulk embedding that knows its count)."""
        with self._lock:
            self._rows.reserve(extra)


@functools.cache
def _one_blas_thread() -> None:
    """A search's product of the query with every vector is one pass over memory: OpenBLAS's
    threads only fight the encoder's and the server's for the cores (4x slower here)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


# Rows quantized at a time: the float temporaries of a whole merged store would be several times
# its size (three of 150 MB at 100,000 vectors).
QUANTIZE_ROWS = 4096


def _write_segment(folder: Path, model_id: str, keys: np.ndarray, vectors: np.ndarray) -> str:
    """Write one segment aside and rename it into place; returns its name."""
    scales = np.empty(len(vectors), dtype=np.float32)
    codes = np.empty(vectors.shape, dtype=np.int8)
    for start in range(0, len(vectors), QUANTIZE_ROWS):
        # A broken vector (NaN from a bad model output) is kept as zeros: near nothing, harmless.
        rows = np.nan_to_num(vectors[start : start + QUANTIZE_ROWS], nan=0.0, posinf=0.0, neginf=0.0)
        scale = (np.maximum(np.abs(rows).max(axis=1), 1e-12) / 127.0).astype(np.float32)
        scales[start : start + len(rows)] = scale
        codes[start : start + len(rows)] = np.round(rows / scale[:, None])
    name = f"{SEGMENT_PREFIX}{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}{SEGMENT_SUFFIX}"
    temporary = folder / f".tmp-{name}"
    with temporary.open("wb") as file:
        np.savez(file, model=np.array(model_id), keys=keys, scales=scales, codes=codes)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, folder / name)
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once the folder is synced
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return name


STALE_SECONDS = 3600.0


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed writer left (an hour old: a live writer takes well under a second)."""
    now = time.time()
    for entry in os.scandir(folder):
        if entry.name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > STALE_SECONDS:
                    os.unlink(entry.path)
