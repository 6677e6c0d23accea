"""EPUB books, Jupyter notebooks and reStructuredText as pandoc writes them."""

from __future__ import annotations

import json

import pytest
from formats_helpers import (
    GUIDE_HEADINGS,
    GUIDE_TITLE,
    GUIDE_WORDS,
    corrupted,
    fixture,
    section_of,
    truncated,
    with_encryption,
)

from kb.errors import ExtractionError
from kb.extractors import extract

# ---- EPUB ------------------------------------------------------------------------------


def test_epub_chapters_come_in_spine_order_with_headings_under_their_chapter():
    document = extract("guide.epub", fixture("guide.epub"))
    assert document.title == GUIDE_TITLE
    assert [s.heading for s in document.sections][-5:] == GUIDE_HEADINGS
    assert len({s.fragment for s in document.sections}) == len(document.sections)


def test_epub_planted_words_are_found_in_their_chapter_sections():
    document = extract("guide.epub", fixture("guide.epub"))
    for word, heading in GUIDE_WORDS.items():
        found = section_of(document, word).heading
        assert found == (heading or GUIDE_TITLE), word  # the intro is the first chapter's


def test_a_drm_encrypted_epub_fails_saying_so():
    drm = with_encryption(fixture("guide.epub"), "http://www.w3.org/2001/04/xmlenc#aes128-cbc")
    with pytest.raises(ExtractionError, match="DRM-encrypted EPUB book"):
        extract("locked.epub", drm)


def test_an_epub_with_obfuscated_fonts_only_is_read():
    fonts = with_encryption(fixture("guide.epub"), "http://www.idpf.org/2008/embedding")
    assert section_of(extract("fonts.epub", fonts), "zephyrine").heading == "Installing > Linux"


def test_a_truncated_or_corrupt_epub_fails():
    with pytest.raises(ExtractionError, match="corrupt or truncated EPUB"):
        extract("half.epub", truncated(fixture("guide.epub")))
    with pytest.raises(ExtractionError, match="corrupt EPUB"):
        extract("broken.epub", corrupted(fixture("guide.epub"), "EPUB/content.opf"))


# ---- notebooks ---------------------------------------------------------------------------


def test_notebook_markdown_cells_give_sections_and_code_cells_stay_in_theirs():
    document = extract("notebook.ipynb", fixture("notebook.ipynb"))
    assert (document.title, document.format) == ("Brightness study", "ipynb")
    assert [s.heading for s in document.sections] == [
        "Brightness study",
        "Brightness study > Loading the data",
        "Brightness study > Results",
    ]
    assert section_of(document, "gossamer").heading == "Brightness study"
    code = section_of(document, "kittiwake")
    assert code.heading == "Brightness study > Loading the data"  # the code cell after the heading's cell
    assert "readings = [412, 398, 405]" in code.text
    assert section_of(document, "foxglove").heading == "Brightness study > Results"


def test_notebook_outputs_are_left_out():
    document = extract("notebook.ipynb", fixture("notebook.ipynb"))
    assert not any("outputonly" in s.text for s in document.sections)


def test_a_notebook_title_in_metadata_wins_and_a_fence_in_code_cannot_escape():
    notebook = json.loads(fixture("notebook.ipynb"))
    notebook["metadata"]["title"] = "Lumens"
    notebook["cells"][1]["source"] = "print('''\n```\n# not a heading\n''')"
    document = extract("n.ipynb", json.dumps(notebook).encode())
    assert document.title == "Lumens"
    assert "# not a heading" in section_of(document, "not a heading").text
    assert all(s.heading != "not a heading" for s in document.sections)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b'{"cells": [', "not JSON"), (b"[1, 2]", "not a notebook"), (b"", "not JSON")],
)
def test_a_broken_notebook_fails_with_its_reason(data, reason):
    with pytest.raises(ExtractionError, match=reason):
        extract("broken.ipynb", data)


# ---- reStructuredText --------------------------------------------------------------------


def test_rst_sections_are_real_sections_by_title_with_their_lines():
    document = extract("guide.rst", fixture("guide.rst"))
    assert (document.title, document.format) == (GUIDE_TITLE, "rst")
    assert [s.heading for s in document.sections] == [
        None,
        *GUIDE_HEADINGS,
        "Maintenance > Cleaning the glass > A deeper note",  # every depth, as Markdown's
    ]
    lines = fixture("guide.rst").decode().split("\n")
    linux = section_of(document, "zephyrine")
    assert lines[linux.line_start - 1] == "Linux"
    assert "zephyrine" in "\n".join(lines[linux.line_start - 1 : linux.line_end])
    assert "Part | Count" in section_of(document, "brackenfold").text


def test_rst_include_and_raw_directives_read_nothing_else():
    source = b"Notes\n=====\n\n.. include:: /etc/passwd\n\n.. raw:: html\n\n   <b>rawword</b>\n\nkept words\n"
    document = extract("n.rest", source)
    text = "\n".join(s.text for s in document.sections)
    assert "kept words" in text
    assert "root:" not in text and "rawword" not in text


def test_rst_with_unknown_sphinx_directives_keeps_its_own_text():
    source = b"Intro\n=====\n\n.. toctree::\n   :maxdepth: 2\n\n   install\n\nSee :ref:`setup` for more.\n"
    document = extract("index.rst", source)
    assert document.title == "Intro"  # a lone top-level title is the document's, as docutils reads it
    (section,) = document.sections
    assert "See" in section.text and "setup" in section.text
    assert "maxdepth" not in section.text and "install" not in section.text
