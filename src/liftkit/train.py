"""One training loop: AdamW, linear warmup and decay, validation every epoch, events for the rest.

The loop runs through `accelerate`, which owns device placement, mixed precision, gradient
accumulation and (when launched with several processes) data-parallel gradient sync; on a CPU it
is plain fp32 PyTorch. Layers that nothing trains below the trainable ones are run once, before
the first epoch, and the loop trains from their cached output (`liftkit.frozen`). Everything else
(progress bar, checkpoints and resuming, keeping the best epoch, early stopping, logging) listens
to the loop's events as a callback (`liftkit.callbacks`), so the loop itself fits on a screen.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from accelerate import Accelerator
from transformers import get_linear_schedule_with_warmup

from liftkit import frozen, losses
from liftkit.batching import Padding, TokenizedSplit, loader
from liftkit.callbacks import Callback, Trainee, TrainState, emit
from liftkit.config import TrainConfig
from liftkit.evaluate import evaluate
from liftkit.record import LOWER_IS_BETTER, EpochRecord, TrainSummary
from liftkit.resources import peak_memory_mb
from liftkit.tasks import task_of


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    precision = cfg.mixed_precision
    if cpu:  # CPUs without fast bf16 train slower and worse in half precision: always fp32 there
        precision = "no"
    elif precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Accelerator(cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum_steps)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float, fused: bool) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and norm weights (1-d tensors), as is standard."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


@dataclass
class _Setup:
    """What the loop iterates over and steps, built once per fit."""

    model: torch.nn.Module  # as prepared by accelerate (possibly wrapped)
    state: TrainState
    train_loader: Any
    sampler: Any  # the train loader's own batch sampler (accelerate may wrap it)
    val_loader: Any
    trainable: list[torch.nn.Parameter]
    labels: list[str]  # class names, from the model config (load_classifier sets them)
    criterion: losses.Criterion  # (logits, targets) -> the training loss train.loss asks for, in the task's form
    best_metric: str  # train.best_metric, or the task's own (auto)


def _setup(
    model: torch.nn.Module,
    train_data: TokenizedSplit,
    val_data: TokenizedSplit,
    padding: Padding,
    cfg: TrainConfig,
    accelerator: Accelerator,
    lr: float,
) -> _Setup:
    train_loader = loader(train_data, cfg.batch_size, padding, shuffle=True, seed=cfg.seed)
    sampler = train_loader.batch_sampler
    val_loader = loader(val_data, cfg.eval_batch_size, padding, shuffle=False)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = _optimizer(model, cfg, lr, fused=accelerator.device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    trainee = Trainee(accelerator.unwrap_model(model), optimizer, scheduler)  # names without wrapper prefixes
    # the schedule spans every process's steps; each process takes its share of the batches
    state = TrainState(
        cfg.epochs, math.ceil(len(train_loader) / cfg.grad_accum_steps), accelerator.is_main_process, trainee
    )
    id2label = trainee.model.config.id2label
    labels = [id2label[i] for i in range(len(id2label))]
    task = task_of(trainee.model)
    criterion = losses.criterion(cfg, labels, train_data.document_targets(), task)  # class weights per text
    best = task.best_metric if cfg.best_metric == "auto" else cfg.best_metric
    trainable = [p for p in model.parameters() if p.requires_grad]
    return _Setup(model, state, train_loader, sampler, val_loader, trainable, labels, criterion, best)


def _step(
    run: Any, batch: dict[str, torch.Tensor], setup: _Setup, accelerator: Accelerator, max_grad_norm: float
) -> torch.Tensor:
    """One micro-batch forward and backward; the optimizer steps when accumulation is complete."""
    with accelerator.accumulate(setup.model):
        labels = batch.pop("labels")  # the model computes no loss of its own: the criterion does
        rows = batch.pop("weights", None)  # a long document's windows share its weight
        loss = setup.criterion(run(**batch).logits, labels, rows)
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm:
            accelerator.clip_grad_norm_(setup.trainable, max_grad_norm)
        setup.state.trainee.optimizer.step()
        setup.state.trainee.scheduler.step()
        setup.state.trainee.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def fit(
    model: torch.nn.Module,
    train_data: TokenizedSplit,
    val_data: TokenizedSplit,
    cfg: TrainConfig,
    accelerator: Accelerator,
    *,
    lr: float,
    padding: Padding,
    callbacks: Sequence[Callback] = (),
    log: Callable[[str], None] = print,
) -> TrainSummary:
    """Train `model` in place at peak learning rate `lr`, telling `callbacks` what happens.

    Which weights the model holds on return is the callbacks' business: `Checkpointer` puts the
    best epoch's back."""
    start = time.perf_counter()  # the fit's wall time includes caching the frozen bottom
    model.to(accelerator.device)
    splits = [train_data, val_data]
    where = (cfg.cache_frozen, cfg.cache_max_gb, cfg.eval_batch_size, accelerator.device)
    bottom, (train_data, val_data) = frozen.plan(model, splits, padding, *where, log)
    setup = _setup(model, train_data, val_data, padding, cfg, accelerator, lr)
    state = setup.state
    runners = (setup.model, state.trainee.model)
    if bottom is not None:  # the model starts from fed hidden states
        runners = tuple(frozen.Runner(m, bottom) for m in runners)
    stopped = False
    emit(callbacks, "on_train_begin", state)
    with bottom.top_only() if bottom is not None else contextlib.nullcontext():
        for epoch in range(state.epoch, cfg.epochs):
            if stopped := state.should_stop:
                break
            _epoch(epoch, *runners, setup, cfg, accelerator, callbacks)
    emit(callbacks, "on_train_end", state)
    return _summary(state, bottom, stopped, time.perf_counter() - start, accelerator)


