"""Nothing outside the root is ever served: a table of traversal probes against every way in (fetch,
resources/read, prompts, completion, search's path filter), property tests over generated paths, and
the HTTP lock-down (token, Host, Origin, also on a wildcard bind)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import anyio.from_thread
import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp_helpers import anyio_backend, connected, index_now, make_settings  # noqa: F401
from mcp_types import PromptReference, ResourceTemplateReference

from kb.config import Settings
from kb.errors import PathRefusedError
from kb.server.http import bind_socket, serve_http
from kb.sources import confine

OUTSIDE_SECRET = "OUTSIDE-SECRET-7f3a kangaroo"  # 'kangaroo' so a search would find it if it leaked
INSIDE_HIDDEN = "HIDDEN-INSIDE-91c2"
PASSWD_MARK = "root:x:0:0"
MARKS = (OUTSIDE_SECRET, INSIDE_HIDDEN, PASSWD_MARK)
SERVABLE = {"guide/install.md", "notes.txt", "ref page.html"}  # all a client may ever read here

# (probe, refused by its spelling alone) — the spelled ones must also fail as a search path filter.
PROBES = [
    ("../outside/secret.md", True),
    ("guide/../../outside/secret.md", True),
    ("guide/..", True),
    ("./notes.txt", True),
    ("%2e%2e/outside/secret.md", True),
    ("guide/%2e%2e/%2e%2e/outside/secret.md", True),
    ("%252e%252e/outside/secret.md", True),
    ("/etc/passwd", True),
    ("OUTSIDE_ABSOLUTE", True),  # replaced by the absolute path of the secret file
    ("file:///etc/passwd", True),
    ("FILE_URI", True),  # replaced by file:// + the absolute path of the secret file
    ("guide\\..\\..\\outside\\secret.md", True),
    ("notes.txt\x00.md", True),
    ("guide/\x01install.md", True),
    ("notes.txt%00", True),
    (".git/config", True),
    (".secret.md", True),
    ("guide/.hidden.md", True),
    ("private.md", False),  # ignored by .gitignore, named exactly
    ("late.md", False),  # a regular file when indexed, a link to the outside secret now
    ("passwd.md", False),  # a regular file when indexed, a link to /etc/passwd now
    ("early.md", False),  # a link out before indexing: never indexed
    ("outlink/secret.md", False),  # inside a linked folder that lies outside
]


def _probes(outside: Path) -> list[tuple[str, bool]]:
    named = {"OUTSIDE_ABSOLUTE": str(outside / "secret.md"), "FILE_URI": f"file://{outside / 'secret.md'}"}
    return [(named.get(probe, probe), spelled) for probe, spelled in PROBES]


def build_hostile_root(tmp_path: Path) -> tuple[Settings, Path]:
    """The test corpus plus everything a probe could reach for, indexed; `link_out_after_indexing`
    then turns two indexed files into links out of the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(f"# Secret\n\n{OUTSIDE_SECRET}\n")
    settings = make_settings(tmp_path, watch=False)  # the index keeps what it saw: the worst case
    root = settings.root
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(f"[core]\n# {INSIDE_HIDDEN}\n")
    (root / "guide" / ".hidden.md").write_text(f"# Hidden\n\n{INSIDE_HIDDEN}\n")
    (root / ".gitignore").write_text("private.md\n")
    (root / "private.md").write_text(f"# Private\n\n{INSIDE_HIDDEN}\n")
    (root / "late.md").write_text("# Late\n\nAn honest kangaroo note.\n")
    (root / "passwd.md").write_text("# Passwd\n\nNothing here.\n")
    (root / "early.md").symlink_to(outside / "secret.md")
    (root / "outlink").symlink_to(outside, target_is_directory=True)
    index_now(settings)
    return settings, outside


def link_out_after_indexing(settings: Settings, outside: Path) -> None:
    """Call once the server's startup sync is done: the index keeps the files (no watcher)."""
    for name, target in (("late.md", outside / "secret.md"), ("passwd.md", Path("/etc/passwd"))):
        (settings.root / name).unlink()
        (settings.root / name).symlink_to(target)


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Settings, Path]:
    return build_hostile_root(tmp_path)


def assert_no_secret(text: str, where: str) -> None:
    for mark in MARKS:
        assert mark not in text, f"{where} leaked {mark!r}"


# ---- the probe table ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_probe_is_refused_by_fetch_resources_and_prompts(hostile, mode):
    settings, outside = hostile
    async with connected(settings, mode) as client:
        link_out_after_indexing(settings, outside)
        for probe, _ in _probes(outside):
            result = await client.call_tool("fetch", {"id": probe})
            assert result.is_error, f"fetch {probe!r} was served"
            assert_no_secret(result.model_dump_json(), f"fetch {probe!r}")

            with pytest.raises(MCPError) as caught:
                await client.read_resource("kb://doc/" + quote(probe, safe="/:%"))
            assert_no_secret(caught.value.error.model_dump_json(), f"resources/read {probe!r}")

            with pytest.raises(MCPError) as caught:
                await client.get_prompt("summarize_document", {"path": probe})
            assert_no_secret(caught.value.error.model_dump_json(), f"summarize_document {probe!r}")

            with pytest.raises(MCPError) as caught:
                await client.get_prompt("compare_documents", {"path_a": "notes.txt", "path_b": probe})
            assert_no_secret(caught.value.error.model_dump_json(), f"compare_documents {probe!r}")


