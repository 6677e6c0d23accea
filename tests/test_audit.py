"""Action logging: one `kb.audit` record per tool call, resource read and prompt get, with what an
operator needs to see what an assistant read."""

from __future__ import annotations

import json
import logging

import pytest
from mcp import MCPError
from mcp_helpers import MODES, NOTES_TXT, anyio_backend, connected, index_now, make_settings  # noqa: F401

from kb.server.audit import summarize_arguments

pytestmark = pytest.mark.anyio


def audit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "kb.audit"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_call_is_logged_once_with_arguments_size_duration_and_client(settings, mode, caplog):
    caplog.set_level(logging.INFO, logger="kb.audit")
    async with connected(settings, mode) as client:
        result = await client.call_tool("fetch", {"id": "notes.txt", "max_chars": 500})
    (record,) = audit_records(caplog)
    fields = record.fields
    assert fields["action"] == "tools/call" and fields["name"] == "fetch"
    assert fields["arguments"] == {"id": "notes.txt", "max_chars": 500}
    assert fields["outcome"] == "ok"
    assert fields["result_chars"] == len(result.content[0].text)
    assert fields["duration_ms"] >= 0
    assert fields["client"].startswith("mcp/")  # the SDK client's own clientInfo
    message = record.getMessage()
    assert message.startswith("tools/call fetch id='notes.txt' max_chars=500 -> ok ")
    assert "ms" in message and "client mcp/" in message


async def test_a_resource_read_is_logged_with_its_uri_and_size(settings, caplog):
    caplog.set_level(logging.INFO, logger="kb.audit")
    async with connected(settings) as client:
        await client.read_resource("kb://doc/notes.txt")
    (record,) = audit_records(caplog)
    assert record.fields["action"] == "resources/read"
    assert record.fields["name"] == "kb://doc/notes.txt"
    assert record.fields["arguments"] == {}
    assert record.fields["outcome"] == "ok" and record.fields["result_chars"] == len(NOTES_TXT)


async def test_a_prompt_get_is_logged_with_its_arguments_and_the_embedded_size(settings, caplog):
    caplog.set_level(logging.INFO, logger="kb.audit")
    async with connected(settings) as client:
        await client.get_prompt("summarize_document", {"path": "notes.txt"})
    (record,) = audit_records(caplog)
    assert record.fields["action"] == "prompts/get" and record.fields["name"] == "summarize_document"
    assert record.fields["arguments"] == {"path": "notes.txt"}
    assert record.fields["outcome"] == "ok" and record.fields["result_chars"] > len(NOTES_TXT)


@pytest.mark.parametrize("mode", MODES)
async def test_errors_are_logged_as_errors_with_their_message(settings, mode, caplog):
    caplog.set_level(logging.INFO, logger="kb.audit")
    async with connected(settings, mode) as client:
        tool = await client.call_tool("fetch", {"id": "../etc/passwd"})
        with pytest.raises(MCPError):
            await client.read_resource("kb://doc/missing.md")
        with pytest.raises(MCPError):
            await client.get_prompt("summarize_document", {"path": ".secret.md"})
        invalid = await client.call_tool("search", {"query": ""})
    assert tool.is_error and invalid.is_error
    fetch, read, prompt, search = audit_records(caplog)
    assert [r.fields["outcome"] for r in (fetch, read, prompt, search)] == ["error"] * 4
    assert "refused path" in fetch.fields["error"]
    assert "missing.md" in read.fields["error"]
    assert "hidden" in prompt.fields["error"]
    assert search.fields["name"] == "search" and search.fields["error"]
    assert "-> error" in fetch.getMessage() and "refused path" in fetch.getMessage()


async def test_long_argument_values_are_cut_in_the_log(settings, caplog):
    caplog.set_level(logging.INFO, logger="kb.audit")
    async with connected(settings) as client:
        await client.call_tool("search", {"query": "kangaroo " * 100})
    (record,) = audit_records(caplog)
    assert len(record.fields["arguments"]["query"]) == 80
    assert record.fields["arguments"]["query"].endswith("…")


def test_argument_summary_keeps_scalars_and_caps_the_count():
    summary = summarize_arguments({f"k{n}": n for n in range(12)} | {"tags": ["a", "b"]})
    assert summary["k0"] == 0 and len(summary) == 11 and summary["..."] == "3 more"
    assert summarize_arguments({"tags": ["a", "b"], "flag": True}) == {"tags": "['a', 'b']", "flag": True}


async def test_other_requests_are_not_audited(settings, caplog):
    caplog.set_level(logging.INFO, logger="kb.audit")
    async with connected(settings) as client:
        await client.list_tools()
        await client.list_resources()
    assert audit_records(caplog) == []


async def test_the_json_log_format_carries_the_audit_fields(settings, caplog):
    from kb.cli import _JsonFormatter  # the CLI owns the formatter; audit only supplies the fields

    caplog.set_level(logging.INFO, logger="kb.audit")
    async with connected(settings) as client:
        await client.call_tool("search", {"query": "kangaroo", "limit": 3})
    (record,) = audit_records(caplog)
    line = json.loads(_JsonFormatter().format(record))
    assert line["logger"] == "kb.audit" and line["action"] == "tools/call" and line["name"] == "search"
    assert line["arguments"] == {"query": "kangaroo", "limit": 3} and line["outcome"] == "ok"
    assert {"result_chars", "duration_ms", "client"} <= line.keys()
