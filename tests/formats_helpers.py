"""The converter-made fixtures of tests/fixtures/formats/ (see scripts/make_format_fixtures.sh)
and damaged copies of them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "formats"

# Where each planted word of guide.md lies: the heading trail of its section.
GUIDE_WORDS = {
    "quillback": None,
    "marmoset": "Installing",
    "zephyrine": "Installing > Linux",
    "brackenfold": "Installing > Windows",
    "ossifrage": "Maintenance",
    "tamarind": "Maintenance > Cleaning the glass",
    "cormorant": "Maintenance > Cleaning the glass",  # under a Heading 4: a line, not a section
}
GUIDE_TITLE = "Field Guide to Lanterns"
# The heading trails of guide.md's sections to level 3, after its intro (the level-4 heading is not one).
GUIDE_HEADINGS = [
    "Installing",
    "Installing > Linux",
    "Installing > Windows",
    "Maintenance",
    "Maintenance > Cleaning the glass",
]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def truncated(data: bytes) -> bytes:
    """The first half of a file, as an interrupted download or copy leaves it."""
    return data[: len(data) // 2]


def corrupted(data: bytes, member: str) -> bytes:
    """The same zip archive with `member` replaced by bytes that are not XML."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = b"<unclosed><tag" if info.filename == member else source.read(info)
            target.writestr(info, body)
    return out.getvalue()


def section_of(document, word: str):
    """The one section whose text holds `word`."""
    (found,) = [s for s in document.sections if word in s.text]
    return found


ENCRYPTION_XML = b"""<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
            xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
  <enc:EncryptedData>
    <enc:EncryptionMethod Algorithm="%s"/>
    <enc:CipherData><enc:CipherReference URI="EPUB/text/ch002.xhtml"/></enc:CipherData>
  </enc:EncryptedData>
</encryption>"""


def with_encryption(data: bytes, algorithm: str) -> bytes:
    """An EPUB whose META-INF/encryption.xml says a chapter is encrypted with `algorithm`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("META-INF/encryption.xml", ENCRYPTION_XML % algorithm.encode())
    return out.getvalue()
