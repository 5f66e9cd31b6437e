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
    # transformers' config.problem_type: which activation a plain pipeline applies, and how the
    # loop, `evaluate` and a reloaded model find their task (`task_of`)
    problem_type: str
    criterion: str  # the `liftkit.losses` function that builds the training loss
    loss_name: str  # what that loss is called where people read it (axes, run facts)
    best_metric: str  # the validation score that picks the kept epoch unless train.best_metric names one
    search_metric: str  # what `lift tune` maximises on validation unless train.best_metric names another
    scores: tuple[str, ...]  # the `Scores` fields it fills, headline first (tables show them in this order)
    accuracy_name: str  # what `Scores.accuracy` means for it, as tables say it
    reference_name: str  # how tables name the reference row (`reference`)
    confidence_name: str  # what a reliability diagram's confidence is (`reliability`), as its axis says
    # labels of a split (ids, or lists of ids), number of labels -> the array training reads
    targets: Callable[[Sequence[Any], int], np.ndarray]
    probabilities: Callable[[np.ndarray], np.ndarray]  # logits -> probabilities
    # probabilities, thresholds -> decisions (class ids, or a boolean row per text)
    decide: Callable[[np.ndarray, Thresholds], np.ndarray]
    # logits, targets, label names, thresholds -> the split's metrics
    metrics: Callable[[np.ndarray, np.ndarray, list[str] | None, Thresholds], SplitMetrics]
    # training targets, evaluation targets, label names -> the row a trained model must beat
    reference: Callable[[np.ndarray, np.ndarray, list[str]], SplitMetrics]
    # probabilities, targets -> (confidence, correct) of every decision, for calibration (None: the
    # task states no confidence, regression)
    reliability: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None
    # probabilities, targets, texts, label names, thresholds, k -> the surest wrong answers
    mistakes: Callable[[np.ndarray, np.ndarray, list[str], list[str], Thresholds, int], list[Mistake]]
    # probabilities, label names, thresholds -> what `predict` returns for each text
    answer: Callable[[np.ndarray, list[str], Thresholds], list[dict[str, Any]]]
    # label names -> the columns an answer fills in a .csv of predictions, after the text columns
    answer_columns: Callable[[list[str]], list[str]]
    # one answer, label names -> its cells in that .csv, in those columns' order
    answer_cells: Callable[[dict[str, Any], list[str]], list[str]]
    answer_line: Callable[[dict[str, Any]], str]  # one answer as `lift predict` prints it before the text
    # (task.threshold: tuned, a number or {label: t}; label names; validation() -> (probabilities,
    # targets) of the validation split, called only when tuning; min_positives) -> the thresholds
    # predict uses; None where decisions need none (argmax). Test rows never reach it.
    thresholds: Callable[[Any, list[str], Callable[[], tuple[np.ndarray, np.ndarray]], int], list[float] | None]
    # probabilities of a run and of its export, thresholds -> the share of equal decisions (export parity)
    agreement: Callable[[np.ndarray, np.ndarray, Thresholds], float]
    report: tuple[str, ...]  # report.html's sections after the tables and curves, in order (liftkit.pages.SECTIONS)
    card_pipeline: str  # what else the model card's transformers pipeline call needs (multi-label: every score)
    card_onnx: tuple[str, ...]  # the model card's onnxruntime example: lines from `logits` and `info` to the answer
    classes: bool = True  # whether its labels are classes (a label space, class counts); False: a score
    # label names -> what a model of this task predicts, as the run log says it ("6 labels", "a score")
    target: Callable[[list[str]], str] = lambda names: f"{len(names)} labels"
    # logits, raw -> one relevance score per row, what /rerank sorts by (raw: before any activation);
    # returns None where the model has no single score (more than two classes); None: never
    relevance: Callable[[np.ndarray, bool], np.ndarray | None] | None = None
    # the train.loss values it takes (liftkit.losses), the first being what `auto` means
    losses: tuple[str, ...] = ("cross_entropy", "focal")
    # training targets -> (bias, scale) the output layer starts from (regression: the targets' mean
    # and standard deviation); None: the head's own initialisation
    head_start: Callable[[np.ndarray], tuple[float, float]] | None = None

    @property
    def headline(self) -> str:
        """The score tables and logs lead with."""
        return self.scores[0]


TASKS: dict[str, Task] = {}
PROBLEM_TYPES: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    PROBLEM_TYPES[task.problem_type] = task
    return task


def check_best_metric(name: str, task: Task, num_labels: int) -> None:
    """train.best_metric must be a score the task fills for this data (`f1`, the positive class's,
    exists only where there are two classes)."""
    if name != "auto" and name not in task.scores:
        raise LiftError(
            f"train.best_metric={name!r} is not a {task.name} metric: use auto or one of {', '.join(task.scores)}"
        )
    if name == "f1" and num_labels != 2:
        raise LiftError(
            f"train.best_metric=f1 is the positive class's F1 of two-class data, and this data has {num_labels} "
            "classes: use macro_f1"
        )


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
