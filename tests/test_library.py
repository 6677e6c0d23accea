"""The document service: ids read in one place, confined reads, and one decoding for every read path."""

from __future__ import annotations

import codecs
import os
import threading
import time
from pathlib import Path

import pytest
from mcp_helpers import anyio_backend, connected, index_now  # noqa: F401

from kb.config import Settings
from kb.errors import DocumentNotFoundError, PathRefusedError
from kb.index import IndexBatch, SearchIndex
from kb.library import Library
from kb.models import DocId, Document, ManifestEntry, Section

# The same words, written by a Windows editor (cp1252) and by a UTF-16 one (with its BOM).
WORDS = "“Quoted” café \u2013 naïve"  # cp1252 has all four
ENCODED = {
    "windows.txt": WORDS.encode("cp1252"),
    "wide.md": codecs.BOM_UTF16_LE + f"# Wide\n\n{WORDS}\n".encode("utf-16-le"),
}


@pytest.fixture
def library(tmp_path: Path) -> Library:
    root = tmp_path / "docs"
    (root / "c#").mkdir(parents=True)
    (root / "c#" / "notes.md").write_text("# Sharp\n\nDelegates and events.\n")
    (root / "guide.md").write_text("# Guide\n\n## Setup\n\nRun setup.\n")
    (root / ".hidden.md").write_text("# Hidden\n")
    for name, data in ENCODED.items():
        (root / name).write_bytes(data)
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=1, watch=False)
    index_now(settings)
    library = Library.open(settings)
    library.synced.set()  # indexed above: no startup sync is running
    return library


def test_an_id_reads_as_a_whole_path_first_then_as_path_and_passage() -> None:
    assert DocId.readings("guide.md") == [DocId("guide.md")]
    assert DocId.readings("guide.md#setup") == [DocId("guide.md#setup"), DocId("guide.md", "setup")]
    assert DocId.readings("c#/notes.md#sharp")[1] == DocId("c#/notes.md", "sharp")
    assert DocId.readings("trailing#") == [DocId("trailing#")]
    assert str(DocId("c#/notes.md", "sharp")) == "c#/notes.md#sharp"


def test_load_finds_a_passage_and_a_document_whose_path_holds_a_hash(library: Library) -> None:
    doc_id, passage = library.load("guide.md#setup")
    assert doc_id == DocId("guide.md", "setup")
    assert [s.fragment for s in passage.sections] == ["setup"]
    doc_id, doc = library.load("c#/notes.md")
    assert (doc_id, doc.title) == (DocId("c#/notes.md"), "Sharp")
    assert library.load("c#/notes.md#sharp")[0] == DocId("c#/notes.md", "sharp")


def test_load_refuses_hidden_and_unknown_ids_with_what_to_do(library: Library) -> None:
    with pytest.raises(PathRefusedError, match="hidden"):
        library.load(".hidden.md")
    with pytest.raises(DocumentNotFoundError, match="search"):
        library.load("guide.md#nope")
    with pytest.raises(DocumentNotFoundError):
        library.load("missing.md")


@pytest.mark.parametrize("name", sorted(ENCODED))
def test_read_text_decodes_as_the_extractors_do(library: Library, name: str) -> None:
    text, _ = library.read_text(name)
    assert WORDS in text
    _, doc = library.load(name)
    assert WORDS in doc.sections[-1].text


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(ENCODED))
async def test_fetch_resources_and_prompts_read_a_file_in_the_same_words(library: Library, name: str) -> None:
    library.close()
    async with connected(library.settings) as client:
        fetched = await client.call_tool("fetch", {"id": name})
        read = await client.read_resource(f"kb://doc/{name}")
        prompt = await client.get_prompt("summarize_document", {"path": name})
    assert not fetched.is_error
    assert WORDS in (fetched.structured_content or {})["text"]
    assert WORDS in getattr(read.contents[0], "text", "")
    embedded = prompt.messages[0].content
    assert WORDS in getattr(getattr(embedded, "resource", None), "text", "")


