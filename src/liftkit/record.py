"""The typed run record: what one run produced, written as metrics.json and read back from it.

Every module that shows or compares results (report, compare, cli, and later export, serve, tune)
reads a `RunRecord`, never a raw dict, so a renamed field fails loudly in one place. Metric names
come from one place too: the fields of `Scores`. `to_dict()` gives the layout metrics.json has
always had (keys are only ever added, never renamed or moved: users' scripts read it), and
`from_dict()` reads it back; `run_dir` decides where the file lives. No torch here: the config
and the CLI import this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Scores:
    """How good a model's predictions are on one split: the scalar metrics every table shows."""

    # classification (single- and multi-label); None, and absent from metrics.json, for regression
    accuracy: float | None = None
    macro_f1: float | None = None
    macro_precision: float | None = None
    macro_recall: float | None = None
    weighted_f1: float | None = None
    f1: float | None = None  # two classes only: F1 of the second (id 1, the positive class, as GLUE's MRPC F1)
    # the training objective's plain form on this split: mean cross-entropy of the predicted
    # probabilities (binary, per label, for multi-label); mean squared error for regression
    loss: float | None = None
    # multi-label only (liftkit.tasks.multi_label); None, and absent from metrics.json, elsewhere
    micro_f1: float | None = None  # F1 over every (row, label) decision pooled
    samples_f1: float | None = None  # F1 of each row's predicted label set, averaged over rows
    hamming_loss: float | None = None  # share of (row, label) decisions that are wrong
    label_ranking_ap: float | None = None  # label-ranking average precision: true labels ranked above the others
    macro_roc_auc: float | None = None  # ROC-AUC per label (those with both outcomes in the split), averaged
    # regression only (liftkit.tasks.regression)
    spearman: float | None = None  # rank correlation of predicted and true scores
    pearson: float | None = None  # linear correlation of predicted and true scores
    mse: float | None = None  # mean squared error, in the target's units squared
    mae: float | None = None  # mean absolute error, in the target's units
    r2: float | None = None  # coefficient of determination: 1 - MSE / the targets' variance


METRICS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Scores))  # the one list of metric names
LOWER_IS_BETTER = frozenset({"loss", "hamming_loss", "mse", "mae"})  # the metrics a better model makes smaller


@dataclass
class ClassScores:
    """One class's precision, recall and F1, and how many rows of the split truly belong to it."""

    precision: float
    recall: float
    f1: float
    support: int
    threshold: float | None = None  # multi-label: the probability at which this label is predicted


@dataclass
class Timing:
    """What one evaluation pass cost, measured by that pass."""

    runtime_s: float
    samples_per_s: float
    steps_per_s: float
    peak_memory_mb: float


@dataclass
class SplitMetrics:
    """One model evaluated on one split: scores, per-class scores, confusion matrix, and (when the
    pass was timed) its timing. The majority-class reference has no timing: nothing ran."""

    scores: Scores
    per_class: dict[str, ClassScores] = field(default_factory=dict)  # label name -> scores
    confusion_matrix: list[list[int]] = field(default_factory=list)  # [true][predicted] row counts
    timing: Timing | None = None
    # expected calibration error: how far the top probability is from the accuracy it promises,
    # averaged over confidence bins (see evaluate.calibration); None in runs older than it
    ece: float | None = None

    def to_dict(self, with_details: bool = True) -> dict[str, Any]:
        out = _set(self.scores)
        if self.timing is not None:
            out.update(dataclasses.asdict(self.timing))
        if self.ece is not None:
            out["ece"] = self.ece
        if with_details:
            out["per_class"] = {name: _set(c) for name, c in self.per_class.items()}
            out["confusion_matrix"] = self.confusion_matrix
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SplitMetrics:
        timing = known_fields(Timing, raw) if "runtime_s" in raw else None
        per_class = {name: ClassScores(**c) for name, c in (raw.get("per_class") or {}).items()}
        return cls(known_fields(Scores, raw), per_class, raw.get("confusion_matrix") or [], timing, raw.get("ece"))


def _set(obj: Any) -> dict[str, Any]:
    """A dataclass's fields without the optional ones left unset (None): a single-label run's
    metrics.json keeps exactly the keys it has always had."""
    required = {f.name for f in dataclasses.fields(obj) if f.default is dataclasses.MISSING}
    return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None or k in required}


@dataclass
class EpochRecord:
    """One finished epoch: mean training loss and the validation pass after it."""

    epoch: int  # 1-based
    train_loss: float
    val: SplitMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            **{f"val_{k}": v for k, v in self.val.to_dict(with_details=False).items()},
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EpochRecord:
        val = {k.removeprefix("val_"): v for k, v in raw.items() if k.startswith("val_")}
        return cls(raw["epoch"], raw["train_loss"], SplitMetrics.from_dict(val))


