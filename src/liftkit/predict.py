"""Load a run directory and classify text. Imports no training code.

    predictor = liftkit.load("runs/emotion-lora-...")
    predictor.predict(["i feel great"])  # [{"label": "joy", "probabilities": {...}}]
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from liftkit.batching import Padding, TokenizedSplit, loader
from liftkit.config import ModelConfig, build_options
from liftkit.errors import LiftError, first_line
from liftkit.evaluate import predict_logits
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier, load_error
from liftkit.resources import pick_device
from liftkit.run_dir import WEIGHTS, damaged, read_manifest


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
    def from_run(cls, path: str | Path, device: str = "auto", trust_remote_code: bool = False) -> Predictor:
        """Everything but the weights comes from the run's manifest (liftkit.json). Whether the base
        model's own code may run is the caller's decision (`trust_remote_code`), never the folder's."""
        path = Path(path)
        manifest = read_manifest(path)
        if manifest.method not in METHODS:
            raise LiftError(f"run {str(path)!r} used method {manifest.method!r}, unknown to this liftkit: upgrade liftkit")
        check_files(path, manifest.files)
        try:  # saved by the run, pad token included
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            if "trust_remote_code" in str(exc):
                raise load_error(f"the tokenizer in {path}", exc) from None
            raise damaged(path, f"its tokenizer cannot be loaded ({first_line(exc)})") from None
        model_cfg = ModelConfig(name=manifest.base_model, trust_remote_code=trust_remote_code, revision=manifest.revision)
        base = load_classifier(model_cfg, manifest.labels, tokenizer)
        options = build_options(manifest.method, manifest.method_options)
        try:
            model = METHODS[manifest.method].load(base, options, arch_of(base), path)
        except (OSError, RuntimeError, ValueError, SafetensorError, LiftError) as exc:
            what = first_line(exc)[:200]
            if "size mismatch" in str(exc) or "other shapes" in str(exc):
                raise damaged(path, f"its saved head does not fit the {len(manifest.labels)} labels in liftkit.json") from None
            raise damaged(path, f"its weights cannot be loaded ({what})") from None
        torch_device = pick_device(device)
        padding = Padding.of(tokenizer, left=manifest.padding_side == "left")
        return cls(model.to(torch_device), tokenizer, manifest.labels, manifest.max_length, padding, torch_device)

    def predict_proba(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Class probabilities, one row per text, columns in `self.labels` order."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            kinds = ", ".join(f"texts[{i}] is {type(texts[i]).__name__}" for i in bad[:5])
            raise LiftError(f"{len(bad)} item(s) to classify are not text ({kinds}): pass strings")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise LiftError(f"batch_size={batch_size!r} must be a whole number of at least 1")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
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


def load(path: str | Path, device: str = "auto", trust_remote_code: bool = False) -> Predictor:
    """The public entry point: `liftkit.load(RUN_DIR).predict([...])`."""
    return Predictor.from_run(path, device, trust_remote_code)


def check_files(path: Path, files: list[str]) -> None:
    """The files a run folder must hold: those its manifest lists (weights and tokenizer; a lost
    tokenizer.json would otherwise quietly turn every word into [UNK]), else, for manifests that
    list none, peft's adapter pair or liftkit's own tensors."""
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        raise damaged(path, f"{', '.join(missing)} listed in liftkit.json {'is' if len(missing) == 1 else 'are'} missing")
    if (path / "adapter_config.json").is_file():
        if not (path / "adapter_model.safetensors").is_file():
            raise damaged(path, "adapter_model.safetensors (the adapter and the classifier head) is missing")
    elif not (path / WEIGHTS).is_file():
        raise damaged(path, f"it holds no weights (neither adapter_config.json + adapter_model.safetensors nor {WEIGHTS})")


def read_texts(path: Path, text_column: str = "text") -> list[str]:
    """Texts from a .txt (one per line), .jsonl or .csv file (UTF-8, a byte-order mark allowed)."""
    if not path.is_file():
        raise LiftError(f"input file {str(path)!r} not found: check the path")
    name = path.name.lower()
    if not name.endswith((".txt", ".jsonl", ".csv")):
        raise LiftError(f"input file {str(path)!r} has an unknown format: use .txt, .jsonl or .csv")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise LiftError(f"input file {str(path)!r} is not UTF-8 text (line {line}, byte {exc.start}): convert it to UTF-8") from None
    lines = [line.removesuffix("\r") for line in content.split("\n")]  # only newlines end a line, not U+2028 & co.
    if name.endswith(".txt"):
        texts = [line for line in lines if line.strip()]
    elif name.endswith(".jsonl"):
        texts = _column(_json_lines(lines, path), text_column, path)
    else:
        reader = csv.DictReader(io.StringIO(content, newline=""))
        texts = _column(((reader.line_num, row) for row in reader), text_column, path)
    if not texts:
        raise LiftError(f"input file {str(path)!r} holds no texts: add some")
    return texts


def _json_lines(lines: list[str], path: Path) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise LiftError(f"line {number} of {str(path)!r} is not valid JSON ({exc.msg}, column {exc.colno}): fix the line") from None


def _column(rows: Iterable[tuple[int, Any]], column: str, path: Path) -> list[str]:
    """The `column` of every (line number, row) pair."""
    texts = []
    for number, row in rows:
        if not isinstance(row, dict) or column not in row:
            raise LiftError(f"line {number} of {str(path)!r} has no {column!r} field: pass --text-column NAME")
        text = row[column]
        if not isinstance(text, str):
            what = "null" if text is None else f"{type(text).__name__} {text!r}"
            raise LiftError(f"line {number} of {str(path)!r}: {column!r} is {what}, not a text: fix or drop the line")
        texts.append(text)
    return texts