def test_close_waits_for_the_startup_sync_and_stops(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nalpha\n")
    library = Library.open(Settings(root=root, index_dir=tmp_path / "index", jobs=1, watch=True))
    library.start()
    assert library.synced.wait(20) and library.watching.wait(20)
    assert library.status()["watcher"] == "watching"
    assert [h.path for h in library.search("alpha").results] == ["a.md"]
    library.close()
    assert library.watcher is not None and library.watcher.state == "stopped"


def test_a_repeated_search_is_answered_again_until_a_commit_changes_the_index(library: Library) -> None:
    settings = library.settings
    assert library.searched_lately("setup") is None, "never searched"
    first = library.search("setup")
    again = library.search("setup")
    assert again.results is first.results, "the repeat should come from the cache"
    lately = library.searched_lately("setup")
    assert lately is not None and lately.results is first.results
    assert library.search("setup", limit=1).results is not first.results, "other options, other results"
    (settings.root / "more.md").write_text("# More\n\nSetup again, and setup once more.\n")
    index_now(settings)  # another handle on the index commits, as another process would
    assert library.searched_lately("setup") is None, "a commit not taken in yet: only a search may"
    after = library.search("setup")
    assert sorted(h.path for h in after.results) == ["guide.md", "more.md"]
    lately = library.searched_lately("setup")
    assert lately is not None and lately.results is after.results
    assert library.status()["search_cache"] == {"entries": 3, "hits": 3, "misses": 3}


def test_searches_repeated_while_commits_land_see_each_commit_once_it_is_made(library: Library) -> None:
    """One thread repeats a search (cache hits, mostly) while the test commits a file at a time through
    another handle: every search made after a commit returned counts that commit's file."""
    settings = library.settings
    committed = 0  # files with the word, as of the last commit that returned
    stop = threading.Event()
    stale: list[tuple[int, int]] = []
    searches = 0

    def repeat() -> None:
        nonlocal searches
        while not stop.is_set():
            floor = committed
            found = library.search("walrus", limit=50).total
            searches += 1
            if found < floor:
                stale.append((found, floor))

    thread = threading.Thread(target=repeat)
    thread.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            (settings.root / f"walrus-{committed}.md").write_text(f"# Walrus {committed}\n\nA walrus.\n")
            index_now(settings)
            committed += 1
            assert library.search("walrus", limit=50).total == committed
    finally:
        stop.set()
        thread.join(10)
    assert not stale, f"searches missed a commit already made (found, made): {stale[:5]}"
    assert committed >= 5 and searches > committed, (committed, searches)


def test_paths_once_listed_are_read_again_before_clients_hear_of_a_commit(tmp_path: Path) -> None:
    # Told of a change, a client lists again at once: the paths are ready for it, not read then.
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nalpha\n")
    library = Library.open(Settings(root=root, index_dir=tmp_path / "index", jobs=1, rescan_seconds=3600))
    ready_when_told: list[list[str] | None] = []
    told = threading.Event()

    def on_commit(_report: object) -> None:
        listed = library._paths
        ready_when_told.append(listed[1] if listed and listed[0] == library.index.generation() else None)
        told.set()

    library.start(on_commit=on_commit)
    try:
        assert library.watching.wait(20)
        assert library._paths is not None, "the startup sync reads them once"
        assert library.document_paths() == ["a.md"]
        (root / "b.md").write_text("# B\n\nbeta\n")
        assert told.wait(30), "the watcher never committed b.md"
        assert ready_when_told[0] == ["a.md", "b.md"]
    finally:
        library.close()


def _commit_word(batch: IndexBatch, word: str) -> None:
    doc = Document(path="w.md", format="md", title="W", sections=[Section(fragment="w", text=f"{word} text")])
    batch.put(doc, ManifestEntry(path="w.md", size=10, mtime_ns=1, sha256="0" * 64, format="md", title="W"))
    batch.commit()


def test_a_commit_whose_meta_json_stats_as_an_earlier_one_is_still_seen(library: Library) -> None:
    """Two commits within one tick of a coarse file-system clock: meta.json, renamed over at each
    commit, can come back with an earlier one's inode (freed by the renames), size and time. Made
    here as the file system would: the last commit's meta.json is written into the earlier file
    (kept by a hard link) and renamed back over, with the earlier time. Searches still see it."""
    meta = library.settings.index_dir / "meta.json"
    kept = meta.with_name("meta-kept")
    other = SearchIndex.open(library.settings.index_dir)  # another process's writer, as it were
    try:
        with other.batch() as batch:
            _commit_word(batch, "warm")  # meta.json's size settles after the first commits
            _commit_word(batch, "alpha")
            first = os.stat(meta)
            os.link(meta, kept)
            assert [h.path for h in library.search("alpha").results] == ["w.md"]
            _commit_word(batch, "bravo")
            _commit_word(batch, "delta")
            last = meta.read_bytes()
            if len(last) != first.st_size:
                pytest.skip("meta.json changed size: its stat alone tells the commits apart")
            kept.write_bytes(last)
            os.replace(kept, meta)
            os.utime(meta, ns=(first.st_atime_ns, first.st_mtime_ns))
            assert (os.stat(meta).st_ino, os.stat(meta).st_size) == (first.st_ino, first.st_size)
            assert library.searched_lately("alpha") is None, "a commit is waiting to be taken in"
            assert library.search("alpha").results == [], "answered from before the last commits"
    finally:
        other.close()


def test_status_while_commits_replace_the_index_files(library: Library) -> None:
    """Commits create and delete the index's files (segments, meta.json renamed over): a status read
    meanwhile sizes what is there, and never fails on a file gone between listing and stat."""
    other = SearchIndex.open(library.settings.index_dir)
    stop = threading.Event()
    failures: list[BaseException] = []
    reads = 0

    def read_status() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                library.status()
                reads += 1
            except Exception as exc:  # the failure this test is about
                failures.append(exc)
                return

    thread = threading.Thread(target=read_status)
    thread.start()
    try:
        with other.batch() as batch:
            deadline = time.monotonic() + 2.0
            word = 0
            while time.monotonic() < deadline and not failures:
                _commit_word(batch, f"word{word}")
                word += 1
    finally:
        stop.set()
        thread.join(10)
        other.close()
    assert not failures, f"status failed after {reads} reads: {failures[0]!r}"
    assert reads > 10 and word > 10, (reads, word)
