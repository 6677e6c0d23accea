"""The new formats through a real sync (worker processes, the time budget) and a real MCP client:
good files indexed, damaged ones listed under `failed` with their reason, search and fetch and
resources/read serving what was extracted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from formats_helpers import FIXTURES, corrupted, fixture, truncated, with_encryption
from mcp_helpers import anyio_backend, connected  # noqa: F401

from kb import ingest
from kb.config import Settings
from kb.index import SearchIndex

GOOD = {
    "guide.docx": "guide.libreoffice.docx",
    "guide.odt": "guide.libreoffice.odt",
    "deck.pptx": "deck.libreoffice.pptx",
    "book.epub": "guide.epub",
    "analysis.ipynb": "notebook.ipynb",
    "guide.rst": "guide.rst",
}


def _folder(root: Path) -> None:
    root.mkdir()
    for name, source in GOOD.items():
        shutil.copyfile(FIXTURES / source, root / name)
    (root / "locked.docx").write_bytes(fixture("encrypted.docx"))
    (root / "locked.odt").write_bytes(fixture("encrypted.odt"))
    (root / "half.pptx").write_bytes(truncated(fixture("deck.libreoffice.pptx")))
    (root / "broken.docx").write_bytes(corrupted(fixture("guide.pandoc.docx"), "word/document.xml"))
    drm = with_encryption(fixture("guide.epub"), "http://www.w3.org/2001/04/xmlenc#aes128-cbc")
    (root / "drm.epub").write_bytes(drm)
    (root / "half.ipynb").write_bytes(truncated(fixture("notebook.ipynb")))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(root=tmp_path / "docs", index_dir=tmp_path / "index", jobs=1)
    _folder(settings.root)
    return settings


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One synced folder shared by the read-only tests below."""
    tmp_path = tmp_path_factory.mktemp("formats")
    settings = Settings(root=tmp_path / "docs", index_dir=tmp_path / "index", jobs=1)
    _folder(settings.root)
    _sync(settings)
    return settings


def _sync(settings: Settings):
    index = SearchIndex.open(settings.index_dir, settings.root)
    try:
        return ingest.sync(settings, index)
    finally:
        index.close()


def test_a_sync_indexes_every_format_and_lists_each_damaged_file_with_its_reason(settings):
    report = _sync(settings)
    assert report.added == len(GOOD)
    failed = {problem.path: problem.error for problem in report.failed}
    assert failed == {
        "locked.docx": "encrypted Word document (needs a password)",
        "locked.odt": "encrypted OpenDocument text (needs a password)",
        "half.pptx": failed["half.pptx"],
        "broken.docx": failed["broken.docx"],
        "drm.epub": "DRM-encrypted EPUB book (EPUB/text/ch002.xhtml encrypted)",
        "half.ipynb": "not a notebook (not JSON)",
    }
    assert failed["half.pptx"].startswith("corrupt or truncated PowerPoint presentation")
    assert failed["broken.docx"].startswith("corrupt Word document")


def test_a_second_sync_reads_nothing_again(settings):
    _sync(settings)
    again = _sync(settings)
    assert (again.added, again.updated, again.unchanged) == (0, 0, len(GOOD))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("word", "fmt", "path", "heading", "page"),
    [
        ("zephyrine", "docx", "guide.docx", "Installing > Linux", None),
        ("zephyrine", "odt", "guide.odt", "Installing > Linux", None),
        ("zephyrine", "epub", "book.epub", "Installing > Linux", None),
        ("zephyrine", "rst", "guide.rst", "Installing > Linux", None),
        ("nightjar", "pptx", "deck.pptx", "Why lanterns", 2),
        ("kittiwake", "ipynb", "analysis.ipynb", "Brightness study > Loading the data", None),
    ],
)
async def test_search_finds_a_planted_word_in_its_section_and_fetch_returns_it(
    indexed, word, fmt, path, heading, page
):
    async with connected(indexed) as client:
        found = (await client.call_tool("search", {"query": word, "formats": [fmt]})).structured_content
        (hit,) = found["results"]
        assert (hit["path"], hit["heading"], hit.get("page")) == (path, heading, page)
        fetched = (await client.call_tool("fetch", {"id": hit["id"]})).structured_content
    assert word in fetched["text"]
    assert "#" in hit["id"]  # a passage, not the whole document


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("uri", "mime_type", "expected"),
    [
        ("kb://doc/guide.docx", "text/markdown", "## Linux\nRun the installer"),
        ("kb://doc/guide.odt", "text/markdown", "# Installing\nBefore you start"),
        ("kb://doc/book.epub", "text/markdown", "## Linux\nRun the installer"),
        ("kb://doc/analysis.ipynb", "text/markdown", "## Loading the data\nimport statistics"),
        ("kb://doc/deck.pptx", "text/plain", "--- slide 2 ---\nWhy lanterns"),
    ],
)
async def test_a_binary_document_resource_serves_its_extracted_text(indexed, uri, mime_type, expected):
    async with connected(indexed) as client:
        (contents,) = (await client.read_resource(uri)).contents
    assert contents.mime_type == mime_type
    assert expected in contents.text


@pytest.mark.anyio
async def test_an_rst_resource_is_the_file_as_written(indexed):
    async with connected(indexed) as client:
        (contents,) = (await client.read_resource("kb://doc/guide.rst")).contents
    assert contents.mime_type == "text/x-rst"
    assert contents.text == fixture("guide.rst").decode()