def _epoch(
    epoch: int,
    run: Any,
    run_eval: Any,
    setup: _Setup,
    cfg: TrainConfig,
    accelerator: Accelerator,
    callbacks: Sequence[Callback],
) -> None:
    """One epoch: the steps over the training batches, then the validation pass and its events."""
    state, device = setup.state, accelerator.device
    # accelerate's loader re-sets its sampler's epoch from its own pass counter, which restarts
    # at 0 after a resume: set both, so the batch order depends on (seed, epoch) alone
    setup.train_loader.set_epoch(epoch)
    setup.sampler.set_epoch(epoch)
    state.epoch, state.loss_sum, state.rows = epoch + 1, torch.zeros((), device=device), 0
    run.train()
    for batch in setup.train_loader:
        rows = len(batch["labels"])
        loss = _step(run, batch, setup, accelerator, cfg.max_grad_norm)
        state.loss_sum += loss * rows
        state.rows, state.samples = state.rows + rows, state.samples + rows
        if accelerator.sync_gradients:
            state.step, state.steps_taken = state.step + 1, state.steps_taken + 1
            state.lr = state.trainee.scheduler.get_last_lr()[0]
            emit(callbacks, "on_step", state)
    rows = torch.tensor(float(state.rows), device=device)
    totals = accelerator.reduce(torch.stack([state.loss_sum, rows]), "sum")
    with accelerator.autocast():
        val = evaluate(run_eval, setup.val_loader, device, setup.labels).metrics
    score = getattr(val.scores, setup.best_metric)
    state.end_epoch(
        EpochRecord(state.epoch, (totals[0] / totals[1]).item(), val), score, setup.best_metric in LOWER_IS_BETTER
    )
    emit(callbacks, "on_eval", state, val)
    emit(callbacks, "on_epoch_end", state)
    accelerator.wait_for_everyone()


def _summary(
    state: TrainState, bottom: frozen.FrozenBottom | None, stopped: bool, runtime: float, accelerator: Accelerator
) -> TrainSummary:
    processes = accelerator.num_processes
    return TrainSummary(
        epochs_run=len(state.history),
        best_epoch=state.best_epoch,
        stopped_early=stopped,
        resumed_from_epoch=state.resumed_from_epoch,
        runtime_s=runtime,
        samples_per_s=state.samples * processes / runtime if state.samples else 0.0,
        optimizer_steps=state.step,
        processes=processes,
        steps_per_s=state.steps_taken / runtime if state.steps_taken else 0.0,
        peak_memory_mb=peak_memory_mb(accelerator.device),
        frozen_layers=bottom.depth if bottom else 0,
        frozen_cached=bool(bottom and bottom.cached),
        history=state.history,
    )
