"""PowerPoint (.pptx) with python-pptx: one section per slide, numbered like PDF pages, notes included."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.exc import PythonPptxError

from kb.errors import ExtractionError
from kb.extractors._outline import clean
from kb.extractors._package import PARSER_ERRORS, open_package, reason
from kb.extractors.text import file_stem, metadata_title
from kb.models import Document, Section

_KIND = "PowerPoint presentation"
_ERRORS: tuple[type[BaseException], ...] = (PythonPptxError, *PARSER_ERRORS)


def extract_pptx(path: str, data: bytes) -> Document:
    """Extract a presentation: one section per slide with text (fragment "slide-N", `page` N from
    1), headed by the slide's title; then the text of its other shapes in the slide's order (table
    rows one a line, groups opened), then its speaker notes.

    Title: the core property title unless empty or junk, else the first slide's title, else the
    file name.

    Raises:
        ExtractionError: the file is encrypted, not a zip archive, or corrupt.
    """
    open_package(path, data, _KIND).close()
    sections: list[Section] = []
    first_title: str | None = None
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
        core_title = metadata_title(presentation.core_properties.title)
        for number, slide in enumerate(presentation.slides, start=1):
            title_shape = slide.shapes.title
            heading = _one_line(title_shape.text_frame.text) if title_shape is not None else ""
            lines = [heading] if heading else []
            lines += (text for shape in _shapes(slide.shapes, title_shape) for text in _texts(shape))
            if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None:
                lines.append(notes.text)
            if text := clean("\n".join(lines)):
                sections.append(
                    Section(fragment=f"slide-{number}", page=number, heading=heading or None, text=text)
                )
            first_title = first_title or heading or None
    except _ERRORS as exc:
        raise ExtractionError(path, f"corrupt {_KIND} ({reason(exc)})") from exc
    title = core_title or first_title or file_stem(path)
    return Document(path=path, format="pptx", title=title, sections=sections)


def _one_line(text: str) -> str:
    # python-pptx gives a line break inside a paragraph as a vertical tab
    return " ".join(clean(text.replace("\v", "\n")).split("\n"))


def _shapes(shapes: Iterable[Any], skip: Any) -> Iterator[Any]:
    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes, skip)
        elif skip is None or shape.shape_id != skip.shape_id:
            yield shape


def _texts(shape: Any) -> Iterator[str]:
    if shape.has_text_frame:
        yield shape.text_frame.text.replace("\v", "\n")
    elif getattr(shape, "has_table", False):
        for row in shape.table.rows:
            cells = (_one_line(cell.text) for cell in row.cells if not cell.is_spanned)
            yield " | ".join(cell for cell in cells if cell)
