"""MCP resources: every indexed file under `kb://doc/{+path}`, each passage under
`kb://doc/{+path}#{fragment}`, a paged listing, and `kb://status`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
from mcp.server import MCPServer, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, Annotations, ListResourcesResult, PaginatedRequestParams, Resource

from kb.errors import DocumentNotFoundError, ExtractionError, PathRefusedError
from kb.library import Library
from kb.models import DocId, ManifestEntry
from kb.server import _cursor, _sdk_compat
from kb.server._runtime import library_of
from kb.server._uris import (
    DOC_PASSAGE_TEMPLATE,
    DOC_TEMPLATE,
    MIME_TYPES,
    STATUS_URI,
    doc_uri,
    iso_mtime,
    mime_type_for_uri,
)

if TYPE_CHECKING:
    from kb.server._runtime import KbRuntime

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 100


def register_resources(server: MCPServer[Any], runtime: KbRuntime) -> None:
    """Add the document template, `kb://status` and the paged `resources/list` to `server`."""

    @server.resource(
        DOC_TEMPLATE,
        name="document",
        title="Document",
        description=(
            "An indexed document by its path relative to the knowledge base root. Markdown, text, "
            "reST and HTML come as written; PDF, Office, EPUB and notebooks as extracted text with "
            "'--- page N ---' (slides: '--- slide N ---') markers. "
            "One passage of it is kb://doc/{path}#{fragment}, the url that search results give."
        ),
        mime_type="text/plain",
    )
    async def document(path: str, ctx: Context) -> str:
        library = library_of(ctx)
        with _as_not_found():
            text, _ = await runtime.read(lambda: library.read_text(path))
        return text

    # The SDK matches `{+path}` up to a '#' (a '#' inside a path is %-encoded), and allows one
    # multi-segment variable per template: a passage's URI is matched by a template of its own.
    @server.resource(
        DOC_PASSAGE_TEMPLATE,
        name="passage",
        title="Passage",
        description=(
            "One passage of an indexed document: the url of a search result, kb://doc/{path}#{fragment} "
            "(e.g. kb://doc/guide/install.md#linux, kb://doc/manual.pdf#page-3). Markdown comes as "
            "written, the passage's own lines; other formats as extracted text. An empty fragment "
            "names the whole document."
        ),
        mime_type="text/plain",
    )
    async def passage(path: str, fragment: str, ctx: Context) -> str:
        library = library_of(ctx)
        if not fragment:
            return await document(path, ctx)
        with _as_not_found():
            reading = await runtime.read(lambda: library.read(DocId(path, fragment)))
        return reading.text

    # A static resource function cannot take a Context (the SDK refuses it), so this one reaches
    # the state through the runtime that owns it; the runtime is per server, not global.
    @server.resource(
        STATUS_URI,
        name="status",
        title="Index status",
        description="Index statistics and the state of the background sync, as JSON.",
        mime_type="application/json",
    )
    def status() -> str:
        return json.dumps(runtime.library.status(), indent=2)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams
    ) -> ListResourcesResult:
        library = cast("Library", ctx.lifespan_context)
        offset = _list_offset(params.cursor)
        fixed = await server.list_resources()
        # The fixed resources (kb://status) first, then the documents by path; only one page of
        # manifest records is read.
        start = max(0, offset - len(fixed))
        limit = LIST_PAGE_SIZE - len(fixed[offset : LIST_PAGE_SIZE + offset])
        entries, documents = await anyio.to_thread.run_sync(library.listing, start, limit)
        page = [*fixed[offset : offset + LIST_PAGE_SIZE], *(_doc_resource(e) for e in entries)]
        end = offset + len(page)
        total = len(fixed) + documents
        return ListResourcesResult(resources=page, next_cursor=_cursor.encode(end) if end < total else None)

    _sdk_compat.replace_list_resources(server, list_resources)
    _sdk_compat.set_mime_type_per_uri(server, mime_type_for_uri)


@contextmanager
def _as_not_found() -> Iterator[None]:
    """A document that cannot be read is a not-found resource error carrying kb's message."""
    try:
        yield
    except (DocumentNotFoundError, PathRefusedError, ExtractionError) as exc:
        raise ResourceNotFoundError(str(exc)) from exc


def _doc_resource(entry: ManifestEntry) -> Resource:
    return Resource(
        uri=doc_uri(entry.path),
        name=entry.path,
        title=entry.title,
        mime_type=MIME_TYPES[entry.format],
        size=entry.size,
        annotations=Annotations(last_modified=iso_mtime(entry.mtime_ns)),
    )


def _list_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return _cursor.decode(cursor)
    except _cursor.CursorError as exc:
        raise MCPError(code=INVALID_PARAMS, message=f"{exc}; list again from the start") from exc
