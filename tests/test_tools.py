"""The search and fetch tools, end to end through an in-memory client in both protocol eras."""

from __future__ import annotations

import json

import pytest
from mcp_helpers import INSTALL_MD, MODES, anyio_backend, connected, index_now, make_settings  # noqa: F401

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_search_returns_connector_shaped_results_with_the_same_json_as_text(settings, mode):
    async with connected(settings, mode) as client:
        result = await client.call_tool("search", {"query": "kangaroo"})
    assert not result.is_error
    data = result.structured_content
    assert json.loads(result.content[0].text) == data
    assert len(result.content) == 1
    ids = [hit["id"] for hit in data["results"]]
    assert "guide/install.md#linux" in ids
    hit = data["results"][ids.index("guide/install.md#linux")]
    assert hit["url"] == "kb://doc/guide/install.md#linux"
    assert hit["path"] == "guide/install.md" and hit["title"] == "Install guide"
    assert hit["heading"] == "Install > Linux" and "page" not in hit
    assert "kangaroo" in hit["snippet"].lower() and hit["score"] > 0
    assert "next_cursor" not in data and "indexing" not in data and "approximate" not in data


async def test_search_with_a_misspelt_word_says_the_match_is_approximate(settings):
    async with connected(settings, "auto") as client:
        result = await client.call_tool("search", {"query": "kangarooo"})
    data = result.structured_content
    assert data["approximate"] is True and "nearest spellings" in data["notice"]
    assert "guide/install.md" in {hit["path"] for hit in data["results"]}
    assert data["corrections"] == {"kangarooo": ["kangaroo"]}
    assert "'kangarooo' -> kangaroo" in data["notice"]


async def test_search_tool_is_read_only_titled_and_bounded(settings):
    async with connected(settings) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    search = tools["search"]
    assert search.title and search.annotations.read_only_hint and not search.annotations.destructive_hint
    assert search.input_schema["properties"]["limit"]["maximum"] == 50
    assert search.output_schema["required"] == ["results"]
    # Items described inline: clients validate each result without resolving a $ref.
    assert "$ref" not in json.dumps(search.output_schema)
    assert search.output_schema["properties"]["results"]["items"]["properties"]["snippet"]["type"] == "string"
    assert tools["fetch"].input_schema["properties"]["max_chars"]["maximum"] == 100_000


@pytest.mark.parametrize("mode", MODES)
async def test_search_cursor_pages_through_every_result_once(settings, mode):
    seen: list[str] = []
    async with connected(settings, mode) as client:
        cursor = None
        for _ in range(5):
            args = {"query": "kangaroo", "limit": 1} | ({"cursor": cursor} if cursor else {})
            data = (await client.call_tool("search", args)).structured_content
            seen += [hit["path"] for hit in data["results"]]
            cursor = data.get("next_cursor")
            if cursor is None:
                break
    assert sorted(seen) == ["guide/install.md", "notes.txt"]


async def test_search_with_a_cursor_from_another_query_is_a_tool_error(settings):
    async with connected(settings) as client:
        first = (await client.call_tool("search", {"query": "kangaroo", "limit": 1})).structured_content
        result = await client.call_tool(
            "search", {"query": "wombat", "limit": 1, "cursor": first["next_cursor"]}
        )
        garbage = await client.call_tool("search", {"query": "kangaroo", "cursor": "%%%"})
    assert result.is_error and "without cursor" in result.content[0].text
    assert garbage.is_error and "without cursor" in garbage.content[0].text


async def test_search_filters_by_format_and_folder(settings):
    async with connected(settings) as client:
        txt = (await client.call_tool("search", {"query": "kangaroo", "formats": ["txt"]})).structured_content
        guide = (await client.call_tool("search", {"query": "kangaroo", "path": "guide/"})).structured_content
    assert [hit["path"] for hit in txt["results"]] == ["notes.txt"]
    assert {hit["path"] for hit in guide["results"]} == {"guide/install.md"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"modified_after": "last tuesday"}, "ISO date"),
        ({"path": "../outside"}, ".."),
        ({"path": "/etc"}, "relative"),
        ({"limit": 51}, "limit"),
        ({"formats": ["xlsx"]}, "formats"),
    ],
)
async def test_search_with_bad_arguments_is_a_tool_error_saying_what_to_fix(settings, args, message):
    async with connected(settings) as client:
        result = await client.call_tool("search", {"query": "kangaroo", **args})
    assert result.is_error
    assert message in result.content[0].text


