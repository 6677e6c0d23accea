"""PDF: one section per page with pypdf; a page that cannot be read is a warning, not a failure."""

from __future__ import annotations

import contextlib
import contextvars
import io
import re
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import PyPdfError

from kb.errors import ExtractionError
from kb.extractors.text import file_stem, metadata_title
from kb.models import Document, Section

# pypdf raises many unrelated exception types on malformed input (a KeyError for a missing
# dictionary entry, a TypeError for an object of the wrong kind, zlib and struct errors for bad
# streams, RecursionError for cyclic references...). Everything a broken file can trigger is caught
# here, and only around pypdf calls; programming errors in kb itself surface in tests.
_PDF_ERRORS: tuple[type[BaseException], ...] = (
    PyPdfError,
    ArithmeticError,
    AssertionError,
    AttributeError,
    LookupError,
    NotImplementedError,
    OSError,
    RecursionError,
    TypeError,
    ValueError,
    struct.error,
    zlib.error,
)
_SPACES = re.compile(r"[ \t\xa0]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_TITLE_MAX = 120
_REASON_MAX = 200


def extract_pdf(path: str, data: bytes) -> Document:
    """Extract a PDF: one section per page with text (fragment "page-N", N from 1).

    Title: the metadata /Title unless empty or junk ("Untitled", a file name), else the first line
    of text, else the file name. Pages that fail to extract are listed in `warnings`. A PDF with no
    text at all (a scan) is still a document, with no sections and a warning.

    Raises:
        ExtractionError: the PDF is encrypted with a password, or corrupt beyond reading, or no page
            of it could be read.
    """
    if not data.strip():
        raise ExtractionError(path, "empty PDF file")
    if b"%PDF-" not in data[:1024]:
        raise ExtractionError(path, "not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractionError(path, "encrypted PDF (needs a password)")
        page_count = len(reader.pages)
    except _PDF_ERRORS as exc:
        raise ExtractionError(path, f"corrupt or truncated PDF ({_reason(exc)})") from exc

    sections: list[Section] = []
    warnings: list[str] = []
    with _fonts_built_once():
        for number in range(1, page_count + 1):
            try:
                raw = reader.pages[number - 1].extract_text()
            except _PDF_ERRORS as exc:
                warnings.append(f"page {number}: {_reason(exc)}")
                continue
            if text := normalize(raw):
                sections.append(Section(fragment=f"page-{number}", page=number, text=text))
    if page_count and len(warnings) == page_count:
        raise ExtractionError(path, f"no page could be read ({warnings[0]})")
    if not sections and not warnings:
        warnings.append("no extractable text (a scanned PDF?)")

    title = _metadata_title(reader) or _first_line(sections) or file_stem(path)
    return Document(path=path, format="pdf", title=title, sections=sections, warnings=warnings)


def normalize(text: str) -> str:
    """Collapse runs of spaces, drop control characters, blank lines and undecodable glyphs (U+FFFD)."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _metadata_title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        raw = metadata.title if metadata is not None else None
    except _PDF_ERRORS:
        return None  # a broken Info dictionary costs the title, not the document
    return metadata_title(_CONTROL.sub("", raw)) if isinstance(raw, str) else None


def _first_line(sections: list[Section]) -> str | None:
    if not sections:
        return None
    return sections[0].text.split("\n", 1)[0][:_TITLE_MAX].strip() or None


def _reason(exc: BaseException) -> str:
    message = str(exc).strip() or type(exc).__name__
    return message[:_REASON_MAX]


# pypdf (7.x) rebuilds each font of a page from its dictionary on every page, parsing its character
# map again: a fifth of extraction time on the shared PDF set. A font is one shared object across
# the pages of a document, so while one document is extracted, each is built once. Where pypdf
# has no such hook, nothing changes. (A built font is only ever given the same default space width.)
_fonts: contextvars.ContextVar[dict[tuple[int, int, int], Any] | None] = contextvars.ContextVar(
    "kb_pdf_fonts", default=None
)


@contextlib.contextmanager
def _fonts_built_once() -> Iterator[None]:
    token = _fonts.set({})  # per thread, so two documents extracted at once never share fonts
    try:
        yield
    finally:
        _fonts.reset(token)


def _share_fonts() -> None:
    try:
        from pypdf.generic._font import Font
    except ImportError:
        return
    build = Font.from_font_resource.__func__  # type: ignore[attr-defined]

    def from_font_resource(cls: type[Font], pdf_font_dict: Any) -> Font:
        fonts = _fonts.get()
        ref = getattr(pdf_font_dict, "indirect_reference", None)
        if fonts is None or ref is None:
            return build(cls, pdf_font_dict)
        key = (id(ref.pdf), ref.idnum, ref.generation)
        if key not in fonts:
            fonts[key] = build(cls, pdf_font_dict)
        return fonts[key]

    Font.from_font_resource = classmethod(from_font_resource)  # type: ignore[method-assign,assignment]


_share_fonts()
