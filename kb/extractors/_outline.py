"""Sections from a document's blocks in reading order, for formats whose parser hands over
headings and paragraphs (Word, OpenDocument, reStructuredText): a heading opens a section under
its trail (`Install > Linux`), text before any heading is the "intro"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kb.extractors.markdown import Fragments
from kb.models import Section

_SPACES = re.compile(r"[ \t\xa0]+")


def clean(text: str) -> str:
    """A block's text with runs of spaces collapsed and blank lines dropped."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


@dataclass
class _Open:
    heading: str | None
    fragment: str
    line_start: int | None
    blocks: list[str] = field(default_factory=list)


class Outline:
    """Collects blocks into sections. Headings deeper than `max_level` are lines of text in the
    section above them, as HTML's h4-h6 are. `intro_line` is where text before any heading starts,
    for formats that know their lines."""

    def __init__(self, max_level: int = 3, intro_line: int | None = None) -> None:
        self.max_level = max_level
        self._intro_line = intro_line
        self.first_h1: str | None = None
        self._sections: list[Section] = []
        self._fragments = Fragments()
        self._trail: list[tuple[int, str]] = []
        self._current: _Open | None = None

    def heading(self, level: int, text: str, line: int | None = None) -> None:
        """A heading of `level` (1 the highest); `line` where its section starts in the file."""
        text = " ".join(clean(text).split("\n"))
        if not text:
            return
        if level > self.max_level:
            self.text(text)
            return
        self._close(None if line is None else line - 1)
        while self._trail and self._trail[-1][0] >= level:
            self._trail.pop()
        self._trail.append((level, text))
        if level == 1 and self.first_h1 is None:
            self.first_h1 = text
        trail = " > ".join(t for _, t in self._trail)
        self._current = _Open(trail, self._fragments.claim(text), line, [text])

    def text(self, block: str) -> None:
        """A paragraph, a table row, a list item, a code block: kept as one or more lines."""
        block = clean(block)
        if not block:
            return
        if self._current is None:
            self._current = _Open(None, "", self._intro_line)
        self._current.blocks.append(block)

    def sections(self, last_line: int | None = None) -> list[Section]:
        """Every section, the last one closed at `last_line` when line numbers are known."""
        self._close(last_line)
        return self._sections

    def _close(self, line_end: int | None) -> None:
        current, self._current = self._current, None
        if current is None or not current.blocks:
            return
        start = current.line_start
        self._sections.append(
            Section(
                fragment=current.fragment or self._fragments.claim("intro"),
                heading=current.heading,
                text="\n".join(current.blocks),
                line_start=start,
                line_end=None if start is None or line_end is None else max(start, line_end),
            )
        )
