"""Jupyter notebooks (.ipynb) with nbformat: Markdown cells as Markdown, code cells as code, outputs
left out. The cells are read as one Markdown document, so a heading in one cell heads the cells
after it, as a notebook's outline shows it."""

from __future__ import annotations

import re
from typing import Any

import nbformat
from nbformat.reader import NotJSONError

from kb.errors import ExtractionError
from kb.extractors._package import reason
from kb.extractors.markdown import extract_markdown
from kb.extractors.text import decode_text, metadata_title
from kb.models import Document

_BACKTICK_RUN = re.compile(r"`{3,}")


def extract_ipynb(path: str, data: bytes) -> Document:
    """Extract a notebook: Markdown cells through kb's Markdown extractor (one section per heading),
    code cells as fenced code in the section they fall under, raw cells as text; outputs,
    attachments and metadata are left out. Line numbers are not kept: they would count the JSON.

    Title: the notebook metadata's `title`, else a Markdown cell's front matter title, else the
    first H1, else the file name.

    Raises:
        ExtractionError: the file is not JSON, or not a notebook nbformat can read.
    """
    text = decode_text(path, data)
    try:
        # Read and upgraded to version 4, not validated: a notebook a schema would fault (a
        # missing cell id, an odd output) still has its cells, and they are what kb reads.
        notebook = nbformat.convert(nbformat.reader.reads(text), 4)
        cells = list(notebook.get("cells") or [])
        language = _language(notebook.get("metadata") or {})
    except NotJSONError as exc:
        raise ExtractionError(path, "not a notebook (not JSON)") from exc
    except (
        nbformat.ValidationError,
        ValueError,
        LookupError,
        TypeError,
        AttributeError,
        RecursionError,
    ) as exc:
        raise ExtractionError(path, f"not a notebook nbformat can read ({reason(exc)})") from exc
    blocks = [block for cell in cells if isinstance(cell, dict) and (block := _markdown(cell, language))]
    document = extract_markdown(path, "\n\n".join(blocks).encode())
    for section in document.sections:
        section.line_start = section.line_end = None
    title = metadata_title(_str((notebook.get("metadata") or {}).get("title"))) or document.title
    return document.model_copy(update={"format": "ipynb", "title": title})


def _markdown(cell: dict[str, Any], language: str) -> str:
    source = cell.get("source") or ""
    if isinstance(source, list):
        source = "".join(str(line) for line in source)
    if not isinstance(source, str) or not source.strip():
        return ""
    kind = cell.get("cell_type")
    if kind == "markdown":
        return source.strip("\n")
    # A fence longer than any backtick run inside, so the code cannot close it.
    fence = "`" * max([3, *(len(run) + 1 for run in _BACKTICK_RUN.findall(source))])
    info = language if kind == "code" else ""
    return f"{fence}{info}\n{source.rstrip()}\n{fence}"


def _language(metadata: dict[str, Any]) -> str:
    info = metadata.get("language_info") or {}
    kernel = metadata.get("kernelspec") or {}
    name = _str(info.get("name") if isinstance(info, dict) else None) or _str(
        kernel.get("language") if isinstance(kernel, dict) else None
    )
    return name if name and name.replace("-", "").replace("+", "").isalnum() else ""


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
