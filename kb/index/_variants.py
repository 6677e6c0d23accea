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

import functools
import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import NamedTuple

import tantivy

from kb.index._english import SAMPLE_CHARS, english_share

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
# `stable`. Not a bare number (`2/`, more often a chapter), a date (`2023.01.15`) nor an address
# (`10.0.0.1`).
_VERSION = re.compile(
    r"(?:v|version-)\d+(?:\.(?:\d+|x))*|\d{1,3}\.(?:\d+|x)(?:\.\d+)?|latest|stable", re.IGNORECASE
)
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
    `setup.fr.md` are one family. A folder or tag of a language other than English counts only if
    the text is written in it; else the next folder down that names a language is tried."""
    *folders, name = path.split("/")
    opening = functools.cache(text)
    kept, code = next(
        ((rest, c) for rest, c in _without_language(folders) if c == "en" or _written_in(opening(), c)),
        (folders, None),
    )
    stem, dot, extension = name.rpartition(".")
    if not dot:  # no extension: the whole name is the stem
        stem, extension = name, ""
    base, tag_dot, tag = stem.rpartition(".")
    named = language(tag) if tag_dot and base else None
    if named not in (None, "en") and not _written_in(opening(), named):
        named = None  # a dotted name (`socket.io.md`), not a translation
    key = "/".join([*_without_version(kept), f"{base if named else stem}.{_MASK}.{extension}"])
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return Family(int.from_bytes(digest, "big", signed=True), code in (None, "en") and named in (None, "en"))


def _without_version(folders: list[str]) -> list[str]:
    """`folders` without the highest one that names a release; Docusaurus's
    `versioned_docs/version-2/` stands for its current `docs/`."""
    for i, folder in enumerate(folders):
        if _VERSION.fullmatch(folder):
            if i > 0 and folders[i - 1] == "versioned_docs":
                return [*folders[: i - 1], "docs", *folders[i + 1 :]]
            return [*folders[:i], *folders[i + 1 :]]
    return folders


def _without_language(folders: list[str]) -> Iterator[tuple[list[str], str]]:
    """For each folder that names a language, highest first: `folders` without it, and that
    language. So `docs/fr/setup.md` is `docs/setup.md` in French, as is `docs/en/setup.md` in
    English, and `fr/` beside an English tree holds its translations; a topic folder below the
    language (`docs/fr/ml/`) is part of the page's name. Docusaurus keeps the French of
    `docs/setup.md` in `i18n/fr/docusaurus-plugin-content-docs/current/setup.md` (`version-2` for
    `versioned_docs/version-2`), and of `blog/` in `i18n/fr/docusaurus-plugin-content-blog/`."""
    for i, folder in enumerate(folders):
        if (code := language(folder)) is None:
            continue
        plugin = folders[i + 1] if i > 0 and folders[i - 1] == "i18n" and i + 1 < len(folders) else None
        if plugin == "docusaurus-plugin-content-docs" and i + 2 < len(folders):
            version = folders[i + 2]
            original = ["docs"] if version == "current" else ["versioned_docs", version]
            yield [*folders[: i - 1], *original, *folders[i + 3 :]], code
        elif plugin == "docusaurus-plugin-content-blog":
            yield [*folders[: i - 1], "blog", *folders[i + 2 :]], code
        else:
            yield [*folders[:i], *folders[i + 1 :]], code


def _per_language(rows: list[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """Tables written as rows of (language codes, words): each code's words, as a set."""
    return {code: frozenset(words.split()) for codes, words in rows for code in codes.split()}


