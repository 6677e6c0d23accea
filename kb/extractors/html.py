"""HTML (.html, .htm): visible text only, split into sections at h1-h3, parsed by libxml2 (lxml).

libxml2's HTML parser tokenizes as HTML5 does (an unclosed comment, tag or attribute quote runs to
the end of the page, as in a browser) in one linear pass; the tree it builds is walked without
recursion, so neither hostile markup nor deep nesting costs more than the page's length.
"""

from __future__ import annotations

import codecs
import re

from lxml import etree

from kb.extractors.markdown import Fragments
from kb.extractors.text import count_leading_newlines, count_trailing_newlines, decode_text, file_stem
from kb.models import Document, Section

# Elements whose content a reader never sees as text. <head> is here too; <title> is read apart.
_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "math", "head", "iframe", "object"})
_SECTION_HEADINGS = frozenset({"h1", "h2", "h3"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tr",
        "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")
_CHARSET_SNIFF_BYTES = 4_096
_TOO_DEEP = (
    "the page nests elements deeper than the HTML parser follows; the text below that depth is not indexed"
)


def extract_html(path: str, data: bytes) -> Document:
    """Extract an HTML page: one section per h1-h3 heading, plus an "intro" for text before any.

    Title: `<title>`, else the first `<h1>`, else the file name. Scripts, styles, `<head>`, SVG and
    other invisible content are dropped; entities are decoded.

    Raises:
        ExtractionError: the bytes are binary, not text.
    """
    text = decode_text(path, data, meta_charset(data))
    # One parser a page: lxml parsers keep their error log, and extraction may run in threads.
    # huge_tree lifts libxml2's caps on text node size and nesting depth; the HTML parser expands
    # no custom entities, so the cap it also lifts guards nothing here.
    parser = etree.HTMLParser(remove_pis=True, no_network=True, huge_tree=True, default_doctype=False)
    # lxml refuses a str that still declares its encoding (XHTML, EPUB chapters); it is decoded already.
    text = _XML_DECLARATION.sub("", text, count=1)
    root = etree.fromstring(text, parser) if text.strip() else None
    walker = _PageWalker()
    if root is not None:
        walker.walk(root)
    warnings = [_TOO_DEEP] if any(e.type_name == "ERR_RESOURCE_LIMIT" for e in parser.error_log) else []
    return Document(
        path=path,
        format="html",
        title=walker.title or walker.first_h1 or file_stem(path),
        sections=walker.sections,
        warnings=warnings,
    )


def meta_charset(data: bytes) -> str | None:
    """The charset a page declares in a `<meta>` tag near its start, if any."""
    match = _META_CHARSET.search(data[:_CHARSET_SNIFF_BYTES])
    if not match:
        return None
    name = match.group(1).decode("ascii", "ignore")
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    # A page that declares UTF-16 in ASCII bytes is not UTF-16; browsers ignore that too.
    return None if name.lower().replace("-", "").startswith(("utf16", "utf32")) else name


class _PageWalker:
    """Walks the parsed tree in document order, filling sections as the old event parser did.

    Source lines: libxml2 records each element's line (that of the `>` closing its start tag);
    text that follows is placed by counting its line breaks from there.
    """

    def __init__(self) -> None:
        self.title: str | None = None
        self.first_h1: str | None = None
        self.sections: list[Section] = []
        self._fragments = Fragments()
        self._line = 1  # the source line where the next piece of text starts
        self._hidden = 0  # depth inside invisible elements
        self._pre = 0
        self._trail: list[tuple[int, str]] = []
        self._heading: etree._Element | None = None  # the h1-h3 being read
        self._heading_level = 0
        self._heading_parts: list[str] = []
        # The section being filled: its heading trail, fragment, first line, last text line, text.
        self._sec_heading: str | None = None
        self._sec_fragment = ""
        self._sec_start = 1
        self._sec_end = 0
        self._sec_first: int | None = None
        self._parts: list[str] = []

    def walk(self, root: etree._Element) -> None:
        for event, element in etree.iterwalk(root, events=("start", "end", "comment")):
            tag = element.tag
            if event == "comment":
                # Kept in the tree only for the line breaks inside: its line is where it ends.
                self._line = element.sourceline or self._line
                self._data(element.tail)
            elif not isinstance(tag, str):
                continue  # an entity reference or the like
            elif event == "start":
                self._line = element.sourceline or self._line
                self._start(element, tag.lower())
                self._data(element.text)
            else:
                self._end(element, tag.lower())
                self._data(element.tail)
        self._finish()

    def _start(self, element: etree._Element, tag: str) -> None:
        if tag == "title" and self._hidden <= 1 and self.title is None:
            # <title> sits in <head>, which is hidden; it is read whole here.
            self.title = _collapse("".join(element.itertext())) or None
        if tag in _HIDDEN or self._hidden:
            self._hidden += 1
            return
        if tag in _SECTION_HEADINGS:
            self._start_section(element, int(tag[1]))
        elif tag in _BLOCKS:
            self._parts.append("\n")
        elif tag in _CELLS:
            self._parts.append(" ")
        if tag == "pre":
            self._pre += 1
        elif tag == "img":
            alt = element.get("alt")
            if alt:
                self._text(alt)

    def _end(self, element: etree._Element, tag: str) -> None:
        if self._hidden:
            self._hidden -= 1
            return
        if tag == "pre":
            self._pre -= 1
        if element is self._heading:
            self._end_heading()
        elif tag in _BLOCKS:
            self._parts.append("\n")

    def _data(self, data: str | None) -> None:
        if not data:
            return
        if not self._hidden:
            self._text(data)
            if self._heading is not None:
                self._heading_parts.append(data)
        self._line += data.count("\n")

    def _text(self, text: str) -> None:
        if not text.strip():
            self._parts.append(" ")
            return
        line = self._line  # where `text` starts in the source
        self._sec_first = self._sec_first or line + count_leading_newlines(text)
        self._sec_end = line + text.count("\n") - count_trailing_newlines(text)
        # Outside <pre>, source line breaks are just spaces; blocks make the lines.
        self._parts.append(text if self._pre else _WHITESPACE.sub(" ", text))

    def _start_section(self, element: etree._Element, level: int) -> None:
        if self._heading is not None:  # a heading inside a heading (libxml2 nests them): end the outer
            self._end_heading()
        self._flush()
        self._heading, self._heading_level = element, level
        self._heading_parts = []
        self._sec_start = self._sec_end = self._line

    def _end_heading(self) -> None:
        level, self._heading, self._heading_level = self._heading_level, None, 0
        text = _collapse("".join(self._heading_parts))
        while self._trail and self._trail[-1][0] >= level:
            self._trail.pop()
        self._trail.append((level, text))
        if level == 1 and text and self.first_h1 is None:
            self.first_h1 = text
        self._sec_heading = " > ".join(t for _, t in self._trail if t) or None
        self._sec_fragment = self._fragments.claim(text)
        self._parts.append("\n")

    def _flush(self) -> None:
        lines = (_collapse(line) for line in "".join(self._parts).split("\n"))
        text = "\n".join(line for line in lines if line)
        if text:
            # A heading's section starts at the heading; the intro at its first visible text.
            start = self._sec_start if self._sec_fragment else (self._sec_first or 1)
            self.sections.append(
                Section(
                    fragment=self._sec_fragment or self._fragments.claim("intro"),
                    heading=self._sec_heading,
                    text=text,
                    line_start=start,
                    line_end=max(start, self._sec_end),
                )
            )
        self._parts = []
        self._sec_heading, self._sec_fragment, self._sec_first = None, "", None

    def _finish(self) -> None:
        """Close the last section (and a heading the walk left open)."""
        if self._heading is not None:
            self._end_heading()
        self._flush()


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()
