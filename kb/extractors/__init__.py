"""Turn one file's bytes into a Document: pure functions of (path, bytes), one module per format.

    format_for("guide/install.md")          -> "md"
    extract("guide/install.md", data)       -> Document(title=..., sections=[...])

`extract` raises `ExtractionError` for a file that cannot be indexed (binary bytes under a text
extension, a corrupt, truncated or password-protected PDF, Office file or e-book, a notebook that
is not JSON); everything else, including empty files and odd
encodings, becomes a Document.
"""

from __future__ import annotations

import importlib
import posixpath
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from kb.errors import ExtractionError
from kb.models import Document, Format

__all__ = ["EXTENSIONS", "decode", "extract", "extractor_modules", "format_for"]

EXTENSIONS: Mapping[str, Format] = MappingProxyType(
    {
        ".md": "md",
        ".markdown": "md",
        ".txt": "txt",
        ".text": "txt",
        ".log": "txt",
        ".rst": "rst",
        ".rest": "rst",
        ".pdf": "pdf",
        ".html": "html",
        ".htm": "html",
        ".docx": "docx",
        ".odt": "odt",
        ".pptx": "pptx",
        ".epub": "epub",
        ".ipynb": "ipynb",
    }
)
"""File extensions kb indexes (lowercase, with the dot) and the format of each."""

# Imported on first use: pypdf and markdown-it cost a third of a second to import (docutils,
# python-docx, python-pptx, ebooklib and nbformat as much again), which commands that never
# extract (`kb status`, `kb search`, a no-change `kb index`) should not pay.
_EXTRACTORS: Mapping[Format, tuple[str, str]] = MappingProxyType(
    {
        "md": ("kb.extractors.markdown", "extract_markdown"),
        "txt": ("kb.extractors.text", "extract_text"),
        "pdf": ("kb.extractors.pdf", "extract_pdf"),
        "html": ("kb.extractors.html", "extract_html"),
        "docx": ("kb.extractors.docx", "extract_docx"),
        "odt": ("kb.extractors.odt", "extract_odt"),
        "pptx": ("kb.extractors.pptx", "extract_pptx"),
        "epub": ("kb.extractors.epub", "extract_epub"),
        "ipynb": ("kb.extractors.ipynb", "extract_ipynb"),
        "rst": ("kb.extractors.rst", "extract_rst"),
    }
)


def extractor_modules(formats: Iterable[Format]) -> tuple[str, ...]:
    """The modules that extract `formats`, for a worker process to import ahead of its first file
    (only those: pypdf alone takes ~0.2 s to import, and every worker waits for it)."""
    return tuple(sorted({_EXTRACTORS[fmt][0] for fmt in formats}))


def format_for(path: str) -> Format | None:
    """The format of a file by its extension (case-insensitive), or None if kb does not index it."""
    return EXTENSIONS.get(posixpath.splitext(path)[1].lower())


def extract(path: str, data: bytes) -> Document:
    """Extract the file at root-relative POSIX `path`, whose content is `data`.

    Raises:
        ExtractionError: the file cannot be indexed; `reason` says why (unsupported extension,
            binary content, a corrupt, truncated or encrypted PDF, Office file or EPUB...).
    """
    fmt = format_for(path)
    if fmt is None:
        raise ExtractionError(path, "unsupported file type")
    module, function = _EXTRACTORS[fmt]
    extractor = getattr(importlib.import_module(module), function)
    return extractor(path, data)


def decode(path: str, data: bytes) -> str:
    """The text of a Markdown, text, reStructuredText or HTML file as written, decoded as its
    extractor decodes it (a byte-order mark, an HTML meta charset, UTF-8, cp1252, Latin-1), line
    ends made `\\n`.

    Raises:
        ExtractionError: the bytes are binary, not text.
    """
    from kb.extractors.text import decode_text

    charset = None
    if format_for(path) == "html":
        from kb.extractors.html import meta_charset

        charset = meta_charset(data)
    return decode_text(path, data, charset)