@dataclass
class TrainSummary:
    """What the training loop did and what it cost."""

    epochs_run: int = 0
    best_epoch: int = 0  # 1-based epoch whose weights the model holds at the end
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    runtime_s: float = 0.0  # wall time of the fit in this process (frozen-bottom caching and validation included)
    samples_per_s: float = 0.0
    optimizer_steps: int = 0  # taken by this process over the whole run, those before a resume included
    processes: int = 1  # data-parallel processes that shared the work
    steps_per_s: float = 0.0
    peak_memory_mb: float = 0.0
    frozen_layers: int = 0  # bottom layers nothing trains (run in eval mode), see liftkit.frozen
    frozen_cached: bool = False  # whether their output was computed once instead of every step
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "history"}
        return {**out, "history": [h.to_dict() for h in self.history]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSummary:
        summary = known_fields(cls, {k: v for k, v in raw.items() if k != "history"})
        summary.history = [EpochRecord.from_dict(h) for h in raw.get("history", [])]
        return summary

    @property
    def best(self) -> EpochRecord | None:
        """The epoch whose weights were kept."""
        return self.history[self.best_epoch - 1] if self.best_epoch else None


@dataclass
class RunInfo:
    """Which run this was, and where and with what it ran."""

    dataset: str
    model: str
    method: str
    seed: int
    learning_rate: float
    date: str
    device: str
    torch: str
    liftkit: str
    transformers: str = ""
    peft: str = ""


@dataclass
class DataSummary:
    """Where the rows came from and how many each split kept."""

    source: str
    labels: list[str]
    rows: dict[str, int]  # split -> row count
    notes: list[str] = field(default_factory=list)  # what was carved or subsampled
    warnings: list[str] = field(default_factory=list)  # what the data checks found that may mislead (see liftkit.data)
    label_counts: dict[str, list[int]] = field(default_factory=dict)  # split -> rows per label (labels' order)
    task: str = "single_label"  # liftkit.tasks: single_label or multi_label (older runs: single_label)
    task_reason: str = ""  # why: as configured, or what `auto` saw in the data


@dataclass
class ParameterCounts:
    trainable_params: int
    total_params: int
    trainable_percent: float


@dataclass
class Mistake:
    """A test row the fine-tuned model got wrong, and how sure it was."""

    text: str
    label: str  # the true label (regression: the true score)
    predicted: str  # (regression: the predicted score)
    probability: float | None = None  # of the predicted label (regression: None)
    text_pair: str | None = None  # the row's second text (sentence pairs)
    error: float | None = None  # regression: predicted - true
    row: int | None = None  # its place in the test split, counting from 0


@dataclass
class RunRecord:
    """Everything a finished run measured; metrics.json is its `to_dict()`."""

    run: RunInfo
    data: DataSummary
    parameters: ParameterCounts
    majority: SplitMetrics  # always predicting the most frequent training class, on test
    base: SplitMetrics | None  # the base model with its untrained head, on test (None: not evaluated)
    finetuned: SplitMetrics  # the trained model, on test
    train: TrainSummary
    mistakes: list[Mistake] = field(default_factory=list)  # the fine-tuned model's most confident test mistakes

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": dataclasses.asdict(self.run),
            "data": dataclasses.asdict(self.data),
            "parameters": dataclasses.asdict(self.parameters),
            "majority": self.majority.to_dict(),
            "base": self.base.to_dict() if self.base else None,
            "finetuned": self.finetuned.to_dict(),
            "train": self.train.to_dict(),
            "mistakes": [_set(m) for m in self.mistakes],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunRecord:
        return cls(
            run=known_fields(RunInfo, raw["run"]),
            data=known_fields(DataSummary, raw["data"]),
            parameters=known_fields(ParameterCounts, raw["parameters"]),
            majority=SplitMetrics.from_dict(raw["majority"]),
            base=SplitMetrics.from_dict(raw["base"]) if raw.get("base") else None,
            finetuned=SplitMetrics.from_dict(raw["finetuned"]),
            train=TrainSummary.from_dict(raw["train"]),
            mistakes=[known_fields(Mistake, m) for m in raw.get("mistakes", [])],
        )


def known_fields(kind: type, raw: dict[str, Any]) -> Any:
    """Build dataclass `kind` from the keys of `raw` it knows: files written by a newer liftkit
    may hold more keys, and that must not stop an older reader."""
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in raw.items() if k in names})
