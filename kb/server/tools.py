"""The MCP tools: `search` and `fetch`, in the shape chat-product connectors expect.

Both are read-only. A problem the model can fix (a bad id, filter or cursor) is a tool error whose
message says what to do; the structured result and the one text block carry the same JSON.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, WithJsonSchema
from pydantic_core import to_json

from kb import sources
from kb.errors import KbError, PathRefusedError
from kb.index import MAX_QUERY_CHARS
from kb.models import FORMATS, DocId, Format
from kb.server import _cursor
from kb.server._runtime import library_of
from kb.server._uris import doc_url, iso_mtime

if TYPE_CHECKING:
    from collections.abc import Iterator

    from kb.server._runtime import KbRuntime


logger = logging.getLogger(__name__)

MAX_LIMIT = 50
MAX_FETCH_CHARS = 100_000
DEFAULT_FETCH_CHARS = 20_000
_WORD_BACKOFF = 200  # how far a page's end may move back to fall between words
APPROXIMATE_NOTICE = (
    "Some words of the query matched nothing as written; these results use the nearest spellings "
    "found in the documents"
)
INDEXING_NOTICE = (
    "kb is still indexing the folder: results may be incomplete. "
    "Do not conclude that something is absent; search again in a moment."
)
READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


class SearchResult(BaseModel):
    id: str = Field(description="Pass to fetch: 'path' for a document, 'path#fragment' for a passage")
    title: str = Field(description="The document's title")
    url: str = Field(description="Where the passage lives: its kb:// resource URI or its web address")
    path: str = Field(description="The file's path relative to the knowledge base root")
    snippet: str = Field(description="The best-matching text, matched words in **bold**")
    score: float = Field(description="Relevance; higher is better, comparable within one search only")
    heading: str | None = Field(
        default=None, description="Heading trail of the passage, e.g. 'Install > Linux'"
    )
    page: int | None = Field(default=None, description="PDF page number of the passage")
    copies: list[str] | None = Field(
        default=None,
        description="Other documents holding the same passage (copies, versions), not listed apart",
    )


class SearchOutput(BaseModel):
    # The item schema inline rather than a $ref into $defs: clients validate every result against
    # this schema, and resolving a reference per item was a quarter of that cost (jsonschema).
    results: Annotated[
        list[SearchResult], WithJsonSchema({"type": "array", "items": SearchResult.model_json_schema()})
    ]
    next_cursor: str | None = Field(default=None, description="Pass as cursor to get the next page")
    indexing: bool | None = Field(default=None, description="True while kb is still indexing the folder")
    approximate: bool | None = Field(
        default=None, description="True when some query words were unknown and near spellings were used"
    )
    corrections: dict[str, list[str]] | None = Field(
        default=None, description="Each unknown query word, and the indexed word stems searched instead"
    )
    semantic_coverage: float | None = Field(
        default=None,
        description="Present while kb is still embedding passages: the share of them already also "
        "searched by meaning (the rest are found by their words only)",
    )
    notice: str | None = Field(default=None, description="Something the reader of the results must know")


class FetchOutput(BaseModel):
    id: str
    title: str
    text: str = Field(description="The text from offset on, at most max_chars characters")
    url: str
    metadata: dict[str, Any] = Field(
        description="path, format, tags, size, modified, and heading/page/lines; stale: true when the "
        "file changed since indexing and the passage is served as indexed"
    )
    next_offset: int | None = Field(description="Pass as offset to read on; null when the text is complete")
    total_chars: int = Field(description="Length of the whole text")


def register_tools(server: MCPServer[Any], runtime: KbRuntime) -> None:
    """Add `search` and `fetch` to `server`."""

    @server.tool(
        name="search",
        title="Search the knowledge base",
        description=(
            "Search the user's documents (Markdown, text, PDF, HTML, Office, EPUB, notebooks) and get "
            "the best-matching passages, "
            "one per document (all_passages=true for several), ranked; a passage found in several "
            "documents takes one slot and lists the others under copies. Use it first, with a few "
            "distinctive keywords; then call fetch with a result's id to read it. Query syntax: words, "
            '"exact phrases", AND/OR/NOT, -word (exclude), pref* (prefix), '
            "title:word. Narrow with path (folder prefix like 'guides/' or a glob like '*.md'), formats, "
            "tags, modified_after (ISO date). When next_cursor is returned, pass it as cursor with the "
            "same query and filters for more results."
        ),
        annotations=READ_ONLY,
    )
    async def search(
        query: Annotated[
            str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for")
        ],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Results per page")] = 10,
        path: Annotated[
            str | None, Field(max_length=1024, description="Folder prefix ('notes/') or glob ('**/*.pdf')")
        ] = None,
        formats: Annotated[
            list[Format] | None,
            Field(
                max_length=len(FORMATS),
                description="Only these formats: md, txt, rst, html, pdf, docx (Word), odt "
                "(OpenDocument), pptx (slides), epub (e-books), ipynb (Jupyter notebooks)",
            ),
        ] = None,
        tags: Annotated[
            list[Annotated[str, Field(max_length=200)]] | None,
            Field(max_length=20, description="Only documents with all these front matter tags"),
        ] = None,
        modified_after: Annotated[
            str | None, Field(max_length=40, description="Only files changed after this ISO date or datetime")
        ] = None,
        cursor: Annotated[
            str | None, Field(max_length=500, description="next_cursor of a previous search")
        ] = None,
        all_passages: Annotated[
            bool,
            Field(description="List every matching passage, several per document, not the best one each"),
        ] = False,
    ) -> Annotated[CallToolResult, SearchOutput]:
        library = library_of(ctx)
        belongs_to = _cursor.fingerprint(query, path, formats, tags, modified_after, all_passages)
        offset = _search_offset(cursor, belongs_to) if cursor else 0
        path_filter, after = _check_path_filter(path), _parse_when(modified_after)
        options: dict[str, Any] = {
            "limit": limit,
            "offset": offset,
            "path": path_filter,
            "formats": formats,
            "tags": tags,
            "modified_after": after,
            "all_passages": all_passages,
        }
        # A repeat is answered at once; a search runs off the event loop: a long query must not hold
        # up every other client's requests.
        found = library.searched_lately(query, **options)
        if found is None:
            with _as_tool_error():
                found = await runtime.read(lambda: library.search(query, **options))
        # Plain dicts in SearchOutput's field order, absent fields left out: building the models
        # only to dump them again cost more than the rest of the handler (the SDK still validates
        # the result against SearchOutput).
        url_base = library.settings.url_base
        results = []
        for hit in found.results:
            item: dict[str, Any] = {
                "id": hit.id,
                "title": hit.title,
                "url": doc_url(url_base, DocId(hit.path, hit.fragment)),
                "path": hit.path,
                "snippet": hit.snippet,
                "score": round(hit.score, 4),
            }
            if hit.heading is not None:
                item["heading"] = hit.heading
            if hit.page is not None:
                item["page"] = hit.page
            if hit.copies:
                item["copies"] = hit.copies
            results.append(item)
        data: dict[str, Any] = {"results": results}
        if found.next_offset is not None:
            data["next_cursor"] = _cursor.encode(found.next_offset, belongs_to)
        syncing = library.syncing
        if syncing:
            data["indexing"] = True
        notices = []
        if found.approximate:
            data["approximate"] = True
            if found.corrections:
                data["corrections"] = found.corrections
            notices.append(_approximate_notice(found.corrections))
        if syncing:
            notices.append(INDEXING_NOTICE)
        coverage = found.semantic_coverage
        if coverage is not None and coverage < 1.0:
            data["semantic_coverage"] = round(coverage, 3)
            notices.append(
                f"Search by meaning covers {coverage:.0%} of the passages so far (kb is embedding the "
                "rest); the others are found by their words only."
            )
        if notices:
            data["notice"] = " ".join(notices)
        return _result(data)

    @server.tool(
        name="fetch",
        title="Read a document or passage",
        description=(
            "Read the text of a document or one passage by the id that search returned ('path' for the "
            "whole document, 'path#fragment' for one passage). Long texts come in pages of max_chars: "
            "when next_offset is not null, call fetch again with offset=next_offset. Markdown comes as "
            "written (a passage is its own lines of the file, code fences and tables included); in "
            "other formats headings appear as '#' lines and PDF pages are marked '--- page N ---'."
        ),
        annotations=READ_ONLY,
    )
    async def fetch(
        id: Annotated[str, Field(min_length=1, max_length=4096, description="An id from search results")],
        ctx: Context,
        offset: Annotated[int, Field(ge=0, description="Character offset to start from")] = 0,
        max_chars: Annotated[
            int, Field(ge=1, le=MAX_FETCH_CHARS, description="Most characters to return")
        ] = DEFAULT_FETCH_CHARS,
    ) -> Annotated[CallToolResult, FetchOutput]:
        library = library_of(ctx)
        with _as_tool_error():
            reading = await runtime.read(lambda: library.read(id))
        doc_id, doc, text = reading.doc_id, reading.doc, reading.text
        total = len(text)
        if offset > total or (offset == total and total > 0):
            raise ToolError(f"offset {offset} is past the end of {id!r} ({total} characters); start from 0")
        chunk = _page(text, offset, max_chars)
        end = offset + len(chunk)
        metadata: dict[str, Any] = {
            "path": doc.path,
            "format": doc.format,
            "tags": doc.tags,
            "size": doc.size,
            "modified": iso_mtime(doc.mtime_ns),
        }
        if doc_id.fragment is not None and len(doc.sections) == 1:
            section = doc.sections[0]
            passage = {
                "fragment": section.fragment,
                "heading": section.heading,
                "page": section.page,
                "line_start": section.line_start,
                "line_end": section.line_end,
            }
            metadata.update({k: v for k, v in passage.items() if v is not None})
        else:
            metadata["sections"] = len(doc.sections)
        if reading.stale:
            metadata["stale"] = True
        output = FetchOutput(
            id=id,
            title=doc.title,
            text=chunk,
            url=doc_url(library.settings.url_base, doc_id),
            metadata=metadata,
            next_offset=end if end < total else None,
            total_chars=total,
        )
        return _result(output.model_dump(mode="json"))  # every field set; next_offset null at the end


def _approximate_notice(corrections: dict[str, list[str]]) -> str:
    """Which words were replaced, by what: "... documents: 'pakage' -> packag; 'zzyzx' -> nothing."."""
    named = "; ".join(f"{word!r} -> {', '.join(near) or 'nothing'}" for word, near in corrections.items())
    return f"{APPROXIMATE_NOTICE}: {named}." if named else f"{APPROXIMATE_NOTICE}."


def _page(text: str, offset: int, max_chars: int) -> str:
    """At most `max_chars` of `text` from `offset`, ending after a whitespace rather than inside a
    word when one is near the cut (a word longer than that, a URL say, is cut where it must be)."""
    end = offset + max_chars
    if end >= len(text) or text[end].isspace() or text[end - 1].isspace():
        return text[offset:end]
    near = max(offset, end - min(_WORD_BACKOFF, max_chars // 4))
    for cut in range(end - 1, near, -1):
        if text[cut - 1].isspace():
            return text[offset:cut]
    return text[offset:end]


def _result(data: dict[str, Any]) -> CallToolResult:
    """The structured result and, as the one text block, the same JSON."""
    # pydantic-core writes exactly what json.dumps(data, ensure_ascii=False, indent=2) would, 4x faster.
    text = to_json(data, indent=2).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


@contextmanager
def _as_tool_error() -> Iterator[None]:
    """A KbError in a tool is something the model can act on: its message becomes the tool error."""
    try:
        yield
    except KbError as exc:
        raise ToolError(str(exc)) from exc


def _search_offset(cursor: str, belongs_to: str) -> int:
    try:
        return _cursor.decode(cursor, belongs_to)
    except _cursor.CursorError as exc:
        raise ToolError(f"{exc}; repeat the search without cursor") from exc


def _parse_when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ToolError(
            f"modified_after {value!r} is not an ISO date; use e.g. 2024-05-01 or 2024-05-01T12:00:00Z"
        ) from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _check_path_filter(path: str | None) -> str | None:
    """Refuse a path filter that points outside the root or at hidden files, by the same spelling
    rules as every path a client names; folders and globs are otherwise the index's to match."""
    if path is None or not path.strip():
        return None
    try:
        sources.check_path_syntax(path)
    except PathRefusedError as exc:
        raise ToolError(
            f"path filter {path!r} refused ({exc.reason}); use a folder relative to the knowledge base "
            "root like 'guide/' or a glob like '*.md'"
        ) from exc
    return path
