"""One training loop: AdamW, linear warmup and decay, validation and a checkpoint every epoch.

The loop runs through `accelerate`, which owns device placement, mixed precision, gradient
accumulation and (when launched with several processes) data-parallel gradient sync; on a CPU it
is plain fp32 PyTorch. Only trainable tensors are checkpointed: for a PEFT method that is a few
hundred kB, so saving every epoch costs nothing. The weights of the best validation epoch are the
ones kept at the end. Layers that nothing trains below the trainable ones are run once, before
the first epoch, and the loop trains from their cached output (`liftkit.frozen`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from liftkit import checkpoint, frozen
from liftkit.batching import TokenizedSplit, loader
from liftkit.config import TrainConfig
from liftkit.evaluate import evaluate
from liftkit.resources import peak_memory_mb


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    best_epoch: int = 0  # 1-based epoch whose weights the model now holds
    runtime_s: float = 0.0  # wall time of the fit in this process (validation included)
    optimizer_steps: int = 0  # taken by this process in this fit
    processes: int = 1  # data-parallel processes that shared the work
    samples_per_s: float = 0.0
    steps_per_s: float = 0.0
    peak_memory_mb: float = 0.0
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    frozen_layers: int = 0  # bottom layers nothing trains (run in eval mode), see liftkit.frozen
    frozen_cached: bool = False  # whether their output was computed once instead of every step


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


def fit(
    model: torch.nn.Module,
    train_data: TokenizedSplit,
    val_data: TokenizedSplit,
    cfg: TrainConfig,
    tokenizer: Any,
    num_labels: int,
    checkpoint_dir: Path,
    accelerator: Accelerator,
    lr: float,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train `model` in place at peak learning rate `lr`; on return it holds the best epoch's weights."""
    start = time.perf_counter()  # the fit's wall time includes caching the frozen bottom
    model.to(accelerator.device)
    bottom, (train_data, val_data) = frozen.plan(
        model, [train_data, val_data], tokenizer, cfg.cache_frozen, cfg.cache_max_gb, cfg.eval_batch_size, accelerator.device, log,
    )
    result = TrainResult()
    if bottom is not None:
        result.frozen_layers, result.frozen_cached = bottom.depth, bottom.cached
    train_loader = loader(train_data, cfg.batch_size, tokenizer, shuffle=True, seed=cfg.seed)
    sampler = train_loader.batch_sampler
    val_loader = loader(val_data, cfg.eval_batch_size, tokenizer, shuffle=False)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = _optimizer(model, cfg, lr, fused=accelerator.device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    core = accelerator.unwrap_model(model)  # parameter names without wrapper prefixes
    trainable = [p for p in model.parameters() if p.requires_grad]
    lower_is_better = cfg.best_metric == "loss"

    best_score, start_epoch = None, 0
    if resume:
        state = checkpoint.load_last(checkpoint_dir, core, optimizer, scheduler)
        if state is not None:
            start_epoch = result.resumed_from_epoch = state["epoch"]
            result.history, result.best_epoch, best_score = state["history"], state["best_epoch"], state["best_score"]

    samples = steps = 0
    run, run_eval = (model, core) if bottom is None else (frozen.Runner(model, bottom), frozen.Runner(core, bottom))
    with bottom.top_only() if bottom is not None else contextlib.nullcontext():
        for epoch in range(start_epoch, cfg.epochs):
            if result.best_epoch and cfg.early_stopping_patience and epoch - result.best_epoch >= cfg.early_stopping_patience:
                result.stopped_early = True
                break
            # accelerate's loader re-sets its sampler's epoch from its own pass counter, which restarts
            # at 0 after a resume: set both, so the batch order depends on (seed, epoch) alone
            train_loader.set_epoch(epoch)
            sampler.set_epoch(epoch)
            run.train()
            loss_sum, loss_rows = torch.zeros((), device=accelerator.device), 0
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not accelerator.is_local_main_process, leave=False)
            for batch in bar:
                with accelerator.accumulate(model):
                    loss = run(**batch).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        steps += 1
                        if cfg.max_grad_norm:
                            accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                rows = len(batch["labels"])
                loss_sum += loss.detach() * rows
                loss_rows += rows
                samples += rows
                if bar.n % 20 == 0:
                    bar.set_postfix(loss=f"{loss_sum.item() / loss_rows:.4f}")
            totals = accelerator.reduce(torch.stack([loss_sum, torch.tensor(float(loss_rows), device=loss_sum.device)]), "sum")
            train_loss = (totals[0] / totals[1]).item()
            with accelerator.autocast():
                val = evaluate(run_eval, val_loader, accelerator.device, num_labels)
            record = {"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()}}
            result.history.append(record)
            score = val[cfg.best_metric]
            if best_score is None or (score < best_score if lower_is_better else score > best_score):
                best_score, result.best_epoch = score, epoch + 1
                if accelerator.is_main_process:
                    checkpoint.save_best(checkpoint_dir, core)
            if accelerator.is_main_process:
                checkpoint.save_last(
                    checkpoint_dir, core, optimizer, scheduler,
                    {"epoch": epoch + 1, "history": result.history, "best_epoch": result.best_epoch, "best_score": best_score},
                )
            accelerator.wait_for_everyone()
            if accelerator.is_local_main_process:
                tqdm.write(
                    f"epoch {epoch + 1}: train loss {train_loss:.4f} | val loss {val['loss']:.4f} "
                    f"acc {val['accuracy']:.4f} macro-F1 {val['macro_f1']:.4f}"
                )
    result.runtime_s = time.perf_counter() - start
    result.optimizer_steps, result.processes = steps, accelerator.num_processes
    result.samples_per_s = samples * accelerator.num_processes / result.runtime_s if samples else 0.0
    result.steps_per_s = steps / result.runtime_s if steps else 0.0
    result.peak_memory_mb = peak_memory_mb(accelerator.device)
    checkpoint.restore_best(checkpoint_dir, core)
    return result
