"""HTML (.html, .htm): visible text only, split into sections at h1-h3, with the stdlib parser."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

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
_HEAD_CONTENT = frozenset({"base", "link", "meta", "noscript", "script", "style", "template", "title"})
_CELLS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_CHARSET_SNIFF_BYTES = 4_096


def extract_html(path: str, data: bytes) -> Document:
    """Extract an HTML page: one section per h1-h3 heading, plus an "intro" for text before any.

    Title: `<title>`, else the first `<h1>`, else the file name. Scripts, styles, `<head>`, SVG and
    other invisible content are dropped; entities are decoded.

    Raises:
        ExtractionError: the bytes are binary, not text.
    """
    text = decode_text(path, data, meta_charset(data))
    parser = _PageParser()
    parser.feed(_without_unclosed_comment(text))
    parser.close()
    parser.finish()
    return Document(
        path=path,
        format="html",
        title=parser.title or parser.first_h1 or file_stem(path),
        sections=parser.sections,
    )


def _without_unclosed_comment(text: str) -> str:
    """The text up to a final `<!--` that nothing closes: such a comment runs to the end of the page
    (as browsers read it), and the standard library's parser, searching for its end from every
    `<!--` inside it, takes quadratic time on it."""
    unclosed = text.find("<!--", text.rfind("-->") + 3 if "-->" in text else 0)
    return text if unclosed == -1 else text[:unclosed]


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


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.first_h1: str | None = None
        self.sections: list[Section] = []
        self._fragments = Fragments()
        self._hidden: list[str] = []
        self._in_title = False
        self._title_parts: list[str] = []
        self._pre = 0
        self._trail: list[tuple[int, str]] = []
        self._heading_level = 0
        self._heading_parts: list[str] = []
        # The section being filled: its heading trail, fragment, first line, last text line, text.
        self._sec_heading: str | None = None
        self._sec_fragment = ""
        self._sec_start = 1
        self._sec_end = 0
        self._sec_first: int | None = None
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._hidden == ["head"] and tag not in _HEAD_CONTENT:
            self._hidden.clear()  # an unclosed <head> ends where body content starts, as in browsers
        if tag == "title" and self._hidden in ([], ["head"]):
            self._in_title = True
            return
        if tag in _HIDDEN:
            self._hidden.append(tag)
            return
        if self._hidden:
            return
        if tag in _SECTION_HEADINGS:
            self._start_section(int(tag[1]))
        elif tag in _BLOCKS:
            self._parts.append("\n")
        elif tag in _CELLS:
            self._parts.append(" ")
        if tag == "pre":
            self._pre += 1
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._text(alt)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <img/>, <svg/>: self-closed, so nothing is opened that must be closed.
        if not self._hidden and (tag in _BLOCKS or tag == "img"):
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = self.title or _collapse("".join(self._title_parts)) or None
            return
        if tag in self._hidden:
            while self._hidden.pop() != tag:
                pass
            return
        if self._hidden:
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        if tag in _SECTION_HEADINGS and self._heading_level:
            self._end_heading()
        elif tag in _BLOCKS:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
        elif not self._hidden:
            self._text(data)
            if self._heading_level:
                self._heading_parts.append(data)

    def _text(self, text: str) -> None:
        if not text.strip():
            self._parts.append(" ")
            return
        line, _ = self.getpos()  # where `text` starts in the source
        self._sec_first = self._sec_first or line + count_leading_newlines(text)
        self._sec_end = line + text.count("\n") - count_trailing_newlines(text)
        # Outside <pre>, source line breaks are just spaces; blocks make the lines.
        self._parts.append(text if self._pre else _WHITESPACE.sub(" ", text))

    def _start_section(self, level: int) -> None:
        self._flush()
        self._heading_level = level
        self._heading_parts = []
        self._sec_start, _ = self.getpos()
        self._sec_end = self._sec_start

    def _end_heading(self) -> None:
        level, self._heading_level = self._heading_level, 0
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

    def finish(self) -> None:
        """Close the last section (and a heading left open by broken markup)."""
        if self._heading_level:
            self._end_heading()
        self._flush()


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()
