"""One text (or pair) in, one number out: similarity (STS), ratings, toxicity levels.

The model has one output, the score itself: no activation, no decision. It trains on the mean
squared error of standardised scores (or its Huber form, `train.loss: huber`): the loss divides
by the training targets' variance, and the head starts at the training mean and spread
(`head_start`), which is standardising the targets and mapping predictions back, done inside the
model so that every saved, exported or served copy answers in the target's own units.

Metrics: Spearman (the headline, and what picks the kept epoch), Pearson, MSE (also the `loss`),
MAE and R². The reference row predicts the training mean for every row; the base model's row is
the untrained head.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from liftkit.record import Mistake, Scores, SplitMetrics
from liftkit.tasks.base import Task, Thresholds, register


def targets(labels: Sequence[Any], num_labels: int) -> np.ndarray:
    return np.asarray(labels, dtype=np.float32)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """The model's output is the score: (rows, 1), as it comes."""
    return np.asarray(logits)


def decide(values: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
    return np.asarray(values)[:, 0]


def _scores(predicted: np.ndarray, y: np.ndarray) -> Scores:
    from scipy.stats import pearsonr, spearmanr

    predicted, y = np.asarray(predicted, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    constant = np.ptp(predicted) == 0 or np.ptp(y) == 0  # a correlation with a constant is undefined: 0
    mse = float(np.mean((predicted - y) ** 2))
    variance = float(np.var(y))
    return Scores(
        loss=mse,
        spearman=0.0 if constant else float(spearmanr(predicted, y).statistic),
        pearson=0.0 if constant else float(pearsonr(predicted, y).statistic),
        mse=mse,
        mae=float(np.mean(np.abs(predicted - y))),
        r2=1.0 - mse / variance if variance > 0 else 0.0,
    )


def metrics(
    logits: np.ndarray, y: np.ndarray, label_names: list[str] | None = None, thresholds: Thresholds = None
) -> SplitMetrics:
    return SplitMetrics(_scores(decide(logits), y))


def reference(train_y: np.ndarray, y: np.ndarray, label_names: list[str]) -> SplitMetrics:
    """Every row gets the training mean: R² about 0, correlations 0 (a constant ranks nothing)."""
    return SplitMetrics(_scores(np.full(len(y), float(np.mean(train_y))), y))


def mistakes(
    values: np.ndarray, y: np.ndarray, texts: list[str], names: list[str], thresholds: Thresholds = None, k: int = 20
) -> list[Mistake]:
    """The `k` rows predicted furthest from their true score, largest error first."""
    predicted = decide(values)
    error = predicted - np.asarray(y, dtype=np.float64)
    top = np.argsort(-np.abs(error), kind="stable")[:k]
    return [
        Mistake(
            texts[i][:2000],
            f"{float(y[i]):.3f}",
            f"{float(predicted[i]):.3f}",
            error=round(float(error[i]), 4),
            row=int(i),
        )
        for i in top
    ]


def answer(values: np.ndarray, names: list[str], thresholds: Thresholds = None) -> list[dict[str, Any]]:
    """The predicted score of each text."""
    return [{"score": float(v)} for v in decide(values)]


def answer_columns(names: list[str]) -> list[str]:
    return ["score"]


def answer_cells(answer: dict[str, Any], names: list[str]) -> list[str]:
    return [f"{answer['score']:.6f}"]


def answer_line(answer: dict[str, Any]) -> str:
    return f"{answer['score']:.4f}"


def thresholds(
    setting: Any, names: list[str], validation: Callable[[], tuple[np.ndarray, np.ndarray]], min_positives: int
) -> None:
    return None  # a score needs no threshold


def agreement(a: np.ndarray, b: np.ndarray, thresholds: Thresholds = None) -> float:
    """Share of rows whose two scores lie within 1% of the scores' spread (their standard
    deviation) of each other: export parity for a model that makes no discrete decision."""
    a, b = decide(a), decide(b)
    tolerance = 0.01 * max(float(np.std(a)), 1e-12)
    return float((np.abs(a - b) <= tolerance).mean())


def head_start(train_y: np.ndarray) -> tuple[float, float]:
    """Where the output layer starts: bias at the training mean, weights scaled by the training
    standard deviation (the head of a model trained on standardised targets, mapped back)."""
    y = np.asarray(train_y, dtype=np.float64)
    return float(y.mean()), float(max(y.std(), 1e-6))


REGRESSION = register(
    Task(
        name="regression",
        problem_type="regression",
        criterion="regression_criterion",
        best_metric="spearman",
        scores=("spearman", "pearson", "mse", "mae", "r2"),
        targets=targets,
        probabilities=probabilities,
        decide=decide,
        metrics=metrics,
        reference=reference,
        reliability=None,  # a score states no confidence: no calibration section
        mistakes=mistakes,
        answer=answer,
        answer_columns=answer_columns,
        answer_cells=answer_cells,
        answer_line=answer_line,
        thresholds=thresholds,
        loss_name="mean squared error",
        accuracy_name="",
        confidence_name="",
        search_metric="spearman",
        reference_name="training mean",
        agreement=agreement,
        report=("scatter", "residuals", "mistakes"),
        card_pipeline=", function_to_apply='none'",
        card_onnx=("print(float(logits[0, 0]))  # the predicted score",),
        losses=("mse", "huber"),
        head_start=head_start,
        target=lambda names: f"a score ({names[0]!r})",
        classes=False,
        relevance=lambda values, raw=False: decide(values),
    )
)
