from __future__ import annotations

import codecs
import itertools
import time
from pathlib import Path

import pytest

import kb.extractors
from kb.errors import ExtractionError
from kb.extractors import EXTENSIONS, extract, format_for
from kb.extractors.text import SECTION_CHARS, extract_text
from kb.models import FORMATS


def test_format_for_maps_extensions_case_insensitively() -> None:
    assert format_for("a/B.MD") == "md"
    assert format_for("x.markdown") == "md"
    assert [format_for(f"f.{ext}") for ext in ("txt", "text", "log")] == ["txt"] * 3
    assert [format_for(f"f.{ext}") for ext in ("rst", "REST")] == ["rst"] * 2
    assert format_for("manual.Pdf") == "pdf"
    assert format_for("page.htm") == "html"
    assert format_for("page.HTML") == "html"
    assert format_for("archive.tar.gz") is None
    assert format_for("Makefile") is None
    assert set(EXTENSIONS.values()) == set(FORMATS)


def test_extract_refuses_an_unsupported_extension() -> None:
    with pytest.raises(ExtractionError, match="unsupported"):
        extract("photo.jpg", b"\xff\xd8")


def test_extractors_package_exports_exactly_its_public_names() -> None:
    public = {name for name in dir(kb.extractors) if not name.startswith("_")}
    assert set(kb.extractors.__all__) <= public
    assert set(kb.extractors.__all__) == {
        "EXTENSIONS",
        "decode",
        "extract",
        "extractor_modules",
        "format_for",
    }


def test_text_paragraphs_become_one_section_with_line_range() -> None:
    doc = extract_text("notes/todo.txt", b"first para\nstill first\n\n\nsecond para\n")
    assert doc.title == "todo"
    assert [(s.fragment, s.text, s.line_start, s.line_end) for s in doc.sections] == [
        ("part-1", "first para\nstill first\n\nsecond para", 1, 5)
    ]
    assert doc.sections[0].heading is None


def test_text_paragraphs_are_grouped_into_bounded_numbered_parts() -> None:
    paragraph = ("word " * 150).strip()  # 749 characters
    data = "\n\n".join([paragraph] * 6).encode()
    sections = extract_text("a.txt", data).sections
    assert [s.fragment for s in sections] == ["part-1", "part-2", "part-3"]
    assert all(len(s.text) <= SECTION_CHARS for s in sections)
    assert [(s.line_start, s.line_end) for s in sections] == [(1, 3), (5, 7), (9, 11)]


def test_text_underlined_first_line_is_the_title() -> None:
    assert extract_text("r.rst", b"Release notes\n=============\n\nbody\n").title == "Release notes"
    assert extract_text("r.rst", b"=====\nTitle\n=====\n\nbody\n").title == "Title"
    assert extract_text("r.txt", b"Just a first line\nand more\n").title == "r"


def test_text_latin1_bytes_decode_instead_of_failing() -> None:
    doc = extract("old.txt", "Grüße aus Zürich, café crème".encode("latin-1"))
    assert doc.sections[0].text == "Grüße aus Zürich, café crème"


def test_text_cp1252_quotes_decode() -> None:
    assert extract("q.txt", b"\x93quoted\x94 \x96 dash").sections[0].text == "\u201cquoted\u201d \u2013 dash"


def test_text_utf16_with_bom_decodes_despite_nul_bytes() -> None:
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        doc = extract("u.txt", bom + "héllo wörld\r\nline two\r\n".encode(codec))
        assert doc.sections[0].text == "héllo wörld\nline two"
        assert (doc.sections[0].line_start, doc.sections[0].line_end) == (1, 2)


def test_text_utf8_bom_is_stripped() -> None:
    assert extract("b.txt", b"\xef\xbb\xbfhello").sections[0].text == "hello"


def test_text_empty_file_is_a_document_without_sections() -> None:
    doc = extract("logs/empty.log", b"")
    assert doc.title == "empty"
    assert doc.format == "txt"
    assert doc.sections == []


def test_text_whitespace_only_file_has_no_sections() -> None:
    assert extract("blank.txt", b"  \n\n\t\n").sections == []


def test_text_nul_bytes_raise_binary_extraction_error() -> None:
    with pytest.raises(ExtractionError) as info:
        extract("program.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00text")
    assert info.value.reason == "binary content, not text"


def test_text_mostly_control_characters_raise_binary_extraction_error() -> None:
    with pytest.raises(ExtractionError, match="binary content"):
        extract("noise.log", bytes([1, 2, 3, 4, 5, 6, 7, 14, 15, 16]) * 100 + b"some text")


def test_text_few_control_characters_are_still_text() -> None:
    doc = extract("colour.log", b"\x1b[31mERROR\x1b[0m disk full\n" * 10)
    assert "disk full" in doc.sections[0].text


def test_text_five_megabyte_single_line_is_split_into_bounded_sections_quickly() -> None:
    data = b"lorem ipsum dolor sit amet " * 200_000  # 5.4 MB on one line
    started = time.perf_counter()
    doc = extract("huge.txt", data)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert len(doc.sections) > 2_000
    assert all(0 < len(s.text) <= SECTION_CHARS for s in doc.sections)
    assert all(s.line_start == s.line_end == 1 for s in doc.sections)
    # cut at whitespace: no word is split across sections
    assert all(s.text.endswith(("lorem", "ipsum", "dolor", "sit", "amet")) for s in doc.sections)
    assert sum(len(s.text.split()) for s in doc.sections) == 1_000_000


def test_text_line_without_whitespace_is_cut_hard_at_the_bound() -> None:
    doc = extract("hash.txt", b"ab" * 5_000)
    assert [len(s.text) for s in doc.sections] == [2_000] * 5


def test_text_long_multiline_paragraph_chunks_keep_line_numbers() -> None:
    line = "x" * 99
    data = ("intro\n\n" + "\n".join([line] * 50)).encode()  # paragraph of lines 3..52, 5000 chars
    sections = extract("p.txt", data).sections
    assert sections[0].text == "intro"
    assert sections[1].line_start == 3
    assert sections[-1].line_end == 52
    for earlier, later in itertools.pairwise(sections[1:]):
        assert later.line_start == earlier.line_end + 1


def test_text_sample_release_notes_has_title_and_faq(sample_docs: Path) -> None:
    doc = extract("release-notes.txt", (sample_docs / "release-notes.txt").read_bytes())
    assert doc.title == "kb release notes"
    assert any("--rebuild" in s.text for s in doc.sections)


def test_worker_preload_names_only_the_extractors_of_the_formats_at_hand() -> None:
    assert kb.extractors.extractor_modules(["md", "md", "txt"]) == (
        "kb.extractors.markdown",
        "kb.extractors.text",
    )
    assert kb.extractors.extractor_modules([]) == ()
