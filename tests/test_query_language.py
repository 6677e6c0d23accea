"""The query language does what it says: negations exclude, prefixes expand, accents fold."""

from __future__ import annotations

import pytest

from kb.config import Settings
from kb.index import SearchIndex
from kb.ingest import sync

DOCS = {
    "linux.md": "# Linux\n\nInstall the package with apt.\n",
    "windows.md": "# Windows\n\nInstall the package with the wizard on Windows.\n",
    "rust.md": "# Rust\n\nRust has a borrow checker.\n",
    "cafe.md": "# Café\n\nThe café on the Straße serves coffee.\n",
    "cafeteria.md": "# Lunch\n\nThe cafeteria opens at noon.\n",
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> SearchIndex:
    tmp = tmp_path_factory.mktemp("query-language")
    root = tmp / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text)
    settings = Settings(root=root, index_dir=tmp / "idx", jobs=1)
    index = SearchIndex.open(settings.index_dir, settings.root)
    sync(settings, index)
    return index


def paths(index: SearchIndex, query: str) -> set[str]:
    return {hit.path for hit in index.search(query, limit=20).results}


@pytest.mark.parametrize("query", ["install AND NOT windows", "install -windows", "install NOT windows"])
def test_a_negation_excludes_what_it_names(index: SearchIndex, query: str) -> None:
    assert paths(index, query) == {"linux.md"}


@pytest.mark.parametrize("query", ["NOT rust", "-rust"])
def test_a_negation_alone_means_everything_else(index: SearchIndex, query: str) -> None:
    assert paths(index, query) == set(DOCS) - {"rust.md"}


def test_a_negated_phrase_excludes_documents_holding_it(index: SearchIndex) -> None:
    assert paths(index, 'install NOT "the wizard"') == {"linux.md"}


def test_a_prefix_matches_every_word_it_starts(index: SearchIndex) -> None:
    assert paths(index, "caf*") == {"cafe.md", "cafeteria.md"}
    assert paths(index, "cafet*") == {"cafeteria.md"}


@pytest.mark.parametrize(
    ("query", "found"), [("cafe", "cafe.md"), ("strasse", "cafe.md"), ("café", "cafe.md")]
)
def test_accents_fold_both_ways(index: SearchIndex, query: str, found: str) -> None:
    assert found in paths(index, query)


def test_a_hyphenated_word_is_not_a_negation(index: SearchIndex) -> None:
    assert "rust.md" in paths(index, "borrow-checker rust")
