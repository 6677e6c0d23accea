"""A replica's view of an index that another process writes (`kb serve --workers`): it takes in that
process's commits, telling what they changed, and its vectors, with the coverage they give.

Nothing here writes: the writer syncs, watches and embeds; a follower only reloads and reads.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from kb.config import Settings
from kb.index import SearchIndex
from kb.models import SyncReport

if TYPE_CHECKING:
    from kb.semantic import Semantic


class Follower:
    """What one replica has taken in of the writer's work, step by step (`step`)."""

    def __init__(self, settings: Settings, index: SearchIndex) -> None:
        self.settings = settings
        self.index = index
        self.semantic: Semantic | None = None  # the writer's vectors, and an encoder for queries
        self.coverage: float | None = 0.0  # the share of passages with a vector, when last reckoned
        self.took_in = threading.Event()  # set whenever a step takes in a commit or vectors
        self._generation: tuple[int, ...] | None = None
        self._known: dict[str, tuple[int, int]] | None = None  # each file's (size, mtime) as indexed
        self._keys: set[int] | None = None  # every passage's vector key as of the last commit
        self._covered_vectors = -1  # how many vectors there were when the coverage was reckoned

    def load_semantic(self) -> None:
        """Open the writer's vectors and load an encoder for queries.

        Raises:
            SemanticUnavailableError: the encoder cannot run here (and other failures of its loading).
        """
        from kb.semantic import Semantic

        semantic = Semantic(self.index.vectors_dir, self.settings.cache_dir, repair=False, serving=True)
        semantic.load(1)  # queries only: one thread encodes one in a few ms
        self.semantic = semantic

    def step(self) -> SyncReport | None:
        """Take in the writer's commits and vectors since the last step; what the commits changed,
        told by the files' stats (None if nothing: no commit, or the first step)."""
        report = None
        now = self.index.generation()
        if now != self._generation:
            self._generation, self._keys = now, None
            self.index.reload()
            current = dict(self.index.file_stats())  # kept until the next commit: not its searcher
            if self._known is not None:
                report = _changes(self.settings, self._known, current)
                if not report.changed_documents:
                    report = None
            self._known = current
            self.took_in.set()
        self._take_in_vectors()
        return report

    def _take_in_vectors(self) -> None:
        semantic = self.semantic
        if semantic is None:
            return
        semantic.store.refresh()
        if self._keys is None or len(semantic.store) != self._covered_vectors:
            if self._keys is None:
                self._keys = self.index.vector_keys()
            self._covered_vectors = len(semantic.store)
            self.coverage = semantic.coverage(self._keys)
            self.took_in.set()

    def close(self) -> None:
        if self.semantic is not None:
            self.semantic.close()


def _changes(
    settings: Settings, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> SyncReport:
    """What another process's commits changed, told by the files' (size, mtime) before and after."""
    report = SyncReport(root=str(settings.root), index_dir=str(settings.index_dir))
    report.added_paths = sorted(after.keys() - before.keys())
    report.removed_paths = sorted(before.keys() - after.keys())
    report.updated_paths = sorted(path for path, stat in after.items() if before.get(path, stat) != stat)
    return report
