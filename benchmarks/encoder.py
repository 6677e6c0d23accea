"""The encoder alone: CPU time per passage, and how far its vectors moved from a saved set.

    python benchmarks/encoder.py [--markdown-tar PATH] [--passages N] [--rounds R] [--threads T]
                                 [--save FILE.npz | --compare FILE.npz] [--json]

The passages are the shared Markdown corpus's, as kb embeds them: the corpus is indexed lexically
(`kb index --semantic off` in a fresh process), its passages read back and shuffled with a fixed
seed. Each round encodes the next N in chunks of 64, as `Semantic.embed` hands them over, and is
timed by the CPU time of this process (the encoder's threads included; a loaded machine disturbs it
less than wall time), shown as the median and range over the rounds. Preparing the model is done
before, outside the timing.

To compare two versions of the encoder, `--save` the vectors with one and `--compare` with the
other: the cosine of each passage's two vectors (quality guard: mean >= 0.99, min >= 0.98).
Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _corpus import unpack
from semantic import show

from kb.config import Settings
from kb.index import SearchIndex
from kb.semantic import Semantic
from kb.semantic._model import MODEL_ID

HERE = Path(__file__).resolve().parent
DEFAULT_TAR = HERE.parent.parent / "shared" / "corpora" / "markdown.tar.gz"
CHUNK = 64  # as kb.semantic.CHUNK: the passages one `Encoder.passages` call sees


def corpus_passages(tar: Path, work: Path) -> list[str]:
    """Every passage of the corpus, in a fixed shuffled order."""
    root = unpack(tar, work / "corpus")
    index_dir = work / "index"
    subprocess.run(
        [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir), "--semantic", "off"],
        capture_output=True,
        check=True,
    )
    # Sorted first: the index's own order depends on which worker indexed which file first.
    texts = sorted(text for _, text in SearchIndex.open(index_dir).passages(lambda key: True))
    random.Random(13).shuffle(texts)
    return texts


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(texts: list[str], passages: int, rounds: int, threads: int) -> tuple[dict[str, Any], np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="kb-encoder-") as vectors:
        encoder = Semantic(Path(vectors), Settings().cache_dir).load(threads=threads)
    encoder.passages(texts[:CHUNK])  # warm-up: the first runs allocate
    cpu_ms, rates, blocks = [], [], []
    for round_ in range(rounds):
        chosen = texts[round_ * passages : (round_ + 1) * passages]
        cpu, wall = cpu_seconds(), time.perf_counter()
        blocks += [encoder.passages(chosen[i : i + CHUNK]) for i in range(0, len(chosen), CHUNK)]
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        cpu_ms.append(cpu * 1000 / len(chosen))
        rates.append(len(chosen) / wall)
    figures = {
        "model": MODEL_ID,
        "threads": threads,
        "passages": passages * rounds,
        "CPU-ms per passage (median)": statistics.median(cpu_ms),
        "CPU-ms per passage (min)": min(cpu_ms),
        "CPU-ms per passage (max)": max(cpu_ms),
        "passages per CPU-second": 1000 / statistics.median(cpu_ms),
        "passages/s (wall, median)": statistics.median(rates),
        "peak RSS MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return figures, np.concatenate(blocks)


def agreement(vectors: np.ndarray, saved: Path) -> dict[str, Any]:
    with np.load(saved) as old:
        if len(old["vectors"]) != len(vectors):
            raise SystemExit(f"{saved} holds {len(old['vectors'])} vectors, this run made {len(vectors)}")
        cosines = np.sum(old["vectors"] * vectors, axis=1)
        return {
            "compared with": str(old["model"]),
            "cosine mean": float(cosines.mean()),
            "cosine min": float(cosines.min()),
            "cosine 1st percentile": float(np.percentile(cosines, 1)),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown-tar", type=Path, default=DEFAULT_TAR)
    parser.add_argument("--passages", type=int, default=1000, help="passages per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="the encoder's threads (kb serve: cores - 1)")
    saving = parser.add_mutually_exclusive_group()
    saving.add_argument("--save", type=Path, help="keep this run's vectors in FILE.npz")
    saving.add_argument("--compare", type=Path, help="the cosine of this run's vectors to FILE.npz's")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-encoder-") as tmp:
        texts = corpus_passages(args.markdown_tar.resolve(), Path(tmp))
    if len(texts) < args.passages * args.rounds:
        raise SystemExit(f"the corpus has {len(texts)} passages, fewer than {args.passages * args.rounds}")
    figures, vectors = measure(texts, args.passages, args.rounds, args.threads)
    if args.save:
        np.savez(args.save, model=np.array(MODEL_ID), vectors=vectors)
    if args.compare:
        figures.update(agreement(vectors, args.compare))
    show(figures, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
