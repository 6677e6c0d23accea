"""Search by meaning: passage vectors from a sentence encoder, kept beside the index.

`Semantic` joins the encoder (`_model`) and the vector store (`_store`) of one index; `Embedder` is
the background thread that `kb serve` uses to embed passages after they are indexed. The index layer
fuses the passages found here with its lexical ranking. Nothing here knows Tantivy: passages arrive
as (vector key, text) pairs.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from kb.semantic._model import DIMENSIONS, MIN_SIMILARITY, MODEL_ID, Encoder, SemanticUnavailableError
from kb.semantic._rows import SHORTLIST_FROM
from kb.semantic._store import VectorStore

__all__ = ["Embedder", "Semantic", "SemanticUnavailableError"]

logger = logging.getLogger(__name__)

# Passages per written segment: a crash loses at most this many vectors' work.
SEGMENT_PASSAGES = 512
CHUNK = 64  # passages encoded between two looks at the stop event
STOP_WAIT = 30.0
QUERIES_KEPT = 256

Passages = Iterable[tuple[int, str]]
Progress = Callable[[int, int], None]


@functools.cache
def _shared_encoder(cache_dir: Path, threads: int) -> Encoder:
    """One encoder per process and thread count: loading costs ~0.5 s and ~100 MB."""
    return Encoder.load(cache_dir, threads)


class Semantic:
    """The vectors in one folder (an index's `vectors_dir`), and the encoder that makes them
    (loaded on first need)."""

    def __init__(self, folder: Path, cache_dir: Path, *, repair: bool = True, serving: bool = False) -> None:
        """`serving`: for a server's many searches (past `SHORTLIST_FROM` vectors, each shortlists
        them by a reduced copy first, see `_rows`)."""
        shortlist_from = SHORTLIST_FROM if serving else None
        self.store = VectorStore(folder, MODEL_ID, DIMENSIONS, repair=repair, shortlist_from=shortlist_from)
        self._cache_dir = cache_dir
        self.encoder: Encoder | None = None
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()  # the next page asks again
        self._pool: ThreadPoolExecutor | None = None

    def load(self, threads: int) -> Encoder:
        """Load the encoder.

        Raises:
            SemanticUnavailableError: it cannot run here.
        """
        if self.encoder is None:
            self.encoder = _shared_encoder(self._cache_dir, max(1, threads))
        return self.encoder

    def nearest_soon(
        self, query: str, count: int, *, filtered: bool = False
    ) -> Callable[[Collection[int] | None], list[tuple[int, float]]]:
        """`nearest`, started now in another thread while the caller does its lexical search: the
        query's encoding (~0.5 ms) and, unless the caller filters (and may name `among`), the
        product with every vector (4.5 ms at 100,000: numpy lets go of the interpreter for it, so
        it runs beside the lexical search). Call the result (with `among`, if any) for the keys."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kb-query")

        def encode_and_rank() -> tuple[np.ndarray | None, list[tuple[int, float]] | None]:
            vector = self._vector(query)
            return vector, None if filtered else self._ranked(vector, count, None)

        started = self._pool.submit(encode_and_rank)

        def ranked(among: Collection[int] | None) -> list[tuple[int, float]]:
            vector, of_all = started.result()
            if among is None and of_all is not None:
                return of_all
            return self._ranked(vector, count, among)

        return ranked

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def nearest(
        self, query: str, count: int, among: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """The vector keys nearest to `query` in meaning (of `among` only, if given), best first,
        that are near enough to be about it ([] until the encoder is loaded)."""
        return self._ranked(self._vector(query), count, among)

    def _vector(self, query: str) -> np.ndarray | None:
        if self.encoder is None:
            return None
        vector = self._queries.pop(query, None)
        if vector is None:
            vector = self.encoder.query(query)
        self._queries[query] = vector
        while len(self._queries) > QUERIES_KEPT:
            self._queries.popitem(last=False)
        return vector

    def _ranked(
        self, vector: np.ndarray | None, count: int, among: Collection[int] | None
    ) -> list[tuple[int, float]]:
        if vector is None:
            return []
        self.store.refresh(wait=False)  # a merge under way must not hold up the search
        nearest = self.store.nearest(vector, count, among)
        return [(key, score) for key, score in nearest if score >= MIN_SIMILARITY]

    def embed(
        self,
        passages: Passages,
        *,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        total: int = 0,
    ) -> int:
        """Embed and store `passages` (keys that have a vector are skipped), read as they come (a
        chunk's texts in memory at a time); returns how many were embedded. Vectors are written every
        `SEGMENT_PASSAGES`, so a stop or a crash keeps the rest. `progress(done, total)` follows."""
        encoder = self.encoder
        if encoder is None:
            return 0
        if total:  # room for them all now, rather than room made again and again
            self.store.reserve(total)
        fresh = ((key, text) for key, text in passages if not self.store.has(key))
        done = 0
        pending_keys: list[int] = []
        pending: list[np.ndarray] = []
        while not (stop is not None and stop.is_set()) and (chunk := list(islice(fresh, CHUNK))):
            pending.append(encoder.passages([text for _, text in chunk]))
            pending_keys += [key for key, _ in chunk]
            done += len(chunk)
            if len(pending_keys) >= SEGMENT_PASSAGES:
                self._write(pending_keys, pending)
                pending_keys, pending = [], []
            if progress is not None:
                progress(done, max(total, done))
        self._write(pending_keys, pending)
        return done

    def _write(self, keys: list[int], blocks: list[np.ndarray]) -> None:
        if keys:
            self.store.add(keys, np.concatenate(blocks))

    def coverage(self, keys: set[int]) -> float:
        """The share of `keys` (every passage's) that have a vector."""
        if not keys:
            return 1.0
        return sum(1 for key in keys if self.store.has(key)) / len(keys)


class Embedder:
    """Embeds passages in the background: what changed last first, then whatever still lacks a
    vector; then drops vectors no passage uses. Search never waits for it."""

    def __init__(
        self,
        semantic: Semantic,
        passages: Callable[[Callable[[int], bool], list[str] | None], Passages],
        vector_keys: Callable[[], set[int]],
        threads: int,
    ) -> None:
        self.semantic = semantic
        self._passages = passages
        self._vector_keys = vector_keys
        self._threads = threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._fresh: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.coverage: float | None = 0.0  # None: unavailable here
        self.error: str | None = None
        self.idle = threading.Event()  # set while there is nothing left to embed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kb-embed", daemon=True)
        self._thread.start()

    def changed(self, paths: Iterable[str]) -> None:
        """These documents were just (re)indexed: embed their passages first."""
        with self._lock:  # with `_run`'s last look: never idle with a change waiting
            self._fresh.extend(paths)
            self.idle.clear()
            self._wake.set()

    def stop(self) -> None:
        """Stop after the chunk being encoded (what was embedded so far is written)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            # Bounded: the first use's preparation of the model (seconds) cannot be interrupted.
            self._thread.join(STOP_WAIT)
        self.semantic.close()
        self.idle.set()

    def _run(self) -> None:
        try:
            self.semantic.load(self._threads)
        except SemanticUnavailableError as exc:
            self.coverage, self.error = None, str(exc)
            logger.warning("%s; search stays lexical", exc)
            self.idle.set()
            return
        has = self.semantic.store.has
        self._wake.set()
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                fresh, self._fresh = self._fresh, []
            try:
                started = time.monotonic()
                self.semantic.store.refresh()  # what a `kb index` stored meanwhile is not made again
                done = 0
                for paths in (sorted(set(fresh)), None):  # what just changed first, then everything
                    todo = self._passages(lambda key: not has(key), paths)
                    done += self.semantic.embed(todo, stop=self._stop)
                stopping = self._stop.is_set()
                live = self._vector_keys() if stopping else self.semantic.store.compact(self._vector_keys)
                self.coverage = self.semantic.coverage(live)
                if done:
                    logger.info("embedded %d passages in %.1fs", done, time.monotonic() - started)
            except Exception:  # the thread's top: search goes on lexically
                logger.exception("embedding failed; will retry after the next change")
            with self._lock:
                if not self._wake.is_set():
                    self.idle.set()
