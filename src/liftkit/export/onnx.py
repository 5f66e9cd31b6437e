"""Trace a classifier into ONNX (dynamic batch and sequence axes) and quantize it to int8.

Tracing (torch's TorchScript-based exporter) records the forward that actually runs, so every
method exports, including those that merge into nothing: LoRA/IA3 arrive merged, bottleneck
adapters and prefixes as the extra ops they are, prompt tokens as a constant concatenated to the
embeddings. The traced batch has a padded row, so the masking ops are in the graph.

Attention is traced in its eager form (matmul, mask, softmax, matmul) rather than through SDPA:
onnxruntime's transformer optimizer recognises that pattern in BERT-family graphs and fuses each
layer's attention, embeddings and layer norms into single kernels (700 nodes become 150 for
MiniLM), which is what makes one short text cost little more than its arithmetic. The fused ops
are onnxruntime's own (com.microsoft domain).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from liftkit.modeling import ARCHS

OPSET = 17
FUSED_ATTENTION = ("Attention", "MultiHeadAttention")  # onnxruntime's fused attention ops (com.microsoft)


class LogitsOnly(nn.Module):
    """(ids, mask[, token type ids]) -> logits: no cache, no dict output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **types).logits


def to_onnx(
    model: nn.Module, target: Path | BinaryIO, inputs: tuple[str, ...] = ("input_ids", "attention_mask")
) -> bool:
    """Write `model` (eval mode, fp32, on CPU) as an ONNX graph taking `inputs` (what the run fed
    it: BERT's token type ids are a graph input) to a path or a binary buffer, attention fused
    where onnxruntime's optimizer knows the family (`Arch.onnx_fusion`). Returns whether the
    graph holds fused attention ops, read from the graph itself."""
    import onnx

    wrapper = LogitsOnly(model.float().cpu()).eval()  # eval on the wrapper too: export restores its mode after
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 0, 0, 0]], dtype=torch.long) % model.config.vocab_size
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.long)
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    feed = {name: feed[name] for name in inputs}
    # a bi-encoder's rows are a pair's two texts: its logits have half as many rows, named apart
    rows = "pairs" if getattr(model, "texts_per_pair", 1) == 2 else "batch"
    axes = {**{name: {0: "batch", 1: "sequence"} for name in feed}, "logits": {0: rows}}
    buffer = io.BytesIO()
    with (
        _eager_attention(model),
        warnings.catch_warnings(),
    ):  # tracer notes on Python-side shape checks; parity is measured instead
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (),
            buffer,
            kwargs=feed,
            input_names=list(feed),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    arch = ARCHS.get(model.config.model_type)
    if arch is not None and arch.onnx_fusion is not None:
        graph = _fuse(graph, model.config, arch.onnx_fusion)
    onnx.save(graph, str(target) if isinstance(target, Path) else target)
    return any(node.op_type in FUSED_ATTENTION for node in graph.graph.node)


@contextlib.contextmanager
def _eager_attention(model: nn.Module) -> Iterator[None]:
    """Trace SDPA attention in its eager form (same arithmetic), which the optimizer can fuse;
    leave any other implementation (liftkit's prefix attention) as it is."""
    inner = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)
    if inner is None or inner.config._attn_implementation != "sdpa":
        yield
        return
    inner.set_attn_implementation("eager")
    try:
        yield
    finally:
        inner.set_attn_implementation("sdpa")


def _fuse(graph: Any, config: Any, fusion: str) -> Any:
    from onnxruntime.transformers.optimizer import optimize_model

    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    width = getattr(config, "hidden_size", None) or config.dim
    with _quiet_root():  # the optimizer logs each fusion it makes
        return optimize_model(graph, model_type=fusion, num_heads=heads, hidden_size=width).model


@contextlib.contextmanager
def _quiet_root() -> Iterator[None]:
    """onnxruntime's optimizer and quantizer log to the root logger: keep their notes off the user's screen."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(source: Path, target: Path, keep_float: tuple[str, ...] = ()) -> None:
    """onnxruntime dynamic quantization: int8 weights (per output channel, which keeps accuracy),
    activations quantized on the fly; about 4x smaller and, on CPUs, about twice as fast. The nodes
    named in `keep_float` stay in float (see `after_norm`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root():  # a generic pre-processing tip
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=list(keep_float),
            extra_options={
                "DefaultTensorType": onnx.TensorProto.FLOAT
            },  # types of ops shape inference cannot see into
        )


# layer norms as torch exports them and as onnxruntime's fusions rename them (RMSNorm included)
NORMS = (
    "LayerNormalization",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
)
QUANTIZED = ("MatMul", "Gemm", "Attention")  # the ops dynamic quantization gives int8 weights


def after_norm(source: Path) -> tuple[str, ...]:
    """The weight-carrying nodes that read a layer norm's output. Some models' normed activations
    hold a few dimensions hundreds of times larger than the rest (Bondarenko et al., 2021); one int8
    scale per tensor then rounds the small ones, which carry the meaning, to nothing. MPNet's
    emotion run lost 64 points of accuracy that way, and 0.7 with these nodes left in float."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return tuple(
        node.name
        for node in graph.node
        if node.op_type in QUANTIZED and node.input and producer.get(node.input[0]) in NORMS
    )
