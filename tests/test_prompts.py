"""The prompts and argument completion."""

from __future__ import annotations

import pytest
from mcp import MCPError
from mcp_helpers import MODES, NOTES_TXT, anyio_backend, connected, index_now, make_settings  # noqa: F401
from mcp_types import INVALID_PARAMS, PromptReference, ResourceTemplateReference

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_summarize_document_embeds_the_document_and_asks_for_citations(settings, mode):
    async with connected(settings, mode) as client:
        result = await client.get_prompt("summarize_document", {"path": "notes.txt", "focus": "wombats"})
    embedded, ask = result.messages
    assert embedded.content.type == "resource"
    assert embedded.content.resource.uri == "kb://doc/notes.txt"
    assert embedded.content.resource.text == NOTES_TXT
    assert "wombats" in ask.content.text and "Cite" in ask.content.text


@pytest.mark.parametrize("mode", MODES)
async def test_summarize_document_of_an_unknown_path_is_invalid_params(settings, mode):
    async with connected(settings, mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("summarize_document", {"path": "nope.md"})
    assert caught.value.error.code == INVALID_PARAMS
    assert "nope.md" in caught.value.error.message


async def test_summarize_topic_embeds_found_passages_with_their_ids(settings):
    async with connected(settings) as client:
        result = await client.get_prompt("summarize_topic", {"topic": "kangaroo", "max_sources": "5"})
    *passages, ask = result.messages
    texts = [message.content.resource.text for message in passages]
    assert any(text.startswith("[guide/install.md#linux]") for text in texts)
    assert any(text.startswith("[notes.txt#") for text in texts)
    assert "[" in ask.content.text and "kangaroo" in ask.content.text


async def test_summarize_topic_with_no_matches_says_so(settings):
    async with connected(settings) as client:
        result = await client.get_prompt("summarize_topic", {"topic": "zeppelin"})
    assert len(result.messages) == 1 and "no passages" in result.messages[0].content.text


async def test_summarize_topic_rejects_an_out_of_range_source_count(settings):
    async with connected(settings) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("summarize_topic", {"topic": "kangaroo", "max_sources": "500"})
    assert caught.value.error.code == INVALID_PARAMS


async def test_compare_documents_embeds_both(settings):
    async with connected(settings) as client:
        result = await client.get_prompt(
            "compare_documents", {"path_a": "notes.txt", "path_b": "guide/install.md", "aspect": "kangaroos"}
        )
    uris = [message.content.resource.uri for message in result.messages[:2]]
    assert uris == ["kb://doc/notes.txt", "kb://doc/guide/install.md"]
    assert "kangaroos" in result.messages[2].content.text


async def test_prompt_arguments_are_described(settings):
    async with connected(settings) as client:
        prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
    assert set(prompts) == {"summarize_document", "summarize_topic", "compare_documents"}
    path = prompts["summarize_document"].arguments[0]
    assert path.name == "path" and path.required and path.description


@pytest.mark.parametrize("mode", MODES)
async def test_document_arguments_complete_by_prefix_then_substring(settings, mode):
    async with connected(settings, mode) as client:
        by_prefix = await client.complete(
            PromptReference(type="ref/prompt", name="compare_documents"), {"name": "path_b", "value": "gu"}
        )
        by_substring = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="kb://doc/{+path}"),
            {"name": "path", "value": "page"},
        )
        other = await client.complete(
            PromptReference(type="ref/prompt", name="summarize_topic"), {"name": "topic", "value": "k"}
        )
    assert by_prefix.completion.values == ["guide/install.md"]
    assert by_substring.completion.values == ["ref page.html"]
    assert other.completion.values == []


def test_completion_is_capped_at_one_hundred_values():
    from kb.server.prompts import complete_paths

    completion = complete_paths([f"a{n}.md" for n in range(150)], "a")
    assert len(completion.values) == 100 and completion.total == 150 and completion.has_more


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("nope", {}, "Unknown prompt"),
        ("summarize_document", {}, "path"),
        ("compare_documents", {"path_a": "notes.txt"}, "path_b"),
    ],
)
async def test_an_unknown_prompt_or_a_missing_argument_is_invalid_params(
    settings, mode, name, arguments, says
):
    async with connected(settings, mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt(name, arguments)
    assert caught.value.error.code == INVALID_PARAMS
    assert says in caught.value.error.message
