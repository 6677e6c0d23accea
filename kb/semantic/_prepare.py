"""The prepared copy of the encoder: made once from the pinned export and kept in kb's cache.

The export computes in float32 from int8 weights, runs attention as a dozen separate nodes, and
onnxruntime's transformer optimizer recognizes neither its attention nor its mask. `prepare`
rewrites it into operators onnxruntime runs quickly; `prepared` makes that copy once per cache, in
a child process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kb.errors import KbError

logger = logging.getLogger(__name__)

HEADS = 12  # all-MiniLM-L6-v2's attention heads
ABANDONED_SECONDS = 3600.0  # a live preparation takes seconds
# onnxruntime's SkipLayerNormalization kernel is several times slower on CPU than the Add and
# LayerNormalization it replaces, so neither the preparation nor the session may fuse them.
UNFUSED = ["SkipLayerNormFusion"]
MADE = "quick.onnx"  # what `prepare` leaves in its work folder

_preparing = threading.Lock()


class UnexpectedGraphError(ValueError):
    """The export's attention is not shaped as `fuse_attention` expects (a different export)."""


class PreparationError(KbError):
    """The process that prepares the model failed; `detail` is the end of what it wrote."""

    def __init__(self, source: Path, detail: str) -> None:
        super().__init__(f"preparing {source} failed: {detail}")
        self.source = source
        self.detail = detail


def prepared(source: Path, cache_dir: Path, name: str) -> Path:
    """The prepared model `name` in `cache_dir`, made now from `source` if it is not there yet."""
    target = cache_dir / name
    with _preparing:
        _remove_abandoned(cache_dir)
        if target.exists():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        logger.info("preparing the semantic model in %s (once)", cache_dir)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".prepare-") as work:
            made = _prepare_apart(source, Path(work))
            os.replace(made, target)  # atomic: another process sees the whole file or none
        return target


def _prepare_apart(source: Path, work: Path) -> Path:
    """`prepare` in a child process. Its peak memory (several times the float model's size) and
    the heap it leaves behind, which Python does not give back, end with the child; a server that
    prepared the model on its first start would otherwise keep them. Nothing it writes reaches
    this process's stdout (an MCP server's channel over stdio).

    Raises:
        PreparationError: the child failed.
    """
    code = "import sys, pathlib, kb.semantic._prepare as p; p.prepare(*map(pathlib.Path, sys.argv[1:]))"
    # -P: the child finds kb where this process found it, not in its working folder.
    done = subprocess.run(
        [sys.executable, "-P", "-c", code, str(source), str(work)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        check=False,
    )
    made = work / MADE
    if done.returncode or not made.exists():
        raise PreparationError(source, done.stderr.strip()[-2000:] or f"exit status {done.returncode}")
    return made


def _remove_abandoned(cache_dir: Path) -> None:
    """The work folders of preparations a kill -9 or a power cut stopped (~170 MB each)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(cache_dir):
            if entry.name.startswith(".prepare-") and entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if time.time() - entry.stat().st_mtime > ABANDONED_SECONDS:
                        shutil.rmtree(entry.path)
                        logger.info("removed %s, left by a preparation that was stopped", entry.path)


def prepare(source: Path, work: Path) -> Path:
    """Make a quick copy of `source` in `work`: fused attention, then int8 matrix products.

    1. each layer's attention becomes one com.microsoft `Attention` node (its NaN guard goes with
       it: padding is masked, so no softmax row is empty);
    2. onnxruntime folds the int8-to-float casts into float32 weights (basic level: the extended
       one would fuse SkipLayerNormalization, see `UNFUSED`);
    3. onnxruntime's transformer optimizer fuses each GELU with its bias;
    4. dynamic quantization, per output channel, runs every matrix product in int8 (the attention
       as `QAttention`).

    Raises:
        UnexpectedGraphError: `source` is not the export this was written for.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    rewritten, folded = work / "rewritten.onnx", work / "folded.onnx"
    fused, quick = work / "fused.onnx", work / MADE
    model = onnx.load(str(source))
    fuse_attention(model)
    onnx.save(model, str(rewritten))
    # Each step reads the last one's file: a model kept in memory past its step adds to the peak.
    del model
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    ort.InferenceSession(str(rewritten), options, providers=["CPUExecutionProvider"])
    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = False
    fusions.enable_bias_skip_layer_norm = False
    with _quiet():
        optimized = optimizer.optimize_model(
            str(folded),
            model_type="bert",
            num_heads=HEADS,
            optimization_options=fusions,
            opt_level=0,
        )
        optimized.save_model_to_file(str(fused))
        del optimized
        quantize_dynamic(str(fused), str(quick), weight_type=QuantType.QInt8, per_channel=True)
    return quick


