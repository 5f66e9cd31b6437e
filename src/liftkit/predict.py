"""Load a run directory and classify text. Imports no training code.

    predictor = liftkit.load("runs/emotion-lora-...")
    predictor.predict(["i feel great"])  # [{"label": "joy", "probabilities": {...}}]
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from liftkit.batching import Padding, TokenizedSplit, loader
from liftkit.config import ModelConfig, build_options
from liftkit.errors import LiftError
from liftkit.evaluate import predict_logits
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier
from liftkit.resources import pick_device
from liftkit.run_dir import read_manifest


class Predictor:
    """A fine-tuned classifier read back from its run directory."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, labels: list[str], max_length: int, padding: Padding, device: torch.device):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length
        self.padding = padding
        self.device = device

    @classmethod
    def from_run(cls, path: str | Path, device: str = "auto") -> Predictor:
        """Everything but the weights comes from the run's manifest (liftkit.json)."""
        path = Path(path)
        manifest = read_manifest(path)
        if manifest.method not in METHODS:
            raise LiftError(f"run {str(path)!r} used method {manifest.method!r}, unknown to this liftkit: upgrade liftkit")
        model_cfg = ModelConfig(name=manifest.base_model, trust_remote_code=manifest.trust_remote_code, revision=manifest.revision)
        tokenizer = AutoTokenizer.from_pretrained(path)  # saved by the run, pad token included
        base = load_classifier(model_cfg, manifest.labels, tokenizer)
        options = build_options(manifest.method, manifest.method_options)
        model = METHODS[manifest.method].load(base, options, arch_of(base), path)
        torch_device = pick_device(device)
        padding = Padding.of(tokenizer, left=manifest.padding_side == "left")
        return cls(model.to(torch_device), tokenizer, manifest.labels, manifest.max_length, padding, torch_device)

    def predict_proba(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Class probabilities, one row per text, columns in `self.labels` order."""
        if isinstance(texts, str):
            texts = [texts]
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        data = TokenizedSplit([np.asarray(x, dtype=np.int64) for x in ids], np.zeros(len(ids), dtype=np.int64))
        batches = loader(data, batch_size, self.padding, shuffle=False)
        if progress:
            batches = _ProgressLoader(batches)
        logits, _ = predict_logits(self.model, batches, self.device)
        return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()

    def predict(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Label name and per-class probabilities for each text."""
        probs = self.predict_proba(texts, batch_size, progress)
        return [
            {"label": self.labels[int(row.argmax())], "probabilities": {n: float(p) for n, p in zip(self.labels, row)}}
            for row in probs
        ]


class _ProgressLoader:
    """A loader that shows a progress bar, keeping the `batch_sampler` that `predict_logits` reads."""

    def __init__(self, inner: Any):
        self.inner, self.batch_sampler = inner, inner.batch_sampler

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Any]:
        return iter(tqdm(self.inner, desc="predict", leave=False))


def load(path: str | Path, device: str = "auto") -> Predictor:
    """The public entry point: `liftkit.load(RUN_DIR).predict([...])`."""
    return Predictor.from_run(path, device)


def read_texts(path: Path, text_column: str = "text") -> list[str]:
    """Texts from a .txt (one per line), .jsonl or .csv file."""
    if not path.is_file():
        raise LiftError(f"input file {str(path)!r} not found: check the path")
    name = path.name.lower()
    if name.endswith(".txt"):
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif name.endswith(".jsonl"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts = _column(rows, text_column, path)
    elif name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8") as f:
            texts = _column(list(csv.DictReader(f)), text_column, path)
    else:
        raise LiftError(f"input file {str(path)!r} has an unknown format: use .txt, .jsonl or .csv")
    if not texts:
        raise LiftError(f"input file {str(path)!r} holds no texts: add some")
    return texts


def _column(rows: Iterable[dict[str, Any]], column: str, path: Path) -> list[str]:
    texts = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or column not in row:
            raise LiftError(f"row {i} of {str(path)!r} has no {column!r} field: pass --text-column NAME")
        texts.append(str(row[column]))
    return texts
