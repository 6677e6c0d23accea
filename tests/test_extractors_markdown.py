from __future__ import annotations

import time
from pathlib import Path

import pytest

from kb.errors import ExtractionError
from kb.extractors import extract
from kb.extractors.markdown import extract_markdown, slugify

DOC = b"""---
title: Handbook
tags: [a, b]
---
Intro words.

# Install

Install kb.

## Linux

Use apt.

## macOS

### Homebrew

Use brew.
"""


def by_fragment(data: bytes, path: str = "doc.md") -> dict:
    return {s.fragment: s for s in extract_markdown(path, data).sections}


def test_markdown_front_matter_title_wins_over_first_heading() -> None:
    assert extract_markdown("doc.md", DOC).title == "Handbook"


def test_markdown_title_falls_back_to_first_h1_then_file_stem() -> None:
    assert extract_markdown("a/doc.md", b"intro\n\n## Two\n\n# One\n\n# Other\n").title == "One"
    assert extract_markdown("a/notes.v2.md", b"## Only level two\n").title == "notes.v2"


def test_markdown_setext_h1_counts_as_the_title() -> None:
    assert extract_markdown("doc.md", b"Big Title\n=========\n\ntext\n").title == "Big Title"


def test_markdown_tags_from_a_list() -> None:
    assert extract_markdown("doc.md", DOC).tags == ["a", "b"]


def test_markdown_tags_from_a_comma_or_space_separated_string() -> None:
    doc = extract_markdown("doc.md", b"---\ntags: install, linux setup\n---\ntext\n")
    assert doc.tags == ["install", "linux", "setup"]


def test_markdown_invalid_front_matter_is_ignored_but_removed() -> None:
    doc = extract_markdown("doc.md", b"---\ntitle: [unclosed\n---\n# Real\n\nbody\n")
    assert doc.title == "Real"
    assert doc.tags == []
    assert "unclosed" not in " ".join(s.text for s in doc.sections)
    assert doc.sections[0].line_start == 4


def test_markdown_front_matter_that_is_not_a_mapping_is_ignored() -> None:
    doc = extract_markdown("doc.md", b"---\n- just\n- a list\n---\n# Heading\n")
    assert doc.title == "Heading"
    assert doc.tags == []


def test_markdown_heading_trails_follow_heading_levels() -> None:
    headings = [s.heading for s in extract_markdown("doc.md", DOC).sections]
    assert headings == [None, "Install", "Install > Linux", "Install > macOS", "Install > macOS > Homebrew"]


def test_markdown_line_ranges_count_front_matter_lines_and_skip_trailing_blanks() -> None:
    ranges = [(s.fragment, s.line_start, s.line_end) for s in extract_markdown("doc.md", DOC).sections]
    assert ranges == [
        ("intro", 5, 5),
        ("install", 7, 9),
        ("linux", 11, 13),
        ("macos", 15, 15),
        ("homebrew", 17, 19),
    ]


def test_markdown_section_text_starts_with_its_heading() -> None:
    sections = by_fragment(DOC)
    assert sections["linux"].text == "Linux\nUse apt."
    assert sections["install"].text == "Install\nInstall kb."


def test_markdown_heading_without_body_is_still_a_section() -> None:
    assert by_fragment(DOC)["macos"].text == "macOS"


def test_markdown_blank_intro_is_omitted() -> None:
    doc = extract_markdown("doc.md", b"\n\n   \n# First\n\ntext\n")
    assert [s.fragment for s in doc.sections] == ["first"]


def test_markdown_fragments_are_unique_slugs() -> None:
    data = "# Setup\n\na\n\n# Setup\n\nb\n\n# Setup 2\n\nc\n\n# Café Zürich!\n\nd\n\n# 日本\n\ne\n".encode()
    fragments = [s.fragment for s in extract_markdown("doc.md", data).sections]
    assert fragments == ["setup", "setup-2", "setup-2-2", "cafe-zurich", "section"]


def test_slugify_folds_accents_and_collapses_punctuation() -> None:
    assert slugify("  Install > Linux (Debian/Ubuntu) ") == "install-linux-debian-ubuntu"
    assert slugify("naïve") == "naive"


def test_markdown_code_blocks_are_kept_as_text() -> None:
    data = b"# Run\n\n```sh\nkb index ./docs --rebuild\n```\n\n    indented_code()\n\nUse `kb serve` now.\n"
    text = extract_markdown("doc.md", data).sections[0].text
    assert "kb index ./docs --rebuild" in text
    assert "indented_code()" in text
    assert "Use kb serve now." in text


def test_markdown_link_targets_and_raw_html_are_dropped() -> None:
    data = (
        b"# Links\n\nSee [the guide](https://example.com/secret-target) and <b>bold</b> "
        b'<!-- hidden -->.\n\n<div class="note">\n<p>Block words</p>\n</div>\n\n![a diagram](img/x.png)\n'
    )
    text = extract_markdown("doc.md", data).sections[0].text
    assert "the guide" in text
    assert "secret-target" not in text
    assert "<" not in text
    assert ">" not in text
    assert "bold" in text
    assert "Block words" in text
    assert "a diagram" in text
    assert "x.png" not in text


def test_markdown_tables_keep_cell_text() -> None:
    data = b"# T\n\n| Name | Meaning |\n|---|---|\n| KB_INDEX_DIR | where the index lives |\n"
    assert "KB_INDEX_DIR | where the index lives" in extract_markdown("doc.md", data).sections[0].text


