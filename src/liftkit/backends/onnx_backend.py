"""Run an ONNX classifier with onnxruntime. Imports neither torch nor transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from liftkit.errors import LiftError, first_line


class OnnxBackend:
    """An onnxruntime session over a `model.onnx` (a path, or the bytes of one), fed the inputs its
    graph declares (exports older than token type ids in the graph take only ids and mask)."""

    def __init__(self, model: Path | bytes):
        try:
            import onnxruntime as ort
        except ImportError:
            raise LiftError("the ONNX backend needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: a load must not print optimizer chatter
        source = str(model) if isinstance(model, Path) else model
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            where = f"{str(model)!r}" if isinstance(model, Path) else "the converted model"
            raise LiftError(
                f"onnxruntime cannot load {where} ({first_line(exc)[:200]}): export it again with `lift export`"
            ) from None
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: inputs[name] for name in self.inputs})[0]
