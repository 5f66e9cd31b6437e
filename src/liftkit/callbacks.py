"""What listens to the training loop: its events, the state they carry, and the standard listeners.

`train.fit` runs one loop and calls, on every callback in order, `on_train_begin(state)`,
`on_step(state)` after each optimizer step, `on_eval(state, metrics)` after each validation
pass, `on_epoch_end(state)`, and `on_train_end(state)`. Everything that is not the arithmetic of
training lives here as a callback: the progress bar, checkpointing and resuming, early stopping,
metric logging. A new listener (a tracker, a search pruner that raises to end a trial) is one more
`Callback` subclass; the loop does not change. HF's `TrainerCallback` is the model, kept smaller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from liftkit import checkpoint
from liftkit.record import EpochRecord, SplitMetrics
from liftkit.tracking import MetricLogger


@dataclass
class Trainee:
    """What a callback may act on: the model being trained (without data-parallel wrappers, so
    parameter names are the model's own), its optimizer and its learning-rate schedule."""

    model: torch.nn.Module
    optimizer: Any
    scheduler: Any


SHORT = {
    "micro_f1": "micro-F1",
    "spearman": "Spearman",
    "pearson": "Pearson",
    "accuracy": "acc",
    "macro_f1": "macro-F1",
}


@dataclass
class TrainState:
    """The loop's state, as callbacks see it. Callbacks may set `should_stop`; resuming restores
    the rest."""

    epochs: int  # planned
    steps_per_epoch: int  # optimizer steps
    is_main: bool  # the process that writes files (a data-parallel run has several)
    trainee: Trainee
    epoch: int = 0  # 1-based epoch in progress; once it has ended, the number of epochs finished
    step: int = 0  # optimizer steps taken, those before a resume included
    lr: float = 0.0  # the schedule's learning rate after the last optimizer step (what the next step uses)
    loss_sum: torch.Tensor | None = None  # this epoch's summed training loss (on the device: read it sparingly)
    rows: int = 0  # training rows this epoch, this process
    samples: int = 0  # training rows this fit, this process (throughput)
    steps_taken: int = 0  # optimizer steps this fit, this process (throughput)
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch with the best validation score so far
    best_score: float | None = None
    improved: bool = False  # whether the epoch that just ended is the new best
    should_stop: bool = False
    resumed_from_epoch: int = 0

    def end_epoch(self, record: EpochRecord, score: float, lower_is_better: bool) -> None:
        """Add a finished epoch to the history and keep track of the best one."""
        self.history.append(record)
        best = self.best_score
        self.improved = best is None or (score < best if lower_is_better else score > best)
        if self.improved:
            self.best_score, self.best_epoch = score, record.epoch


class Callback:
    """Base of every listener: each event does nothing unless overridden."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step(self, state: TrainState) -> None: ...

    def on_eval(self, state: TrainState, metrics: SplitMetrics) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


def emit(callbacks: Sequence[Callback], event: str, state: TrainState, *args: Any) -> None:
    """Call `event` on every callback, in order."""
    for callback in callbacks:
        getattr(callback, event)(state, *args)


class ProgressBar(Callback):
    """A bar per epoch with the epoch's running loss, and one line per epoch with its validation."""

    def __init__(self, refresh_every: int = 20):
        self.refresh_every = refresh_every  # steps between loss read-outs (each one syncs the device)
        self.bar: tqdm | None = None

    def on_step(self, state: TrainState) -> None:
        if not state.is_main:
            return
        if self.bar is None:
            self.bar = tqdm(total=state.steps_per_epoch, desc=f"epoch {state.epoch}/{state.epochs}", leave=False)
        self.bar.update(1)
        if self.bar.n % self.refresh_every == 0:
            self.bar.set_postfix(loss=f"{state.loss_sum.item() / state.rows:.4f}")

    def on_eval(self, state: TrainState, metrics: SplitMetrics) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if state.is_main:
            s = metrics.scores
            # the headline scores the run has (micro-F1 for multi-label, Spearman for regression), then accuracy
            shown = [(k, getattr(s, k)) for k in ("micro_f1", "spearman", "pearson", "accuracy", "macro_f1")]
            scores = " ".join(f"{SHORT[k]} {v:.4f}" for k, v in shown if v is not None)
            tqdm.write(
                f"epoch {state.epoch}: train loss {state.history[-1].train_loss:.4f} | val loss {s.loss:.4f} {scores}"
            )


class Checkpointer(Callback):
    """Resumes from `root/last` (when `resume`), saves the best and the last epoch after each
    epoch, and puts the best epoch's weights back at the end: the model returned is the best one.

    `settings` (what the run resolved from its data) are saved with each checkpoint, for
    `pipeline` to compare on resume before any work is done (`checkpoint.last_state`)."""

    def __init__(
        self,
        root: Path,
        resume: bool = False,
        log: Callable[[str], None] = print,
        settings: dict[str, Any] | None = None,
    ):
        self.root = root
        self.resume = resume
        self.log = log
        self.settings = settings or {}

    def on_train_begin(self, state: TrainState) -> None:
        if not self.resume:
            return
        t = state.trainee
        saved = checkpoint.load_last(self.root, t.model, t.optimizer, t.scheduler)
        if saved is None:
            if state.is_main:
                self.log("resume: no complete checkpoint yet, training from the start")
            return
        state.epoch = state.resumed_from_epoch = saved["epoch"]
        state.history = [EpochRecord.from_dict(h) for h in saved["history"]]
        state.best_epoch, state.best_score = saved["best_epoch"], saved["best_score"]
        state.step = saved.get("step", saved["epoch"] * state.steps_per_epoch)
        if state.is_main:
            self.log(
                f"resumed from epoch {state.epoch} of {state.epochs} (optimizer step {state.step}, best epoch so far {state.best_epoch})"
            )

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.is_main:
            return
        t = state.trainee
        if state.improved:
            checkpoint.save_best(self.root, t.model, state.epoch)
        history = [h.to_dict() for h in state.history]
        saved = {
            "epoch": state.epoch,
            "history": history,
            "best_epoch": state.best_epoch,
            "best_score": state.best_score,
            "step": state.step,
            "settings": self.settings,
        }
        checkpoint.save_last(self.root, t.model, t.optimizer, t.scheduler, saved)

    def on_train_end(self, state: TrainState) -> None:
        checkpoint.restore_best(self.root, state.trainee.model)


class EarlyStopping(Callback):
    """Stop once `patience` epochs have passed without a better validation score (0: never).

    Decided after every epoch and again when training (re)starts, so a resumed run stops where the
    uninterrupted one would have."""

    def __init__(self, patience: int):
        self.patience = patience

    def _check(self, state: TrainState) -> None:
        if (
            self.patience
            and state.best_epoch
            and state.epoch < state.epochs
            and state.epoch - state.best_epoch >= self.patience
        ):
            state.should_stop = True

    on_train_begin = _check
    on_epoch_end = _check


class MetricLogging(Callback):
    """Sends the loop's figures to metric loggers (main process only): every `every` optimizer
    steps the mean training loss over those steps and the learning rate; after every validation
    pass the epoch's training loss and validation metrics. Whoever opened the loggers closes them:
    a tracker still takes the run's test metrics after training ends."""

    def __init__(self, loggers: Sequence[MetricLogger], every: int = 10):
        self.loggers = list(loggers)
        self.every = every
        self._since: tuple[float, int] = (0.0, 0)  # epoch loss sum and rows at the last line

    def _log(self, state: TrainState, metrics: dict[str, Any]) -> None:
        if state.is_main:  # the other processes read no device value either: no sync for nothing
            for logger in self.loggers:
                logger.log({"epoch": state.epoch, **metrics}, state.step)

    def _loss_line(self, state: TrainState) -> None:
        total, rows = state.loss_sum.item(), state.rows
        before, before_rows = self._since
        if rows > before_rows:
            self._log(state, {"loss": (total - before) / (rows - before_rows), "lr": state.lr})
        self._since = (total, rows)

    def on_train_begin(self, state: TrainState) -> None:
        if state.is_main:
            for logger in self.loggers:
                logger.start(state.step)

    def on_step(self, state: TrainState) -> None:
        if state.is_main and state.step % self.every == 0:
            self._loss_line(state)

    def on_eval(self, state: TrainState, metrics: SplitMetrics) -> None:
        if state.is_main and state.rows:
            self._loss_line(state)  # the epoch's last steps, when fewer than `every`
        self._since = (0.0, 0)
        self._log(state, state.history[-1].to_dict())
