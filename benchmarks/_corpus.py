"""Corpora for the benchmark: unpack the shared tarballs, make a synthetic tree, sample queries.

Everything is deterministic (fixed seeds, sorted paths) so two runs measure the same work.
"""

from __future__ import annotations

import random
import re
import tarfile
from pathlib import Path

WORD = re.compile(r"[A-Za-z][a-z]{3,14}")
PAIR = re.compile(r"\b([a-z]{3,} [a-z]{3,})\b")
PROSE = re.compile(r"^[A-Z][A-Za-z ,']{30,140}[.?]$")  # a plain sentence on a line of its own


def unpack(tar: Path, into: Path) -> Path:
    with tarfile.open(tar) as archive:
        archive.extractall(into, filter="data")
    return into


def subset(root: Path, keep: int | None) -> Path:
    """Delete all but `keep` files of `root`, evenly spread over its sorted paths (None keeps all)."""
    if keep is not None:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        step = max(1, len(files) // keep)
        for i, path in enumerate(files):
            if i % step or i // step >= keep:
                path.unlink()
    return root


def files_and_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def pdf_pages(root: Path) -> int:
    from pypdf import PdfReader

    return sum(len(PdfReader(p).pages) for p in sorted(root.rglob("*.pdf")))


def synthetic(root: Path, n: int, seed: int = 6) -> None:
    """Write `n` small Markdown files, 100 to a folder, of made-up words (about 0.5-2 KB each)."""
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice("abcdefghijklmnoprstuvw") for _ in range(rng.randint(3, 10))) for _ in range(5000)
    ]
    for i in range(n):
        folder = root / f"d{i // 10000:02d}" / f"s{i // 100 % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        words = rng.choices(vocab, k=rng.randint(80, 320))
        title = " ".join(words[:4]).capitalize()
        body = "\n\n".join(" ".join(words[j : j + 40]) + "." for j in range(4, len(words), 40))
        text = (
            f"---\ntitle: {title}\ntags: [t{i % 17}]\n---\n\n# {title}\n\n{body}\n\n## Notes\n\n{words[-1]}\n"
        )
        (folder / f"note{i:05d}.md").write_text(text)


def queries(root: Path, n: int, seed: int = 3) -> list[str]:
    """`n` varied queries from the corpus: words, word pairs, quoted phrases, questions, pasted sentences."""
    rng = random.Random(seed)
    words: dict[str, int] = {}
    sentences: list[str] = []
    phrases: list[str] = []
    for path in rng.sample(sorted(root.rglob("*.md")), k=min(400, sum(1 for _ in root.rglob("*.md")))):
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            found = WORD.findall(line)
            for w in found:
                words[w.lower()] = words.get(w.lower(), 0) + 1
            if PROSE.match(line):
                sentences.append(line)
            phrases.extend(PAIR.findall(line)[:1])
    vocab = sorted(w for w, count in words.items() if count >= 2)
    asks = [
        "how do I use {} with {}?",
        "what is the difference between {} and {}?",
        "why does my {} fail when I change the {}?",
        "where is the {} option for {} documented?",
        "can you explain how {} relates to {} in practice?",
    ]
    out = []
    for i in range(n):
        a, b = rng.sample(vocab, 2)
        kind = i % 6
        if kind == 0:
            out.append(a)
        elif kind == 1:
            out.append(f"{a} {b}")
        elif kind == 2:
            out.append(f'"{rng.choice(phrases)}"')
        elif kind in (3, 4):
            out.append(rng.choice(asks).format(a, b))
        else:
            out.append(rng.choice(sentences) if sentences else f"{a} {b}")
    return out
