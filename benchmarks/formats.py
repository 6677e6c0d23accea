"""Extraction speed per format: files/s and MB/s of kb's extractors, in this process (no index).

    python benchmarks/formats.py [--seconds 1.0]

Two rows per format: the small converter-made fixtures of tests/fixtures/formats/ (a few KB: the
fixed cost of opening a package dominates), and one large document of the same kind made here
with the format's own library (or, for ODT, the fixture's body repeated), about a hundred pages.
MB are the file's bytes. The machine is noisy: compare rows of one run.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures" / "formats"
sys.path.insert(0, str(HERE.parent))

from kb.extractors import extract  # noqa: E402

PARAGRAPH = (
    "The quillback lantern burns for eleven hours on one wick; trim it square, keep the glass clean "
    "and the chimney clear, and it gives an even light that reads a map at arm's length."
)
SMALL = {
    "docx": ["guide.pandoc.docx", "guide.libreoffice.docx"],
    "odt": ["guide.pandoc.odt", "guide.libreoffice.odt"],
    "pptx": ["deck.pandoc.pptx", "deck.libreoffice.pptx"],
    "epub": ["guide.epub"],
    "ipynb": ["notebook.ipynb"],
    "rst": ["guide.rst"],
}


def large_docx() -> bytes:
    import docx

    made = docx.Document()
    for chapter in range(1, 41):
        made.add_paragraph(f"Chapter {chapter}", style="Heading 1")
        for part in range(1, 4):
            made.add_paragraph(f"Part {chapter}.{part}", style="Heading 2")
            for _ in range(8):
                made.add_paragraph(PARAGRAPH)
        table = made.add_table(rows=5, cols=3)
        for row in table.rows:
            for cell in row.cells:
                cell.text = "wick glass"
    out = io.BytesIO()
    made.save(out)
    return out.getvalue()


def large_odt() -> bytes:
    from lxml import etree

    source = zipfile.ZipFile(FIXTURES / "guide.libreoffice.odt")
    content = etree.fromstring(source.read("content.xml"))
    body = content.find(".//{urn:oasis:names:tc:opendocument:xmlns:office:1.0}text")
    assert body is not None
    blocks = list(body)
    for _ in range(150):
        body.extend(copy.deepcopy(block) for block in blocks)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = etree.tostring(content) if info.filename == "content.xml" else source.read(info)
            target.writestr(info, data)
    return out.getvalue()


def large_pptx() -> bytes:
    import pptx

    made = pptx.Presentation()
    for number in range(1, 121):
        slide = made.slides.add_slide(made.slide_layouts[1])
        slide.shapes.title.text = f"Slide {number}"
        slide.placeholders[1].text_frame.text = "\n".join([PARAGRAPH] * 3)
        slide.notes_slide.notes_text_frame.text = PARAGRAPH
    out = io.BytesIO()
    made.save(out)
    return out.getvalue()


def large_epub() -> bytes:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("bench")
    book.set_title("Bench")
    chapters = []
    for number in range(1, 41):
        chapter = epub.EpubHtml(title=f"Chapter {number}", file_name=f"ch{number}.xhtml")
        body = "".join(f"<h2>Part {number}.{p}</h2>" + f"<p>{PARAGRAPH}</p>" * 8 for p in range(1, 4))
        chapter.content = f"<html><body><h1>Chapter {number}</h1>{body}</body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.spine = chapters
    book.add_item(epub.EpubNav())
    out = io.BytesIO()
    epub.write_epub(out, book)
    return out.getvalue()


def large_ipynb() -> bytes:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    for number in range(1, 121):
        notebook.cells.append(nbformat.v4.new_markdown_cell(f"## Step {number}\n\n{PARAGRAPH}\n"))
        notebook.cells.append(nbformat.v4.new_code_cell("readings = [412, 398, 405]\nsum(readings)\n" * 4))
    return json.dumps(notebook).encode()


def large_rst() -> bytes:
    parts = []
    for number in range(1, 121):
        title = f"Section {number}"
        parts.append(f"{title}\n{'=' * len(title)}\n\n" + f"{PARAGRAPH}\n\n" * 8)
        parts.append(".. code:: console\n\n   $ lantern init\n\n")
    return "".join(parts).encode()


LARGE: dict[str, Callable[[], bytes]] = {
    "docx": large_docx,
    "odt": large_odt,
    "pptx": large_pptx,
    "epub": large_epub,
    "ipynb": large_ipynb,
    "rst": large_rst,
}


def rate(files: list[tuple[str, bytes]], seconds: float) -> tuple[float, float, int]:
    """(files/s, MB/s, sections of one pass) extracting `files` round and round for `seconds`."""
    sections = sum(len(extract(name, data).sections) for name, data in files)  # and warm imports
    count, size, started = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for name, data in files:
            extract(name, data)
            count += 1
            size += len(data)
    return count / elapsed, size / 2**20 / elapsed, sections


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent on each row")
    args = parser.parse_args()
    print(f"{'format':<7} {'set':<34} {'KB/file':>8} {'sections':>8} {'files/s':>9} {'MB/s':>7}")
    for fmt, names in SMALL.items():
        small = [(name, (FIXTURES / name).read_bytes()) for name in names]
        large = [(f"large.{fmt}", LARGE[fmt]())]
        for label, files in ((f"fixtures ({len(small)})", small), ("one large document", large)):
            per_file = sum(len(d) for _, d in files) / len(files) / 1024
            files_s, mb_s, sections = rate(files, args.seconds)
            print(f"{fmt:<7} {label:<34} {per_file:>8.1f} {sections:>8} {files_s:>9.1f} {mb_s:>7.2f}")


if __name__ == "__main__":
    main()
