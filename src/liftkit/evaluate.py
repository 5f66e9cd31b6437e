"""Logits -> metrics, and the evaluation pass that produces the logits.

`classification_metrics` is a pure function; `evaluate` runs the model once over a loader and
times itself, so every figure it returns was measured by the call that returns it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from liftkit.resources import peak_memory_mb


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1, weighted F1 and mean cross-entropy."""
    preds = logits.argmax(-1)
    classes = list(range(num_labels))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, labels=classes, average="macro", zero_division=0
    )
    log_probs = torch.log_softmax(torch.from_numpy(logits).double(), dim=-1)
    loss = -log_probs[torch.arange(len(labels)), torch.from_numpy(labels)].mean().item()
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "weighted_f1": float(f1_score(labels, preds, labels=classes, average="weighted", zero_division=0)),
        "loss": float(loss),
    }


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


def evaluate(model: torch.nn.Module, loader: Any, device: torch.device, num_labels: int) -> dict[str, float]:
    """Metrics plus runtime, samples/s, steps/s and peak memory of this evaluation pass."""
    start = time.perf_counter()
    logits, labels = predict_logits(model, loader, device)
    runtime = time.perf_counter() - start
    metrics = classification_metrics(logits, labels, num_labels)
    metrics.update(
        runtime_s=runtime,
        samples_per_s=len(labels) / runtime,
        steps_per_s=len(loader) / runtime,
        peak_memory_mb=peak_memory_mb(device),
    )
    return metrics


def majority_metrics(train_labels: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """The floor any trained model must clear: always predict the most frequent training class."""
    counts = np.bincount(train_labels, minlength=num_labels).astype(np.float64)
    logits = np.tile(np.log(np.maximum(counts / counts.sum(), 1e-12)), (len(labels), 1))
    return classification_metrics(logits, labels, num_labels)
