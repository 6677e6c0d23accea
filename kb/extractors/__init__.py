"""Turn one file's bytes into a Document: pure functions of (path, bytes), one module per format.

    format_for("guide/install.md")          -> "md"
    extract("guide/install.md", data)       -> Document(title=..., sections=[...])

`extract` raises `ExtractionError` for a file that cannot be indexed (binary bytes under a text
extension, a corrupt or password-protected PDF); everything else, including empty files and odd
encodings, becomes a Document.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from types import MappingProxyType

from kb.errors import ExtractionError
from kb.extractors.html import extract_html
from kb.extractors.markdown import extract_markdown
from kb.extractors.pdf import extract_pdf
from kb.extractors.text import extract_text
from kb.models import Document, Format

__all__ = ["EXTENSIONS", "extract", "format_for"]

EXTENSIONS: Mapping[str, Format] = MappingProxyType(
    {
        ".md": "md",
        ".markdown": "md",
        ".txt": "txt",
        ".text": "txt",
        ".rst": "txt",
        ".log": "txt",
        ".pdf": "pdf",
        ".html": "html",
        ".htm": "html",
    }
)
"""File extensions kb indexes (lowercase, with the dot) and the format of each."""

_EXTRACTORS: Mapping[Format, Callable[[str, bytes], Document]] = MappingProxyType(
    {"md": extract_markdown, "txt": extract_text, "pdf": extract_pdf, "html": extract_html}
)


def format_for(path: str) -> Format | None:
    """The format of a file by its extension (case-insensitive), or None if kb does not index it."""
    return EXTENSIONS.get(posixpath.splitext(path)[1].lower())


def extract(path: str, data: bytes) -> Document:
    """Extract the file at root-relative POSIX `path`, whose content is `data`.

    Raises:
        ExtractionError: the file cannot be indexed; `reason` says why (unsupported extension,
            binary content, corrupt or encrypted PDF).
    """
    fmt = format_for(path)
    if fmt is None:
        raise ExtractionError(path, "unsupported file type")
    return _EXTRACTORS[fmt](path, data)