async def test_search_finds_nothing_in_hidden_files(settings):
    async with connected(settings) as client:
        data = (await client.call_tool("search", {"query": "hidden"})).structured_content
    assert data["results"] == []


async def test_search_urls_follow_url_base(tmp_path):
    settings = make_settings(tmp_path, url_base="https://docs.example.com/kb/")
    index_now(settings)
    async with connected(settings) as client:
        data = (await client.call_tool("search", {"query": "platypus"})).structured_content
    assert data["results"][0]["url"].startswith("https://docs.example.com/kb/ref%20page.html")


@pytest.mark.parametrize("mode", MODES)
async def test_fetch_returns_a_whole_markdown_document_as_written(settings, mode):
    async with connected(settings, mode) as client:
        result = await client.call_tool("fetch", {"id": "guide/install.md"})
    data = result.structured_content
    assert json.loads(result.content[0].text) == data
    assert data["id"] == "guide/install.md" and data["title"] == "Install guide"
    assert data["url"] == "kb://doc/guide/install.md"
    assert data["text"] == INSTALL_MD  # front matter, blank lines and all
    assert data["next_offset"] is None and data["total_chars"] == len(data["text"])
    assert data["metadata"]["format"] == "md" and data["metadata"]["tags"] == ["linux", "setup"]


async def test_fetch_of_a_passage_returns_only_that_section(settings):
    async with connected(settings) as client:
        data = (await client.call_tool("fetch", {"id": "guide/install.md#linux"})).structured_content
    assert data["text"] == "## Linux\n\nUse apt to install the kangaroo package."
    assert data["metadata"]["heading"] == "Install > Linux"
    assert data["url"] == "kb://doc/guide/install.md#linux"


async def test_fetch_pages_with_offset_until_next_offset_is_null(settings):
    async with connected(settings) as client:
        whole = (await client.call_tool("fetch", {"id": "guide/install.md"})).structured_content["text"]
        parts, offset = [], 0
        while offset is not None:
            data = (
                await client.call_tool("fetch", {"id": "guide/install.md", "offset": offset, "max_chars": 20})
            ).structured_content
            assert len(data["text"]) <= 20
            parts.append(data["text"])
            offset = data["next_offset"]
    assert "".join(parts) == whole


@pytest.mark.parametrize("mode", MODES)
async def test_fetch_of_an_unknown_id_is_a_tool_error_that_says_to_search(settings, mode):
    async with connected(settings, mode) as client:
        result = await client.call_tool("fetch", {"id": "nope.md"})
    assert result.is_error
    assert "search" in result.content[0].text


async def test_fetch_past_the_end_is_a_tool_error(settings):
    async with connected(settings) as client:
        result = await client.call_tool("fetch", {"id": "notes.txt", "offset": 10_000})
    assert result.is_error and "past the end" in result.content[0].text


async def test_a_path_containing_a_hash_keeps_its_urls_and_passages_apart(tmp_path):
    settings = make_settings(tmp_path)
    (settings.root / "c#").mkdir()
    (settings.root / "c#" / "notes.md").write_text("# Sharp\n\nDelegates and events.\n")
    index_now(settings)
    async with connected(settings, "auto") as client:
        hit = (await client.call_tool("search", {"query": "delegates"})).structured_content["results"][0]
        whole = (await client.call_tool("fetch", {"id": "c#/notes.md"})).structured_content
        passage = (await client.call_tool("fetch", {"id": hit["id"]})).structured_content
    assert (hit["id"], hit["url"]) == ("c#/notes.md#sharp", "kb://doc/c%23/notes.md#sharp")
    assert whole["url"] == "kb://doc/c%23/notes.md" and "fragment" not in whole["metadata"]
    assert passage["url"] == hit["url"] and passage["metadata"]["fragment"] == "sharp"


async def test_search_can_return_several_passages_of_one_document(settings):
    async with connected(settings, "auto") as client:
        best = (await client.call_tool("search", {"query": "install"})).structured_content
        every = (
            await client.call_tool("search", {"query": "install", "all_passages": True})
        ).structured_content
    assert [hit["path"] for hit in best["results"]].count("guide/install.md") == 1
    assert [hit["path"] for hit in every["results"]].count("guide/install.md") >= 2
