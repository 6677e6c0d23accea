"""Variants: one page in several languages or versions, told apart by a tag in its path.

A documentation set kept in many languages repeats each page under a folder per language
(`docs/en/setup.md`, `docs/fr/setup.md`) or with a tag before the extension (`setup.md`,
`setup.fr.md`); one kept for several releases, under a folder per version (`docs/v1.2/setup.md`,
`docs/v1.3/setup.md`). The variants of a page share code, names and numbers, so a search ranks
many of them together and they fill its first slots with one page. Each path's *family* is the
path without its language and version, and a ranking keeps one slot per family, naming the others.

Names that only look like languages are common (`ml/`, `io/`, `scanpy.tl.rst`, `socket.io.md`, a
country's states `ca/`, `de/`), so a tag of a language other than English counts only when the
document's text is in another language; and a family folds only if it has an *original* (an
English or untagged member).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import NamedTuple

import tantivy

from kb.index._english import reads_as_other_language

# ISO 639-1: every two-letter language code.
_LANGUAGES = frozenset(
    """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy
    hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li
    ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa
    pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th
    ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split()
)
# A language, then optionally a region (`pt-br`, `es-419`) or a script (`zh-hant`, `sr-latn`), as
# folder and file names write them (`-` or `_`, any case).
_TAG = re.compile(r"([a-z]{2})(?:[-_](?:[a-z]{2}|[0-9]{3}|hans|hant|latn|cyrl|arab))?", re.IGNORECASE)
# A release: `v2`, `v1.2`, `1.2.3`, `2.x`, Docusaurus's `version-2.0`, Read the Docs' `latest` and
# `stable`. A bare number (`2/`) is more often a chapter than a release.
_VERSION = re.compile(r"(?:v|version-)?\d+(?:\.(?:\d+|x))+|(?:v|version-)\d+|latest|stable", re.IGNORECASE)
_MASK = "*"


class Family(NamedTuple):
    """The variants a document belongs to: `number` is shared by all of them; `original` says this
    one is English or carries no language tag."""

    number: int
    original: bool


def language(name: str) -> str | None:
    """The language of a folder or file-name tag (`fr`, `pt-BR`, `zh_Hant` -> its two letters)."""
    match = _TAG.fullmatch(name)
    if match is None:
        return None
    code = match.group(1).lower()
    return code if code in _LANGUAGES else None


def family(path: str, text: Callable[[], str]) -> Family:
    """The family of the document at `path`, whose text starts with `text()` (asked for only when
    the path names a language other than English): the path without its language and its version
    (see `_without_language`, `_without_version`) nor a language tag before the extension
    (`setup.fr.md`), every name marked as if it had such a tag, so that `setup.md` and
    `setup.fr.md` are one family."""
    *folders, name = path.split("/")
    kept, code = _without_language(folders)
    stem, dot, extension = name.rpartition(".")
    if not dot:  # no extension: the whole name is the stem
        stem, extension = name, ""
    base, tag_dot, tag = stem.rpartition(".")
    named = language(tag) if tag_dot and base else None
    codes = [c for c in (code, named) if c is not None]
    if any(c != "en" for c in codes) and not reads_as_other_language(text()):
        kept, named, codes = folders, None, []  # names that only look like languages
    key = "/".join([*_without_version(kept), f"{base if named else stem}.{_MASK}.{extension}"])
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return Family(int.from_bytes(digest, "big", signed=True), all(c == "en" for c in codes))


def _without_version(folders: list[str]) -> list[str]:
    """`folders` without the highest one that names a release; Docusaurus's
    `versioned_docs/version-2/` stands for its current `docs/`."""
    for i, folder in enumerate(folders):
        if _VERSION.fullmatch(folder):
            if i > 0 and folders[i - 1] == "versioned_docs":
                return [*folders[: i - 1], "docs", *folders[i + 1 :]]
            return [*folders[:i], *folders[i + 1 :]]
    return folders


def _without_language(folders: list[str]) -> tuple[list[str], str | None]:
    """`folders` without the highest one that names a language, and that language (None if none
    does). So `docs/fr/setup.md` is `docs/setup.md` in French, as is `docs/en/setup.md` in English,
    and `fr/` beside an English tree holds its translations; a topic folder below the language
    (`docs/fr/ml/`) is part of the page's name. Docusaurus keeps the French of `docs/setup.md` in
    `i18n/fr/docusaurus-plugin-content-docs/current/setup.md` (`version-2` for
    `versioned_docs/version-2`), and of `blog/` in `i18n/fr/docusaurus-plugin-content-blog/`."""
    for i, folder in enumerate(folders):
        if (code := language(folder)) is None:
            continue
        plugin = folders[i + 1] if i > 0 and folders[i - 1] == "i18n" and i + 1 < len(folders) else None
        if plugin == "docusaurus-plugin-content-docs" and i + 2 < len(folders):
            version = folders[i + 2]
            original = ["docs"] if version == "current" else ["versioned_docs", version]
            return [*folders[: i - 1], *original, *folders[i + 3 :]], code
        if plugin == "docusaurus-plugin-content-blog":
            return [*folders[: i - 1], "blog", *folders[i + 2 :]], code
        return [*folders[:i], *folders[i + 1 :]], code
    return folders, None


Slot = tuple[tuple[float, tantivy.DocAddress], list[tantivy.DocAddress]]  # a hit and its copies


def originals_first(searcher: tantivy.Searcher, page: list[Slot]) -> list[Slot]:
    """`page`, each slot held by a translation whose copies include a passage of its family's
    original shown by that passage instead, at the same rank: what a question asked in English
    wants (otherwise the best-ranked translation stands, as a question in its language wants)."""
    hits = [address for (_, address), _ in page]
    families = searcher.fast_field_values("family", hits)
    originals = searcher.fast_field_values("original", hits)
    shown = list(page)
    for i, ((score, address), others) in enumerate(page):
        family_number = int(families[i] or 0)
        if not family_number or int(originals[i] or 0) == family_number or not others:
            continue
        marks = searcher.fast_field_values("original", others)
        first = next((j for j, mark in enumerate(marks) if int(mark or 0) == family_number), None)
        if first is not None:
            shown[i] = ((score, others[first]), [address, *others[:first], *others[first + 1 :]])
    return shown
