"""The question set of benchmarks/questions.json is well formed and its answers exist in the corpus;
the benchmark's scoring counts what it says it counts."""

from __future__ import annotations

import json
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
CORPUS = BENCHMARKS.parent.parent / "shared" / "corpora" / "markdown.tar.gz"
QUESTIONS = json.loads((BENCHMARKS / "questions.json").read_text())["questions"]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import questions

        yield questions
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_set_has_40_to_60_questions_with_unique_ids_and_a_kind_each() -> None:
    ids = [q["id"] for q in QUESTIONS]
    assert 40 <= len(ids) <= 60
    assert len(set(ids)) == len(ids)
    assert {q["kind"] for q in QUESTIONS} == {"keyword", "paraphrase"}
    keyword = sum(q["kind"] == "keyword" for q in QUESTIONS) / len(QUESTIONS)
    assert 0.25 <= keyword <= 0.4


def test_every_question_is_a_sentence_with_at_least_one_relative_answer_path() -> None:
    for q in QUESTIONS:
        assert q["question"].endswith("?") and len(q["question"].split()) >= 5, q["id"]
        assert q["answers"] and len(set(q["answers"])) == len(q["answers"]), q["id"]
        assert all(not a.startswith("/") and ".." not in a for a in q["answers"]), q["id"]


@pytest.mark.skipif(not CORPUS.is_file(), reason="the shared Markdown corpus is not beside the project")
def test_every_answer_is_a_file_of_the_shared_corpus() -> None:
    with tarfile.open(CORPUS) as archive:
        names = {m.name.removeprefix("./") for m in archive.getmembers() if m.isfile()}
    missing = [(q["id"], a) for q in QUESTIONS for a in q["answers"] if a not in names]
    assert missing == []


def test_first_right_is_the_rank_of_the_first_answer_or_none(bench: ModuleType) -> None:
    assert bench.first_right(["a", "b", "c"], {"c", "b"}) == 2
    assert bench.first_right(["a"], {"z"}) is None


def test_a_passage_counts_as_a_near_copy_only_of_one_ranked_above_it(bench: ModuleType) -> None:
    text = "the quick brown fox jumps over the lazy dog near the river bank today"
    other = "an entirely different passage about compilers and their query system design"
    assert bench.near_copies([text, other, text + " again", other]) == 2
    assert bench.near_copies([text, other]) == 0


def test_score_gives_top_k_shares_and_reciprocal_rank_per_kind(bench: ModuleType) -> None:
    questions = [
        {"id": "a", "kind": "keyword", "answers": ["x"]},
        {"id": "b", "kind": "paraphrase", "answers": ["y"]},
    ]
    run = {"a": ["x"], "b": ["p", "q", "r", "y"]}
    row = bench.score("s", run, questions)
    assert (row["top3"], row["top5"]) == (0.5, 1.0)
    assert row["mrr@10"] == pytest.approx((1 + 1 / 4) / 2)
    assert row["by_kind"]["paraphrase"]["top3"] == 0.0
