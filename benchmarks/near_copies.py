"""Which passages of the shared Markdown corpus kb's near-copy rule folds, and which it misses.

    python benchmarks/near_copies.py [--markdown-tar PATH] [--min-shingles N] [--sample N]

Extracts every file's passages with kb's own extractor (no index) and computes each passage's
`passage_key` and `passage_sketch` (for passages of at least --min-shingles distinct word 3-grams,
so that a smaller minimum than kb's can be judged). Counts the pairs of passages of different
documents that share at least 1, 2, 3 or 4 bands of their sketches, leaving out the pairs that
share a `passage_key` (exact copies, which kb folds anyway), each classed by the word 3-gram
Jaccard of the two passages (the same words the keys are made from): >= 0.8 a near copy, 0.5-0.8
a close variant, < 0.5 a false positive; in rows by the smaller passage's 3-gram count. Also
counts the near copies (Jaccard >= 0.8, found through shared rare 3-grams) that each rule misses,
and prints the folded pairs of lowest Jaccard (kb's rule) and a random sample, to read by eye.

Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

from _corpus import unpack

from kb.extractors import extract
from kb.index._copies import (
    BAND_BITS,
    NEAR_BANDS,
    NEAR_MIN_SHINGLES,
    _words,
    passage_key,
    passage_sketch,
    shared_bands,
)

HERE = Path(__file__).resolve().parent
DEFAULT_TAR = HERE.parent.parent / "shared" / "corpora" / "markdown.tar.gz"
RARE = 50  # 3-grams in more passages than this say nothing about which passages are copies


def passages(root: Path) -> list[tuple[str, str]]:
    """(path, text) of every passage of every Markdown file under `root`."""
    found = []
    for path in sorted(root.rglob("*.md")):
        rel = path.relative_to(root).as_posix()
        try:
            document = extract(rel, path.read_bytes())
        except Exception:  # a file kb would report as failed has no passages
            continue
        found.extend((rel, section.text) for section in document.sections)
    return found


def grams(text: str) -> frozenset[tuple[bytes, ...]]:
    words = _words(text)
    return frozenset(tuple(words[i : i + 3]) for i in range(len(words) - 2))


def jaccard(a: frozenset, b: frozenset) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def band_pairs(sketches: list[tuple[int, ...]]) -> Counter[tuple[int, int]]:
    """Pairs of indexes of `sketches` that share at least one band, with how many they share."""
    buckets: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for i, sketch in enumerate(sketches):
        if any(sketch):
            for field, packed in enumerate(sketch):
                for place in range(64 // BAND_BITS):
                    buckets[(field, place, (packed >> (place * BAND_BITS)) & ((1 << BAND_BITS) - 1))].append(
                        i
                    )
    shared: Counter[tuple[int, int]] = Counter()
    for members in buckets.values():
        shared.update(combinations(members, 2))
    return shared


def near_copy_pairs(shingles: list[frozenset], eligible: list[bool]) -> set[tuple[int, int]]:
    """Pairs of `eligible` passages that may be near copies: sharing many rare 3-grams."""
    postings: dict[tuple[bytes, ...], list[int]] = defaultdict(list)
    for i, gs in enumerate(shingles):
        if eligible[i]:
            for g in gs:
                postings[g].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for members in postings.values():
        if len(members) <= RARE:
            shared.update(combinations(members, 2))
    return {pair for pair, count in shared.items() if count >= 0.5 * min(len(shingles[i]) for i in pair)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown-tar", type=Path, default=DEFAULT_TAR, help="the Markdown corpus tarball")
    parser.add_argument(
        "--min-shingles",
        type=int,
        default=NEAR_MIN_SHINGLES,
        help="the fewest distinct 3-grams a sketch needs",
    )
    parser.add_argument("--sample", type=int, default=12, help="how many folded pairs to print for reading")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-near-") as tmp:
        found = passages(unpack(args.markdown_tar.resolve(), Path(tmp)))
    paths = [path for path, _ in found]
    texts = [text for _, text in found]
    keys = [passage_key(text) for text in texts]
    sketches = [passage_sketch(text, min_shingles=args.min_shingles) for text in texts]
    shingles = [grams(text) for text in texts]
    sketched = sum(1 for s in sketches if any(s))
    print(f"{len(texts)} passages, {sketched} with a sketch (>= {args.min_shingles} distinct 3-grams)")

    def counted(i: int, j: int) -> bool:  # what search could fold: two documents, not exact copies
        return paths[i] != paths[j] and not (keys[i] and keys[i] == keys[j])

    # The near copies: those sharing rare 3-grams, and those sharing a band (large groups of near
    # copies, a template's paragraphs, share only common 3-grams).
    pairs = {p: n for p, n in band_pairs(sketches).items() if counted(*p)}
    candidates = near_copy_pairs(shingles, [any(s) for s in sketches]) | set(pairs)
    truth = {p for p in candidates if counted(*p) and jaccard(shingles[p[0]], shingles[p[1]]) >= 0.8}
    similarity = {p: jaccard(shingles[p[0]], shingles[p[1]]) for p in pairs}
    print(f"near copies (Jaccard >= 0.8) between passages with a sketch: {len(truth)} pairs")
    sizes = [(0, 16), (16, 24), (24, 48), (48, 10**9)]
    print("bands shared  3-grams   folded  J>=0.8  0.5-0.8  J<0.5   near copies missed")
    for least in range(1, 5):
        for low_size, high_size in sizes:
            within = [p for p, n in pairs.items() if n >= least]
            within = [
                p for p in within if low_size <= min(len(shingles[p[0]]), len(shingles[p[1]])) < high_size
            ]
            if not within:
                continue
            high = sum(1 for p in within if similarity[p] >= 0.8)
            low = sum(1 for p in within if similarity[p] < 0.5)
            print(
                f"{least:12}  {low_size:3}-{min(high_size, 999):<4} {len(within):7}  {high:6}  "
                f"{len(within) - high - low:7}  {low:5}"
            )
        missed = sum(1 for p in truth if shared_bands(sketches[p[0]], sketches[p[1]]) < least)
        print(f"{least:12}  all        {sum(1 for n in pairs.values() if n >= least):7}{'':26}{missed:6}")
    folded = [p for p, n in pairs.items() if n >= NEAR_BANDS]
    worst = sorted(folded, key=lambda p: similarity[p])[: args.sample]
    rng = random.Random(5)
    variants = sorted(p for p in folded if similarity[p] < 0.8)
    print(f"\nfolded pairs under 0.8: {len(variants)}, in {len({i for p in variants for i in p})} passages")
    shown = worst + rng.sample(variants, min(args.sample, len(variants)))
    for i, j in shown + rng.sample(sorted(folded), min(args.sample, len(folded))):
        print(f"\n--- bands={pairs[(i, j)]} J={similarity[(i, j)]:.2f}  {paths[i]}  |  {paths[j]}")
        print("   A:", " ".join(texts[i].split())[:300])
        print("   B:", " ".join(texts[j].split())[:300])
    return 0


if __name__ == "__main__":
    sys.exit(main())
