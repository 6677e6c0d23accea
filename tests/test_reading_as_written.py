"""Reading as written: fetch and the passage resources serve Markdown as the file has it, pages and
snippets end between words, and every search result's url reads back through resources/read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError
from mcp_helpers import MODES, anyio_backend, connected, index_now  # noqa: F401

from kb.config import Settings
from kb.index import SearchIndex
from kb.ingest import sync

pytestmark = pytest.mark.anyio

SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "sample_docs"

# As in the Rust book's chapter 1.3: the command sits in a ```console fence the stripped text loses.
CARGO_MD = """\
# Hello, Cargo!

Cargo is Rust's build system and package manager.

## Creating a Project with Cargo

Let's create a new project using Cargo. Navigate back to your *projects* directory and
run the following:

```console
$ cargo new hello_cargo
$ cd hello_cargo
```

| Command | What it does |
|---|---|
| `cargo build` | builds the **project** |

- see [the Cargo book](https://doc.rust-lang.org/cargo/) for more
- or run `cargo --help`


## Building and Running a Cargo Project

Now let's look at what's different when we build and run the program.
"""
PASSAGE = CARGO_MD[CARGO_MD.index("## Creating") : CARGO_MD.index("\n\n\n## Building")]


@pytest.fixture
def docs(tmp_path: Path) -> Settings:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "cargo.md").write_text(CARGO_MD)
    # A Windows editor's file: cp1252 and CRLF line ends.
    (root / "windows.md").write_bytes("# Café\r\n\r\nNaïve “quotes”.\r\n".encode("cp1252"))
    (root / "words.md").write_text("# Words\n\n" + " ".join(f"word{n}" for n in range(400)) + "\n")
    (root / "page.html").write_text("<title>Page</title><h1>Top</h1><p>Words &amp; more.</p>")
    (root / "url.md").write_text("# Link\n\nhttps://example.org/" + "x" * 600 + "\n")
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=1, watch=False)
    index_now(settings)
    return settings


async def fetch(client: object, id: str, **arguments: object) -> dict[str, object]:
    result = await client.call_tool("fetch", {"id": id, **arguments})  # type: ignore[attr-defined]
    assert not result.is_error, result.content
    return result.structured_content  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", MODES)
async def test_fetch_of_a_markdown_passage_returns_its_lines_as_written(docs: Settings, mode: str) -> None:
    async with connected(docs, mode) as client:
        data = await fetch(client, "cargo.md#creating-a-project-with-cargo")
    assert data["text"] == PASSAGE
    assert "run the following:\n\n```console\n$ cargo new hello_cargo\n$ cd hello_cargo\n```" in data["text"]
    assert "| `cargo build` | builds the **project** |" in data["text"]
    assert "[the Cargo book](https://doc.rust-lang.org/cargo/)" in data["text"]
    assert "stale" not in data["metadata"]


async def test_the_index_still_holds_the_stripped_text(docs: Settings) -> None:
    async with connected(docs) as client:
        found = await client.call_tool("search", {"query": '"cargo new hello_cargo"'})
    words = found.structured_content["results"][0]["snippet"].replace("**", "")
    assert "$ cargo new hello_cargo" in words and "your projects directory" in words
    assert "`" not in words and "|---|" not in words


async def test_fetch_of_a_whole_markdown_file_is_the_file_as_decoded(docs: Settings) -> None:
    async with connected(docs) as client:
        assert (await fetch(client, "cargo.md"))["text"] == CARGO_MD
        assert (await fetch(client, "windows.md"))["text"] == "# Café\n\nNaïve “quotes”.\n"


async def test_a_passage_an_edit_moved_is_read_from_its_new_lines(docs: Settings) -> None:
    async with connected(docs) as client:
        file = docs.root / "cargo.md"
        file.write_text("# Hello, Cargo!\n\nA new paragraph.\n\nAnd another one.\n" + CARGO_MD[16:])
        data = await fetch(client, "cargo.md#creating-a-project-with-cargo")
    assert data["text"] == PASSAGE and "stale" not in data["metadata"]


async def test_a_passage_changed_since_indexing_is_served_as_indexed_and_marked_stale(docs: Settings) -> None:
    async with connected(docs) as client:
        indexed = docs.root / "cargo.md"
        indexed.write_text(CARGO_MD.replace("hello_cargo", "goodbye_cargo"))
        os.utime(indexed, ns=(1, 1))  # whatever the clock's resolution, the stat differs
        data = await fetch(client, "cargo.md#creating-a-project-with-cargo")
    assert data["metadata"]["stale"] is True
    assert "hello_cargo" in data["text"] and "```" not in data["text"]  # the indexed, stripped text


@pytest.mark.parametrize("max_chars", [37, 100, 1000])
async def test_fetch_pages_end_between_words_and_reassemble_the_text(docs: Settings, max_chars: int) -> None:
    async with connected(docs) as client:
        whole = (await fetch(client, "words.md"))["text"]
        pages, offset = [], 0
        while offset is not None:
            data = await fetch(client, "words.md", offset=offset, max_chars=max_chars)
            pages.append(data["text"])
            offset = data["next_offset"]
    assert "".join(pages) == whole
    assert all(page[-1].isspace() and len(page) <= max_chars for page in pages[:-1])
    assert all(page[0].startswith("w") for page in pages[1:])  # each page starts at a word


async def test_a_word_longer_than_a_page_is_cut_at_the_page(docs: Settings) -> None:
    async with connected(docs) as client:
        data = await fetch(client, "url.md", offset=20, max_chars=100)
    assert len(data["text"]) == 100 and data["next_offset"] == 120


def test_snippets_start_and_end_on_whole_words(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    # Tantivy cuts fragments at its own tokens: the best one would start inside KB_INDEX_DIR.
    filler = " ".join(f"filler{n:03d}" for n in range(23))
    (root / "env.txt").write_text(f"{filler} set KB_INDEX_DIR=/srv/index, then restart.\n")
    index = SearchIndex.open(tmp_path / "index", root)
    try:
        sync(Settings(root=root, index_dir=tmp_path / "index", jobs=1), index)
        snippet = index.search("dir restart").results[0].snippet
    finally:
        index.close()
    assert "KB_INDEX_**DIR**=/srv/index," in snippet
    assert snippet.endswith("**restart**.")


@pytest.mark.parametrize("mode", MODES)
async def test_every_search_result_url_reads_back_its_passage(tmp_path: Path, mode: str) -> None:
    root = Path(shutil.copytree(SAMPLE_DOCS, tmp_path / "docs"))
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=1, watch=False)
    index_now(settings)
    seen: set[str] = set()
    async with connected(settings, mode) as client:
        for query in ("install linux", "fragment", "rebuild index", "watcher", "token"):
            found = await client.call_tool("search", {"query": query, "limit": 10})
            for hit in found.structured_content["results"]:
                assert hit["url"].startswith("kb://doc/") and "#" in hit["url"]
                read = await client.read_resource(hit["url"])
                fetched = await fetch(client, hit["id"], max_chars=100_000)
                assert [c.text for c in read.contents] == [fetched["text"]], hit["url"]
                seen.add(hit["path"].rsplit(".", 1)[-1])
    assert {"md", "txt", "html", "pdf"} <= seen


async def test_a_passage_url_is_markdown_as_written_and_other_passages_are_plain_text(docs: Settings) -> None:
    async with connected(docs) as client:
        md = (await client.read_resource("kb://doc/cargo.md#creating-a-project-with-cargo")).contents[0]
        whole = (await client.read_resource("kb://doc/cargo.md#")).contents[0]
        html = (await client.read_resource("kb://doc/page.html#top")).contents[0]
    assert (md.mime_type, md.text) == ("text/markdown", PASSAGE)
    assert whole.text == CARGO_MD
    assert (html.mime_type, html.text) == ("text/plain", "# Top\nWords & more.")


async def test_a_passage_url_that_names_no_passage_is_an_unknown_resource(docs: Settings) -> None:
    async with connected(docs) as client:
        with pytest.raises(MCPError, match="nope"):
            await client.read_resource("kb://doc/cargo.md#nope")
        with pytest.raises(MCPError):
            await client.read_resource("kb://doc/.hidden.md#intro")


async def test_the_templates_document_the_passage_form(docs: Settings) -> None:
    async with connected(docs) as client:
        templates = (await client.list_resource_templates()).resource_templates
    by_name = {t.name: t for t in templates}
    assert by_name["passage"].uri_template == "kb://doc/{+path}#{fragment}"
    assert "#{fragment}" in (by_name["document"].description or "")
