"""Where a liftkit training step's time goes, lever by lever, on the embedded MiniLM and emotion.

Measures what docs/results.md ("What was measured, kept or dropped") reports: padding computed by
random vs length-bucketed batches, evaluation under no_grad vs inference_mode, a LoRA training
step (forward / backward / optimizer) with LoRA in every layer vs in the top half with the frozen
bottom cached, what dropout costs, and (with --compile) torch.compile on the cached model.
Prints one JSON line. Not a test: about 2 minutes, 4 more with --compile.

    LIFT_DATA_DIR=../shared/data python bench/levers.py [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
import torch

from liftkit import frozen
from liftkit.batching import LengthBucketSampler, Padding, loader, tokenize
from liftkit.config import load_config
from liftkit.data import load_splits
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier, load_tokenizer


def _lora_model(rows: int, train_layers):
    cfg = load_config(None, {"data.max_train_samples": rows, "method.train_layers": train_layers})
    splits = load_splits(cfg.data, 0)
    tok = load_tokenizer(cfg.model)
    model = load_classifier(cfg.model, splits.label_names, tok)
    return METHODS["lora"].apply(model, cfg.method, arch_of(model)), tok, tokenize(splits.train, tok, 128)


def padding() -> dict:
    """Token positions an epoch computes: random batches of 16 vs liftkit's bucketed ones."""
    cfg = load_config(None)
    tok = load_tokenizer(cfg.model)
    lengths = tokenize(load_splits(cfg.data, 0).train, tok, 128).lengths
    order = np.random.default_rng(0).permutation(len(lengths))
    random = sum(16 * lengths[order[i : i + 16]].max() for i in range(0, len(lengths), 16))
    bucketed = sum(len(b) * lengths[b].max() for b in LengthBucketSampler(lengths, 16, shuffle=True))
    real = int(lengths.sum())
    return {
        "real_tokens": real,
        "random_positions": int(random),
        "bucketed_positions": int(bucketed),
        "random_ratio": random / real,
        "bucketed_ratio": bucketed / real,
        "mean_length": float(lengths.mean()),
    }


def evaluation() -> dict:
    model, tok, data = _lora_model(2000, None)
    model.eval()
    batches = [{k: v for k, v in b.items() if k != "labels"} for b in loader(data, 16, Padding.of(tok), shuffle=False)]
    out = {}
    for name, ctx in (("no_grad_s", torch.no_grad), ("inference_mode_s", torch.inference_mode)):
        start = time.perf_counter()
        with ctx():
            for batch in batches:
                model(**batch)
        out[name] = time.perf_counter() - start
    return {"rows": 2000, **out}


def step_breakdown(train_layers, rows: int = 1600) -> dict:
    """Forward, backward and AdamW + clipping time for one epoch of `rows` rows, batch 16."""
    model, tok, data = _lora_model(rows, train_layers)
    start = time.perf_counter()
    bottom, (data,) = frozen.plan(model, [data], Padding.of(tok), True, 4.0, 128, torch.device("cpu"), lambda m: None)
    cache_s = time.perf_counter() - start
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    run = frozen.Runner(model, bottom) if bottom else model
    fwd = bwd = step = 0.0
    with bottom.top_only() if bottom else contextlib.nullcontext():
        run.train()
        start = time.perf_counter()
        for batch in loader(data, 16, Padding.of(tok), shuffle=True):
            a = time.perf_counter()
            loss = run(**batch).loss
            b = time.perf_counter()
            loss.backward()
            c = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad()
            fwd, bwd, step = fwd + b - a, bwd + c - b, step + time.perf_counter() - c
        total = time.perf_counter() - start
    return {
        "train_layers": train_layers,
        "frozen_layers": bottom.depth if bottom else 0,
        "cache_s": cache_s,
        "epoch_s": total,
        "rows_per_s": rows / total,
        "forward_s": fwd,
        "backward_s": bwd,
        "optimizer_s": step,
    }


def dropout_cost(rows: int = 800) -> dict:
    """fwd+bwd time with LoRA in every layer: eval mode, train mode, train mode with dropout p=0."""
    model, tok, data = _lora_model(rows, None)
    batches = list(loader(data, 16, Padding.of(tok), shuffle=True))

    def timed(train: bool) -> float:
        model.train(train)
        start = time.perf_counter()
        for batch in batches:
            model(**batch).loss.backward()
        return time.perf_counter() - start

    out = {"eval_mode_s": timed(False), "train_mode_s": timed(True)}
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    out["train_mode_no_dropout_s"] = timed(True)
    return {"rows": rows, **out}


def compiled(rows: int = 3200) -> dict:
    """Two epochs of the cached top-half LoRA model, eager then torch.compile(dynamic=True)."""
    out = {}
    for mode in ("eager", "compile"):
        model, tok, data = _lora_model(rows, "50%")
        bottom, (data,) = frozen.plan(
            model, [data], Padding.of(tok), True, 4.0, 128, torch.device("cpu"), lambda m: None
        )
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        run = frozen.Runner(model, bottom)
        run = torch.compile(run, dynamic=True) if mode == "compile" else run
        with bottom.top_only():
            run.train()
            for epoch in range(2):
                start = time.perf_counter()
                for batch in loader(data, 16, Padding.of(tok), shuffle=True):
                    run(**batch).loss.backward()
                    opt.step()
                    opt.zero_grad()
                out[f"{mode}_epoch{epoch + 1}_s"] = time.perf_counter() - start
    return {"rows": rows, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about 4 more minutes)")
    args = parser.parse_args()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "threads": torch.get_num_threads(),
        "padding": padding(),
        "evaluation": evaluation(),
        "step_all_layers": step_breakdown(None),
        "step_top_half_cached": step_breakdown("50%"),
        "dropout": dropout_cost(),
    }
    if args.compile:
        result["compile"] = compiled()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
