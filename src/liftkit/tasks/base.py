"""The `Task` record and the registry of tasks (see `liftkit.tasks`). No torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from liftkit.errors import LiftError
from liftkit.record import Mistake, SplitMetrics

Thresholds = Sequence[float] | None  # one decision threshold per label (multi-label), or None


@dataclass(frozen=True)
class Task:
    """Everything that differs between kinds of target."""

    name: str
    problem_type: str  # transformers' config.problem_type: which activation a plain pipeline applies
    criterion: str  # the `liftkit.losses` function that builds the training loss
    best_metric: str  # the validation score that picks the kept epoch unless train.best_metric says otherwise
    search_metric: str  # what `lift tune` maximises on validation unless train.best_metric names another
    scores: tuple[str, ...]  # the `Scores` fields it fills, headline first (tables show them in this order)
    targets: Callable[[Sequence[Any], int], np.ndarray]  # labels of a split -> the array training reads
    probabilities: Callable[[np.ndarray], np.ndarray]  # logits -> probabilities
    decide: Callable[[np.ndarray, Thresholds], np.ndarray]  # probabilities -> predictions (ids, or a multi-hot row)
    metrics: Callable[
        [np.ndarray, np.ndarray, list[str] | None, Thresholds], SplitMetrics
    ]  # logits, targets -> metrics
    reference: Callable[[np.ndarray, np.ndarray, list[str]], SplitMetrics]  # train targets, targets -> the floor row
    reliability: Callable[
        [np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]
    ]  # -> (confidence, correct) per decision
    mistakes: Callable[[np.ndarray, np.ndarray, list[str], list[str], Thresholds, int], list[Mistake]]
    answer: Callable[[np.ndarray, list[str], Thresholds], list[dict[str, Any]]]  # what predict returns per text
    # (task.threshold: tuned, a number or {label: t}; label names; validation() -> (probabilities,
    # targets) of the validation split, called only when tuning; min_positives) -> the thresholds
    # predict uses; None where decisions need none (argmax). Test rows never reach it.
    thresholds: Callable[[Any, list[str], Callable[[], tuple[np.ndarray, np.ndarray]], int], list[float] | None]
    reference_name: str  # how tables name the reference row
    card_pipeline: (
        str  # the model card's transformers pipeline call needs these arguments too (multi-label: every score)
    )
    card_onnx: tuple[
        str, ...
    ]  # the model card's onnxruntime example: python lines from `logits` and `info` (export.json) to the answer
    report: tuple[str, ...]  # report.html's sections after the tables and curves, in order (liftkit.pages.SECTIONS)
    agreement: Callable[[np.ndarray, np.ndarray, Thresholds], float]  # share of equal decisions (export parity)

    def decided(self, logits: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
        return self.decide(self.probabilities(logits), thresholds)


TASKS: dict[str, Task] = {}
NAMES = ("single_label", "multi_label")  # registered below; the config names them without importing numpy's users
PROBLEM_TYPES: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    PROBLEM_TYPES[task.problem_type] = task
    return task


def task_named(name: str | None) -> Task:
    """The task of a run or export (older ones, written before tasks existed, are single-label)."""
    name = name or "single_label"
    if name not in TASKS:
        raise LiftError(f"task {name!r} is unknown to this liftkit (it knows {', '.join(TASKS)}): upgrade liftkit")
    return TASKS[name]


def task_of(model: Any) -> Task:
    """The task a loaded classifier (or whatever wraps it: peft, liftkit's frozen-bottom runner)
    was built for, from its config's problem_type; single-label when none is set."""
    config = next((m.config for m in model.modules() if hasattr(getattr(m, "config", None), "problem_type")), None)
    return PROBLEM_TYPES.get(getattr(config, "problem_type", None) or "", TASKS["single_label"])
