"""The `lift run` recipe: wire data -> model + method -> train -> evaluate -> report -> save.

Each step is a call into a component module; this file only decides their order and what is
written where (through `run_dir`).
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate.utils import set_seed

import liftkit
from liftkit import report, run_dir
from liftkit.batching import loader, tokenize
from liftkit.config import RunConfig
from liftkit.data import load_splits
from liftkit.errors import LiftError
from liftkit.evaluate import evaluate, majority_metrics
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier, load_tokenizer, resolve_model_source
from liftkit.resources import fork_rng, parameter_counts
from liftkit.train import fit, make_accelerator


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]  # the document written to metrics.json


def run(cfg: RunConfig, resume: bool = False, log: Callable[[str], None] = print) -> RunResult:
    """Fine-tune as `cfg` says, evaluate before and after, save the run directory."""
    cfg.validate()
    resolve_model_source(cfg.model.name)  # a bad model path fails before any data is read
    out = run_dir.new_run_dir(cfg.output_dir, cfg.data.dataset, cfg.method.name)
    if not resume and (out / run_dir.MANIFEST).exists():
        raise LiftError(f"{str(out)!r} already holds a finished run: pick another --output-dir, or --resume it")
    cfg.output_dir = str(out)
    run_dir.write_text(out / "config.yaml", cfg.to_yaml())

    splits = load_splits(cfg.data, cfg.train.seed)
    log(f"data: {splits.source} | train {len(splits.train)}, validation {len(splits.validation)}, test {len(splits.test)} | {len(splits.label_names)} labels")
    tokenizer = load_tokenizer(cfg.model)
    set_seed(cfg.train.seed)  # before the head is initialised: same seed, same run
    model = load_classifier(cfg.model, splits.label_names, tokenizer)
    arch = arch_of(model)
    tokens = {name: tokenize(getattr(splits, name), tokenizer, cfg.data.max_length) for name in ("train", "validation", "test")}
    accelerator = make_accelerator(cfg.train)
    device, num_labels = accelerator.device, len(splits.label_names)
    method = METHODS[cfg.method.name]
    with torch.random.fork_rng():  # dry run on a copy: a method that cannot apply fails now, not after evaluation
        method.apply(copy.deepcopy(model), cfg.method, arch)
    if arch.decoder and method.feeds_embeddings:
        tokenizer.padding_side = "left"  # the last position must be a real token (see methods.prompt)
    test_loader = loader(tokens["test"], cfg.train.eval_batch_size, tokenizer, shuffle=False)

    base = None
    if cfg.evaluate_base:
        log("evaluating the base model (untrained head) on test ...")
        model.to(device)
        # iterating a DataLoader draws from the global RNG: fork it, so that evaluating the base
        # or not leaves the adapter's initialisation and the dropout masks unchanged
        with accelerator.autocast(), fork_rng(device):
            base = evaluate(model, test_loader, device, num_labels)
    model = method.apply(model, cfg.method, arch)
    params = parameter_counts(model)
    log(f"method {cfg.method.name} (lr {cfg.learning_rate:g}): training {params['trainable_params']:,} of {params['total_params']:,} parameters ({params['trainable_percent']:.2f}%)")

    trained = fit(
        model, tokens["train"], tokens["validation"], cfg.train, tokenizer, num_labels,
        run_dir.checkpoint_dir(out), accelerator, lr=cfg.learning_rate, resume=resume, log=log,
    )
    model = accelerator.unwrap_model(model)
    log(f"evaluating the fine-tuned model (epoch {trained.best_epoch}) on test ...")
    with accelerator.autocast():
        tuned = evaluate(model, test_loader, device, num_labels)

    doc = {
        "run": {
            "dataset": cfg.data.dataset, "model": cfg.model.name, "method": cfg.method.name,
            "seed": cfg.train.seed, "learning_rate": cfg.learning_rate, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "device": _device_name(device), "torch": torch.__version__, "liftkit": liftkit.__version__,
        },
        "data": splits.summary(),
        "parameters": params,
        "majority": majority_metrics(tokens["train"].labels, tokens["test"].labels, num_labels),
        "base": base,
        "finetuned": tuned,
        "train": {
            "epochs_run": len(trained.history), "best_epoch": trained.best_epoch,
            "stopped_early": trained.stopped_early, "resumed_from_epoch": trained.resumed_from_epoch,
            "runtime_s": trained.runtime_s, "samples_per_s": trained.samples_per_s,
            "optimizer_steps": trained.optimizer_steps, "processes": trained.processes,
            "steps_per_s": trained.steps_per_s, "peak_memory_mb": trained.peak_memory_mb,
            "frozen_layers": trained.frozen_layers, "frozen_cached": trained.frozen_cached,
            "history": trained.history,
        },
    }
    if accelerator.is_main_process:
        manifest = {
            "liftkit": liftkit.__version__, "method": cfg.method.name, "base_model": cfg.model.name,
            "model_type": arch.model_type, "labels": splits.label_names, "max_length": cfg.data.max_length,
            "padding_side": tokenizer.padding_side,  # tokenizers do not save it; decoders + prompt pad left
            "trust_remote_code": cfg.model.trust_remote_code, "revision": cfg.model.revision,
        }
        run_dir.save_model(out, lambda folder: method.save(model, folder), tokenizer, manifest)
        run_dir.write_json(out / "metrics.json", doc)
        run_dir.write_text(out / "report.md", report.render_markdown(doc))
    return RunResult(out, doc)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
