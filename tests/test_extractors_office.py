"""Word, OpenDocument and PowerPoint files as pandoc and LibreOffice write them."""

from __future__ import annotations

import io
import zipfile

import pytest
from formats_helpers import (
    GUIDE_HEADINGS,
    GUIDE_TITLE,
    GUIDE_WORDS,
    corrupted,
    fixture,
    section_of,
    truncated,
)

from kb.errors import ExtractionError
from kb.extractors import extract
from kb.extractors._package import MAX_UNPACKED_BYTES

GUIDES = ["guide.pandoc.docx", "guide.libreoffice.docx", "guide.pandoc.odt", "guide.libreoffice.odt"]
DECKS = ["deck.pandoc.pptx", "deck.libreoffice.pptx"]


@pytest.mark.parametrize("name", GUIDES)
def test_headings_1_to_3_open_sections_with_their_trails(name):
    document = extract(name, fixture(name))
    assert document.title == GUIDE_TITLE
    assert [s.heading for s in document.sections] == [None, *GUIDE_HEADINGS]
    assert [s.fragment for s in document.sections][:3] == ["intro", "installing", "linux"]


@pytest.mark.parametrize("name", GUIDES)
def test_planted_words_are_found_in_their_sections(name):
    document = extract(name, fixture(name))
    for word, heading in GUIDE_WORDS.items():
        assert section_of(document, word).heading == heading, word


@pytest.mark.parametrize("name", GUIDES)
def test_tables_are_one_row_a_line_and_code_is_kept(name):
    windows = section_of(extract(name, fixture(name)), "brackenfold")
    assert "Part | Count\nwick | 3\nglass | 1" in windows.text
    assert "$ lantern init --glass clear" in section_of(extract(name, fixture(name)), "zephyrine").text


@pytest.mark.parametrize("name", DECKS)
def test_each_slide_is_a_section_numbered_like_a_page_with_its_title_and_notes(name):
    document = extract(name, fixture(name))
    assert document.title == "Lantern Roadmap"
    assert [(s.fragment, s.page) for s in document.sections] == [(f"slide-{n}", n) for n in range(1, 6)]
    why = section_of(document, "heliotrope")
    assert (why.heading, why.page) == ("Why lanterns", 2)
    assert "nightjar" in why.text  # the speaker notes
    assert "Quill | Q3" in section_of(document, "Quarter").text
    assert section_of(document, "wolfberry").heading == "Questions"


@pytest.mark.parametrize(
    ("name", "reason"),
    [("encrypted.docx", "encrypted Word document (needs a password)"),
     ("encrypted.odt", "encrypted OpenDocument text (needs a password)")],
)  # fmt: skip
def test_a_password_protected_file_fails_saying_so(name, reason):
    with pytest.raises(ExtractionError) as caught:
        extract(name, fixture(name))
    assert caught.value.reason == reason


def test_an_encrypted_office_container_under_pptx_fails_as_encrypted():
    # Office encrypts every OOXML kind into the same OLE container.
    with pytest.raises(ExtractionError, match="encrypted PowerPoint presentation"):
        extract("deck.pptx", fixture("encrypted.docx"))


@pytest.mark.parametrize("name", [*GUIDES, *DECKS])
def test_a_truncated_file_fails_as_corrupt_or_truncated(name):
    with pytest.raises(ExtractionError, match="corrupt or truncated"):
        extract(name, truncated(fixture(name)))


@pytest.mark.parametrize(
    ("name", "member"),
    [("guide.libreoffice.docx", "word/document.xml"), ("guide.libreoffice.odt", "content.xml"),
     ("deck.libreoffice.pptx", "ppt/slides/slide2.xml"), ("deck.libreoffice.pptx", "ppt/presentation.xml")],
)  # fmt: skip
def test_a_file_with_a_broken_part_fails_as_corrupt(name, member):
    with pytest.raises(ExtractionError, match="corrupt"):
        extract(name, corrupted(fixture(name), member))


@pytest.mark.parametrize("name", ["notes.docx", "notes.odt", "deck.pptx"])
def test_text_under_an_office_extension_fails_without_a_parser_error(name):
    with pytest.raises(ExtractionError, match="corrupt or truncated"):
        extract(name, b"just some text, not a zip archive\n")


def test_a_zip_bomb_is_refused_before_it_is_unpacked():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<w:document/>")
        # What the archive's directory declares is what zipfile would inflate: claim far more.
        archive.filelist[0].file_size = MAX_UNPACKED_BYTES + 1
    with pytest.raises(ExtractionError, match="unpacks to"):
        extract("bomb.docx", out.getvalue())


def test_heading_styles_are_recognized_whatever_their_case():
    # Word stores built-in names in lowercase ("heading 2"); python-docx capitalizes them.
    import docx  # python-docx writes a real file here, as a program generating reports would

    made = docx.Document()
    made.add_paragraph("Overview", style="Heading 1")
    made.add_paragraph("First words.")
    made.add_paragraph("Detail", style="Heading 2")
    made.add_paragraph("Deep words.")
    buffer = io.BytesIO()
    made.save(buffer)
    document = extract("report.docx", buffer.getvalue())
    assert document.title == "Overview"
    assert [s.heading for s in document.sections] == ["Overview", "Overview > Detail"]


def test_an_external_entity_in_odf_xml_is_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outsideword")
    content = (
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>'
        "<text:p>inside &x; words</text:p></office:text></office:body></office:document-content>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
    document = extract("entity.odt", out.getvalue())
    text = "\n".join(s.text for s in document.sections)
    assert "inside" in text and "outsideword" not in text
