"""What makes two passages copies: the keys computed when a passage is written, and the folding
of a ranking's copies into one slot when it is read.

Exact copies (the same words in the same order, whatever the numbers, case and punctuation) share
a `passage_key`; near copies (a version's edits, a renamed product) share bands of their
`passage_sketch` (one-permutation MinHash with locality-sensitive banding), so folding looks each
hit's bands up in a dict and never compares pairs of hits.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import struct
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import tantivy

from kb.models import Document

if TYPE_CHECKING:
    import numpy as np

COPY_MIN_WORDS = 8  # shorter passages ("See also", "TODO") are alike by chance, not copies
_LETTERS = re.compile(r"[^\W\d_]+")


# For ASCII text, the same words as `_LETTERS` finds (its letters are A-Z and a-z), lowercased,
# at a third of the cost: every other byte becomes a space.
_ASCII_WORDS = bytes((c | 32) if 65 <= c <= 90 or 97 <= c <= 122 else 32 for c in range(256))


def _words(text: str) -> list[bytes]:
    """The words that make a passage's keys: runs of letters, lowercased (numbers, punctuation,
    case and spacing differ between copies of one text)."""
    if text.isascii():
        return text.encode().translate(_ASCII_WORDS).split()
    return [word.encode() for word in _LETTERS.findall(text.lower())]


def passage_key(text: str) -> int:
    """A number shared by passages with the same words in the same order, whatever their case,
    spacing, punctuation and numbers (versions and dates differ between copies); 0 for a short one."""
    return _exact_key(_words(text))


def _exact_key(words: list[bytes]) -> int:
    if len(words) < COPY_MIN_WORDS:
        return 0
    return int.from_bytes(hashlib.blake2b(b" ".join(words), digest_size=8).digest(), "big", signed=True)


# A passage needs this many distinct word 3-grams to be matched on part of them: different short
# passages ("See also the chapter on X", a heading and one line) share most of what little they have.
NEAR_MIN_SHINGLES = 24
# The sketch: one-permutation MinHash of the passage's distinct 3-grams. Each 3-gram is hashed
# once; its hash's top bits pick one of BANDS * ROWS bins, and each bin keeps its smallest hash
# (an empty bin borrows the next filled one's, changed by the distance, so that two passages agree
# on it only as often as on that bin). Each band of ROWS bins is reduced to BAND_BITS bits. Passages
# sharing a share J of their 3-grams agree on a band with probability about J ** ROWS; two
# agreeing bands (NEAR_BANDS) make near copies, which folds most pairs of J >= 0.8 and almost none
# below 0.5 (one shared band would fold too many). One hash per 3-gram, where MinHash proper takes
# one per bin, and all the passages of a batch in one pass: a sketch costs ~10 us, not ~40.
BANDS = 8
ROWS = 4
BAND_BITS = 16
NEAR_BANDS = 2
SKETCH_FIELDS = ("sketch_a", "sketch_b")  # the bands, packed four to a 64-bit field
_PER_FIELD = 64 // BAND_BITS
_BINS = BANDS * ROWS
_BIN_BITS = 5  # 2 ** 5 == _BINS
# What is sorted: the passage's number in its batch above a 3-gram's top 40 bits (its bin, then
# enough of its hash that two distinct 3-grams of one passage almost never share them).
_GRAM_BITS = 40


@functools.cache
def _hashing() -> tuple[Any, Any]:
    """numpy and the sketch's hash constants, made on first use: only writing a passage needs them,
    and importing numpy would add to every command's start (kb search, a no-change kb index)."""
    import numpy as np

    # Odd multipliers that make a 3-gram's number depend on its words' order, and a band's on its
    # rows'; the last is what an empty bin adds for each bin it looks past.
    multipliers = np.array(
        [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0x632BE59BD9B4E019],
        dtype=np.uint64,
    )
    return np, multipliers


def passage_sketch(text: str, *, min_shingles: int = NEAR_MIN_SHINGLES) -> tuple[int, ...]:
    """The passage's bands (see `BANDS`), packed into one number per `SKETCH_FIELDS`; zeros for a
    passage of fewer than `min_shingles` distinct 3-grams (too short to be matched on part of them)."""
    return _sketches([_words(text)], min_shingles)[0]


