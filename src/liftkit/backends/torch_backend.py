"""Rebuild a run folder's or an hf export's classifier in torch, and run it.

A run folder is a base model plus the method's saved tensors; LoRA and IA3 fold into the base
weights at load (`Method.merge`), so prediction pays for no adapter arithmetic and the model is
the plain architecture that transformers, ONNX and the hf export all see.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from liftkit import bi_encoder
from liftkit.backends.onnx_backend import OnnxBackend
from liftkit.config import ModelConfig, build_options
from liftkit.errors import LiftError, first_line
from liftkit.methods import METHODS
from liftkit.modeling import Arch, arch_of, load_classifier, load_error, quiet_loading
from liftkit.resources import pick_device
from liftkit.run_dir import Manifest, damaged
from liftkit.tasks import task_named


class TorchBackend:
    """One forward per batch under `torch.inference_mode`, on the device chosen at load."""

    def __init__(self, model: torch.nn.Module, device: str = "auto"):
        self.device = pick_device(device)
        self.model = model.eval().to(self.device)

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(**{name: torch.from_numpy(array).to(self.device) for name, array in inputs.items()})
        return out.logits.float().cpu().numpy()


def load_run_model(
    path: Path,
    manifest: Manifest,
    trust_remote_code: bool = False,
    merge: bool = True,
    share: Callable[[torch.nn.Module, Arch], None] | None = None,
) -> torch.nn.Module:
    """The run's fine-tuned model in eval mode: base model (by the manifest's name), the method's
    structure and saved tensors, then (with `merge`) mergeable adapters folded into the weights.
    `share` sees the base model before the method touches it (`liftkit.many` points its tensors at
    an identical base's)."""
    if manifest.method not in METHODS:
        raise LiftError(f"run {str(path)!r} used method {manifest.method!r}, unknown to this liftkit: upgrade liftkit")
    with quiet_loading():
        try:  # saved by the run, pad token included
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            if "trust_remote_code" in str(exc):
                raise load_error(f"the tokenizer in {path}", exc) from None
            raise damaged(path, f"its tokenizer cannot be loaded ({first_line(exc)})") from None
        base_cfg = ModelConfig(
            name=manifest.base_model, trust_remote_code=trust_remote_code, revision=manifest.revision
        )
        base = load_classifier(base_cfg, manifest.labels, tokenizer, task_named(manifest.task).problem_type)
        arch = arch_of(base)
        if share is not None:
            share(base, arch)
        if manifest.pair_encoding == "bi":  # the body under a pair head, as the run trained it
            base = bi_encoder.wrap(base, arch)
        method = METHODS[manifest.method]
        try:
            model = method.load(base, build_options(manifest.method, manifest.method_options), arch, path)
        except (OSError, RuntimeError, ValueError, SafetensorError, LiftError) as exc:
            if "size mismatch" in str(exc) or "other shapes" in str(exc):
                raise damaged(
                    path, f"its saved head does not fit the {len(manifest.labels)} labels in liftkit.json"
                ) from None
            raise damaged(path, f"its weights cannot be loaded ({first_line(exc)[:200]})") from None
        if merge and method.merge is not None:
            model = method.merge(model)
    return model.eval()


def load_hf_export(path: Path, trust_remote_code: bool = False) -> torch.nn.Module:
    """An hf export: a plain transformers classifier."""
    with quiet_loading():
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                trust_remote_code=trust_remote_code,
                dtype=torch.float32,
                use_safetensors=True,  # never unpickle
            )
        except (OSError, ValueError) as exc:
            raise damaged(path, f"its model cannot be loaded ({first_line(exc)[:200]})") from None
    return model.eval()


def onnx_from_torch(model: torch.nn.Module, inputs: tuple[str, ...]) -> OnnxBackend:
    """The model converted to ONNX in memory and run by onnxruntime (`backend="onnx"` on a run
    folder): what `lift export --format onnx` would write, without writing it."""
    from liftkit.export.onnx import to_onnx

    buffer = io.BytesIO()
    to_onnx(model, buffer, inputs)
    return OnnxBackend(buffer.getvalue())
