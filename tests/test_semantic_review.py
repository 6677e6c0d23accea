"""Review of semantic search: damaged vector files, the prepared model's cache, paging a fused
ranking, and passages shared by many documents."""

from __future__ import annotations

import hashlib
from pathlib import Path

from test_semantic import QUESTION, TOPICS, indexed, started

from kb.index import SearchIndex
from kb.library import Library, embed_missing
from kb.models import SyncReport
from kb.semantic._store import SEGMENT_PREFIX, VectorStore


def _model() -> tuple[str, int]:
    from kb.semantic._model import DIMENSIONS, MODEL_ID

    return MODEL_ID, DIMENSIONS


def test_a_truncated_vector_file_is_dropped_not_fatal(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    folder = settings.index_dir / "vectors"
    [segment] = [p for p in folder.iterdir() if p.name.startswith(SEGMENT_PREFIX)]
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) // 2])  # a zip that ends early (a copy cut short, a bad disk)
    assert len(VectorStore(folder, *_model())) == 0
    report = SyncReport(root=str(settings.root), index_dir=str(settings.index_dir))
    index = SearchIndex.open(settings.index_dir, settings.root)
    try:
        embed_missing(settings, index, report)
    finally:
        index.close()
    assert (report.embedded, report.semantic_coverage) == (len(TOPICS), 1.0)


def test_a_bit_flip_in_a_vector_file_does_not_stop_the_server(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    folder = settings.index_dir / "vectors"
    [segment] = [p for p in folder.iterdir() if p.name.startswith(SEGMENT_PREFIX)]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the stored arrays: zip's CRC check fails on reading
    segment.write_bytes(bytes(data))
    library = Library.open(settings)
    library.start()
    try:
        assert library.synced.wait(60), "the startup sync thread died"
        assert library.embedder is not None and library.embedder.idle.wait(120)
        assert library.search(QUESTION, limit=1).results[0].path == "kitchen/bread.md"
    finally:
        library.close()


def test_a_damaged_prepared_model_in_the_cache_is_prepared_again(tmp_path: Path) -> None:
    from kb.semantic import Semantic
    from kb.semantic._model import MODEL_ID, MODEL_SHA256

    cache = tmp_path / "cache"
    cache.mkdir()
    name = f"minilm-{MODEL_SHA256[:12]}-{hashlib.sha256(MODEL_ID.encode()).hexdigest()[:8]}.onnx"
    (cache / name).write_bytes(b"not a model")  # a bad disk, a copy cut short, another tool's file
    encoder = Semantic(tmp_path / "vectors", cache).load(threads=1)
    assert encoder.query("bread").shape == (384,)
    assert (cache / name).stat().st_size > 1_000_000


def test_a_passage_copied_in_many_documents_leaves_room_for_the_others(tmp_path: Path) -> None:
    # One page in 30 copies (versions of a product's docs), indexed before the page that answers.
    copies = {f"v{i:02}/bread.md": TOPICS["kitchen/bread.md"] for i in range(30)}
    settings = indexed(tmp_path, {**copies, "zz/oil.md": TOPICS["garage/oil.md"]})
    library = started(settings)
    try:
        found = library.search("how frequently should a vehicle get fresh lubricant", limit=3)
        assert "zz/oil.md" in [h.path for h in found.results]
    finally:
        library.close()
