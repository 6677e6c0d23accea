"""The term dictionary: which words the index knows, and the known words nearest a typo."""

from __future__ import annotations

import time

import tantivy

# Looking for near spellings is pure Python over the terms sharing a prefix; one search spends at
# most this long on it, whatever it asks (what is left uncorrected simply matches nothing).
CORRECTION_BUDGET_SECONDS = 0.5


class Vocabulary:
    """The searcher's term dictionaries over the text fields, with a time budget for corrections."""

    FIELDS = ("body", "title", "heading")
    NEAREST = 3

    def __init__(self, searcher: tantivy.Searcher, budget: float = CORRECTION_BUDGET_SECONDS) -> None:
        self._searcher = searcher
        self._deadline = time.monotonic() + budget

    def known(self, term: str) -> bool:
        """Whether any text field holds `term`."""
        return any(self._searcher.doc_freq(f, term) for f in self.FIELDS)

    def near(self, term: str, distance: int) -> list[str]:
        """Indexed terms within `distance` edits of `term`, the likeliest first."""
        # Typos rarely hit the first letters; reading only the terms that share them keeps this fast.
        prefix = term[:2]
        found: dict[str, tuple[int, int]] = {}
        for field in self.FIELDS:
            if time.monotonic() > self._deadline:
                break
            for n, (candidate, count) in enumerate(self._searcher.terms_with_prefix(field, prefix)):
                if n % 512 == 511 and time.monotonic() > self._deadline:
                    break
                if not -distance <= len(term) - len(candidate) <= 3:
                    continue
                edits = edit_distance(term, candidate, distance)
                if edits > distance and len(candidate) >= 4 and 0 < len(term) - len(candidate) <= 3:
                    # The index holds stems ('morn' for morning), a typo is not stemmed ('mornnig').
                    edits = max(1, edit_distance(term[: len(candidate)], candidate, distance))
                if edits <= distance:
                    found[candidate] = (edits, found.get(candidate, (edits, 0))[1] + count)
        ranked = sorted(found, key=lambda t: (found[t][0], -found[t][1], t))
        return ranked[: self.NEAREST]


def edit_distance(a: str, b: str, limit: int) -> int:
    """Edits (insert, delete, substitute, swap neighbours) from `a` to `b`; `limit + 1` once past it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        prev2, prev = prev, row
    return min(prev[-1], limit + 1)
