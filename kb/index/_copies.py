"""What makes two passages copies: the keys computed when a passage is written, and the folding
of a ranking's copies into one slot when it is read.

Exact copies (the same words in the same order, whatever the numbers, case and punctuation) share
a `passage_key`; near copies (a version's edits, a renamed product) share bands of their
`passage_sketch` (MinHash with locality-sensitive banding), so folding looks each hit's bands up
in a dict and never compares pairs of hits.
"""

from __future__ import annotations

import functools
import hashlib
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
# The sketch: MinHash of the passage's distinct 3-grams under BANDS * ROWS hash functions, each
# band of ROWS minima reduced to BAND_BITS bits. Passages sharing a share J of their 3-grams agree
# on a band with probability J ** ROWS; two agreeing bands (NEAR_BANDS) make near copies, which
# folds most pairs of J >= 0.8 and almost none below 0.5 (one shared band would fold too many).
BANDS = 8
ROWS = 4
BAND_BITS = 16
NEAR_BANDS = 2
SKETCH_FIELDS = ("sketch_a", "sketch_b")  # the bands, packed four to a 64-bit field
_PER_FIELD = 64 // BAND_BITS


@functools.cache
def _hashing() -> tuple[Any, Any, Any]:
    """numpy and the sketch's hash constants, made on first use: only writing a passage needs them,
    and importing numpy would add to every command's start (kb search, a no-change kb index)."""
    import numpy as np

    seeds = np.array(
        [
            int.from_bytes(hashlib.blake2b(bytes([i]), digest_size=8).digest(), "little")
            for i in range(BANDS * ROWS)
        ],
        dtype=np.uint64,
    )
    # Odd multipliers that make a 3-gram's number depend on its words' order, and a band's on its rows'.
    multipliers = np.array(
        [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], dtype=np.uint64
    )
    return np, seeds, multipliers


def passage_sketch(text: str, *, min_shingles: int = NEAR_MIN_SHINGLES) -> tuple[int, ...]:
    """The passage's bands (see `BANDS`), packed into one number per `SKETCH_FIELDS`; zeros for a
    passage of fewer than `min_shingles` distinct 3-grams (too short to be matched on part of them)."""
    return _sketch(_words(text), min_shingles)


def _sketch(words: list[bytes], min_shingles: int = NEAR_MIN_SHINGLES) -> tuple[int, ...]:
    none = (0,) * len(SKETCH_FIELDS)
    if len(words) < min_shingles + 2:
        return none
    np, seeds, multipliers = _hashing()
    # CRC-32 is stable across processes (unlike `hash`) and cheap; the mixing below spreads it.
    hashed = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
    grams = np.unique(_mix(hashed[:-2] * multipliers[0] + hashed[1:-1] * multipliers[1] + hashed[2:]))
    if len(grams) < min_shingles:
        return none
    minima = _mix(grams[:, None] ^ seeds[None, :]).min(axis=0).reshape(BANDS, ROWS)
    bands = _mix((minima * multipliers[:ROWS]).sum(axis=1, dtype=np.uint64)) >> np.uint64(64 - BAND_BITS)
    packed = []
    for field in range(len(SKETCH_FIELDS)):
        value = 0
        for band in bands[field * _PER_FIELD : (field + 1) * _PER_FIELD].tolist():
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


def passage_keys(doc: Document) -> list[PassageKeys]:
    """The keys of each section of `doc`, in order: what `IndexBatch.put` would compute, for a
    caller that has spare processors to compute them on (an extraction worker)."""
    keys = []
    for section in doc.sections:
        words = _words(section.text)
        keys.append(PassageKeys(_exact_key(words), _sketch(words)))
    return keys


def one_slot_per_passage(
    searcher: tantivy.Searcher, hits: list[tuple[float, tantivy.DocAddress]]
) -> tuple[list[tuple[float, tantivy.DocAddress]], list[list[tantivy.DocAddress]]]:
    """`hits` (best first) with each passage's copies folded into its best-ranked instance: the
    hits with its `passage_key`, and those whose sketch agrees with its own on `NEAR_BANDS` bands."""
    addresses = [address for _, address in hits]
    keys = searcher.fast_field_values("content", addresses)
    linked = _linked_bands([searcher.fast_field_values(field, addresses) for field in SKETCH_FIELDS])
    slots: list[tuple[float, tantivy.DocAddress]] = []
    copies: list[list[tantivy.DocAddress]] = []
    slot_of: dict[int, int] = {}
    near: dict[int, list[int]] = {}  # for each band value (tagged with its band), the slots that have it
    for i, ((score, address), value) in enumerate(zip(hits, keys, strict=True)):
        key = int(value or 0)
        slot = slot_of.get(key) if key else None
        bands = linked.get(i)
        if slot is None and bands:
            slot = _near_slot(bands, near)
        if slot is not None:
            copies[slot].append(address)
            continue
        slot = len(slots)
        if key:
            slot_of[key] = slot
        if bands:
            for band in bands:
                near.setdefault(band, []).append(slot)
        slots.append((score, address))
        copies.append([])
    return slots, copies


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
