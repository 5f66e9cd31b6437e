"""The evaluation pass: a model over a loader -> logits -> the task's metrics; and calibration.

`evaluate` runs the model once and times itself, so every figure it returns was measured by the
call that returns it. What the logits mean (softmax or sigmoid, argmax or thresholds) and which
metrics follow is the model's task (`liftkit.tasks`, found from the model's problem_type); it
also hands back the probabilities and targets themselves, for whatever looks at single rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from liftkit.predict import pool_windows
from liftkit.record import SplitMetrics, Timing
from liftkit.resources import peak_memory_mb
from liftkit.tasks import Task, Thresholds, task_of
from liftkit.tasks.single_label import SINGLE_LABEL, confidence_bins, expected_calibration_error


@dataclass
class Evaluation:
    """One evaluation pass: its metrics and the per-row predictions behind them (dataset order)."""

    metrics: SplitMetrics
    probabilities: np.ndarray  # (rows, classes)
    labels: np.ndarray  # the targets: (rows,) true class ids, or (rows, labels) multi-hot


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


def calibration(
    probabilities: np.ndarray, labels: np.ndarray, task: Task = SINGLE_LABEL, bins: int = 15
) -> Calibration:
    """Equal-width confidence bins over the task's decisions (each row's top class; each
    (row, label) decision for multi-label), the usual ECE (Guo et al., 2017) with 15 bins."""
    confidence, correct = task.reliability(probabilities, labels)
    edges, counts, summed_confidence, summed_correct = confidence_bins(confidence, correct, bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty bin has no mean: NaN
        mean_conf, mean_acc = summed_confidence / counts, summed_correct / counts
    return Calibration(edges, mean_conf, mean_acc, counts, expected_calibration_error(confidence, correct, bins))


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader: Any, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every row of `loader`, in dataset order; for long texts in windows,
    for every document, its windows pooled."""
    was_training = model.training
    model.eval()
    order, chunks, labels = [], [], []
    for indices, batch in zip(loader.batch_sampler, loader):
        batch = {k: v.to(device) for k, v in batch.items() if k != "weights"}
        labels.append(batch.pop("labels").cpu())
        chunks.append(model(**batch).logits.float().cpu())
        order += indices
    model.train(was_training)
    inverse = np.argsort(np.asarray(order))
    logits, targets = torch.cat(chunks).numpy()[inverse], torch.cat(labels).numpy()[inverse]
    documents = getattr(loader.dataset, "documents", None)
    if documents is None:
        return logits, targets
    # long texts in windows: one row per document, its windows' logits pooled, its target once
    first = np.unique(documents, return_index=True)[1]
    return pool_windows(logits, documents, loader.dataset.pool), targets[first]


def evaluate(
    model: torch.nn.Module,
    loader: Any,
    device: torch.device,
    label_names: list[str] | None = None,
    thresholds: Thresholds = None,
) -> Evaluation:
    """Metrics (as the model's task computes them, at `thresholds` where it has them) plus
    runtime, samples/s, steps/s and peak memory of this evaluation pass."""
    task = task_of(model)
    start = time.perf_counter()
    logits, labels = predict_logits(model, loader, device)
    runtime = time.perf_counter() - start
    metrics = task.metrics(logits, labels, label_names, thresholds)
    metrics.timing = Timing(runtime, len(labels) / runtime, len(loader) / runtime, peak_memory_mb(device))
    return Evaluation(metrics, task.probabilities(logits), labels)
