"""The prepared model: attention fused, made once per preparation, and still the export's encoder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_semantic import TOPICS, embed_now, indexed, only_segment

from kb.config import Settings
from kb.semantic import Semantic
from kb.semantic._model import DIMENSIONS, MODEL_FILE, MODEL_ID, MODEL_SHA256, _package_file, prepared_name
from kb.semantic._prepare import PreparationError, prepared
from kb.semantic._store import VectorStore

EARLIER = "all-MiniLM-L6-v2/int8-per-channel/1"  # the preparation before attention was fused

TEXTS = [
    "bake bread in the oven",
    "change the engine oil every ten thousand kilometres, or once a year if the car is rarely driven",
    "Tantivy is a full-text search engine library written in Rust, inspired by Apache Lucene. " * 8,
]


def test_the_prepared_model_runs_each_layers_attention_as_one_node(tmp_path: Path) -> None:
    Semantic(tmp_path / "vectors", Settings().cache_dir).load(threads=1)  # prepared there once
    model = onnx.load(str(Settings().cache_dir / prepared_name()))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QAttention") == 6
    assert not {"Softmax", "Transpose", "SkipLayerNormalization"} & set(ops)


def test_the_prepared_model_agrees_with_the_export_it_was_made_from(tmp_path: Path) -> None:
    encoder = Semantic(tmp_path / "vectors", Settings().cache_dir).load(threads=1)
    export = ort.InferenceSession(
        str(_package_file(*MODEL_FILE, MODEL_SHA256)), providers=["CPUExecutionProvider"]
    )
    # One batch of three lengths: the short ones padded, so the fused attention's mask is exercised.
    quick, reference = encoder.passages(TEXTS), encoder._encode(export, TEXTS)
    assert np.min(np.sum(quick * reference, axis=1)) > 0.99


def test_a_model_prepared_the_earlier_way_is_neither_used_nor_overwritten(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    earlier_id = hashlib.sha256(EARLIER.encode()).hexdigest()[:8]
    earlier = cache / f"minilm-{MODEL_SHA256[:12]}-{earlier_id}.onnx"
    earlier.write_bytes(b"unreadable: had it been loaded, it would have been prepared again")
    encoder = Semantic(tmp_path / "vectors", cache).load(threads=1)
    assert encoder.query("bread").shape == (384,)
    assert earlier.read_bytes().startswith(b"unreadable")
    assert (cache / prepared_name()).stat().st_size > 1_000_000


def test_vectors_of_the_earlier_preparation_are_made_again(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    segment = only_segment(settings)
    with np.load(segment) as data:
        arrays = {name: data[name] for name in data.files}
    with segment.open("wb") as file:  # as the earlier preparation's kb wrote it
        np.savez(file, **{**arrays, "model": np.array(EARLIER)})
    assert len(VectorStore(segment.parent, MODEL_ID, DIMENSIONS)) == 0
    report = embed_now(settings)
    assert (report.embedded, report.semantic_coverage) == (len(TOPICS), 1.0)
    # The earlier segment is gone with the compaction that followed: no later look reads it again.
    assert not segment.exists()


def test_a_preparation_that_fails_says_why_and_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"not a model")
    cache = tmp_path / "cache"
    with pytest.raises(PreparationError) as failed:
        prepared(source, cache, "minilm-test.onnx")
    assert failed.value.source == source
    assert "Error" in failed.value.detail  # the child's own traceback, not just an exit status
    assert list(cache.iterdir()) == []
