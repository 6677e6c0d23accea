"""reStructuredText (.rst, .rest) with docutils: one section per section title, at every depth."""

from __future__ import annotations

import re
from typing import Any

import docutils.core
import docutils.utils
from docutils import ApplicationError, nodes

from kb.extractors._outline import Outline
from kb.extractors._package import reason
from kb.extractors.text import decode_text, extract_text, file_stem
from kb.models import Document

# Quiet and safe: no message is reported or halts the parse, no file is included and no raw
# output passed through (`.. include::` and `.. raw::` would read other files), no config files
# read, no syntax highlighting (it would import Pygments for each code block).
_SETTINGS: dict[str, Any] = {
    "report_level": 5,
    "halt_level": 5,
    "warning_stream": False,
    "file_insertion_enabled": False,
    "raw_enabled": False,
    "_disable_config": True,
    "syntax_highlight": "none",
    "input_encoding": "unicode",
    "traceback": True,
}
# Not text of the document: parser messages (an unknown Sphinx directive's source lands in one),
# comments, link targets and substitution definitions.
_LEFT_OUT = (nodes.system_message, nodes.comment, nodes.target, nodes.substitution_definition, nodes.raw)
_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1+\s*")
_MAX_DEPTH = 6


def extract_rst(path: str, data: bytes) -> Document:
    """Extract a reStructuredText file: one section per section title, its trail the titles above
    it, with the lines it spans; text before the first title is the "intro". A lone top-level
    title is the document's title, as docutils reads it.

    Title: the document title, else the file name. A file docutils cannot parse is read as plain
    text (with a warning), since its words can still be indexed.

    Raises:
        ExtractionError: the bytes are binary, not text.
    """
    text = decode_text(path, data)
    try:
        tree = docutils.core.publish_doctree(text, source_path=path, settings_overrides=_SETTINGS)
    except (ApplicationError, docutils.utils.SystemMessage, RecursionError, ValueError, LookupError,
            TypeError, AttributeError, AssertionError, NotImplementedError) as exc:  # fmt: skip
        plain = extract_text(path, data)
        warning = f"read as plain text: docutils could not parse it ({reason(exc)})"
        return plain.model_copy(update={"format": "rst", "warnings": [*plain.warnings, warning]})
    lines = text.split("\n")
    outline = Outline(max_level=_MAX_DEPTH, intro_line=1)
    _walk(tree, outline, lines, depth=1)
    last_line = len(lines) - (1 if text.endswith("\n") else 0)
    title = " ".join(str(tree.get("title") or "").split()) or file_stem(path)
    return Document(path=path, format="rst", title=title, sections=outline.sections(last_line))


def _walk(node: nodes.Element, outline: Outline, lines: list[str], depth: int) -> None:
    for child in node.children:
        if isinstance(child, _LEFT_OUT) or (isinstance(child, nodes.title) and child.parent is node):
            continue
        if isinstance(child, nodes.section):
            title = child.next_node(nodes.title)
            if title is not None:
                outline.heading(depth, title.astext(), _title_start(title, lines))
            _walk(child, outline, lines, depth + 1)
        elif isinstance(child, nodes.row):
            cells = (" ".join(entry.astext().split()) for entry in child.children)
            outline.text(" | ".join(cell for cell in cells if cell))
        elif isinstance(child, nodes.TextElement):
            outline.text(child.astext())
        elif isinstance(child, nodes.Element):
            _walk(child, outline, lines, depth)


def _title_start(title: nodes.title, lines: list[str]) -> int | None:
    """The first line of a section title: docutils gives the line of its underline; the title's
    text is the line above, and an overline the one above that."""
    underline = title.line
    if not isinstance(underline, int) or underline < 2 or underline > len(lines):
        return None
    start = underline - 1
    if start >= 2 and _ADORNMENT.fullmatch(lines[start - 2]):
        start -= 1
    return start
