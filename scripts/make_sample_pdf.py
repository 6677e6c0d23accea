"""Write sample_docs/manual.pdf: a four-page PDF with selectable text, in pure Python.

The file is built by hand (Helvetica, WinAnsiEncoding, one text object per page) so that making
it needs no PDF library. Run from the repository root:

    python scripts/make_sample_pdf.py [OUTPUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

TITLE = "kb operations manual"

# Each page: a heading, then lines of body text (kept short enough to fit the page width).
PAGES: list[tuple[str, list[str]]] = [
    (
        "kb operations manual",
        [
            "This manual is for the people who run kb for a team: where it keeps",
            "its data, how documents become passages, and how to keep it healthy.",
            "",
            "kb reads a folder of documents and serves them to AI assistants over",
            "the Model Context Protocol. The folder is the source of truth; the index",
            "is derived data and can always be rebuilt with kb index --rebuild.",
        ],
    ),
    (
        "How PDF files are indexed",
        [
            "Every PDF page becomes one passage of its own, so a search hit names the",
            "exact PDF page it came from, counting pages from 1. A hit on this page",
            "has the id manual.pdf#page-2.",
            "",
            "Only the text layer is read. A scanned page without text is skipped, and",
            "an encrypted PDF that needs a password is reported as failed, not indexed.",
            "The document title comes from the PDF metadata when it has a real one.",
        ],
    ),
    (
        "Serving over HTTP",
        [
            "kb serve --http 8765 listens on 127.0.0.1 by default. To accept",
            "connections from other machines, bind another address and set a bearer",
            "token with --token or KB_TOKEN; requests without it are refused.",
            "",
            "Host and Origin headers are checked to stop DNS rebinding attacks, and",
            "the size of requests, queries and result pages is bounded.",
        ],
    ),
    (
        "Backups and rebuilding",
        [
            "Back up the document folder, not the index. After restoring the folder,",
            "run kb index --rebuild to recreate the index from scratch.",
            "",
            "Several read-only replicas may serve one index written by a single",
            "scheduled job; only one writer may hold the index lock at a time.",
        ],
    ),
]

_PAGE_WIDTH, _PAGE_HEIGHT = 612, 792  # US Letter, in points


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("cp1252") + b")"


def _content_stream(heading: str, lines: list[str]) -> bytes:
    ops = [
        b"BT",
        b"/F2 18 Tf",
        b"72 712 Td",
        _pdf_string(heading) + b" Tj",
        b"/F1 11 Tf",
        b"15 TL",
        b"0 -12 Td",
    ]
    for line in lines:
        ops.append(b"T*")
        if line:
            ops.append(_pdf_string(line) + b" Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def build_pdf(title: str, pages: list[tuple[str, list[str]]]) -> bytes:
    """Return the bytes of a PDF with one page per (heading, lines) and `title` in its metadata."""
    # Object numbers: 1 catalog, 2 page tree, 3 and 4 fonts, 5 info, then a page and its stream each.
    first_page = 6
    page_ids = [first_page + 2 * i for i in range(len(pages))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % n for n in page_ids)
        + b"] /Count %d >>" % len(pages),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        5: b"<< /Title " + _pdf_string(title) + b" /Producer (kb scripts/make_sample_pdf.py) >>",
    }
    for page_id, (heading, lines) in zip(page_ids, pages, strict=True):
        stream = _content_stream(heading, lines)
        objects[page_id] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] " % (
            _PAGE_WIDTH,
            _PAGE_HEIGHT,
        ) + b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref_at = len(out)
    count = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    for number in range(1, count):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref_at)
    return bytes(out)


def main(argv: list[str]) -> int:
    target = (
        Path(argv[1])
        if len(argv) > 1
        else Path(__file__).resolve().parent.parent / "sample_docs" / "manual.pdf"
    )
    target.write_bytes(build_pdf(TITLE, PAGES))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
