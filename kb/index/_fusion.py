"""Search by meaning on the index's side: which passages the filters let through, the passages of
the vector keys nearest in meaning, and their reciprocal rank fusion with the lexical ranking."""

from __future__ import annotations

import tantivy

from kb.index._copies import one_slot_per_passage
from kb.index._matches import every_match, matching
from kb.index._query import QueryPlan

MAX_HITS_SCANNED = 5000
# A filter that lets at most this many passages through has them all ranked by meaning; past it,
# the nearest of all passages (ten times as many as unfiltered) are filtered.
MAX_RANKED_BY_MEANING = 5000


def filtered_keys(searcher: tantivy.Searcher, plan: QueryPlan) -> list[int] | None:
    """The vector keys of the passages the filters let through, if few enough to rank them all
    by meaning (None: so many that the nearest of all passages hold enough of them)."""
    passing = plan.restrict(tantivy.Query.all_query())
    count = matching(searcher, passing)
    if count > MAX_RANKED_BY_MEANING:
        return None
    addresses = every_match(searcher, passing, count)
    return list({int(key or 0) for key in searcher.fast_field_values("vector_key", addresses)})


def by_meaning(
    searcher: tantivy.Searcher,
    schema: tantivy.Schema,
    plan: QueryPlan,
    nearest: list[tuple[int, float]],
    all_passages: bool,
) -> list[tantivy.DocAddress]:
    """The passages with the `nearest` vector keys that pass the filters, best first; unless
    `all_passages`, only each document's first."""
    if not nearest:
        return []
    keys = [key for key, _ in nearest]
    query = plan.restrict(with_keys(schema, keys))
    # A key is shared by every copy of a passage, so there may be many more passages than keys
    # (one page in every version of a product's docs): all are taken, or the copies of one
    # passage, first in the index, would crowd out the others (every hit scores the same).
    found = searcher.search(query, limit=MAX_HITS_SCANNED, count=False).hits
    addresses = [address for _, address in found]
    rank = {key: i for i, key in enumerate(keys)}
    values = searcher.fast_field_values("vector_key", addresses)
    ranked = sorted(
        zip(addresses, values, strict=True), key=lambda pair: rank.get(int(pair[1] or 0), len(rank))
    )
    if all_passages:
        return [address for address, _ in ranked]
    nums = searcher.fast_field_values("doc_num", [address for address, _ in ranked])
    first: dict[int, tantivy.DocAddress] = {}
    for (address, _), num in zip(ranked, nums, strict=True):
        first.setdefault(int(num or 0), address)
    return list(first.values())


