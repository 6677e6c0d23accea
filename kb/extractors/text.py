"""Plain text (.txt, .text, .log): paragraphs grouped into bounded sections.

Also home to the byte-to-str decoding that the Markdown and HTML extractors share, so every text
format treats encodings and binary content the same way.
"""

from __future__ import annotations

import codecs
import posixpath
import re

from kb.errors import ExtractionError
from kb.models import Document, Section

SECTION_CHARS = 2_000
"""Paragraphs are grouped into sections of at most this many characters (a soft target)."""

_SNIFF_BYTES = 8_192
_CONTROL_RATIO = 0.30
# C0 controls except the whitespace ones (\t \n \v \f \r), plus DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_UNDERLINE = re.compile(r"([=\-~#*+^\"'`:._])\1{2,}[ \t]*")
_TITLE_MAX = 120
_JUNK_TITLES = frozenset(
    {
        "untitled", "untitled document", "title", "document", "no title", "none", "unknown",
        "powerpoint presentation", "presentation", "slide 1",
    }
)  # fmt: skip
_FILE_NAME_TITLE = re.compile(
    r"(microsoft \w+ - .*|.*\.(docx?|pdf|tex|dvi|ps|txt|odt|odp|rtf|pptx?|xlsx?|indd|qxd|html?|epub))",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def file_stem(path: str) -> str:
    """The file name without its extension: the title of last resort."""
    return posixpath.splitext(posixpath.basename(path))[0] or posixpath.basename(path)


def metadata_title(raw: str | None) -> str | None:
    """A title from a file's metadata (PDF /Title, Office core properties, EPUB dc:title), spaces
    collapsed, or None when it is empty or the junk that tools leave there ("Untitled", a file name)."""
    title = _SPACES.sub(" ", raw or "").strip()
    if not title or title.lower() in _JUNK_TITLES or _FILE_NAME_TITLE.fullmatch(title):
        return None
    return title[:_TITLE_MAX]


def decode_text(path: str, data: bytes, encoding: str | None = None) -> str:
    """Turn a text file's bytes into a str with `\\n` line ends.

    A byte-order mark wins; then `encoding` (e.g. an HTML meta charset) if given and valid; then
    UTF-8; then cp1252, then Latin-1, which never fails.

    Raises:
        ExtractionError: the bytes look binary (NUL bytes without a UTF-16/32 BOM, or more than
            30% control characters).
    """
    bom_encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if bom_encoding is None and b"\x00" in data[:_SNIFF_BYTES]:
        raise ExtractionError(path, "binary content, not text")
    text = _decode(data, bom_encoding or encoding)
    sample = text[:_SNIFF_BYTES]
    if sample and len(_CONTROL.findall(sample)) > _CONTROL_RATIO * len(sample):
        raise ExtractionError(path, "binary content, not text")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _decode(data: bytes, encoding: str | None) -> str:
    candidates = [encoding] if encoding else []
    candidates += ["utf-8", "cp1252"]
    for candidate in candidates:
        try:
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1")


def extract_text(path: str, data: bytes) -> Document:
    """Extract a plain-text file: sections of whole paragraphs, about 2,000 characters each.

    The title is the first line when it is underlined (`Title` over `=====`, as in reStructuredText
    and setext Markdown), otherwise the file name without its extension.

    Raises:
        ExtractionError: the bytes are binary, not text.
    """
    text = decode_text(path, data)
    lines = text.split("\n")
    sections = [
        Section(fragment=f"part-{n}", text=body, line_start=start, line_end=end)
        for n, (start, end, body) in enumerate(_group(_paragraphs(lines)), start=1)
    ]
    return Document(path=path, format="txt", title=_title(lines) or file_stem(path), sections=sections)


def _title(lines: list[str]) -> str | None:
    """The first non-empty line if an underline (optionally also an overline) marks it as a title."""
    for i, line in enumerate(lines[:50]):
        if not line.strip():
            continue
        if _UNDERLINE.fullmatch(line) and i + 2 < len(lines) and _UNDERLINE.fullmatch(lines[i + 2]):
            candidate, underline = lines[i + 1].strip(), lines[i + 2]  # overlined title
        elif i + 1 < len(lines):
            candidate, underline = line.strip(), lines[i + 1]
        else:
            return None
        if candidate and len(candidate) <= _TITLE_MAX and _UNDERLINE.fullmatch(underline):
            return candidate
        return None
    return None


Paragraph = tuple[int, int, str]
"""(first line, last line, text), lines 1-based and inclusive."""


def _paragraphs(lines: list[str]) -> list[Paragraph]:
    paragraphs: list[Paragraph] = []
    start = 0
    for number, line in enumerate(lines, start=1):
        if line.strip():
            if not start:
                start = number
        elif start:
            paragraphs.append((start, number - 1, "\n".join(lines[start - 1 : number - 1]).strip()))
            start = 0
    if start:
        paragraphs.append((start, len(lines), "\n".join(lines[start - 1 :]).strip()))
    return paragraphs


def _group(paragraphs: list[Paragraph]) -> list[Paragraph]:
    """Join paragraphs into runs of at most SECTION_CHARS; split any paragraph longer than that."""
    groups: list[Paragraph] = []
    run: list[Paragraph] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if run:
            groups.append((run[0][0], run[-1][1], "\n\n".join(p[2] for p in run)))
            run.clear()
            size = 0

    for paragraph in paragraphs:
        length = len(paragraph[2])
        if length > SECTION_CHARS:
            flush()
            groups.extend(_split_long(paragraph))
            continue
        if run and size + 2 + length > SECTION_CHARS:
            flush()
        run.append(paragraph)
        size += length + (2 if size else 0)
    flush()
    return groups


def _split_long(paragraph: Paragraph) -> list[Paragraph]:
    """Cut one long paragraph into chunks of at most SECTION_CHARS, at whitespace where possible."""
    first_line, _, text = paragraph
    chunks: list[Paragraph] = []
    pos, line = 0, first_line
    while pos < len(text):
        end = min(pos + SECTION_CHARS, len(text))
        if end < len(text):
            # Prefer the last whitespace in the second half of the window; else cut mid-word.
            floor = pos + SECTION_CHARS // 2
            cut = max(text.rfind(" ", floor, end), text.rfind("\n", floor, end), text.rfind("\t", floor, end))
            if cut > pos:
                end = cut
        chunk = text[pos:end]
        start_line = line + count_leading_newlines(chunk)
        line += chunk.count("\n")
        if body := chunk.strip():
            chunks.append((start_line, line - count_trailing_newlines(chunk), body))
        pos = end
    return chunks


def count_leading_newlines(chunk: str) -> int:
    return chunk[: len(chunk) - len(chunk.lstrip())].count("\n")


def count_trailing_newlines(chunk: str) -> int:
    return chunk[len(chunk.rstrip()) :].count("\n")
