"""One text, any subset of K labels (tagging): a sigmoid per label, a threshold per label decides,
binary cross-entropy over all labels trains.

A row's target is a multi-hot vector; a row with no label is valid (nothing applies). Thresholds
are 0.5, given per label, or tuned: each label's own threshold maximises that label's F1 on the
validation split, except for labels with too few validation positives to decide on, which keep
0.5. Test rows never take part in choosing them.

Metrics: micro- / macro- / samples-F1, subset accuracy (every label of the row right), Hamming
loss, label-ranking average precision, macro ROC-AUC (over the labels with both outcomes in the
split), mean binary cross-entropy, per-label precision / recall / F1 / support / threshold, and
the expected calibration error of the per-label decisions pooled. The reference row predicts the
most frequent training label set, with the training label frequencies as probabilities.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from liftkit.errors import LiftError
from liftkit.record import ClassScores, Mistake, Scores, SplitMetrics
from liftkit.tasks.base import Task, Thresholds, register
from liftkit.tasks.single_label import expected_calibration_error

GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)  # thresholds a tuned label may take


def targets(labels: Sequence[Any], num_labels: int) -> np.ndarray:
    """Lists of label ids -> a (rows, labels) multi-hot float32 array."""
    out = np.zeros((len(labels), num_labels), dtype=np.float32)
    for row, ids in enumerate(labels):
        out[row, list(ids)] = 1.0
    return out


def probabilities(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits)))


def _cut(thresholds: Thresholds, width: int) -> np.ndarray:
    return np.full(width, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)


def decide(probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
    """A label applies when its probability reaches its threshold (0.5 unless given)."""
    return probs >= _cut(thresholds, probs.shape[-1])


def _bce(logits: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(logits, dtype=np.float64)
    return float((np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))).mean())


def _scores(
    probs: np.ndarray, preds: np.ndarray, y: np.ndarray, loss: float, names: list[str], thresholds: Thresholds
) -> SplitMetrics:
    from sklearn.metrics import (
        f1_score,
        hamming_loss,
        label_ranking_average_precision_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y, preds = y.astype(np.int64), preds.astype(np.int64)
    f1 = lambda average, zero=0: float(f1_score(y, preds, average=average, zero_division=zero))  # noqa: E731
    precision, recall, _, _ = precision_recall_fscore_support(y, preds, average="macro", zero_division=0)
    both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]  # ROC-AUC needs both outcomes
    scores = Scores(
        accuracy=float((preds == y).all(axis=1).mean()),
        macro_f1=f1("macro"),
        macro_precision=float(precision),
        macro_recall=float(recall),
        weighted_f1=f1("weighted"),
        loss=loss,
        micro_f1=f1("micro"),
        samples_f1=f1("samples", 1.0),  # a row with no label and none predicted is answered right
        hamming_loss=float(hamming_loss(y, preds)),
        label_ranking_ap=float(label_ranking_average_precision_score(y, probs)),
        macro_roc_auc=float(np.mean([roc_auc_score(y[:, j], probs[:, j]) for j in both])) if both else None,
    )
    each = precision_recall_fscore_support(y, preds, average=None, zero_division=0)
    cut = _cut(thresholds, y.shape[1])
    per_class = {
        n: ClassScores(float(p), float(r), float(f), int(s), float(t)) for n, p, r, f, s, t in zip(names, *each, cut)
    }
    return SplitMetrics(scores, per_class, [], ece=expected_calibration_error(*reliability(probs, y)))


def metrics(
    logits: np.ndarray, y: np.ndarray, label_names: list[str] | None = None, thresholds: Thresholds = None
) -> SplitMetrics:
    names = label_names or [str(i) for i in range(logits.shape[-1])]
    probs = probabilities(logits)
    return _scores(probs, decide(probs, thresholds), y, _bce(logits, y), names, thresholds)


def reference(train_y: np.ndarray, y: np.ndarray, label_names: list[str]) -> SplitMetrics:
    """Every row gets the most frequent training label set; probabilities are the training label
    frequencies (so ranking metrics sit at chance)."""
    freq = np.clip(train_y.mean(axis=0), 1e-6, 1 - 1e-6)
    sets, counts = np.unique(train_y.astype(np.int8), axis=0, return_counts=True)
    preds = np.tile(sets[counts.argmax()], (len(y), 1))
    probs = np.tile(freq, (len(y), 1))
    return _scores(probs, preds, y, _bce(np.log(probs / (1 - probs)), y), label_names, None)


def reliability(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, label) decision pooled: how sure it was (p or 1 - p) and whether it was right."""
    p = probs.ravel()
    return np.maximum(p, 1 - p), (p >= 0.5) == (np.asarray(y).ravel() > 0.5)