def fuse(
    searcher: tantivy.Searcher,
    schema: tantivy.Schema,
    plan: QueryPlan,
    lexical: tuple[list[tuple[float, tantivy.DocAddress]], int, list[list[tantivy.DocAddress]]],
    head: int,
    meaning: list[tantivy.DocAddress],
    all_passages: bool,
    k: int,
) -> tuple[list[tuple[float, tantivy.DocAddress]], int, list[list[tantivy.DocAddress]]]:
    """Reciprocal rank fusion of the first `head` lexical hits (with their copies) and the
    passages found by meaning: by document, or by passage with `all_passages`; then the rest of
    the lexical hits in their order. A document keeps the passage that ranked it lexically, if any.
    `k` is the fusion's constant (see `Ranking.rrf_k`).

    The fused part is the same however deep the page: a deeper lexical side would give a passage
    found by meaning a second vote on a later page only, and it would move ahead of passages
    already shown (shown twice, others never)."""
    hits, total, lexical_copies = lexical

    def identities(ranking: list[tantivy.DocAddress]) -> list[tuple[int, int]]:
        docs = searcher.fast_field_values("doc_num", ranking)
        passages = searcher.fast_field_values("ordinal", ranking) if all_passages else [0] * len(ranking)
        return [(int(d or 0), int(p or 0)) for d, p in zip(docs, passages, strict=True)]

    lexical_ranking = [address for _, address in hits]
    lexical_ids = identities(lexical_ranking)
    scores: dict[tuple[int, int], float] = {}
    shown: dict[tuple[int, int], tantivy.DocAddress] = {}
    for ranking, ids in ((lexical_ranking[:head], lexical_ids[:head]), (meaning, identities(meaning))):
        for rank, (address, identity) in enumerate(zip(ranking, ids, strict=True)):
            scores[identity] = scores.get(identity, 0.0) + 1.0 / (k + rank + 1)
            shown.setdefault(identity, address)
    fused = sorted(((score, shown[key]) for key, score in scores.items()), key=lambda h: -h[0])
    floor = fused[-1][0] if fused else 1.0
    later = [
        (min(1.0 / (k + head + i + 1), floor), address)
        for i, (address, identity) in enumerate(
            zip(lexical_ranking[head:], lexical_ids[head:], strict=True)
        )
        if identity not in scores
    ]
    if all_passages:
        # Every lexical match is counted in `total`; add the passages found by meaning alone.
        keys = {int(v or 0) for v in searcher.fast_field_values("vector_key", meaning)}
        both = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, plan.query),
                (tantivy.Occur.Must, with_keys(schema, list(keys))),
            ]
        )
        lexical_too = matching(searcher, both)
        ranked = fused + later
        return ranked, max(total + len(meaning) - lexical_too, len(ranked)), [[] for _ in ranked]
    slots, copies = one_slot_per_passage(searcher, schema, fused + later)
    known = {place(address): others for (_, address), others in zip(hits, lexical_copies, strict=True)}
    slots, copies = _with_lexical_copies(searcher, slots, copies, known)
    exhausted = total <= len(hits)  # else `total` says only that there are more
    return slots, len(slots) if exhausted else max(total, len(slots)), copies


def _with_lexical_copies(
    searcher: tantivy.Searcher,
    slots: list[tuple[float, tantivy.DocAddress]],
    copies: list[list[tantivy.DocAddress]],
    known: dict[tuple[int, int], list[tantivy.DocAddress]],
) -> tuple[list[tuple[float, tantivy.DocAddress]], list[list[tantivy.DocAddress]]]:
    """The fused slots, each naming the copies its passages had in the lexical ranking (`known`,
    by the place of each lexical hit) beside its own, each document once and never the slot's.
    A slot whose document the words found only as a copy (a translation's, folded under another)
    shows that passage, which holds the query's words, rather than the one found by meaning."""
    by_words = set(known) | {place(c) for others in known.values() for c in others}
    involved = [a for (_, a), others in zip(slots, copies, strict=True) for a in (a, *others)]
    involved += [c for others in known.values() for c in others]
    numbers = searcher.fast_field_values("doc_num", involved)
    document = {place(a): int(d or 0) for a, d in zip(involved, numbers, strict=True)}
    shown_slots, shown_copies = [], []
    for (score, address), others in zip(slots, copies, strict=True):
        # Its own lexical copies, then each hit folded into it followed by that hit's.
        folded = (c for hit in others for c in (hit, *known.get(place(hit), [])))
        candidates = [*known.get(place(address), []), *folded]
        own = document[place(address)]
        if place(address) not in by_words:
            address = next((c for c in candidates if document[place(c)] == own and place(c) in by_words), address)
        named, seen = [], {own}
        for candidate in candidates:
            if document[place(candidate)] not in seen:
                seen.add(document[place(candidate)])
                named.append(candidate)
        shown_slots.append((score, address))
        shown_copies.append(named)
    return shown_slots, shown_copies


def with_keys(schema: tantivy.Schema, keys: list[int]) -> tantivy.Query:
    """The passages with any of these vector keys. One term query each, not a term set: keys are
    spread over the whole dictionary, which a term set walks (100 keys of 100,000: 1.3 ms against
    0.45 ms; 1,000 keys: the same)."""
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "vector_key", key)) for key in keys]
    )


def place(address: tantivy.DocAddress) -> tuple[int, int]:
    """Where a passage is in the index: one passage, whichever query found it."""
    return (address.segment_ord, address.doc)
