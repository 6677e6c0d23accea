"""MCP resources: every indexed file under `kb://doc/{+path}`, a paged listing, and `kb://status`.

Also the naming helpers the tools and prompts share: a document's URI, its public URL, its MIME type,
and its text as kb serves it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import anyio.to_thread
from mcp.server import MCPServer, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, Annotations, ListResourcesResult, PaginatedRequestParams, Resource

from kb import _sdk_compat, sources
from kb.errors import DocumentNotFoundError, NotIndexedYetError, PathRefusedError
from kb.extractors import extract, format_for
from kb.models import Format, ManifestEntry, StoredDocument

if TYPE_CHECKING:
    from kb.server import KbRuntime, KbState

logger = logging.getLogger(__name__)

DOC_URI_PREFIX = "kb://doc/"
DOC_TEMPLATE = DOC_URI_PREFIX + "{+path}"
STATUS_URI = "kb://status"
LIST_PAGE_SIZE = 100

MIME_TYPES: dict[Format, str] = {
    "md": "text/markdown",
    "txt": "text/plain",
    "html": "text/html",
    "pdf": "text/plain",  # served as its extracted text, one marked block per page
}


def kb_state(ctx: Context) -> KbState:
    """The server's shared state, from a handler's context (the lifespan yields it)."""
    return cast("KbState", ctx.request_context.lifespan_context)


def doc_uri(path: str, fragment: str | None = None) -> str:
    """The resource URI of a document (or of one passage, with `#fragment`)."""
    uri = DOC_URI_PREFIX + quote(path, safe="/")
    return f"{uri}#{quote(fragment, safe='')}" if fragment else uri


def doc_url(url_base: str | None, path: str, fragment: str | None = None) -> str:
    """Where a document (or one passage of it) lives: its resource URI, or its address under
    `url_base`. Path and fragment come apart, since a path may itself contain '#'."""
    if url_base is None:
        return doc_uri(path, fragment)
    url = url_base.rstrip("/") + "/" + quote(path, safe="/")
    return f"{url}#{quote(fragment, safe='')}" if fragment else url


def mime_type_for_uri(uri: str) -> str | None:
    """The MIME type of what a `kb://doc/...` URI serves, from the file's extension."""
    if not uri.startswith(DOC_URI_PREFIX):
        return None
    fmt = format_for(uri.split("#", 1)[0])
    return MIME_TYPES[fmt] if fmt is not None else None


