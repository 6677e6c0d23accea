from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from kb.errors import ExtractionError
from kb.extractors import extract
from kb.extractors.pdf import extract_pdf, normalize

SAMPLE_PDF = Path(__file__).resolve().parent.parent / "sample_docs" / "manual.pdf"


def rewrite(
    data: bytes, *, title: str | None = None, blank_pages: int = 0, password: str | None = None
) -> bytes:
    """The PDF `data` with its metadata title replaced, blank pages appended, or encrypted."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if title is not None:
        writer.add_metadata({"/Title": title})
    for _ in range(blank_pages):
        writer.add_blank_page(612, 792)
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def blank_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_sample_manual_has_one_section_per_page(sample_docs: Path) -> None:
    doc = extract("manual.pdf", (sample_docs / "manual.pdf").read_bytes())
    assert doc.format == "pdf"
    assert doc.title == "kb operations manual"
    assert [(s.fragment, s.page, s.heading) for s in doc.sections] == [
        ("page-1", 1, None),
        ("page-2", 2, None),
        ("page-3", 3, None),
        ("page-4", 4, None),
    ]
    assert doc.warnings == []


def test_pdf_pages_read_the_same_with_each_font_built_once_per_document(sample_docs: Path) -> None:
    data = (sample_docs / "manual.pdf").read_bytes()
    reader = PdfReader(io.BytesIO(data))  # read page by page outside kb: every font rebuilt per page
    assert len(reader.pages) > 1
    plain = [normalize(page.extract_text()) for page in reader.pages]
    doc = extract_pdf("manual.pdf", data)
    assert [s.text for s in doc.sections] == [text for text in plain if text]
    assert [s.text for s in extract_pdf("manual.pdf", data).sections] == [s.text for s in doc.sections]


def test_pdf_page_text_belongs_to_its_own_page() -> None:
    sections = {s.page: s.text for s in extract_pdf("manual.pdf", SAMPLE_PDF.read_bytes()).sections}
    assert sections[2].startswith("How PDF files are indexed\n")
    assert "manual.pdf#page-2" in sections[2]
    assert "bearer" in sections[3]
    assert "bearer" not in sections[2]
    assert "--rebuild" in sections[4]


def test_pdf_junk_metadata_title_falls_back_to_first_line() -> None:
    for junk in ("", "Untitled", "Microsoft Word - notes.doc", "draft-3.pdf"):
        doc = extract_pdf("docs/manual.pdf", rewrite(SAMPLE_PDF.read_bytes(), title=junk))
        assert doc.title == "kb operations manual", junk


def test_pdf_real_metadata_title_wins() -> None:
    doc = extract_pdf("manual.pdf", rewrite(SAMPLE_PDF.read_bytes(), title="  Operating   kb  "))
    assert doc.title == "Operating kb"


def test_pdf_blank_pages_produce_no_section() -> None:
    doc = extract_pdf("manual.pdf", rewrite(SAMPLE_PDF.read_bytes(), blank_pages=2))
    assert [s.page for s in doc.sections] == [1, 2, 3, 4]
    assert doc.warnings == []


def test_pdf_without_any_text_is_a_document_with_a_warning() -> None:
    doc = extract_pdf("scans/receipt.pdf", blank_pdf(2))
    assert doc.title == "receipt"
    assert doc.sections == []
    assert doc.warnings == ["no extractable text (a scanned PDF?)"]


def test_pdf_encrypted_with_a_password_raises_extraction_error() -> None:
    with pytest.raises(ExtractionError) as info:
        extract("secret.pdf", rewrite(SAMPLE_PDF.read_bytes(), password="secret"))
    assert info.value.path == "secret.pdf"
    assert info.value.reason == "encrypted PDF (needs a password)"


def test_pdf_encrypted_with_an_empty_user_password_is_read() -> None:
    doc = extract("open.pdf", rewrite(SAMPLE_PDF.read_bytes(), password=""))
    assert len(doc.sections) == 4


def test_pdf_truncated_file_raises_extraction_error() -> None:
    data = SAMPLE_PDF.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 200):
        with pytest.raises(ExtractionError, match="corrupt or truncated PDF"):
            extract("cut.pdf", data[:cut])


def test_pdf_garbage_after_header_raises_extraction_error() -> None:
    with pytest.raises(ExtractionError, match="corrupt"):
        extract("bad.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 20)


def test_pdf_bytes_that_are_not_a_pdf_raise_extraction_error() -> None:
    with pytest.raises(ExtractionError, match="not a PDF"):
        extract("renamed.pdf", b"<html>this is a web page</html>")
    with pytest.raises(ExtractionError, match="empty"):
        extract("zero.pdf", b"")


def test_pdf_normalize_collapses_spaces_and_keeps_line_breaks() -> None:
    assert normalize("  a   b\t\tc \r\n\n\n d\x00e\ufffd \x0c") == "a b c\nde"
