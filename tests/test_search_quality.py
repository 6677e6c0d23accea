"""Ranking and snippet behaviour of `SearchIndex.search` on small corpora of our own (real Tantivy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.config import Settings
from kb.index import SearchIndex
from kb.index._query import content_words, feedback_terms
from kb.index._vocabulary import edit_distance
from kb.ingest import sync


def build(tmp_path: Path, files: dict[str, str]) -> SearchIndex:
    root = tmp_path / "docs"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    settings = Settings(root=root, index_dir=tmp_path / "idx", jobs=1)
    index = SearchIndex.open(settings.index_dir, settings.root)
    sync(settings, index)
    return index


FILLER = "Unrelated words about weather, travel plans and the price of bread fill this paragraph. " * 3

PETS = {
    "cats.md": "# Cats\n\nCats sleep most of the day and hunt mice at night.\n",
    "dogs.md": "# Dogs\n\nDogs need a walk every morning and enjoy fetching sticks.\n",
    "birds.md": "# Birds\n\nParrots can learn words; finches sing in the morning.\n",
}


def test_question_words_are_dropped_so_the_topic_decides(tmp_path: Path) -> None:
    index = build(tmp_path, {**PETS, "faq.md": "# FAQ\n\nWhat is it, how does it work, why and when?\n"})
    results = index.search("what do cats do at night?")
    assert results.results[0].path == "cats.md"
    assert "faq.md" not in [h.path for h in results.results]


def test_a_query_of_only_stopwords_still_searches_its_words() -> None:
    assert content_words("what is it") == ["what", "is", "it"]
    assert content_words("what is a kangaroo") == ["kangaroo"]
    assert content_words("are there also more studies between wars") == ["studies", "wars"]


def test_parentheses_in_a_question_are_prose_not_query_syntax(tmp_path: Path) -> None:
    index = build(tmp_path, PETS)
    results = index.search("which animals (for example parrots) learn words?")
    assert results.results[0].path == "birds.md"
    assert "**Parrots**" in results.results[0].snippet


def test_a_title_match_ranks_but_does_not_outweigh_the_passage_that_answers(tmp_path: Path) -> None:
    index = build(
        tmp_path,
        {
            "title-only.md": f"# Glacier survey\n\n{FILLER}\n",
            "answer.md": "# Field notes\n\nThe glacier survey measured how fast the glacier retreats.\n",
        },
    )
    paths = [h.path for h in index.search("glacier survey retreat").results]
    assert paths == ["answer.md", "title-only.md"]


def test_the_title_counts_when_the_bodies_are_alike(tmp_path: Path) -> None:
    index = build(
        tmp_path,
        {
            "a.md": "# Compilers\n\nNotes on parsing and the lexer.\n",
            "b.md": "# Notes\n\nNotes on parsing and the lexer for compilers.\n",
        },
    )
    # Both bodies mention the word once; the title is extra evidence.
    assert index.search("compilers").results[0].path == "a.md"


def test_a_heading_match_picks_the_right_section(tmp_path: Path) -> None:
    index = build(
        tmp_path,
        {"guide.md": "# Guide\n\n## Backups\n\nCopy the folder nightly.\n\n## Restore\n\nCopy it back.\n"},
    )
    hit = index.search("restore").results[0]
    assert hit.id == "guide.md#restore"
    assert hit.heading == "Guide > Restore"


def test_query_words_close_together_rank_above_the_same_words_far_apart(tmp_path: Path) -> None:
    index = build(
        tmp_path,
        {
            "apart.md": f"# Notes\n\nThe heat was high today. {FILLER} The exchanger was cleaned.\n",
            "together.md": f"# Notes\n\nThe heat exchanger was cleaned. {FILLER} It was high today.\n",
        },
    )
    assert index.search("heat exchanger").results[0].path == "together.md"


def test_a_typo_in_a_multi_word_query_is_corrected_and_marked_approximate(tmp_path: Path) -> None:
    index = build(tmp_path, PETS)
    results = index.search("dogs mornnig walk")
    assert results.approximate is True
    assert results.results[0].path == "dogs.md"
    assert "**morning**" in results.results[0].snippet


def test_a_query_of_only_typos_finds_approximate_matches(tmp_path: Path) -> None:
    index = build(tmp_path, PETS)
    results = index.search("parots")
    assert results.approximate is True
    assert [h.path for h in results.results] == ["birds.md"]
    assert "**Parrots**" in results.results[0].snippet


def test_correctly_spelled_queries_are_not_approximate(tmp_path: Path) -> None:
    index = build(tmp_path, PETS)
    assert index.search("dogs morning walk").approximate is False


def test_a_word_nowhere_near_the_index_finds_nothing(tmp_path: Path) -> None:
    index = build(tmp_path, PETS)
    results = index.search("xylophone")
    assert results.results == []
    assert results.approximate is False


def test_quoted_phrases_are_not_corrected(tmp_path: Path) -> None:
    index = build(tmp_path, PETS)
    assert index.search('"parots learn"').results == []


@pytest.mark.parametrize(
    ("a", "b", "edits"),
    [("walk", "walk", 0), ("mornnig", "morning", 1), ("parot", "parrot", 1), ("cat", "dog", 3)],
)
def test_edit_distance_counts_a_swap_of_neighbours_as_one_edit(a: str, b: str, edits: int) -> None:
    assert edit_distance(a, b, 2) == min(edits, 3)


def test_every_snippet_marks_a_matched_word(tmp_path: Path) -> None:
    index = build(tmp_path, PETS)
    for hit in index.search("which animals sing or hunt in the morning or at night").results:
        assert "**" in hit.snippet, hit


def test_a_snippet_shows_the_part_of_a_long_passage_that_matched(tmp_path: Path) -> None:
    index = build(tmp_path, {"long.md": f"# Log\n\n{FILLER}The turbine blade cracked.{FILLER}\n"})
    snippet = index.search("turbine blade").results[0].snippet
    assert "**turbine** **blade** cracked" in snippet
    assert len(snippet) < 400


def test_a_hit_matched_only_in_its_title_shows_the_start_of_its_passage(tmp_path: Path) -> None:
    index = build(
        tmp_path, {"zebra.md": "---\ntitle: Zebra\n---\nStriped animals of the savanna graze in herds.\n"}
    )
    hit = index.search("zebra").results[0]
    assert hit.snippet.startswith("Striped animals of the savanna")


TURBINES = {
    **PETS,  # other topics, so that the words below are rare enough to count
    # The clear answer, whose other words (compressor, blades, cooling) are the topic's vocabulary.
    "answer.md": "# Turbines\n\nA turbine drives the compressor; turbine blades need cooling air.\n",
    # Says turbine once in a longer passage, but shares the answer's vocabulary.
    "related.md": (
        "# Engines\n\nThe turbine was inspected. Compressor blades and cooling air ducts were cleaned.\n"
    ),
    # Says turbine once in a short passage (plain BM25 ranks it above related.md) about something else.
    "other.md": "# Power\n\nA wind turbine was built.\n",
    # The answer's vocabulary without the question's word.
    "no-match.md": "# Ducts\n\nCompressor blades and cooling air.\n",
}


def test_words_of_the_best_passages_rerank_the_others(tmp_path: Path) -> None:
    index = build(tmp_path, TURBINES)
    assert [h.path for h in index.search("turbine").results] == ["answer.md", "related.md", "other.md"]


def test_feedback_words_reorder_matches_but_never_add_one(tmp_path: Path) -> None:
    index = build(tmp_path, TURBINES)
    results = index.search("turbine")
    assert "no-match.md" not in [h.path for h in results.results]
    assert results.total == 3  # the documents that say turbine


def test_a_query_in_tantivy_syntax_is_ranked_as_written_without_feedback(tmp_path: Path) -> None:
    index = build(tmp_path, TURBINES)
    paths = [h.path for h in index.search('"turbine"').results]
    assert paths == ["answer.md", "other.md", "related.md"]


def test_the_first_passage_does_not_depend_on_the_page_size(tmp_path: Path) -> None:
    index = build(
        tmp_path,
        {
            **PETS,
            "a.md": "# A\n\nThe turbine hums.\n",
            **{
                f"{n}.md": f"# {n}\n\nThe turbine compressor blades, part {n}.\n"
                for n in ("b", "c", "d", "e")
            },
        },
    )
    first = index.search("turbine", limit=5, all_passages=True).results[0].id
    assert index.search("turbine", limit=1, all_passages=True).results[0].id == first


def test_feedback_terms_come_mostly_from_the_best_passage_and_skip_the_question_and_stopwords() -> None:
    weights = feedback_terms(
        [(12.0, "Shock waves also reflect from the nozzle wall 2 times."), (6.0, "Engines reflect sound.")],
        exclude={"shock"},
    )
    assert weights["reflect"] == 1.0  # in both passages
    assert weights["wave"] > 0.99  # only in the best one
    assert weights["sound"] < 0.01  # only in the other one, six points of BM25 behind
    assert {"shock", "also", "the", "from", "2"}.isdisjoint(weights)