def _sketches(passages: Sequence[list[bytes]], min_shingles: int = NEAR_MIN_SHINGLES) -> list[tuple[int, ...]]:
    """`passage_sketch` of each passage's words, computed together: numpy's cost is per call."""
    none = (0,) * len(SKETCH_FIELDS)
    sketches = [none] * len(passages)
    long_enough = [i for i, words in enumerate(passages) if len(words) >= min_shingles + 2]
    if not long_enough:
        return sketches
    np, multipliers = _hashing()
    lengths = np.array([len(passages[i]) for i in long_enough])
    words = itertools.chain.from_iterable(passages[i] for i in long_enough)
    # CRC-32 is stable across processes (unlike `hash`) and cheap; the mixing below spreads it.
    hashed = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=int(lengths.sum()))
    owner = np.repeat(np.arange(len(long_enough), dtype=np.uint64), lengths)
    within = owner[:-2] == owner[2:]  # the 3-grams that do not straddle two passages
    grams = _mix(hashed[:-2] * multipliers[0] + hashed[1:-1] * multipliers[1] + hashed[2:])[within]
    # Sorted by passage, then bin, then hash: a passage's distinct 3-grams are the changes of value,
    # and each bin's smallest hash is the first of its run.
    gram_shift = np.uint64(64 - _GRAM_BITS)
    keys = np.sort(owner[:-2][within] << np.uint64(_GRAM_BITS) | grams >> gram_shift)
    passage_of = (keys >> np.uint64(_GRAM_BITS)).astype(np.intp)
    distinct = np.bincount(passage_of[_firsts(np, keys)], minlength=len(long_enough))
    cells = (keys >> np.uint64(_GRAM_BITS - _BIN_BITS)).astype(np.intp)  # passage * _BINS + bin
    firsts = _firsts(np, cells)
    minima = np.zeros(len(long_enough) * _BINS, dtype=np.uint64)
    filled = np.zeros(len(long_enough) * _BINS, dtype=bool)
    minima[cells[firsts]] = keys[firsts] & np.uint64((1 << _GRAM_BITS) - 1)
    filled[cells[firsts]] = True
    minima, filled = minima.reshape(-1, _BINS), filled.reshape(-1, _BINS)
    while not filled.all():  # at most _BINS - 1 steps: every passage has a filled bin
        borrow = ~filled & np.roll(filled, -1, axis=1)
        minima = np.where(borrow, np.roll(minima, -1, axis=1) + multipliers[4], minima)
        filled |= borrow
    rows = minima.reshape(-1, BANDS, ROWS)
    bands = _mix((rows * multipliers[:ROWS]).sum(axis=2, dtype=np.uint64)) >> np.uint64(64 - BAND_BITS)
    for number, (i, passage_bands) in enumerate(zip(long_enough, bands.tolist(), strict=True)):
        if distinct[number] >= min_shingles:
            sketches[i] = _packed(passage_bands)
    return sketches