def test_markdown_bom_and_crlf_are_handled() -> None:
    data = b"\xef\xbb\xbf---\r\ntitle: T\r\n---\r\n# H\r\n\r\nbody\r\n"
    doc = extract_markdown("doc.md", data)
    assert doc.title == "T"
    assert [(s.text, s.line_start, s.line_end) for s in doc.sections] == [("H\nbody", 4, 6)]


def test_markdown_latin1_bytes_fall_back_instead_of_failing() -> None:
    doc = extract_markdown("doc.md", "# Café\n\nnaïve\n".encode("latin-1"))
    assert doc.title == "Café"
    assert "naïve" in doc.sections[0].text


def test_markdown_empty_file_has_no_sections() -> None:
    doc = extract_markdown("notes/empty.md", b"")
    assert doc.title == "empty"
    assert doc.sections == []


def test_markdown_binary_bytes_raise_extraction_error() -> None:
    with pytest.raises(ExtractionError) as info:
        extract("image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert info.value.path == "image.md"
    assert "binary" in info.value.reason


def test_markdown_sample_install_guide_has_install_linux_section(sample_docs: Path) -> None:
    doc = extract("guide/install.md", (sample_docs / "guide" / "install.md").read_bytes())
    assert doc.title == "Installing kb"
    assert doc.tags == ["install", "setup"]
    linux = next(s for s in doc.sections if s.fragment == "linux")
    assert linux.heading == "Install > Linux"
    assert "python3 -m venv" in linux.text


def test_markdown_every_sample_document_extracts_with_unique_fragments(sample_docs: Path) -> None:
    files = sorted(sample_docs.rglob("*.md"))
    assert len(files) >= 4
    for file in files:
        doc = extract(file.relative_to(sample_docs).as_posix(), file.read_bytes())
        fragments = [s.fragment for s in doc.sections]
        assert len(fragments) == len(set(fragments))
        assert doc.tags
        assert all(s.text.strip() for s in doc.sections)


def test_inline_markup_is_reduced_to_its_words_without_touching_code_or_brackets() -> None:
    source = (
        "# T\n\n"
        'See [the **install** guide](guide/install.md "Install") and [![badge](b.svg)](https://x.y).\n'
        "Keep `a*b*c`, snake_case_name, array[i] and escaped \\*stars\\*; <b>raw</b> &amp; more  \n"
        "after a hard break.\n"
    )
    text = extract_markdown("t.md", source.encode()).sections[0].text
    assert "See the install guide and badge." in text
    assert (
        "Keep a*b*c, snake_case_name, array[i] and escaped *stars*; raw & more\nafter a hard break." in text
    )
    assert "guide/install.md" not in text and "https" not in text and "<b>" not in text


def test_code_spans_stay_literal_inside_link_text_and_go_with_a_dropped_target() -> None:
    source = "# T\n\nUse [`Vec<_T_>`](https://x/`y`) with `*a*` and *b*, not `` `c` ``.\n"
    text = extract_markdown("t.md", source.encode()).sections[0].text
    assert text.endswith("Use Vec<_T_> with *a* and b, not `c`.")


def test_a_table_keeps_one_row_a_line_without_its_frame() -> None:
    source = (
        "# T\n\n| Flag | Meaning |\n|------|:-------:|\n| `--json` | one object |\n| --wait | seconds |\n"
    )
    assert extract_markdown("t.md", source.encode()).sections[0].text == (
        "T\nFlag | Meaning\n--json | one object\n--wait | seconds"
    )


def test_list_items_and_quotes_keep_their_words_and_fenced_code_inside_them_is_not_a_heading() -> None:
    source = (
        "# T\n\n- one *item*\n- two\n\n> quoted **text**\n\n"
        "1. step:\n\n   ```sh\n   # not a heading\n   ```\n"
    )
    document = extract_markdown("t.md", source.encode())
    assert [s.heading for s in document.sections] == ["T"]
    text = document.sections[0].text
    for words in ("- one item\n- two", "quoted text", "step:", "# not a heading"):
        assert words in text


HOSTILE_INLINE = {
    "unclosed comments": "x " + "<!-- a " * 100_000,
    "unclosed links": "x " + "![a](b " * 100_000,
    "unclosed titles": "x " + '[a](b "' * 100_000,
    "backtick runs that never close": "".join("`" * n + " x " for n in range(1200, 0, -1)),
    "tags without an end": "<div>\n" + "< a " * 100_000,
}


@pytest.mark.parametrize("body", HOSTILE_INLINE.values(), ids=HOSTILE_INLINE.keys())
def test_markup_that_never_closes_costs_linear_time(body: str) -> None:
    # Each of these took minutes when a pattern scanned to the end of the text from every opener.
    started = time.monotonic()
    doc = extract_markdown("hostile.md", f"# T\n\n{body}\n".encode())
    assert time.monotonic() - started < 10
    assert len(doc.sections[0].text) > 100_000  # nothing was closed, so the text stays


def test_html_comments_are_dropped_whole_even_with_tags_or_code_inside() -> None:
    source = "# T\n\n<!-- run:\ncargo test > out.txt 2>&1\nadd `> ` before each line -->\n\nKept text.\n"
    text = extract_markdown("t.md", source.encode()).sections[0].text
    assert text == "T\nKept text."


def test_a_heading_repeated_many_times_gets_unique_fragments_in_linear_time() -> None:
    started = time.monotonic()
    doc = extract_markdown("hostile.md", b"# h\n\ntext\n\n" * 20_000)
    assert time.monotonic() - started < 10  # each fragment used to be found by counting up from h-2
    fragments = [s.fragment for s in doc.sections]
    assert len(set(fragments)) == len(fragments) == 20_000
    assert fragments[:3] == ["h", "h-2", "h-3"] and fragments[-1] == "h-20000"
