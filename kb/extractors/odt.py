"""OpenDocument text (.odt): the ODF XML through lxml; text:h of outline level 1-3 open sections."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from lxml import etree

from kb.errors import ExtractionError
from kb.extractors._outline import Outline, clean
from kb.extractors._package import PARSER_ERRORS, open_package, reason
from kb.extractors.text import file_stem, metadata_title
from kb.models import Document

_KIND = "OpenDocument text"
_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
    "manifest": "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0",
}
_TEXT, _TABLE, _OFFICE = (f"{{{_NS[p]}}}" for p in ("text", "table", "office"))
_H, _P, _ROW, _CELL = _TEXT + "h", _TEXT + "p", _TABLE + "table-row", _TABLE + "table-cell"
_SPACE, _TAB, _BREAK = _TEXT + "s", _TEXT + "tab", _TEXT + "line-break"
# Not part of what the document says: deleted text kept for change tracking, comments, the
# number a footnote is cited by, and the index and table-of-contents copies of the headings.
_LEFT_OUT = frozenset(
    {
        _TEXT + "tracked-changes", _OFFICE + "annotation", _OFFICE + "annotation-end",
        _TEXT + "note-citation", _TEXT + "table-of-content", _TEXT + "alphabetical-index",
        _TEXT + "illustration-index", _TEXT + "table-index", _TEXT + "bibliography",
    }
)  # fmt: skip
# No network, no external entities: a document is read as it stands.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_MISSING_OR_BROKEN: tuple[type[BaseException], ...] = (KeyError, *PARSER_ERRORS)


def extract_odt(path: str, data: bytes) -> Document:
    """Extract an OpenDocument text: one section per heading of outline level 1-3 (deeper ones are
    lines of their section), plus an "intro" for text before any; each table row is one line.

    Title: meta.xml's dc:title unless empty or junk, else the first Title paragraph, else the first
    level-1 heading, else the file name.

    Raises:
        ExtractionError: the file is password-protected, not a zip archive, or corrupt.
    """
    with open_package(path, data, _KIND) as archive:
        if _encrypted(archive):
            raise ExtractionError(path, f"encrypted {_KIND} (needs a password)")
        try:
            content = etree.fromstring(archive.read("content.xml"), _PARSER)
            meta_title = _meta_title(archive)
        except KeyError as exc:
            raise ExtractionError(path, f"corrupt {_KIND} (no content.xml)") from exc
        except PARSER_ERRORS as exc:
            raise ExtractionError(path, f"corrupt {_KIND} ({reason(exc)})") from exc
    title_styles = _title_styles(content)
    outline = Outline(max_level=3)
    styled_title: str | None = None
    for body in content.iterfind("office:body/office:text", _NS):
        for kind, element in _blocks(body):
            if kind == "row":
                outline.text(_row(element))
            elif element.tag == _H:
                level = element.get(_TEXT + "outline-level", "1")
                outline.heading(int(level) if level.isdigit() else 1, _inline(element))
            elif styled_title is None and element.get(_TEXT + "style-name") in title_styles:
                styled_title = " ".join(clean(_inline(element)).split("\n")) or None
            else:
                outline.text(_inline(element))
    title = meta_title or styled_title or outline.first_h1 or file_stem(path)
    return Document(path=path, format="odt", title=title, sections=outline.sections())


def _encrypted(archive: zipfile.ZipFile) -> bool:
    try:
        manifest = etree.fromstring(archive.read("META-INF/manifest.xml"), _PARSER)
    except _MISSING_OR_BROKEN:
        return False  # no readable manifest: content.xml will say whether it can be read
    return manifest.find(".//manifest:encryption-data", _NS) is not None


def _meta_title(archive: zipfile.ZipFile) -> str | None:
    try:
        meta = etree.fromstring(archive.read("meta.xml"), _PARSER)
    except KeyError:
        return None
    found = meta.find(".//dc:title", _NS)
    return metadata_title("".join(found.itertext())) if found is not None else None


def _title_styles(content: etree._Element) -> set[str]:
    """The "Title" style and the automatic styles derived from it (LibreOffice writes `P1`, parent Title)."""
    names = {"Title"}
    for style in content.iterfind("office:automatic-styles/style:style", _NS):
        if style.get(f"{{{_NS['style']}}}parent-style-name") == "Title":
            names.add(style.get(f"{{{_NS['style']}}}name", ""))
    return names


def _blocks(element: etree._Element) -> Iterator[tuple[str, etree._Element]]:
    """Paragraphs, headings and table rows in document order, through lists, sections and frames."""
    for child in element:
        tag = child.tag
        if tag in _LEFT_OUT or not isinstance(tag, str):
            continue
        if tag in (_H, _P):
            yield "paragraph", child
        elif tag == _ROW:
            yield "row", child
        else:
            yield from _blocks(child)


def _row(row: etree._Element) -> str:
    cells = (" ".join(clean(_inline(cell)).split("\n")) for cell in row.iterfind("table:table-cell", _NS))
    return " | ".join(cell for cell in cells if cell)


def _inline(element: etree._Element) -> str:
    """The text of a paragraph (or cell) with ODF's spaces, tabs and line breaks."""
    parts: list[str] = [element.text or ""]
    for child in element:
        tag = child.tag
        if isinstance(tag, str) and tag not in _LEFT_OUT:
            if tag == _SPACE:
                count = child.get(_TEXT + "c", "1")
                parts.append(" " * min(int(count) if count.isdigit() else 1, 100))
            elif tag == _TAB:
                parts.append("\t")
            elif tag == _BREAK:
                parts.append("\n")
            elif tag in (_H, _P):  # a paragraph inside one: a footnote's body, a text box
                parts.append("\n" + _inline(child) + "\n")
            else:
                parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)