# The scripts of the languages not written in Latin letters, as Unicode names their characters'
# first word; every other language's letters outside ASCII are Latin (é, ß, ş, ơ).
_SCRIPTS = _per_language(
    [
        ("ja", "HIRAGANA KATAKANA CJK"),
        ("zh", "CJK"),
        ("ko", "HANGUL CJK"),
        ("ru uk bg mk be kk ky tg mn ba cv os tt ce kv av ab", "CYRILLIC"),
        ("sr", "CYRILLIC LATIN"),
        ("el", "GREEK"),
        ("ar fa ur ps ug ku sd ks", "ARABIC"),
        ("he yi", "HEBREW"),
        ("hi mr ne sa pi", "DEVANAGARI"),
        ("bn as", "BENGALI"),
        ("pa", "GURMUKHI"),
        ("gu", "GUJARATI"),
        ("or", "ORIYA"),
        ("ta", "TAMIL"),
        ("te", "TELUGU"),
        ("kn", "KANNADA"),
        ("ml", "MALAYALAM"),
        ("si", "SINHALA"),
        ("th", "THAI"),
        ("lo", "LAO"),
        ("km", "KHMER"),
        ("my", "MYANMAR"),
        ("ka", "GEORGIAN"),
        ("hy", "ARMENIAN"),
        ("am ti", "ETHIOPIC"),
        ("bo dz", "TIBETAN"),
        ("dv", "THAANA"),
        ("iu", "CANADIAN"),
    ]
)
_LATIN = frozenset({"LATIN"})
_LETTERS = re.compile(r"[^\W\d_]+")
# English prose is 30-50% function words, other languages' text under 20% (see `english_share`).
_ENGLISH_SHARE = 0.2
# At least this share of the letters, and this many, are of the language's script and outside
# ASCII (ä, é, ñ, ş in most languages of Latin letters; every letter in others). English, code and
# names have next to none; formulas' Greek letters are no Malayalam.
_SCRIPT_SHARE = 0.005
_SCRIPT_LETTERS = 2  # a table naming San José, a changelog crediting Sébastien: one each


# The commonest words of languages of Latin letters that use few accents or none, and of Hungarian
# (whose "a" and "is" are English function words too): their text is told by these instead.
_COMMON_WORDS = _per_language(
    [
        ("id ms", "yang dan di untuk dengan ini itu dari ke tidak ada akan dalam pada atau juga dapat adalah"),
        ("nl", "de het een en van dat niet op te voor zijn met als er wordt kan ook naar bij om aan"),
        ("af", "die en van is het nie te wat om in op vir met kan word ook"),
        ("it", "il di che la per un una del della sono non con si da le gli come anche questo nel"),
        ("sw", "na ya wa kwa ni katika za la cha kama hii kuwa"),
        ("tl", "ang ng sa mga na ay para at ito hindi"),
        ("eu", "eta da ez bat du ere dira izan behar edo"),
        ("hu", "a az és hogy nem egy is meg van ez csak mint vagy kell"),
    ]
)
_COMMON_SHARE = 0.1


def _written_in(text: str, code: str) -> bool:
    """Whether `text` (the start of a document's text) is written in the language `code` rather
    than in English: few English function words, and letters of that language's script outside
    ASCII (or, for a language that has few, more of its own commonest words than of English's).
    Code, names and numbers are neither, so a page of them is not taken for a translation."""
    words = _LETTERS.findall(text[:SAMPLE_CHARS].lower())
    if not words:
        return False
    english = english_share(words)
    if (common := _COMMON_WORDS.get(code)) is not None:
        own = sum(word in common for word in words) / len(words)
        if own >= _COMMON_SHARE and own > english:
            return True
    if english >= _ENGLISH_SHARE:
        return False
    needed = max(math.ceil(sum(map(len, words)) * _SCRIPT_SHARE), _SCRIPT_LETTERS)
    scripts = _SCRIPTS.get(code, _LATIN)
    found = 0
    for word in words:
        if not word.isascii():
            found += sum(ord(char) > 127 and _script(char) in scripts for char in word)
            if found >= needed:
                return True
    return False


@functools.lru_cache(maxsize=4096)
def _script(char: str) -> str:
    """The script of a letter, as the first word of its Unicode name ("LATIN", "CJK", "CYRILLIC")."""
    return unicodedata.name(char, "").partition(" ")[0]


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
