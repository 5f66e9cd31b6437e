"""Classify text with a run folder or an export: `liftkit.load(PATH).predict([...])`.

    predictor = liftkit.load("runs/emotion-lora-...")            # a run folder: torch, adapters merged
    predictor = liftkit.load("runs/emotion-lora-...-onnx-int8")  # an export: onnxruntime, no torch
    predictor.predict(["i feel great"])  # [{"label": "joy", "probabilities": {...}}]
    # a multi-label run: [{"labels": ["admiration", "joy"], "probabilities": {...}}], at its thresholds

Speed comes from doing only the model's work: texts are tokenized in one call by the saved
`tokenizer.json` (the Rust tokenizer, as training did), grouped by length so that no batch holds
padding, and handed as numpy arrays to a backend (`liftkit.backends`) that runs one forward per
batch. This module imports neither torch nor any training code; only the torch backend does.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from liftkit.errors import LiftError, first_line
from liftkit.run_dir import EXPORT_INFO, MANIFEST, WEIGHTS, damaged, read_export_info, read_manifest, write_text
from liftkit.tasks import Task, task_named

BACKENDS = ("auto", "torch", "onnx")
PADDING_BUDGET = 1.25  # padded batches: at most this many tokens computed per real token
Backend = Callable[[dict[str, np.ndarray]], np.ndarray]  # {input name: int64 array (rows, tokens)} -> logits
PLAIN_INPUTS = ("input_ids", "attention_mask")  # what runs and exports older than `inputs` feed


@dataclass
class Encoder:
    """Texts -> padded input arrays, exactly as training tokenized and padded them: the saved
    tokenizer.json, truncated at the run's max_length, padded with its pad id on its side, and
    every input the model takes (`inputs`: ids, mask, BERT's token type ids)."""

    tokenizer: Any  # tokenizers.Tokenizer
    pad_id: int | None  # None: the tokenizer has no pad token (predict never pads; Encoder.pad then refuses)
    left: bool = False
    inputs: tuple[str, ...] = PLAIN_INPUTS

    @classmethod
    def from_folder(
        cls, folder: Path, max_length: int, left: bool, pad_id: int | None = None, inputs: Iterable[str] = PLAIN_INPUTS
    ) -> Encoder:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            settings = (
                json.loads((folder / "tokenizer_config.json").read_text())
                if (folder / "tokenizer_config.json").is_file()
                else {}
            )
        except Exception as exc:  # the Rust tokenizer raises its own exception type
            raise damaged(folder, f"its tokenizer.json cannot be read ({first_line(exc)[:160]})") from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length, direction=settings.get("truncation_side") or "right")
        if pad_id is None:  # older manifests: the pad token by name
            pad = settings.get("pad_token")
            pad_id = tokenizer.token_to_id(pad["content"] if isinstance(pad, dict) else pad) if pad else None
        return cls(tokenizer, pad_id, left, tuple(inputs))

    def encode(self, texts: list[str]) -> list[list[int]]:
        if len(texts) == 1:  # encode_batch's thread pool costs more than it saves on one text
            return [self.tokenizer.encode(texts[0]).ids]
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def pad(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        """The batch a backend takes: ids and mask, and zeros for the token types of single texts."""
        width = max(len(row) for row in rows)
        if self.pad_id is None and any(len(row) < width for row in rows):
            raise LiftError("this tokenizer has no pad token, so rows of different lengths cannot share a batch")
        ids = np.full((len(rows), width), self.pad_id if self.pad_id is not None else 0, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if self.left else slice(0, len(row))
            ids[i, span], mask[i, span] = row, 1
        batch = {"input_ids": ids, "attention_mask": mask}
        return {name: batch.get(name, np.zeros_like(ids)) for name in self.inputs}


class Predictor:
    """A fine-tuned classifier: labels, the encoder of its texts, a backend that runs it, and its
    task (what the logits mean) with the decision thresholds the run chose (multi-label)."""

    def __init__(
        self,
        labels: list[str],
        encoder: Encoder,
        backend: Backend,
        info: dict[str, Any],
        task: Task | None = None,
        thresholds: list[float] | None = None,
    ):
        self.labels = labels
        self.encoder = encoder
        self.backend = backend
        self.task = task or task_named("single_label")
        self.thresholds = thresholds
        # what was loaded: source ("run" or "export"), format, backend, method, base model, task
        self.info = {
            **info,
            "task": self.task.name,
            **({"thresholds": dict(zip(labels, thresholds))} if thresholds else {}),
        }

    def logits(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Raw class scores, one row per text, columns in `self.labels` order."""
        texts = _check_texts(texts, batch_size)
        return self.logits_of(self.encode(texts), batch_size, progress=progress)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, as the run tokenized; a text that gives no token is refused."""
        rows = self.encoder.encode(texts) if texts else []
        empty = [i for i, row in enumerate(rows) if not row]
        if empty:
            which = ", ".join(f"texts[{i}]" for i in empty[:5])
            raise LiftError(
                f"{len(empty)} text(s) give this model no tokens at all ({which}, e.g. empty): pass some text"
            )
        return rows

    def logits_of(
        self, rows: list[list[int]], batch_size: int = 64, pad: bool = False, progress: bool = False
    ) -> np.ndarray:
        """Scores of encoded rows. By default batches hold one length each (no padding); `pad`
        lets rows of different lengths share a batch, which a server merging requests needs, where
        padding cannot change a score (right padding; on the left a decoder's positions shift)."""
        logits = np.empty((len(rows), len(self.labels)), dtype=np.float32)
        if len(rows) == 1:  # a lone text: straight to the model
            return self.backend(self.encoder.pad(rows))
        batches = _batches(rows, batch_size, pad and not self.encoder.left and self.encoder.pad_id is not None)
        for chunk in _progress(batches) if progress else batches:
            logits[chunk] = self.backend(self.encoder.pad([rows[i] for i in chunk]))
        return logits

    def predict_proba(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities, one row per text, columns in `self.labels` order: over the classes
        (softmax, single-label), or each label's own (sigmoid, multi-label)."""
        return self.task.probabilities(self.logits(texts, batch_size, progress))

    def predict(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """For each text, the label (single-label) or the label set (multi-label, `"labels"`, at
        the run's thresholds) and every label's probability."""
        return self.answers(self.predict_proba(texts, batch_size, progress))

    def answers(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """Probabilities (`predict_proba`'s) -> what `predict` returns."""
        return self.task.answer(probs, self.labels, self.thresholds)


def _batches(rows: list[list[int]], batch_size: int, pad: bool = False) -> list[np.ndarray]:
    """Row indices in batches of one token length each: no padding at all, so no compute spent
    on it, and a row's scores never depend on which rows share its batch (GPT-2's positions, for
    one, shift under left padding). With `pad`, rows sorted by length share a batch as long as
    padding stays under a quarter of its tokens: a server's mixed requests then take a few
    forwards, not one per length, and none pads 20-token texts to the longest one's 60."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    order = np.argsort(lengths, kind="stable")
    if not pad:
        groups = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
        return [group[i : i + batch_size] for group in groups for i in range(0, len(group), batch_size)]
    batches, start, real = [], 0, 0
    for end, i in enumerate(order):
        real += lengths[i]
        if end > start and ((end - start + 1) * lengths[i] > PADDING_BUDGET * real or end - start == batch_size):
            batches.append(order[start:end])
            start, real = end, lengths[i]
    batches.append(order[start:])
    return batches


def _check_texts(texts: Any, batch_size: Any) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        kinds = ", ".join(f"texts[{i}] is {type(texts[i]).__name__}" for i in bad[:5])
        raise LiftError(f"{len(bad)} item(s) to classify are not text ({kinds}): pass strings")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise LiftError(f"batch_size={batch_size!r} must be a whole number of at least 1")
    return texts


def _progress(chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
    from tqdm.auto import tqdm

    return iter(tqdm(chunks, desc="predict", leave=False))


def load(path: str | Path, backend: str = "auto", device: str = "auto", trust_remote_code: bool = False) -> Predictor:
    """The public entry point: a run folder (`lift run`) or an export folder (`lift export`).

    backend "auto" runs a run folder and an hf export on torch (LoRA and IA3 merged into the
    weights at load) and an onnx export on onnxruntime; "onnx" on a run folder or hf export
    converts it to ONNX in memory first; "torch" cannot run an onnx export. Whether the base
    model's own code may run is the caller's decision (`trust_remote_code`), never the folder's."""
    path = Path(path)
    if backend not in BACKENDS:
        raise LiftError(f"backend {backend!r} is unknown: use one of {', '.join(BACKENDS)}")
    if check_folder(path) == "export":
        return _load_export(path, backend, device, trust_remote_code)
    from liftkit.backends import torch_backend

    manifest = read_manifest(path)
    encoder = Encoder.from_folder(
        path, manifest.max_length, manifest.padding_side == "left", manifest.pad_id, manifest.inputs
    )
    run_backend = _torch_or_onnx(
        torch_backend.load_run_model(path, manifest, trust_remote_code), backend, device, encoder.inputs
    )
    info = {
        "source": "run",
        "format": "run",
        "backend": "onnx" if backend == "onnx" else "torch",
        "method": manifest.method,
        "base_model": manifest.base_model,
    }
    return Predictor(manifest.labels, encoder, run_backend, info, task_named(manifest.task), manifest.thresholds)


def _torch_or_onnx(model: Any, backend: str, device: str, inputs: tuple[str, ...]) -> Backend:
    """A torch model run as it is, or converted to ONNX in memory (`backend="onnx"`, CPU only)."""
    from liftkit.backends import torch_backend

    return (
        torch_backend.onnx_from_torch(model, inputs)
        if backend == "onnx"
        else torch_backend.TorchBackend(model, device)
    )


def _load_export(path: Path, backend: str, device: str, trust_remote_code: bool) -> Predictor:
    export = read_export_info(path)
    encoder = Encoder.from_folder(
        path,
        export["max_length"],
        export["padding_side"] == "left",
        export["pad_id"],
        export.get("inputs", PLAIN_INPUTS),
    )
    if export["format"] == "onnx":
        if backend == "torch":
            raise LiftError(
                f"{str(path)!r} is an ONNX export, which holds no torch weights: use backend 'onnx' (or 'auto'), or load the run folder or an hf export"
            )
        from liftkit.backends.onnx_backend import OnnxBackend

        run_backend = OnnxBackend(path / export["model_file"])
    else:
        from liftkit.backends import torch_backend

        run_backend = _torch_or_onnx(
            torch_backend.load_hf_export(path, trust_remote_code), backend, device, encoder.inputs
        )
    used = "onnx" if export["format"] == "onnx" or backend == "onnx" else "torch"
    info = {
        "source": "export",
        "format": export["format"],
        "quantize": export.get("quantize"),
        "backend": used,
        "method": export["method"],
        "base_model": export["base_model"],
    }
    return Predictor(
        export["labels"], encoder, run_backend, info, task_named(export.get("task")), export.get("thresholds")
    )


def check_folder(path: Path) -> str:
    """ "run" or "export", once the folder holds what loading needs (read, not loaded: cheap
    enough for `lift serve` to refuse a damaged folder before it starts listening)."""
    if (path / EXPORT_INFO).is_file():
        read_export_info(path)
        return "export"
    if not path.is_dir():
        raise LiftError(f"{str(path)!r} does not exist: pass a folder that `lift run` or `lift export` wrote")
    if not (path / MANIFEST).is_file():
        raise LiftError(
            f"{str(path)!r} is not a liftkit run directory or export (no {MANIFEST} or {EXPORT_INFO}): pass a folder that `lift run` or `lift export` wrote"
        )
    check_files(path, read_manifest(path).files)
    return "run"


def check_files(path: Path, files: list[str]) -> None:
    """The files a run folder must hold: those its manifest lists (weights and tokenizer; a lost
    tokenizer.json would otherwise quietly turn every word into [UNK]), else, for manifests that
    list none, peft's adapter pair or liftkit's own tensors."""
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        raise damaged(
            path, f"{', '.join(missing)} listed in liftkit.json {'is' if len(missing) == 1 else 'are'} missing"
        )
    if (path / "adapter_config.json").is_file():
        if not (path / "adapter_model.safetensors").is_file():
            raise damaged(path, "adapter_model.safetensors (the adapter and the classifier head) is missing")
    elif not (path / WEIGHTS).is_file():
        raise damaged(
            path, f"it holds no weights (neither adapter_config.json + adapter_model.safetensors nor {WEIGHTS})"
        )
    if not (path / "tokenizer.json").is_file():
        raise damaged(path, "its tokenizer cannot be loaded (tokenizer.json is missing)")


def write_predictions(path: Path, texts: list[str], predictions: list[dict[str, Any]], labels: list[str]) -> None:
    """`.csv`: text, label, score and one probability column per label (spreadsheets read it; a
    multi-label run: text, the predicted set as "a|b", then the columns); anything else: JSON
    lines ({"text", "label" or "labels", "probabilities"}). Written atomically."""
    if path.suffix.lower() == ".csv":
        out = io.StringIO(newline="")
        writer = csv.writer(out)
        multi = bool(predictions) and "labels" in predictions[0]
        writer.writerow(["text", "labels" if multi else "label", *([] if multi else ["score"]), *labels])
        for text, pred in zip(texts, predictions):
            probs = pred["probabilities"]
            decided = ["|".join(pred["labels"])] if multi else [pred["label"], f"{probs[pred['label']]:.6f}"]
            writer.writerow([text, *decided, *(f"{probs[n]:.6f}" for n in labels)])
        content = out.getvalue()
    else:
        content = "".join(
            json.dumps({"text": t, **pred}, ensure_ascii=False) + "\n" for t, pred in zip(texts, predictions)
        )
    write_text(path, content)


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
        raise LiftError(
            f"input file {str(path)!r} is not UTF-8 text (line {line}, byte {exc.start}): convert it to UTF-8"
        ) from None
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
                raise LiftError(
                    f"line {number} of {str(path)!r} is not valid JSON ({exc.msg}, column {exc.colno}): fix the line"
                ) from None


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
