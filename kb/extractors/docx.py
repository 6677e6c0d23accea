"""Word (.docx) with python-docx: paragraphs by style, Heading 1-3 open sections, tables one row a line."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import docx
from docx.enum.style import WD_STYLE_TYPE
from docx.opc.exceptions import OpcError
from docx.table import Table
from docx.text.paragraph import Paragraph

from kb.errors import ExtractionError
from kb.extractors._outline import Outline, clean
from kb.extractors._package import PARSER_ERRORS, open_package, reason
from kb.extractors.text import file_stem, metadata_title
from kb.models import Document

# Word stores built-in style names in English ("heading 1") whatever the user's language;
# python-docx shows them capitalized.
_HEADING_STYLE = re.compile(r"heading ([1-9])", re.IGNORECASE)
_KIND = "Word document"
_ERRORS: tuple[type[BaseException], ...] = (OpcError, *PARSER_ERRORS)


def extract_docx(path: str, data: bytes) -> Document:
    """Extract a Word document: one section per Heading 1-3 paragraph (deeper headings are lines
    of their section), plus an "intro" for text before any; each table row is one line, its cells
    separated by " | ".

    Title: the document's core property title unless empty or junk, else its first Title-styled
    paragraph, else the first Heading 1, else the file name.

    Raises:
        ExtractionError: the file is encrypted, not a zip archive, or corrupt (a missing or
            malformed part).
    """
    open_package(path, data, _KIND).close()
    outline = Outline(max_level=3)
    styled_title: str | None = None
    try:
        document = docx.Document(io.BytesIO(data))
        core_title = metadata_title(document.core_properties.title)
        style_name = _style_names(document)
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in _rows(block):
                    outline.text(row)
                continue
            style = style_name(block)
            text = block.text
            if style == "title" and styled_title is None:
                styled_title = clean(text).replace("\n", " ") or None
            elif heading := _HEADING_STYLE.fullmatch(style):
                outline.heading(int(heading.group(1)), text)
            else:
                outline.text(text)
    except _ERRORS as exc:
        raise ExtractionError(path, f"corrupt {_KIND} ({reason(exc)})") from exc
    title = core_title or styled_title or outline.first_h1 or file_stem(path)
    return Document(path=path, format="docx", title=title, sections=outline.sections())


def _style_names(document: Any) -> Callable[[Paragraph], str]:
    """A paragraph's style name, lowercased, from a table built once: python-docx's
    `Paragraph.style` looks for the default style among all of them for every paragraph that names
    none, which made a 40-page document take a second."""
    names = {style.style_id: (style.name or "").strip().lower() for style in document.styles}
    default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    fallback = (default.name or "").strip().lower() if default is not None else ""

    def name(paragraph: Paragraph) -> str:
        style_id = paragraph._p.style  # the pStyle value, None when the paragraph names no style
        return names.get(style_id, fallback) if style_id is not None else fallback

    return name


def _rows(table: Table) -> Iterator[str]:
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:  # a merged cell is repeated for each grid column it spans
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            if text := " ".join(clean(cell.text).split("\n")):
                cells.append(text)
        if cells:
            yield " | ".join(cells)