def _names(row: np.ndarray, names: list[str]) -> str:
    return ", ".join(names[j] for j in np.flatnonzero(row)) or "(none)"


def mistakes(
    probs: np.ndarray, y: np.ndarray, texts: list[str], names: list[str], thresholds: Thresholds = None, k: int = 20
) -> list[Mistake]:
    """The `k` rows whose predicted label set is wrong, surest first: how sure the model was of
    its most confident wrong decision on the row (p for a wrong label, 1 - p for a missed one)."""
    preds = decide(probs, thresholds)
    wrong_cells = preds != (y > 0.5)
    sure = np.where(wrong_cells, np.where(preds, probs, 1 - probs), -1.0).max(axis=1)
    wrong = np.flatnonzero(wrong_cells.any(axis=1))
    top = wrong[np.argsort(-sure[wrong], kind="stable")[:k]]
    return [
        Mistake(
            texts[i][:2000], _names(y[i] > 0.5, names), _names(preds[i], names), round(float(sure[i]), 4), row=int(i)
        )
        for i in top
    ]


def answer(probs: np.ndarray, names: list[str], thresholds: Thresholds = None) -> list[dict[str, Any]]:
    """The predicted label set (in label order) and every label's probability, for each text."""
    preds = decide(probs, thresholds)
    return [
        {
            "labels": [names[j] for j in np.flatnonzero(chosen)],
            "probabilities": {n: float(p) for n, p in zip(names, row)},
        }
        for row, chosen in zip(probs, preds)
    ]


def answer_columns(names: list[str]) -> list[str]:
    return ["labels", *names]


def answer_cells(answer: dict[str, Any], names: list[str]) -> list[str]:
    """The predicted set as "a|b" (empty when none), then every label's probability."""
    return ["|".join(answer["labels"]), *(f"{answer['probabilities'][n]:.6f}" for n in names)]


def answer_line(answer: dict[str, Any]) -> str:
    return ",".join(answer["labels"]) or "(none)"


def thresholds(
    setting: Any, names: list[str], validation: Callable[[], tuple[np.ndarray, np.ndarray]], min_positives: int
) -> list[float]:
    """task.threshold as one threshold per label: `tuned` on the validation split (`validation()`
    gives its probabilities and targets), a number for every label, or {label: t} (others 0.5)."""
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - set(names))
        if unknown:
            raise LiftError(
                f"task.threshold names {', '.join(map(repr, unknown))}, not among the labels ({', '.join(names[:10])}...): use the label names"
            )
        return [float(setting.get(n, 0.5)) for n in names]
    if setting != "tuned":
        return [float(setting)] * len(names)
    probs, y = validation()
    return [_best_threshold(probs[:, j], y[:, j] > 0.5, min_positives) for j in range(len(names))]


def _best_threshold(p: np.ndarray, positive: np.ndarray, min_positives: int) -> float:
    """The grid threshold with the label's best F1 (the one nearest 0.5 among ties); 0.5 for a
    label with fewer than `min_positives` positives, whose F1 would swing on a row or two."""
    if positive.sum() < min_positives:
        return 0.5
    chosen = p[:, None] >= GRID[None, :]
    tp = (chosen & positive[:, None]).sum(axis=0)
    f1 = 2 * tp / (chosen.sum(axis=0) + positive.sum())
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(GRID[best[np.argmin(np.abs(GRID[best] - 0.5))]])


def agreement(a: np.ndarray, b: np.ndarray, thresholds: Thresholds = None) -> float:
    """Share of (row, label) decisions two sets of probabilities agree on, at the run's thresholds."""
    return float((decide(a, thresholds) == decide(b, thresholds)).mean())


MULTI_LABEL = register(
    Task(
        name="multi_label",
        problem_type="multi_label_classification",
        criterion="multi_label_criterion",
        best_metric="micro_f1",
        scores=(
            "micro_f1",
            "macro_f1",
            "samples_f1",
            "accuracy",
            "hamming_loss",
            "label_ranking_ap",
            "macro_roc_auc",
            "macro_precision",
            "macro_recall",
            "weighted_f1",
            "loss",
        ),
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
        loss_name="binary cross-entropy",
        accuracy_name="subset accuracy",
        confidence_name="each label decision: p or 1 - p",
        search_metric="micro_f1",
        reference_name="most frequent set",
        agreement=agreement,
        report=("per_label", "precision_recall", "co_occurrence", "calibration", "mistakes", "label_distribution"),
        card_pipeline=", top_k=None",
        card_onnx=(
            "probs = 1 / (1 + np.exp(-logits[0]))  # a sigmoid per label",
            'print([label for label, p, t in zip(info["labels"], probs, info["thresholds"]) if p >= t])',
        ),
    )
)