def iso_mtime(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def render_sections(doc: StoredDocument) -> str:
    """A document's indexed text, sections in order: headings as Markdown, PDF pages marked.

    This is what `fetch` pages through and what a PDF resource serves. Markdown and HTML sections
    start with their heading's own words; they become a `#` line at the heading trail's depth.
    """
    blocks: list[str] = []
    for section in doc.sections:
        text = section.text
        if doc.format == "pdf" and section.page is not None:
            blocks.append(f"--- page {section.page} ---\n{text}")
        elif section.heading and doc.format in ("md", "html"):
            trail = section.heading.split(" > ")
            first, _, rest = text.partition("\n")
            body = rest if first.strip() == trail[-1].strip() else text
            blocks.append(f"{'#' * min(len(trail), 6)} {trail[-1]}\n{body}".rstrip())
        else:
            blocks.append(text)
    return "\n\n".join(blocks)


def confine_path(state: KbState, path: str) -> Path:
    """The gate for every path a client names (resource URIs, prompt arguments, completions, the
    path part of fetch ids): `sources.confine` against the root, with the size cap, at read time.

    Raises:
        DocumentNotFoundError: nothing is there (say so, and point the model at search).
        PathRefusedError: the path may not be served (escapes the root, also through a symlink made
            after indexing; hidden, ignored, not a regular file, too large).
    """
    try:
        return sources.confine(
            state.settings.root,
            path,
            max_file_bytes=state.settings.max_file_bytes,
            allow_hardlinks=state.settings.allow_hardlinks,
        )
    except PathRefusedError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            raise DocumentNotFoundError(path) from exc
        raise


def confine_id(state: KbState, doc_id: str) -> tuple[str, Path]:
    """The document path of a fetch id (`path` or `path#fragment`) and its confined file.

    Raises:
        DocumentNotFoundError: no file has this id's path.
        PathRefusedError: the id's path may not be served.
    """
    try:
        return doc_id, confine_path(state, doc_id)
    except (DocumentNotFoundError, PathRefusedError):
        if "#" not in doc_id:
            raise
    path = doc_id.rsplit("#", 1)[0]
    try:
        return path, confine_path(state, path)
    except DocumentNotFoundError:
        raise DocumentNotFoundError(doc_id) from None


def load_document(state: KbState, doc_id: str) -> StoredDocument:
    """A document or passage by id, for fetch: from the index, after confining its path again.

    While the first sync runs, a document it has not reached is extracted from the file instead,
    so a read never claims that a file which is there is absent (see `_extract_unindexed`).

    Raises:
        DocumentNotFoundError: no such document or passage (`NotIndexedYetError` while indexing).
        PathRefusedError: the id's path may not be served.
        ExtractionError: an unindexed file could not be extracted.
    """
    path, file = confine_id(state, doc_id)
    try:
        return state.index.get(doc_id)
    except DocumentNotFoundError:
        if not state.syncing:
            raise
    doc = _extract_unindexed(state, doc_id, path, file)
    if path != doc_id:
        fragment = doc_id[len(path) + 1 :]
        doc.sections = [s for s in doc.sections if s.fragment == fragment]
        if not doc.sections:
            raise NotIndexedYetError(doc_id)
    return doc


def read_document_text(state: KbState, path: str) -> tuple[str, str]:
    """The text of a document as its resource serves it, and its MIME type.

    Markdown, text and HTML are the file as written (read again, through confinement); a PDF is its
    page-marked extracted text. While the first sync runs, a text file it has not reached yet is
    read from disk all the same.

    Raises:
        DocumentNotFoundError: the path is not an indexed document (`NotIndexedYetError` while indexing).
        PathRefusedError: the path may not be served.
    """
    file = confine_path(state, path)
    try:
        doc = state.index.get(path)
    except DocumentNotFoundError:
        unindexed = format_for(path)
        if not state.syncing or unindexed is None:
            raise
        if unindexed == "pdf":
            raise NotIndexedYetError(path) from None
        fmt = unindexed
    else:
        if doc.format == "pdf":
            return render_sections(doc), MIME_TYPES["pdf"]
        fmt = doc.format  # the text is the file as written
    data, _ = sources.read_inside(
        state.settings.root,
        file,
        state.settings.max_file_bytes,
        allow_hardlinks=state.settings.allow_hardlinks,
    )
    return _decode(data), MIME_TYPES[fmt]


def _extract_unindexed(state: KbState, doc_id: str, path: str, file: Path) -> StoredDocument:
    """A file the running first sync has not indexed yet, extracted the way the sync would.

    Markdown, text and HTML extract in microseconds and are bounded by the size cap, so they are
    served at once. A PDF is not: its extraction can spin for minutes, and only the sync's worker
    processes can stop it, so the model is told to try again shortly instead.
    """
    fmt = format_for(path)
    if fmt is None:  # the walk passes over other extensions; so does every read
        raise DocumentNotFoundError(doc_id)
    if fmt == "pdf":
        raise NotIndexedYetError(doc_id)
    data, st = sources.read_inside(
        state.settings.root,
        file,
        state.settings.max_file_bytes,
        allow_hardlinks=state.settings.allow_hardlinks,
    )
    document = extract(path, data)
    return StoredDocument(
        path=path,
        format=document.format,
        title=document.title,
        tags=sorted({t.lower() for t in document.tags}),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sections=document.sections,
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # the extractors accept Latin-1 text too


def register_resources(server: MCPServer[Any], runtime: KbRuntime) -> None:
    """Add the document template, `kb://status` and the paged `resources/list` to `server`."""

    @server.resource(
        DOC_TEMPLATE,
        name="document",
        title="Document",
        description=(
            "An indexed document by its path relative to the knowledge base root. Markdown, text "
            "and HTML come as written; PDF as extracted text with '--- page N ---' markers."
        ),
        mime_type="text/plain",
    )
    async def document(path: str, ctx: Context) -> str:
        state = kb_state(ctx)
        try:
            text, _ = await anyio.to_thread.run_sync(read_document_text, state, path)
        except (DocumentNotFoundError, PathRefusedError) as exc:
            raise ResourceNotFoundError(f"{exc}") from exc
        return text

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
        return json.dumps(runtime.require_state().status(), indent=2)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams
    ) -> ListResourcesResult:
        state = cast("KbState", ctx.lifespan_context)
        offset = _decode_list_cursor(params.cursor)
        fixed = await server.list_resources()
        manifest = await anyio.to_thread.run_sync(state.index.manifest)
        entries = [manifest[path] for path in sorted(manifest)]
        total = len(fixed) + len(entries)
        page = [
            fixed[i] if i < len(fixed) else _doc_resource(entries[i - len(fixed)])
            for i in range(offset, min(offset + LIST_PAGE_SIZE, total))
        ]
        end = offset + len(page)
        return ListResourcesResult(
            resources=page, next_cursor=_encode_list_cursor(end) if end < total else None
        )

    _sdk_compat.replace_list_resources(server, list_resources)
    _sdk_compat.set_mime_type_per_uri(server, mime_type_for_uri)


def _doc_resource(entry: ManifestEntry) -> Resource:
    return Resource(
        uri=doc_uri(entry.path),
        name=entry.path,
        title=entry.title,
        mime_type=MIME_TYPES[entry.format],
        size=entry.size,
        annotations=Annotations(last_modified=iso_mtime(entry.mtime_ns)),
    )


def _encode_list_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _decode_list_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["o"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise MCPError(code=INVALID_PARAMS, message="invalid cursor; list again from the start") from exc
    if not isinstance(offset, int) or offset < 0:
        raise MCPError(code=INVALID_PARAMS, message="invalid cursor; list again from the start")
    return offset
