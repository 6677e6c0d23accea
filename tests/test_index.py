"""The Tantivy index: opening, search semantics, fetch by id, stats."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kb.config import Settings
from kb.errors import ConfigError, DocumentNotFoundError, IndexMismatchError, QueryError
from kb.index import SCHEMA_VERSION, SearchIndex
from kb.ingest import sync
from kb.models import DocId

DOCS = {
    "guide/install.md": (
        "---\ntitle: Installing\ntags: [setup, Guide]\n---\n# Install\n\nGet the package.\n\n"
        "## Linux\n\nUse apt on Debian and a virtual environment for Python.\n\n"
        "## Windows\n\nUse the installer wizard.\n"
    ),
    "notes/cooking.md": "# Soup\n\nBoil the potatoes with leeks. A simple winter soup.\n",
    "notes/garden.txt": "Tomatoes need sun.\n\nWater the leeks every morning in summer.\n",
    "ref/glossary.html": "<html><head><title>Glossary</title></head><body><h1>Terms</h1>"
    "<h2>Stemming</h2><p>Reducing words to their root form.</p></body></html>",
}


def build(root: Path, files: dict[str, str] = DOCS) -> SearchIndex:
    for rel, text in files.items():
        path = root / "docs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    settings = Settings(root=root / "docs", index_dir=root / "idx")
    index = SearchIndex.open(settings.index_dir, settings.root)
    sync(settings, index)
    return index


@pytest.fixture
def index(tmp_path: Path) -> SearchIndex:
    return build(tmp_path)


def test_a_long_natural_language_question_still_ranks_the_right_passage_first(index: SearchIndex) -> None:
    results = index.search(
        "how should I install this package on my Debian Linux machine with a virtual environment?"
    )
    assert results.results, "an OR query of many words must not come back empty"
    assert results.results[0].id == "guide/install.md#linux"
    assert results.results[0].heading == "Install > Linux"


def test_each_document_appears_once_with_its_best_passage(index: SearchIndex) -> None:
    results = index.search("install")
    paths = [hit.path for hit in results.results]
    assert paths.count("guide/install.md") == 1


def test_all_passages_lists_every_matching_section(index: SearchIndex) -> None:
    results = index.search("install", all_passages=True)
    ids = {hit.id for hit in results.results}
    assert {"guide/install.md#install", "guide/install.md#linux", "guide/install.md#windows"} <= ids


def test_stemming_matches_other_forms_of_a_word(index: SearchIndex) -> None:
    assert [h.path for h in index.search("boiling").results] == ["notes/cooking.md"]


def test_snippets_mark_the_matched_words(index: SearchIndex) -> None:
    hit = index.search("leeks soup").results[0]
    assert hit.path == "notes/cooking.md"
    assert "**leeks**" in hit.snippet
    assert "**soup**" in hit.snippet.lower()


def test_phrase_and_boolean_queries_still_work(index: SearchIndex) -> None:
    assert [h.path for h in index.search('"winter soup"').results] == ["notes/cooking.md"]
    assert index.search('"soup winter"').results == []
    assert [h.path for h in index.search("leeks AND tomatoes").results] == ["notes/garden.txt"]
    assert [h.path for h in index.search("leeks NOT tomatoes").results] == ["notes/cooking.md"]


def test_field_queries_search_one_field(index: SearchIndex) -> None:
    assert [h.path for h in index.search("title:glossary").results] == ["ref/glossary.html"]


@pytest.mark.parametrize(
    "query", ["leeks AND (soup", '"unclosed phrase', "error: leeks", "((((", "AND OR NOT"]
)
def test_input_that_does_not_parse_falls_back_instead_of_failing(index: SearchIndex, query: str) -> None:
    results = index.search(query)
    assert results.query == query
    if "leeks" in query:
        assert "notes/cooking.md" in [h.path for h in results.results]


def test_an_empty_or_overlong_query_is_a_query_error(index: SearchIndex) -> None:
    with pytest.raises(QueryError, match="empty"):
        index.search("   ")
    with pytest.raises(QueryError, match="limit"):
        index.search("x" * 5000)


def test_a_typo_finds_approximate_matches_and_says_so(index: SearchIndex) -> None:
    results = index.search("potatoez")
    assert results.approximate is True
    assert [h.path for h in results.results] == ["notes/cooking.md"]
    assert index.search("potatoes").approximate is False


def test_filters_restrict_by_path_format_tags_and_time(index: SearchIndex) -> None:
    assert {h.path for h in index.search("leeks", path="notes").results} == {
        "notes/cooking.md",
        "notes/garden.txt",
    }
    assert [h.path for h in index.search("leeks", path="notes/*.txt").results] == ["notes/garden.txt"]
    assert [h.path for h in index.search("leeks", path="**/*.md").results] == ["notes/cooking.md"]
    assert [h.path for h in index.search("leeks", formats=["txt"]).results] == ["notes/garden.txt"]
    assert [h.path for h in index.search("install", tags=["GUIDE"]).results] == ["guide/install.md"]
    assert index.search("leeks", modified_after=datetime(2100, 1, 1, tzinfo=UTC)).results == []


def test_a_path_filter_with_dot_dot_is_a_query_error(index: SearchIndex) -> None:
    with pytest.raises(QueryError, match="path filter"):
        index.search("leeks", path="../notes")


def test_paging_walks_through_documents_without_repeats(index: SearchIndex) -> None:
    first = index.search("the OR leeks OR install OR words", limit=2)
    assert len(first.results) == 2
    assert first.next_offset == 2
    second = index.search("the OR leeks OR install OR words", limit=2, offset=2)
    assert not {h.path for h in first.results} & {h.path for h in second.results}


def test_get_returns_a_whole_document_or_one_passage(index: SearchIndex) -> None:
    doc = index.get(DocId("guide/install.md"))
    assert doc.title == "Installing"
    assert [s.fragment for s in doc.sections] == ["install", "linux", "windows"]
    assert doc.tags == ["guide", "setup"]
    passage = index.get(DocId("guide/install.md", "windows"))
    assert [s.fragment for s in passage.sections] == ["windows"]
    assert "wizard" in passage.sections[0].text


def test_get_of_an_unknown_id_says_to_search(index: SearchIndex) -> None:
    with pytest.raises(DocumentNotFoundError, match="search"):
        index.get(DocId("nope.md"))
    with pytest.raises(DocumentNotFoundError):
        index.get(DocId("guide/install.md", "nope"))


def test_a_path_containing_a_hash_is_still_one_document(tmp_path: Path) -> None:
    index = build(tmp_path, {"c#/notes.md": "# Sharp\n\nDelegates and events.\n"})
    assert index.get(DocId("c#/notes.md")).title == "Sharp"
    assert index.search("delegates").results[0].id == "c#/notes.md#sharp"


def test_stats_count_documents_and_sections(index: SearchIndex) -> None:
    stats = index.stats()
    assert stats.documents == 4
    assert stats.sections == 7  # install.md 3 headings, cooking.md 1, garden.txt 1 (short), glossary 2
    assert stats.schema_version == SCHEMA_VERSION
    assert stats.size_bytes > 0
    assert stats.last_indexed is not None


@pytest.mark.parametrize("per_aggregation", [50_000, 3, 1])
def test_paths_and_stats_come_from_the_columns_in_parts_and_leave_removed_files_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_aggregation: int
) -> None:
    """A terms aggregation answers a bounded number of paths: a large index is read in parts
    (here forced down to 3 and 1 paths a part), and what a sync removed is never listed."""
    files = {f"notes/n{i:02d}.md": f"# Note {i}\n\nThe heron {i} waits.\n" for i in range(40)}
    index = build(tmp_path, {**DOCS, **files})
    for gone in ("notes/n07.md", "notes/n31.md", "notes/garden.txt"):
        (tmp_path / "docs" / gone).unlink()
    sync(Settings(root=tmp_path / "docs", index_dir=tmp_path / "idx"), index)
    monkeypatch.setattr("kb.index._index.PATHS_PER_AGGREGATION", per_aggregation)
    on_disk = sorted(p.relative_to(tmp_path / "docs").as_posix() for p in (tmp_path / "docs").rglob("*.*"))
    assert index.document_paths() == on_disk and len(on_disk) == 41
    stats = index.file_stats()
    assert sorted(stats) == on_disk
    for rel, (size, mtime_ns) in stats.items():
        st = (tmp_path / "docs" / rel).stat()
        assert (size, mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert sorted(index.file_stats(under=["notes"])) == [p for p in on_disk if p.startswith("notes/")]
    install = "guide/install.md"
    assert index.file_stats(under=["notes/n07.md", "guide"]) == {install: stats[install]}
    many = [f"notes/n{i:02d}.md" for i in range(0, 40, 2)] + [f"elsewhere/{i}" for i in range(60)]
    assert sorted(index.file_stats(under=many)) == [p for p in many if p in stats]  # filtered, not a regex


def test_an_index_built_for_another_root_is_refused_with_a_hint_to_rebuild(tmp_path: Path) -> None:
    index = build(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        SearchIndex.open(index.index_dir, other)
    rebuilt = SearchIndex.open(index.index_dir, other, rebuild=True)
    assert rebuilt.stats().documents == 0
    assert rebuilt.root == other.resolve()


def test_opening_without_a_root_needs_an_existing_index(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kb index"):
        SearchIndex.open(tmp_path / "none")


def test_a_folder_holding_other_files_is_never_taken_over(tmp_path: Path) -> None:
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        SearchIndex.open(tmp_path / "idx", tmp_path)
    assert (tmp_path / "idx" / "precious.txt").read_text() == "keep me"


def test_the_repository_index_folder_layout_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    folder.mkdir()
    (folder / "README.md").write_text("derived data")
    (folder / ".gitignore").write_text("*\n")
    SearchIndex.open(folder, tmp_path)
    assert (folder / "README.md").exists()


def test_a_second_writer_waits_then_reports_who_holds_the_lock(index: SearchIndex) -> None:
    from kb.errors import IndexLockedError

    other = SearchIndex.open(index.index_dir)
    with index.batch(wait=0), pytest.raises(IndexLockedError) as caught, other.batch(wait=0.2):
        pass
    assert f"pid {os.getpid()}" in str(caught.value)
    with other.batch(wait=0):
        pass


@pytest.mark.parametrize("query", ["title:*", "body:*", "heading:* AND leeks"])
def test_a_query_the_engine_refuses_to_run_searches_its_words_instead(index: SearchIndex, query: str) -> None:
    found = index.search(query)
    assert found.total >= 0
    if "leeks" in query:
        assert {h.path for h in found.results} == {"notes/cooking.md", "notes/garden.txt"}


def test_an_index_of_an_older_schema_is_rebuilt_by_a_command_that_knows_the_root(tmp_path: Path) -> None:
    index = build(tmp_path)
    sidecar = index.index_dir / "kb-index.json"
    sidecar.write_text(
        sidecar.read_text().replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 1')
    )
    index.close()
    with pytest.raises(IndexMismatchError, match="schema version 1"):
        SearchIndex.open(index.index_dir)  # kb search / kb status: no root to rebuild from
    reopened = SearchIndex.open(index.index_dir, tmp_path / "docs")  # kb index / kb serve
    assert reopened.stats().documents == 0
    sync(Settings(root=tmp_path / "docs", index_dir=index.index_dir), reopened)
    assert reopened.stats().documents == 4


def test_a_fifo_in_place_of_meta_json_does_not_stall_the_look_for_commits(tmp_path: Path) -> None:
    # The look runs on a server's event loop before every search: opening a FIFO would wait there
    # for a writer that never comes.
    index = build(tmp_path / "docs")
    before = index.generation()
    meta = index.index_dir / "meta.json"
    meta.unlink()
    os.mkfifo(meta)
    looked: list[tuple[int, ...]] = []
    looking = threading.Thread(target=lambda: looked.append(index.generation()), daemon=True)
    looking.start()
    looking.join(10)
    assert looked == [()], "the look for a commit stalled on a FIFO"
    assert before != ()


def test_passages_come_in_an_order_that_does_not_depend_on_the_commits(tmp_path: Path) -> None:
    # The encoder's vectors depend a little on the passages encoded beside them: two builds of one
    # folder must hand the embedder its passages in the same order however their commits fell.
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(60):
        (root / f"n{i:02d}.md").write_text(f"# Note {i}\n\nFirst part {i}.\n\n## More\n\nSecond part {i}.\n")
    orders = []
    for name, every in (("one-commit", 10_000), ("many-commits", 1)):
        settings = Settings(root=root, index_dir=tmp_path / name, jobs=1, commit_every_files=every)
        index = SearchIndex.open(settings.index_dir, settings.root)
        sync(settings, index)
        orders.append([key for key, _ in index.passages(lambda _key: True)])
        index.close()
    assert len(orders[0]) == 120 and orders[0] == orders[1]