def fuse_attention(model: Any) -> None:
    """Replace each layer's attention by one com.microsoft `Attention` node, in place.

    The export's attention, as torch's SDPA decomposes it: Q, K and V are `Add(MatMul(x, W), b)`,
    reshaped to heads; Q and K are each scaled by a fourth root of the head size; the scores get
    `Where(mask, 0, -max)` added, go through Softmax (and a NaN guard) and a MatMul with V; the
    heads are transposed and reshaped back. The fused node takes the three projections packed into
    one weight and bias, and the attention mask itself; what fed only the old nodes is dropped.

    Raises:
        UnexpectedGraphError: an attention of another shape, or none.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {tensor.name: tensor for tensor in graph.initializer}

    def scalar(name: str) -> float | None:
        value = numpy_helper.to_array(constants[name]) if name in constants else None
        return float(value) if value is not None and value.size == 1 else None

    def projection(name: str) -> tuple[str, str, str, float]:
        """Up from one input of the attention's products to `Add(MatMul(x, w), b)`: x, w, b, scale."""
        scale = 1.0
        while (node := producer.get(name)) is not None:
            if node.op_type in ("Reshape", "Transpose"):
                name = node.input[0]
            elif node.op_type == "Mul" and (factor := scalar(node.input[1])) is not None:
                scale, name = scale * factor, node.input[0]
            elif node.op_type == "Add" and node.input[1] in constants:
                product = producer.get(node.input[0])
                if product is None or product.op_type != "MatMul":
                    break
                return product.input[0], product.input[1], node.input[1], scale
            else:
                break
        raise UnexpectedGraphError(f"no projection above {name}")

    def only(nodes: list[Any], op_type: str) -> Any:
        if len(nodes) != 1 or nodes[0].op_type != op_type:
            raise UnexpectedGraphError(f"expected one {op_type}, found {[n.op_type for n in nodes]}")
        return nodes[0]

    mask = "attention_mask_int32"
    layers = 0
    for softmax in [node for node in graph.node if node.op_type == "Softmax"]:
        scores = producer[only([producer[softmax.input[0]]], "Add").input[0]]
        weighted = [node for node in consumers[softmax.output[0]] if node.op_type != "IsNaN"]
        if weighted and weighted[0].op_type == "Where":  # the NaN guard
            weighted = consumers[weighted[0].output[0]]
        context = only(weighted, "MatMul")
        heads = only(consumers[context.output[0]], "Transpose")
        merged = only(consumers[heads.output[0]], "Reshape")
        q, k, v = projection(scores.input[0]), projection(scores.input[1]), projection(context.input[1])
        head_size = numpy_helper.to_array(constants[q[2]]).size // HEADS
        if scores.op_type != "MatMul" or not q[0] == k[0] == v[0]:
            raise UnexpectedGraphError(f"the attention before {softmax.name} is not self-attention")
        if v[3] != 1.0 or not math.isclose(q[3] * k[3], 1 / math.sqrt(head_size), rel_tol=1e-5):
            raise UnexpectedGraphError(f"the attention before {softmax.name} is not scaled as usual")
        name = f"attention_{layers}"
        graph.node.extend(
            [
                helper.make_node("Concat", [q[1], k[1], v[1]], [f"{name}_weight"], axis=1),
                helper.make_node("Concat", [q[2], k[2], v[2]], [f"{name}_bias"], axis=0),
                helper.make_node(
                    "Attention",
                    [q[0], f"{name}_weight", f"{name}_bias", mask],
                    [merged.output[0]],
                    name=name,
                    domain="com.microsoft",
                    num_heads=HEADS,
                ),
            ]
        )
        merged.output[0] = f"{merged.output[0]}_unfused"
        layers += 1
    if not layers:
        raise UnexpectedGraphError("no attention found")
    graph.node.append(helper.make_node("Cast", ["attention_mask"], [mask], to=onnx.TensorProto.INT32))
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _sort(graph)
    _prune(graph)


def _sort(graph: Any) -> None:
    """Order the nodes so each comes after what it reads (ONNX requires it; the new ones were appended)."""
    ready = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer} | {""}
    todo, done = list(graph.node), []
    while todo:
        waiting = []
        for node in todo:
            if all(name in ready for name in node.input):
                done.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(todo):
            raise UnexpectedGraphError(f"{waiting[0].name} reads a value nothing makes")
        todo = waiting
    del graph.node[:]
    graph.node.extend(done)


def _prune(graph: Any) -> None:
    """Drop the nodes and weights no output depends on (the unfused attention, the old mask)."""
    needed = {value.name for value in graph.output}
    kept = []
    for node in reversed(graph.node):  # sorted: every reader comes before its producer here
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    unused = [tensor for tensor in graph.initializer if tensor.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's tools log advice (to the root logger and their own); during preparation it is
    noise. kb's own records pass."""
    root = logging.getLogger()
    keep_kb = logging.Filter("kb")
    holders: list[logging.Filterer] = [root, *root.handlers]
    for holder in holders:
        holder.addFilter(keep_kb)
    try:
        yield
    finally:
        for holder in holders:
            holder.removeFilter(keep_kb)
