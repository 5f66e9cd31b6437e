"""Logits -> metrics, and the evaluation pass that produces the logits.

`classification_metrics` is a pure function; `evaluate` runs the model once over a loader and
times itself, so every figure it returns was measured by the call that returns it. Both return
the typed record's `SplitMetrics` (scores, per-class scores, confusion matrix); `evaluate` also
hands back the probabilities and labels themselves, for whatever wants to look at single rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from liftkit.record import ClassScores, Mistake, Scores, SplitMetrics, Timing
from liftkit.resources import peak_memory_mb


@dataclass
class Evaluation:
    """One evaluation pass: its metrics and the per-row predictions behind them (dataset order)."""

    metrics: SplitMetrics
    probabilities: np.ndarray  # (rows, classes)
    labels: np.ndarray  # (rows,) true class ids

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(-1)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str] | None = None) -> SplitMetrics:
    """Accuracy, macro precision / recall / F1, weighted F1, mean cross-entropy, per-class scores
    and the confusion matrix. Classes are the logits' columns, named by `label_names` (default
    "0", "1", ...)."""
    names = label_names or [str(i) for i in range(logits.shape[-1])]
    preds = logits.argmax(-1)
    classes = list(range(logits.shape[-1]))
    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, labels=classes, average="macro", zero_division=0)
    each = precision_recall_fscore_support(labels, preds, labels=classes, average=None, zero_division=0)
    log_probs = torch.log_softmax(torch.from_numpy(logits).double(), dim=-1)
    loss = -log_probs[torch.arange(len(labels)), torch.from_numpy(labels)].mean().item()
    scores = Scores(
        accuracy=float(accuracy_score(labels, preds)),
        macro_f1=float(f1),
        macro_precision=float(precision),
        macro_recall=float(recall),
        weighted_f1=float(f1_score(labels, preds, labels=classes, average="weighted", zero_division=0)),
        loss=float(loss),
    )
    per_class = {name: ClassScores(float(p), float(r), float(f), int(s)) for name, p, r, f, s in zip(names, *each)}
    matrix = confusion_matrix(labels, preds, labels=classes).tolist()
    return SplitMetrics(scores, per_class, matrix, ece=calibration(log_probs.exp().numpy(), labels).ece)


@dataclass
class Calibration:
    """Whether a model's top probability can be trusted: rows binned by that probability, and each
    bin's mean confidence beside its accuracy (a reliability diagram). `ece`, the expected
    calibration error, is the row-weighted mean gap: 0 when a model right 70% of the time says 0.7."""

    edges: np.ndarray  # (bins + 1,) confidence bin edges over [0, 1]
    confidence: np.ndarray  # (bins,) mean top probability per bin (NaN: empty bin)
    accuracy: np.ndarray  # (bins,) fraction of the bin's rows predicted right (NaN: empty bin)
    counts: np.ndarray  # (bins,) rows per bin
    ece: float


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> Calibration:
    """Equal-width confidence bins, the usual ECE (Guo et al., 2017) with 15 bins."""
    confidence = probabilities.max(-1)
    correct = probabilities.argmax(-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        mean_acc = np.bincount(which, weights=correct, minlength=bins) / counts
    gaps = np.where(counts > 0, np.abs(mean_acc - mean_conf), 0.0)
    ece = float((counts * gaps).sum() / max(len(labels), 1))
    return Calibration(edges, mean_conf, mean_acc, counts, ece)


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, texts: list[str], names: list[str], k: int = 20) -> list[Mistake]:
    """The `k` wrong predictions the model was surest of: often label noise, or a class the model
    learned to spot from the wrong cue. Texts are cut at 2,000 characters (a report shows them)."""
    predicted = probabilities.argmax(-1)
    wrong = np.flatnonzero(predicted != labels)
    top = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")[:k]]
    return [Mistake(texts[i][:2000], names[labels[i]], names[predicted[i]], round(float(probabilities[i, predicted[i]]), 4)) for i in top]


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader: Any, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every row of `loader`, in dataset order."""
    was_training = model.training
    model.eval()
    order, chunks, labels = [], [], []
    for indices, batch in zip(loader.batch_sampler, loader):
        batch = {k: v.to(device) for k, v in batch.items()}
        labels.append(batch.pop("labels").cpu())
        chunks.append(model(**batch).logits.float().cpu())
        order += indices
    model.train(was_training)
    inverse = np.argsort(np.asarray(order))
    return torch.cat(chunks).numpy()[inverse], torch.cat(labels).numpy()[inverse]


def evaluate(model: torch.nn.Module, loader: Any, device: torch.device, label_names: list[str] | None = None) -> Evaluation:
    """Metrics plus runtime, samples/s, steps/s and peak memory of this evaluation pass."""
    start = time.perf_counter()
    logits, labels = predict_logits(model, loader, device)
    runtime = time.perf_counter() - start
    metrics = classification_metrics(logits, labels, label_names)
    metrics.timing = Timing(runtime, len(labels) / runtime, len(loader) / runtime, peak_memory_mb(device))
    probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    return Evaluation(metrics, probabilities, labels)


def majority_metrics(train_labels: np.ndarray, labels: np.ndarray, label_names: list[str]) -> SplitMetrics:
    """The floor any trained model must clear: always predict the most frequent training class."""
    counts = np.bincount(train_labels, minlength=len(label_names)).astype(np.float64)
    logits = np.tile(np.log(np.maximum(counts / counts.sum(), 1e-12)), (len(labels), 1))
    return classification_metrics(logits, labels, label_names)
