"""Documents as MCP names: resource URIs (`kb://doc/<path>#<fragment>`), public URLs, MIME types."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from kb.extractors import format_for
from kb.models import DocId, Format

DOC_URI_PREFIX = "kb://doc/"
DOC_TEMPLATE = DOC_URI_PREFIX + "{+path}"
DOC_PASSAGE_TEMPLATE = DOC_TEMPLATE + "#{fragment}"
STATUS_URI = "kb://status"

MIME_TYPES: dict[Format, str] = {
    "md": "text/markdown",
    "txt": "text/plain",
    "html": "text/html",
    "rst": "text/x-rst",
    # Served as their extracted text (see `RENDERED_FORMATS`): pages and slides as marked blocks,
    # the others with their headings as Markdown.
    "pdf": "text/plain",
    "pptx": "text/plain",
    "docx": "text/markdown",
    "odt": "text/markdown",
    "epub": "text/markdown",
    "ipynb": "text/markdown",
}


@functools.lru_cache(maxsize=16_384)
def _quoted(text: str, safe: str) -> str:
    """`quote`, remembered: every search result and listed resource names a path, mostly again."""
    return quote(text, safe=safe)


def doc_uri(path: str, fragment: str | None = None) -> str:
    """The resource URI of a document (or of one passage, with `#fragment`)."""
    uri = DOC_URI_PREFIX + _quoted(path, "/")
    return f"{uri}#{_quoted(fragment, '')}" if fragment else uri


def doc_url(url_base: str | None, doc_id: DocId) -> str:
    """Where a document (or one passage of it) lives: its resource URI, or its address under
    `url_base`. Path and fragment stay apart, since a path may itself contain '#'."""
    if url_base is None:
        return doc_uri(doc_id.path, doc_id.fragment)
    url = url_base.rstrip("/") + "/" + _quoted(doc_id.path, "/")
    return f"{url}#{_quoted(doc_id.fragment, '')}" if doc_id.fragment else url


def parse_doc_uri(uri: str) -> DocId | None:
    """The id a `kb://doc/...` URI names (None for other URIs). In a URI a '#' inside the path is
    %-encoded, so the first '#' starts the fragment."""
    if not uri.startswith(DOC_URI_PREFIX):
        return None
    path, _, fragment = uri[len(DOC_URI_PREFIX) :].partition("#")
    return DocId(unquote(path), unquote(fragment) or None)


def canonical_uri(uri: str) -> str:
    """One spelling per document: `kb://doc/ref page.html`, `kb://doc/ref%20page.html` and
    `kb://doc/ref%20page.html#intro` all name `doc_uri("ref page.html")`; other URIs are kept."""
    doc_id = parse_doc_uri(uri)
    return uri if doc_id is None else doc_uri(doc_id.path)


def mime_type_for_uri(uri: str) -> str | None:
    """The MIME type of what a `kb://doc/...` URI serves, from the file's extension."""
    doc_id = parse_doc_uri(uri)
    fmt = format_for(doc_id.path) if doc_id is not None else None
    if fmt is None:
        return None
    # A passage is extracted text, except in Markdown, which it is served as written.
    return "text/plain" if doc_id is not None and doc_id.fragment and fmt != "md" else MIME_TYPES[fmt]


def iso_mtime(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")