@pytest.mark.anyio
async def test_a_link_made_after_indexing_is_refused_at_read_time_though_still_indexed(hostile):
    settings, outside = hostile
    async with connected(settings) as client:
        link_out_after_indexing(settings, outside)
        found = await client.call_tool("search", {"query": "honest kangaroo"})
        fetched = await client.call_tool("fetch", {"id": "late.md"})
        passage = await client.call_tool("fetch", {"id": "late.md#late"})
        topic = await client.get_prompt("summarize_topic", {"topic": "honest kangaroo"})
    assert "late.md" in {hit["path"] for hit in found.structured_content["results"]}  # still indexed
    assert fetched.is_error and "outside the root" in fetched.content[0].text
    assert passage.is_error and "outside the root" in passage.content[0].text
    cited = [m.content.resource.uri for m in topic.messages if m.content.type == "resource"]
    assert cited and not any("late.md" in uri for uri in cited)  # left out, the rest still served
    assert_no_secret(topic.model_dump_json(), "summarize_topic")


@pytest.mark.anyio
async def test_completion_never_offers_a_refused_name(hostile):
    settings, outside = hostile
    async with connected(settings) as client:
        link_out_after_indexing(settings, outside)
        refs = [
            (PromptReference(type="ref/prompt", name="summarize_document"), "path"),
            (PromptReference(type="ref/prompt", name="compare_documents"), "path_b"),
            (ResourceTemplateReference(type="ref/resource", uri="kb://doc/{+path}"), "path"),
        ]
        for ref, argument in refs:
            everything = await client.complete(ref, {"name": argument, "value": ""})
            assert set(everything.completion.values) == SERVABLE
            for probe, _ in [*_probes(outside), ("late", False), ("pass", False), ("priv", False)]:
                result = await client.complete(ref, {"name": argument, "value": probe})
                assert set(result.completion.values) <= SERVABLE, probe
                assert_no_secret(result.model_dump_json(), f"completion {probe!r}")


@pytest.mark.anyio
async def test_search_refuses_a_path_filter_that_escapes_and_never_finds_outside_text(hostile):
    settings, outside = hostile
    async with connected(settings) as client:
        link_out_after_indexing(settings, outside)
        for probe, spelled in _probes(outside):
            result = await client.call_tool("search", {"query": "kangaroo OR secret OR root", "path": probe})
            assert_no_secret(result.model_dump_json(), f"search path={probe!r}")
            if spelled:
                assert result.is_error, f"path filter {probe!r} was accepted"
                assert "refused" in result.content[0].text
        everywhere = await client.call_tool("search", {"query": "OUTSIDE-SECRET-7f3a HIDDEN-INSIDE-91c2"})
    assert_no_secret(everywhere.model_dump_json(), "search")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("search", {"query": "k" * 2001}, "2000"),
        ("search", {"query": "kangaroo", "limit": 51}, "50"),
        ("search", {"query": "kangaroo", "limit": 0}, "1"),
        ("fetch", {"id": "notes.txt", "max_chars": 100_001}, "100000"),
        ("fetch", {"id": "x" * 5000}, "4096"),
    ],
)
async def test_requests_out_of_bounds_are_tool_errors(tmp_path, tool, args, message):
    settings = make_settings(tmp_path)
    index_now(settings)
    async with connected(settings) as client:
        result = await client.call_tool(tool, args)
    assert result.is_error and message in result.content[0].text


# ---- properties over generated paths ---------------------------------------------------------

SEGMENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "guide",
        "install.md",
        "notes.txt",
        "ref page.html",
        "outside",
        "secret.md",
        "outlink",
        "late.md",
        "passwd.md",
        "early.md",
        "private.md",
        ".git",
        "config",
        ".secret.md",
        "%2e%2e",
        "%252e%252e",
        "%2e",
        "..%2f",
        "%2F",
        "\\",
        "\x00",
        "file:",
        "~",
        "etc",
        "passwd",
        "#late",
    ]
)
PATHS = st.one_of(
    st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join),
    st.lists(SEGMENTS, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=30),
)
PROPERTY = hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(rel=PATHS)
def test_whatever_confine_returns_lies_inside_the_root(hostile, rel):
    settings, outside = hostile
    if not (settings.root / "late.md").is_symlink():
        link_out_after_indexing(settings, outside)
    root = settings.root.resolve()
    try:
        found = confine(settings.root, rel)
    except PathRefusedError:
        return
    assert found.is_relative_to(root)
    assert found.is_file()
    assert_no_secret(found.read_text(errors="replace"), f"confine({rel!r})")


@pytest.fixture
def hostile_client(hostile) -> Iterator[tuple[Client, anyio.from_thread.BlockingPortal]]:
    """One client for all of a property test's examples (hypothesis drives plain functions)."""
    settings, outside = hostile
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(connected(settings)) as client,
    ):
        link_out_after_indexing(settings, outside)
        yield client, portal


