"""Typo correction within bounds: a few words per query, a time budget per search."""

from __future__ import annotations

import itertools
from pathlib import Path

import tantivy

from kb.index._query import MAX_FUZZY_TERMS, plan_query
from kb.index._schema import open_tantivy
from kb.index._vocabulary import Vocabulary


def _searcher(tmp_path: Path, words: list[str]) -> tuple[tantivy.Index, tantivy.Searcher]:
    index = open_tantivy(str(tmp_path))
    writer = index.writer(heap_size=20_000_000, num_threads=1)
    for start in range(0, len(words), 200):
        writer.add_document(
            tantivy.Document(kind="section", path="a.md", body=" ".join(words[start : start + 200]))
        )
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index, index.searcher()


class CountingVocabulary(Vocabulary):
    """The real vocabulary, counting the corrections it is asked for."""

    def __init__(self, searcher: tantivy.Searcher) -> None:
        super().__init__(searcher)
        self.asked: list[str] = []

    def near(self, term: str, distance: int) -> list[str]:
        self.asked.append(term)
        return super().near(term, distance)


def test_a_long_paste_of_unknown_words_corrects_only_a_few(tmp_path: Path) -> None:
    index, searcher = _searcher(tmp_path, ["install", "configure", "package"])
    unknown = " ".join(f"co{''.join(p)}" for p in itertools.product("qxzjv", repeat=4))[:2000]
    vocabulary = CountingVocabulary(searcher)
    plan = plan_query(index, index.schema, unknown, vocabulary=vocabulary)
    assert plan.approximate
    assert len(vocabulary.asked) == MAX_FUZZY_TERMS
    assert plan.fuzzy() is not None
    assert len(vocabulary.asked) == 2 * MAX_FUZZY_TERMS  # the retry is bounded alike


def test_corrections_stop_when_the_time_budget_is_spent(tmp_path: Path) -> None:
    words = [f"ka{''.join(p)}" for p in itertools.product("bcdf", repeat=5)]  # 1,024 terms
    _, searcher = _searcher(tmp_path, [*words, "kangaroo"])
    assert Vocabulary(searcher).near("kangaroq", 1) == ["kangaroo"]
    assert Vocabulary(searcher, budget=0).near("kangaroq", 1) == []
