"""Document resources, the paged listing and kb://status, in both protocol eras."""

from __future__ import annotations

import base64
import json

import pytest
from mcp import MCPError
from mcp_helpers import INSTALL_MD, MODES, anyio_backend, connected, index_now, make_settings  # noqa: F401
from mcp_types import INVALID_PARAMS

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_markdown_resource_is_the_file_as_written_with_its_mime_type(settings, mode):
    async with connected(settings, mode) as client:
        result = await client.read_resource("kb://doc/guide/install.md")
    (contents,) = result.contents
    assert contents.text == INSTALL_MD
    assert contents.mime_type == "text/markdown"


@pytest.mark.parametrize(
    ("uri", "mime_type"), [("kb://doc/notes.txt", "text/plain"), ("kb://doc/ref%20page.html", "text/html")]
)
async def test_text_and_html_resources_carry_their_own_mime_types(settings, uri, mime_type):
    async with connected(settings) as client:
        result = await client.read_resource(uri)
    assert result.contents[0].mime_type == mime_type


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "uri",
    ["kb://doc/missing.md", "kb://doc/.secret.md", "kb://doc/guide/../../etc/passwd", "kb://doc/%2e%2e/x.md"],
)
async def test_a_missing_or_refused_document_is_a_resource_not_found_error(settings, mode, uri):
    async with connected(settings, mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource(uri)
    assert caught.value.error.code == INVALID_PARAMS


async def test_status_resource_reports_index_statistics_as_json(settings):
    # Lexical only: vectors written by the embedder between the searches would make each a miss.
    async with connected(settings.model_copy(update={"semantic": False})) as client:
        for query in ("install", "install", "install", "linux"):  # the repeats come from the cache
            await client.call_tool("search", {"query": query})
        result = await client.read_resource("kb://status")
    status = json.loads(result.contents[0].text)
    assert result.contents[0].mime_type == "application/json"
    assert status["documents"] == 3 and status["syncing"] is False
    assert status["last_sync"]["unchanged"] == 3
    cache = status["search_cache"]  # a merge of the index's segments after the sync may end amid the searches
    assert cache["hits"] + cache["misses"] == 4 and cache["hits"] >= 1 and cache["entries"] <= cache["misses"]


@pytest.mark.parametrize("mode", MODES)
async def test_resource_list_describes_every_document(settings, mode):
    async with connected(settings, mode) as client:
        listing = await client.list_resources()
    by_uri = {resource.uri: resource for resource in listing.resources}
    assert set(by_uri) == {
        "kb://status",
        "kb://doc/guide/install.md",
        "kb://doc/notes.txt",
        "kb://doc/ref%20page.html",
    }
    install = by_uri["kb://doc/guide/install.md"]
    assert install.title == "Install guide" and install.mime_type == "text/markdown"
    assert install.size == len(INSTALL_MD.encode()) and install.annotations.last_modified.endswith("Z")
    assert listing.next_cursor is None


@pytest.mark.parametrize("mode", MODES)
async def test_resource_list_pages_with_a_cursor(tmp_path, mode):
    settings = make_settings(tmp_path)
    for n in range(120):
        (settings.root / f"n{n:03}.txt").write_text(f"note number {n}\n")
    index_now(settings)
    uris: list[str] = []
    pages = 0
    async with connected(settings, mode) as client:
        cursor = None
        while True:
            page = await client.list_resources(cursor=cursor)
            pages += 1
            assert len(page.resources) <= 100
            uris += [resource.uri for resource in page.resources]
            cursor = page.next_cursor
            if cursor is None:
                break
    assert pages == 2
    assert len(uris) == len(set(uris)) == 1 + 3 + 120
    assert uris[0] == "kb://status" and uris[1:] == sorted(uris[1:])


async def test_the_listing_follows_a_commit_made_by_another_process(settings):
    async with connected(settings, synced=True) as client:
        before = [r.uri for r in (await client.list_resources()).resources]
        (settings.root / "later.md").write_text("# Later\n\nwritten by a cron job\n")
        (settings.root / "notes.txt").unlink()
        index_now(settings)  # another writer, as `kb index` from cron would be
        after = [r.uri for r in (await client.list_resources()).resources]
    assert "kb://doc/notes.txt" in before and "kb://doc/notes.txt" not in after
    assert "kb://doc/later.md" in after and "kb://doc/later.md" not in before


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(), "eyJvIjogLTF9"],
)
async def test_resource_list_with_a_bad_cursor_is_invalid_params(settings, cursor):
    async with connected(settings) as client:
        with pytest.raises(MCPError) as caught:
            await client.list_resources(cursor=cursor)
    assert caught.value.error.code == INVALID_PARAMS
    assert "list again" in caught.value.error.message


async def test_the_document_template_is_listed(settings):
    async with connected(settings) as client:
        templates = (await client.list_resource_templates()).resource_templates
    assert [template.uri_template for template in templates] == [
        "kb://doc/{+path}",
        "kb://doc/{+path}#{fragment}",  # a passage: the url of a search result
    ]
