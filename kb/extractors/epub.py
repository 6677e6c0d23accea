"""EPUB with ebooklib: chapters in spine order, each read by kb's HTML extractor, its headings
kept under the chapter's title from the book's table of contents."""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Iterable
from typing import Any

import ebooklib
from ebooklib import epub
from lxml import etree

from kb.errors import ExtractionError
from kb.extractors._package import PARSER_ERRORS, open_package, reason
from kb.extractors.html import extract_html
from kb.extractors.markdown import Fragments
from kb.extractors.text import file_stem, metadata_title
from kb.models import Document, Section

_KIND = "EPUB book"
# Fonts "obfuscated" by these algorithms are still fonts; anything else encrypted is DRM.
_FONT_OBFUSCATION = frozenset({"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"})
_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_MISSING_OR_BROKEN: tuple[type[BaseException], ...] = (KeyError, *PARSER_ERRORS)
_ERRORS: tuple[type[BaseException], ...] = (epub.EpubException, *PARSER_ERRORS)


def extract_epub(path: str, data: bytes) -> Document:
    """Extract an EPUB book: its spine's chapters in reading order, each through `extract_html`.
    A section's heading trail starts with its chapter's entry in the table of contents (unless
    the chapter's own heading already says it); fragments are unique across the book.

    Title: the book's dc:title, else the first chapter's title, else the file name. A chapter
    that cannot be read is a warning.

    Raises:
        ExtractionError: the book is DRM-encrypted, not a zip archive, or corrupt.
    """
    with open_package(path, data, _KIND) as archive:
        if drm := _drm_encrypted(archive):
            raise ExtractionError(path, f"DRM-encrypted {_KIND} ({drm} encrypted)")
    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
        chapters = [(item.get_name(), item.get_content()) for item in _spine_documents(book)]
        book_title = next((metadata_title(t) for t, _ in book.get_metadata("DC", "title") if t), None)
        toc_titles = _toc_titles(book.toc)
    except _ERRORS as exc:
        raise ExtractionError(path, f"corrupt {_KIND} ({reason(exc)})") from exc

    sections: list[Section] = []
    warnings: list[str] = []
    fragments = Fragments()
    first_chapter_title: str | None = None
    for name, content in chapters:
        try:
            chapter = extract_html(name, content)
        except ExtractionError as exc:
            warnings.append(f"chapter {name}: {exc.reason}")
            continue
        chapter_title = toc_titles.get(name) or _first_heading(chapter.sections)
        first_chapter_title = first_chapter_title or chapter_title
        for section in chapter.sections:
            heading = section.heading
            if chapter_title and (heading is None or heading.split(" > ")[0] != chapter_title):
                heading = f"{chapter_title} > {heading}" if heading else chapter_title
            own = section.fragment if section.heading else (chapter_title or "intro")
            sections.append(Section(fragment=fragments.claim(own), heading=heading, text=section.text))
    title = book_title or first_chapter_title or file_stem(path)
    return Document(path=path, format="epub", title=title, sections=sections, warnings=warnings)


def _drm_encrypted(archive: zipfile.ZipFile) -> str | None:
    """The first resource that META-INF/encryption.xml lists as encrypted other than by font
    obfuscation, if any."""
    try:
        root = etree.fromstring(archive.read("META-INF/encryption.xml"), _PARSER)
    except _MISSING_OR_BROKEN:
        return None
    for encrypted in root.iter(f"{_XMLENC}EncryptedData"):
        method = encrypted.find(f"{_XMLENC}EncryptionMethod")
        if method is None or method.get("Algorithm") not in _FONT_OBFUSCATION:
            reference = encrypted.find(f".//{_XMLENC}CipherReference")
            return reference.get("URI", "a resource") if reference is not None else "a resource"
    return None


def _spine_documents(book: epub.EpubBook) -> list[Any]:
    documents = []
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        # The navigation document is the table of contents again, not text of the book.
        if (
            item is not None
            and item.get_type() == ebooklib.ITEM_DOCUMENT
            and not isinstance(item, epub.EpubNav)
        ):
            documents.append(item)
    return documents


def _toc_titles(toc: Iterable[Any]) -> dict[str, str]:
    """Each chapter file's first entry in the table of contents (entries point at file#anchor)."""
    titles: dict[str, str] = {}
    for entry in toc:
        if isinstance(entry, tuple):  # (Section, children)
            section, children = entry
            _add_title(titles, section)
            for name, title in _toc_titles(children).items():
                titles.setdefault(name, title)
        else:
            _add_title(titles, entry)
    return titles


def _add_title(titles: dict[str, str], entry: Any) -> None:
    href, title = getattr(entry, "href", None), getattr(entry, "title", None)
    if isinstance(href, str) and isinstance(title, str) and title.strip():
        titles.setdefault(posixpath.normpath(href.partition("#")[0]), " ".join(title.split()))


def _first_heading(sections: list[Section]) -> str | None:
    heading = next((s.heading for s in sections if s.heading), None)
    return heading.split(" > ")[0] if heading else None