@PROPERTY
@given(rel=PATHS)
def test_fetch_and_resources_never_return_content_from_outside_the_root(hostile_client, rel):
    client, portal = hostile_client
    if rel:
        result = portal.call(lambda: client.call_tool("fetch", {"id": rel}))
        assert_no_secret(result.model_dump_json(), f"fetch {rel!r}")
        if not result.is_error:
            assert result.structured_content["metadata"]["path"] in SERVABLE
    try:
        read = portal.call(lambda: client.read_resource("kb://doc/" + quote(rel, safe="/:%")))
    except MCPError as exc:
        assert_no_secret(exc.error.model_dump_json(), f"resources/read {rel!r}")
    else:
        assert_no_secret(read.model_dump_json(), f"resources/read {rel!r}")


# ---- HTTP ------------------------------------------------------------------------------------

INITIALIZE = (
    b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",'
    b' "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}'
)
HTTP_ANY = ("--http", "0.0.0.0:0")
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.mark.anyio
async def test_a_wildcard_bind_still_needs_the_token_and_refuses_foreign_origins(tmp_path):
    settings = make_settings(tmp_path, token="s3cret", allow_origins=["https://app.example.com"])
    index_now(settings)
    sock = bind_socket("0.0.0.0", 0)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    good = {**JSON_HEADERS, "authorization": "Bearer s3cret"}
    cases = {
        "no token": JSON_HEADERS,
        "wrong token": {**JSON_HEADERS, "authorization": "Bearer s3cre"},
        "no origin": good,
        "same host": {**good, "origin": f"http://127.0.0.1:{port}"},
        "allowed": {**good, "origin": "https://app.example.com"},
        "foreign": {**good, "origin": "http://evil.example"},
        "other port": {**good, "origin": f"http://127.0.0.1:{port + 1}"},
        "null": {**good, "origin": "null"},
        "rebound host": {**good, "host": f"evil.example:{port}", "origin": f"http://attacker.example:{port}"},
    }
    status: dict[str, int] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_http, settings, sock)
        with anyio.fail_after(20):
            async with httpx.AsyncClient() as http:
                for name, headers in cases.items():
                    response = await http.post(url, content=INITIALIZE, headers=headers)
                    status[name] = response.status_code
                    if name == "no token":
                        assert response.headers["www-authenticate"].startswith("Bearer")
        tg.cancel_scope.cancel()
    sock.close()
    assert status["no token"] == status["wrong token"] == 401
    assert status["no origin"] < 400 and status["same host"] < 400 and status["allowed"] < 400
    assert status["foreign"] == status["other port"] == status["null"] == status["rebound host"] == 403


@pytest.mark.anyio
async def test_loopback_http_refuses_a_foreign_host_and_origin_without_a_token_too(tmp_path):
    settings = make_settings(tmp_path)
    index_now(settings)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_http, settings, sock)
        with anyio.fail_after(20):
            async with httpx.AsyncClient() as http:
                plain = await http.post(url, content=INITIALIZE, headers=JSON_HEADERS)
                localhost = await http.post(
                    url, content=INITIALIZE, headers={**JSON_HEADERS, "origin": f"http://localhost:{port}"}
                )
                rebound = await http.post(
                    url, content=INITIALIZE, headers={**JSON_HEADERS, "host": f"evil.example:{port}"}
                )
                foreign = await http.post(
                    url, content=INITIALIZE, headers={**JSON_HEADERS, "origin": "http://evil.example"}
                )
        tg.cancel_scope.cancel()
    sock.close()
    assert plain.status_code < 400 and localhost.status_code < 400
    assert rebound.status_code == 421
    assert foreign.status_code == 403


def test_serving_beyond_loopback_without_a_token_exits_2_naming_the_token_options(tmp_path):
    settings = make_settings(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "KB_TOKEN"}
    run = subprocess.run(
        [sys.executable, "-m", "kb", "serve", settings.root, "--index-dir", settings.index_dir, *HTTP_ANY],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 2, run.stderr
    assert "--token" in run.stderr and "KB_TOKEN" in run.stderr


def test_origin_of_a_wildcard_bind_compares_scheme_host_and_port():
    from kb.server.http import OriginCheckMiddleware

    check = OriginCheckMiddleware(app=None, port=8000, allowed=["https://App.example.com/"])  # type: ignore[arg-type]
    assert check.allows("http://10.0.0.5:8000", "10.0.0.5:8000")
    assert check.allows("https://app.example.com", "10.0.0.5:8000")
    assert not check.allows("http://10.0.0.5:8001", "10.0.0.5:8001")
    assert not check.allows("http://10.0.0.5", "10.0.0.5")  # port 80 is not the bound port
    assert not check.allows("ftp://10.0.0.5:8000", "10.0.0.5:8000")
    assert not check.allows("http://10.0.0.5:80x", "10.0.0.5:80x")
    assert not check.allows("null", "10.0.0.5:8000")
