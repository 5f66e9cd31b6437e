"""One text, one of K labels: softmax over the classes, argmax decides, cross-entropy trains.

Metrics: accuracy, macro precision / recall / F1, weighted F1, mean cross-entropy, per-class
scores, the confusion matrix and the expected calibration error of the top probability. The
reference row always predicts the most frequent training class.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from liftkit.record import ClassScores, Mistake, Scores, SplitMetrics
from liftkit.tasks.base import Task, Thresholds, register


def targets(labels: Sequence[Any], num_labels: int) -> np.ndarray:
    return np.asarray(labels, dtype=np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax in the logits' own precision (float32 from a model): what predict has always returned."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def decide(probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
    return probs.argmax(-1)


def metrics(
    logits: np.ndarray, labels: np.ndarray, label_names: list[str] | None = None, thresholds: Thresholds = None
) -> SplitMetrics:
    """Scores, per-class scores and the confusion matrix. Classes are the logits' columns, named
    by `label_names` (default "0", "1", ...)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    names = label_names or [str(i) for i in range(logits.shape[-1])]
    preds = logits.argmax(-1)
    classes = list(range(logits.shape[-1]))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, labels=classes, average="macro", zero_division=0
    )
    each = precision_recall_fscore_support(labels, preds, labels=classes, average=None, zero_division=0)
    log_probs = log_softmax(logits)
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    scores = Scores(
        accuracy=float(accuracy_score(labels, preds)),
        macro_f1=float(f1),
        macro_precision=float(precision),
        macro_recall=float(recall),
        weighted_f1=float(f1_score(labels, preds, labels=classes, average="weighted", zero_division=0)),
        loss=float(loss),
        f1=float(each[2][1]) if len(classes) == 2 else None,
    )
    per_class = {name: ClassScores(float(p), float(r), float(f), int(s)) for name, p, r, f, s in zip(names, *each)}
    matrix = confusion_matrix(labels, preds, labels=classes).tolist()
    return SplitMetrics(
        scores, per_class, matrix, ece=expected_calibration_error(*reliability(np.exp(log_probs), labels))
    )


def reliability(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top probability, and whether that top class is the true one."""
    return probs.max(-1), probs.argmax(-1) == labels


def confidence_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width confidence bins (Guo et al., 2017): their edges, then per bin its rows, their
    summed confidence and their summed correctness. The one binning of the ECE and of the
    reliability diagram (`liftkit.evaluate.calibration`)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    return (
        edges,
        counts,
        np.bincount(which, weights=confidence, minlength=bins),
        np.bincount(which, weights=correct, minlength=bins),
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """The row-weighted mean gap between confidence and accuracy over the bins: each bin's rows
    times |its accuracy - its confidence| is |summed correctness - summed confidence|."""
    _, _, summed_confidence, summed_correct = confidence_bins(confidence, correct, bins)
    return float(np.abs(summed_correct - summed_confidence).sum() / max(len(confidence), 1))


def reference(train_labels: np.ndarray, labels: np.ndarray, label_names: list[str]) -> SplitMetrics:
    """The floor any trained model must clear: always predict the most frequent training class."""
    counts = np.bincount(train_labels, minlength=len(label_names)).astype(np.float64)
    logits = np.tile(np.log(np.maximum(counts / counts.sum(), 1e-12)), (len(labels), 1))
    return metrics(logits, labels, label_names)


def mistakes(
    probs: np.ndarray,
    labels: np.ndarray,
    texts: list[str],
    names: list[str],
    thresholds: Thresholds = None,
    k: int = 20,
) -> list[Mistake]:
    """The `k` wrong predictions the model was surest of: often label noise, or a class the model
    learned to spot from the wrong cue. Texts are cut at 2,000 characters (a report shows them)."""
    predicted = probs.argmax(-1)
    wrong = np.flatnonzero(predicted != labels)
    top = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")[:k]]
    return [
        Mistake(
            texts[i][:2000], names[labels[i]], names[predicted[i]], round(float(probs[i, predicted[i]]), 4), row=int(i)
        )
        for i in top
    ]


def answer(probs: np.ndarray, names: list[str], thresholds: Thresholds = None) -> list[dict[str, Any]]:
    """Label name and per-class probabilities for each text."""
    return [
        {"label": names[int(row.argmax())], "probabilities": {n: float(p) for n, p in zip(names, row)}}
        for row in probs
    ]


def answer_columns(names: list[str]) -> list[str]:
    return ["label", "score", *names]


def answer_cells(answer: dict[str, Any], names: list[str]) -> list[str]:
    """The label, its probability, then every label's."""
    probs = answer["probabilities"]
    return [answer["label"], f"{probs[answer['label']]:.6f}", *(f"{probs[n]:.6f}" for n in names)]


def answer_line(answer: dict[str, Any]) -> str:
    return f"{answer['label']}\t{answer['probabilities'][answer['label']]:.3f}"


def thresholds(
    setting: Any, names: list[str], validation: Callable[[], tuple[np.ndarray, np.ndarray]], min_positives: int
) -> None:
    return None  # argmax needs no threshold


def agreement(a: np.ndarray, b: np.ndarray, thresholds: Thresholds = None) -> float:
    """Share of rows with the same predicted class."""
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def relevance(logits: np.ndarray, raw: bool = False) -> np.ndarray | None:
    """Two classes: the second's probability (a paraphrase's, a relevant document's), or its
    log-odds when `raw`; more classes have no single score (None)."""
    if logits.shape[-1] != 2:
        return None
    return logits[:, 1] - logits[:, 0] if raw else probabilities(logits)[:, 1]


SINGLE_LABEL = register(
    Task(
        name="single_label",
        problem_type="single_label_classification",
        criterion="single_label_criterion",
        best_metric="accuracy",
        scores=("accuracy", "macro_f1", "f1", "macro_precision", "macro_recall", "weighted_f1", "loss"),
        targets=targets,
        probabilities=probabilities,
        decide=decide,
        metrics=metrics,
        reference=reference,
        reliability=reliability,
        mistakes=mistakes,
        answer=answer,
        answer_columns=answer_columns,
        answer_cells=answer_cells,
        answer_line=answer_line,
        thresholds=thresholds,
        loss_name="cross-entropy",
        accuracy_name="accuracy",
        confidence_name="top predicted probability",
        search_metric="macro_f1",
        reference_name="majority class",
        agreement=agreement,
        report=("confusion_matrices", "per_class", "calibration", "mistakes", "label_distribution"),
        card_pipeline="",
        card_onnx=('print(info["labels"][int(logits.argmax())])',),
        relevance=relevance,
    )
)
