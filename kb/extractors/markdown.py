"""Markdown: front matter, then one section per heading, by walking markdown-it's token stream.

Walking tokens instead of rendering HTML keeps extraction near markdown-it's parse speed, and lets
each section carry the exact source lines it came from.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from kb.extractors.text import decode_text, file_stem
from kb.models import Document, Section

_FRONT_MATTER = re.compile(r"---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t]+")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")
_SLUG_MAX = 80
# libyaml's loader is several times faster than the pure-Python one; both are "safe".
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Fragments:
    """Hands out URL-friendly fragment ids, unique within one document ("setup", "setup-2", ...)."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        # The last suffix handed out per slug: nothing is ever released, so the search for a free
        # one goes on from there (from 2 each time, a file of one repeated heading was quadratic).
        self._last: dict[str, int] = {}

    def claim(self, name: str, fallback: str = "section") -> str:
        """Return a fresh fragment for `name`: its slug, suffixed with -2, -3... if already taken."""
        base = slugify(name) or fallback
        n = self._last.get(base, 1)
        fragment = base if n == 1 else f"{base}-{n}"
        while fragment in self._used:
            n += 1
            fragment = f"{base}-{n}"
        self._last[base] = n
        self._used.add(fragment)
        return fragment


def slugify(text: str) -> str:
    """Lowercase ASCII slug: accents folded ("Zürich" -> "zurich"), other runs become one hyphen."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SLUG_DROP.sub("-", text.lower()).strip("-")[:_SLUG_MAX].rstrip("-")


@functools.cache
def _parser(setext: bool) -> MarkdownIt:
    """A block-only parser with just the rules that decide where sections and their text lie.

    Built once per process (constructing MarkdownIt compiles its rule chains): a cache, not state.
    The inline pass (emphasis, links, entities) is off: `_strip_inline` recovers the words far
    cheaper. Lists, quotes, tables and rules are off too: their text reads the same as a
    paragraph's once markup characters are dropped by the tokenizer, and they cost most of the
    block pass. Fences, indented code, headings, HTML blocks and link definitions stay, because
    they decide what is a heading and what is text. Setext headings (a line underlined with = or
    -) cost a check on every paragraph, so that rule runs only for documents that could have one.
    Of the core passes only the block pass runs: line ends are already normalized (see
    `extract_markdown` for NUL), and with no inline pass there is no text to join.
    """
    md = _LinksAsWritten("commonmark").disable(
        ["inline", "list", "blockquote", "hr", "normalize", "text_join"]
    )
    return md if setext else md.disable("lheading")


class _LinksAsWritten(MarkdownIt):
    """Link reference definitions are still parsed (they are not text), but nothing is rendered,
    so percent-encoding and vetting each target is wasted work (~9% of the block pass)."""

    def normalizeLink(self, url: str) -> str:
        return url

    def validateLink(self, url: str) -> bool:
        return True


# After a line break (an underline is never a document's first line): starting with a literal
# lets the regex engine jump from line break to line break.
_SETEXT_UNDERLINE = re.compile(r"\n {0,3}(?:=+|-+)[ \t]*$", re.MULTILINE)


def extract_markdown(path: str, data: bytes) -> Document:
    """Extract a Markdown file into one section per heading (plus an "intro" for text before any).

    Title: front matter `title`, else the first H1, else the file name. Tags: front matter `tags`,
    a list or a comma/space separated string.

    Raises:
        ExtractionError: the bytes are binary, not text.
    """
    text = decode_text(path, data)
    meta, body, offset = split_front_matter(text)
    walker = _Walker(offset, text.split("\n"))
    if "\0" in body:  # what markdown-it's own normalizing pass would do (decode_text did line ends)
        body = body.replace("\0", "\ufffd")
    walker.walk(_parser(bool(_SETEXT_UNDERLINE.search(body))).parse(body))
    title = _meta_title(meta) or walker.first_h1 or file_stem(path)
    return Document(path=path, format="md", title=title, tags=_meta_tags(meta), sections=walker.sections)


def split_front_matter(text: str) -> tuple[dict[str, Any], str, int]:
    """Split a leading `---` YAML block from the body: (metadata, body, lines the block used).

    Invalid YAML, or YAML that is not a mapping, gives empty metadata; the block is still removed.
    """
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text, 0
    try:
        loaded = yaml.load(match.group(1) or "", Loader=_YAML_LOADER)
    except (yaml.YAMLError, ValueError, RecursionError):
        # Front matter is a convenience; a typo in it must not stop the document being indexed.
        loaded = None
    block = match.group(0)
    lines = block.count("\n") + (0 if block.endswith("\n") else 1)
    return (loaded if isinstance(loaded, dict) else {}), text[match.end() :], lines


def _meta_title(meta: dict[str, Any]) -> str | None:
    title = meta.get("title")
    return title.strip() or None if isinstance(title, str) else None


def _meta_tags(meta: dict[str, Any]) -> list[str]:
    raw = meta.get("tags")
    if isinstance(raw, str):
        items: list[Any] = re.split(r"[,\s]+", raw)
    elif isinstance(raw, list):
        items = raw
    else:
        return []
    return [str(item) for item in items if isinstance(item, str | int | float)]


@dataclass
class _Open:
    """The section being filled while walking."""

    heading: str | None
    fragment: str
    line_start: int
    line_end: int
    blocks: list[str] = field(default_factory=list)


class _Walker:
    def __init__(self, line_offset: int, lines: list[str]) -> None:
        self.offset = line_offset
        self._lines = lines  # the whole file, to trim trailing blank lines off line ranges
        self.sections: list[Section] = []
        self.first_h1: str | None = None
        self._fragments = Fragments()
        self._trail: list[tuple[int, str]] = []
        self._current: _Open | None = None

    def walk(self, tokens: list[Token]) -> None:
        heading_level = 0
        for token in tokens:
            kind = token.type
            if token.map is not None and kind != "heading_open":
                if self._current is None:
                    self._current = _Open(None, "", token.map[0] + 1 + self.offset, 0)
                self._current.line_end = max(self._current.line_end, token.map[1] + self.offset)
            if kind == "heading_open":
                heading_level = int(token.tag[1])
                self._close()
                assert token.map is not None  # block tokens always carry a source map
                line = token.map[0] + 1 + self.offset
                self._current = _Open(None, "", line, token.map[1] + self.offset)
            elif kind == "inline":
                text = _strip_inline(token.content)
                if heading_level:
                    self._start_heading(heading_level, text)
                    heading_level = 0
                else:
                    self._add(text)
            elif kind in ("fence", "code_block"):
                self._add(token.content.rstrip("\n"))
            elif kind == "html_block":
                self._add(_SPACES.sub(" ", _drop_tags(_drop_comments(token.content))).strip())
        self._close()

    def _start_heading(self, level: int, text: str) -> None:
        while self._trail and self._trail[-1][0] >= level:
            self._trail.pop()
        self._trail.append((level, text))
        if level == 1 and self.first_h1 is None and text:
            self.first_h1 = text
        assert self._current is not None
        self._current.heading = " > ".join(t for _, t in self._trail if t) or None
        self._current.fragment = self._fragments.claim(text)
        self._add(text)

    def _add(self, text: str) -> None:
        if text and self._current is not None:
            self._current.blocks.append(text)

    def _close(self) -> None:
        current, self._current = self._current, None
        if current is None or not current.blocks:
            return
        if current.heading is None and not current.fragment:
            current.fragment = self._fragments.claim("intro")
        end = min(current.line_end, len(self._lines))
        while end > current.line_start and not self._lines[end - 1].strip():
            end -= 1
        self.sections.append(
            Section(
                fragment=current.fragment,
                heading=current.heading,
                text="\n".join(current.blocks),
                line_start=current.line_start,
                line_end=end,
            )
        )


# [text](target "title"), ![alt](src) and [text][ref]; a bare [text] is left alone (array[i]).
# Targets and titles are bounded and quoted as CommonMark has them, so that on a file of unclosed
# links each attempt fails within a few characters instead of scanning to the end of the text.
_IMAGE_OR_LINK = re.compile(
    r"!?\[((?:[^\[\]\\]|\\.)*)\]"  # the text
    r"(?:\(\s*(?:<[^<>\n]{0,500}>|(?:[^()\s]|\([^()\s]{0,500}\))*)"  # (<target> or (target
    r"(?:\s+(?:\"[^\"]{0,500}\"|'[^']{0,500}'|\([^()]{0,500}\)))?\s*\)"  # "title")
    r"|\[[^\]]{0,500}\])"  # or [ref]
)
_AUTOLINK = re.compile(r"<((?:https?|mailto|ftp):[^<>\s]+|[^<>\s@]+@[^<>\s@]+)>")
_HTML_INLINE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_BACKTICKS = re.compile(r"`+")
# A run of * or _ (1-3) or ~~ that opens (after a non-word, before a non-space) or closes (after a
# non-space, before a non-word). Each branch starts with its marker character and checks the
# character before the run with a lookbehind over both: a pattern that starts with a literal lets
# the regex engine skip ahead to candidates instead of trying every position (~9x faster).
_EMPHASIS = re.compile(
    r"\*(?<![\w\\]\*)\*{0,2}(?=\S)|_(?<![\w\\]_)_{0,2}(?=\S)|~(?<![\w\\]~)~(?=\S)"
    r"|\*(?<=[^\s\\]\*)\*{0,2}(?!\w)|_(?<=[^\s\\]_)_{0,2}(?!\w)|~(?<=[^\s\\]~)~(?!\w)"
)
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_TABLE_DELIMITER = re.compile(r"^\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$", re.MULTILINE)
_LIST_ITEM = re.compile(r"\n(?=[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t])")
_HARD_BREAK = re.compile(r"(?: {2,}|\\)\n")


def _strip_inline(source: str) -> str:
    """The words of an inline run of Markdown: link and image text kept, targets, raw HTML and
    emphasis markers dropped, code spans and escapes unwrapped, entities decoded."""
    if "`" not in source:
        return _strip_markup(source).strip()
    # Code is literal: the prose around the spans is stripped with a numbered NUL-quoted mark where
    # each span was (a span inside a dropped link target goes with it), then the spans go back.
    parts = _split_code_spans(source.replace("\x00", ""))
    codes = [code.strip(" ") if code.strip() else code for code in parts[1::2]]
    marked = parts[0] + "".join(f"\x00{n}\x00{after}" for n, after in enumerate(parts[2::2]))
    pieces = _strip_markup(marked).split("\x00")
    pieces[1::2] = [codes[int(n)] for n in pieces[1::2]]
    return "".join(pieces).strip()


def _split_code_spans(text: str) -> list[str]:
    """[prose, code, prose, code, ..., prose]: a run of backticks opens a code span that the next
    run of the same length closes; a run that nothing closes is literal text. One pass over the
    runs (a regex with a back-reference would scan to the end from every unclosed run)."""
    if "``" not in text:  # single backticks only, the usual case: each pairs with the next one
        parts = text.split("`")
        if len(parts) % 2 == 0:  # an odd one out, the last, is literal
            parts[-2:] = [parts[-2] + "`" + parts[-1]]
        return parts
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    closer: list[int | None] = [None] * len(runs)  # the next run of the same length, if any
    next_of_length: dict[int, int] = {}
    for i in range(len(runs) - 1, -1, -1):
        length = runs[i][1] - runs[i][0]
        closer[i] = next_of_length.get(length)
        next_of_length[length] = i
    parts, prose_from, i = [], 0, 0
    while i < len(runs):
        j = closer[i]
        if j is None or runs[j][0] == runs[i][1]:  # unclosed, or empty (`` is literal)
            i += 1
            continue
        parts += [text[prose_from : runs[i][0]], text[runs[i][1] : runs[j][0]]]
        prose_from = runs[j][1]
        i = j + 1
    parts.append(text[prose_from:])
    return parts


def _drop_tags(html: str) -> str:
    """Tags replaced by spaces. Only up to the last ">": past it every "<" would scan to the end of
    the text for one, which on a hostile file takes quadratic time."""
    end = html.rfind(">") + 1
    return _TAG.sub(" ", html[:end]) + html[end:]


def _drop_comments(text: str) -> str:
    """Text without its <!-- comments --> (an unclosed one stays), in one pass."""
    kept, pos = [], 0
    while (start := text.find("<!--", pos)) != -1 and (end := text.find("-->", start + 4)) != -1:
        kept.append(text[pos:start])
        pos = end + 3
    kept.append(text[pos:])
    return "".join(kept)


def _strip_markup(text: str) -> str:
    # Most runs are plain prose: each step runs only if its marker character occurs at all.
    if "<" in text:
        text = _HTML_INLINE.sub("", _AUTOLINK.sub(r"\1", _drop_comments(text)))
    if "[" in text:
        for _ in range(3):  # links may hold images: [![alt](img)](target)
            text = _IMAGE_OR_LINK.sub(r"\1", text)
            if "](" not in text and "][" not in text:
                break
    if "*" in text or "_" in text or "~" in text:
        text = _EMPHASIS.sub("", text)
    if "|" in text and _TABLE_DELIMITER.search(text):
        # A table (parsed as a paragraph): one row a line, without the pipes' frame or the |---| row.
        rows = (line.strip().strip("|").strip() for line in text.split("\n"))
        text = "\n".join(row for row in rows if row and not _TABLE_DELIMITER.fullmatch(row))
    elif "\n" in text:
        # A soft line break is a space; a hard one (two spaces or a backslash) stays a line break,
        # and so does the start of each list item (lists are parsed as paragraphs, see _parser).
        if "  \n" in text or "\\\n" in text:  # the regex alone scans every space
            text = _HARD_BREAK.sub("\x01", text)
        text = _LIST_ITEM.sub("\x01", text)
        text = text.replace("\n", " ").replace("\x01", "\n")
    if "\\" in text:
        text = _ESCAPE.sub(r"\1", text)
    if "&" in text:
        text = html.unescape(text)
    return text