def _firsts(np: Any, values: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted array starts."""
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = values[1:] != values[:-1]
    return starts


def _packed(bands: list[int]) -> tuple[int, ...]:
    """The bands, `_PER_FIELD` to a signed 64-bit number (what a Tantivy integer field holds)."""
    packed = []
    for field in range(len(SKETCH_FIELDS)):
        value = 0
        for band in bands[field * _PER_FIELD : (field + 1) * _PER_FIELD]:
            value = value << BAND_BITS | band
        packed.append(value - (1 << 64) if value >> 63 else value)
    return tuple(packed)


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: numbers that differ in a few bits come out differing in half."""
    np = _hashing()[0]
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def shared_bands(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many bands two sketches agree on (0 if either passage has none)."""
    if not any(a) or not any(b):
        return 0
    agree = 0
    mask = (1 << BAND_BITS) - 1
    for x, y in zip(a, b, strict=True):
        for place in range(_PER_FIELD):
            agree += (x >> (place * BAND_BITS)) & mask == (y >> (place * BAND_BITS)) & mask
    return agree


class PassageKeys(NamedTuple):
    """What a passage's copies share: `exact` its `passage_key`, `near` its `passage_sketch`."""

    exact: int
    near: tuple[int, ...]


def passage_keys(docs: Sequence[Document]) -> list[list[PassageKeys]]:
    """The keys of each section of each of `docs`, in order: what `IndexBatch.put` would compute,
    for a caller that has spare processors to compute them on (an extraction worker). Many
    documents at once cost far less than each alone."""
    words = [_words(section.text) for doc in docs for section in doc.sections]
    keys = iter([PassageKeys(_exact_key(w), near) for w, near in zip(words, _sketches(words), strict=True)])
    return [[next(keys) for _ in doc.sections] for doc in docs]


def one_slot_per_passage(
    searcher: tantivy.Searcher, schema: tantivy.Schema, hits: list[tuple[float, tantivy.DocAddress]]
) -> tuple[list[tuple[float, tantivy.DocAddress]], list[list[tantivy.DocAddress]]]:
    """`hits` (best first) with each passage's copies folded into its best-ranked instance: the
    hits with its `passage_key`, those whose sketch agrees with its own on `NEAR_BANDS` bands, and
    the passages of its document's other variants: translations, versions (see `_variants`)."""
    addresses = [address for _, address in hits]
    keys = searcher.fast_field_values("content", addresses)
    linked = _linked_bands([searcher.fast_field_values(field, addresses) for field in SKETCH_FIELDS])
    families = _variant_families(searcher, schema, addresses)
    slots: list[tuple[float, tantivy.DocAddress]] = []
    copies: list[list[tantivy.DocAddress]] = []
    slot_of: dict[int, int] = {}
    slot_of_family: dict[int, int] = {}
    near: dict[int, list[int]] = {}  # for each band value (tagged with its band), the slots that have it
    for i, ((score, address), value, family) in enumerate(zip(hits, keys, families, strict=True)):
        key = int(value or 0)
        slot = slot_of.get(key) if key else None
        bands = linked.get(i)
        if slot is None and bands:
            slot = _near_slot(bands, near)
        if slot is None and family:
            slot = slot_of_family.get(family)
        if slot is not None:
            copies[slot].append(address)
            continue
        slot = len(slots)
        if key:
            slot_of[key] = slot
        if family:
            slot_of_family[family] = slot
        if bands:
            for band in bands:
                near.setdefault(band, []).append(slot)
        slots.append((score, address))
        copies.append([])
    return slots, copies


def _variant_families(
    searcher: tantivy.Searcher, schema: tantivy.Schema, addresses: list[tantivy.DocAddress]
) -> list[int]:
    """For each hit, its document's family of variants if it folds (another hit is of the same
    family, and the family has an original in the index); else 0. A ranking with no two variants
    of one page looks nothing up."""
    families = [int(value or 0) for value in searcher.fast_field_values("family", addresses)]
    shared = [family for family, n in Counter(families).items() if n > 1 and family]
    if not shared:
        return [0] * len(families)
    # Whether a family has an original: its first passage says (listing them all took 0.3 ms).
    folding = {
        family
        for family in shared
        if searcher.search(tantivy.Query.term_query(schema, "original", family), limit=1, count=False).hits
    }
    return [family if family in folding else 0 for family in families]


def _linked_bands(fields: Sequence[Sequence[object]]) -> dict[int, list[int]]:
    """For each hit that shares `NEAR_BANDS` of its bands with other hits (only such a hit can be
    a near copy of another), those bands, each tagged with its band's number so one dict holds
    them all. Each band is counted on its own column of every hit's bands, which the C loops of
    `set` and `Counter` do; Python steps only over the hits that share a band."""
    sketched = [(i, packed) for i, packed in enumerate(zip(*fields, strict=True)) if any(packed)]
    values = [int(value or 0) for _, packed in sketched for value in packed]
    # Every sketched hit's bands in one unpacking (a field holds its bands first band first).
    bands = struct.unpack(f">{len(sketched) * BANDS}H", struct.pack(f">{len(values)}q", *values))
    shared: dict[int, list[int]] = {}
    for number in range(BANDS):
        column = bands[number::BANDS]
        if len(set(column)) == len(column):
            continue  # no two hits agree on this band
        repeated = {band for band, n in Counter(column).items() if n > 1}
        for (i, _), band in zip(sketched, column, strict=True):
            if band in repeated:
                shared.setdefault(i, []).append(band | number << BAND_BITS)
    return {i: tags for i, tags in shared.items() if len(tags) >= NEAR_BANDS}


def _near_slot(bands: list[int], near: dict[int, list[int]]) -> int | None:
    """The best-ranked slot that agrees with `bands` on `NEAR_BANDS` of them, if any."""
    agreeing: dict[int, int] = {}
    found: int | None = None
    for band in bands:
        for slot in near.get(band, ()):
            agreeing[slot] = agreeing.get(slot, 0) + 1
            if agreeing[slot] >= NEAR_BANDS and (found is None or slot < found):
                found = slot
    return found
