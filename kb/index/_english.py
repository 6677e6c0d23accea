"""English: its function words, and whether a query or a document's text reads as English."""

from __future__ import annotations

import re

# Function words that carry no topic in a natural-language question. Only dropped from queries
# without operators, and never when nothing else would remain; never taken as feedback words.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can cannot could did do does doing down during each either else even ever
    every few for from further had has have having he her here hers him his how however i if in into is
    it its itself just me might more most must my no nor not now of off often on once only or other
    our out over own per same shall she should so some such than that the their them themselves then
    there therefore these they this those through thus to too under until up upon very via was we
    were what whatever when where whereas whether which while who whom whose why will with within
    without would yet you your tell explain describe please show give find""".split()
)
# Those that are also everyday words of other languages written in Latin letters ("a", "no" in
# Spanish; "was", "in", "also" in German; "on", "or" in French; "i" in Italian and Polish...).
_SHARED = frozenset(
    """a also am an as at by do for had he her i in is it just me my no of on once or over per so
    under via was will""".split()
)
_ENGLISH_ONLY = STOPWORDS - _SHARED
_WORD = re.compile(r"\w+")
_LETTERS = re.compile(r"[^\W\d_]+")
# English prose is 30-50% function words (FastAPI's English pages: 10th percentile 0.30), its
# translations in 24 languages 0-10%, at most 0.23; pages of code and names read as neither.
_ENGLISH_SHARE = 0.2
# Letters outside ASCII: ä, é, ñ, ş in most languages of Latin letters, all of them in others.
# English, code and names have next to none.
_OTHER_LETTERS_SHARE = 0.005
SAMPLE_CHARS = 4000


def asks_in_english(text: str) -> bool:
    """Whether a query reads as English: two of its words at least are English function words
    found in no other language's everyday use."""
    return len(_ENGLISH_ONLY.intersection(_WORD.findall(text.lower()))) >= 2


def reads_as_other_language(text: str) -> bool:
    """Whether `text` (the start of a document's text) is written in a language other than
    English: few English function words, and letters outside ASCII. Code, names and numbers are
    neither, so a page of them is not taken for another language."""
    words = _LETTERS.findall(text[:SAMPLE_CHARS].lower())
    letters = sum(map(len, words))
    if not letters:
        return False
    english = sum(word in STOPWORDS for word in words) / len(words)
    other = sum(not word.isascii() and sum(ord(c) > 127 for c in word) for word in words) / letters
    return english < _ENGLISH_SHARE and other >= _OTHER_LETTERS_SHARE
