"""Training speed: plain HF Trainer + peft (the peer, as the reference projects write it) vs liftkit.

Both fine-tune the same model with LoRA r=8 on query/value on the same data, epochs and seed,
each in its own child process (so each peak RSS is its own), back to back in one invocation,
because absolute times on a shared machine drift. liftkit runs twice: with its defaults (where
they differ from the peer: lr 2e-3 instead of 5e-4, BERT's pooler trained with the classifier,
LoRA in the top half of the layers with the frozen bottom half cached), and with LoRA in every
layer (`train_layers: null`, nothing to cache), which prices the default's accuracy trade-off.
Prints one JSON line: per system wall time, samples/s, tokens/s, peak RSS, test accuracy and
macro-F1, the speed ratios, and liftkit's achieved FLOP/s (matmul work it executed / wall time)
as a fraction of this machine's measured matmul peak in that precision (fp32 on the CPU, bf16 on a GPU).

    python bench/train_speed.py --quick      # a subset, under 3 minutes
    python bench/train_speed.py              # full emotion, 3 epochs

Not a test: it takes minutes to tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _splits(dataset: str, max_train: int | None, max_eval: int | None, seed: int):
    from liftkit.config import DataConfig
    from liftkit.data import load_splits

    return load_splits(DataConfig(dataset=dataset, max_train_samples=max_train, max_eval_samples=max_eval), seed)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peer(args: argparse.Namespace) -> dict:
    """HF Trainer + peft LoRA r=8 on query/value, DataCollatorWithPadding, as the reference code does."""
    import numpy as np
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from liftkit.modeling import resolve_model_source

    splits = _splits(args.dataset, args.max_train, args.max_eval, args.seed)
    source = resolve_model_source(args.model)
    tok = AutoTokenizer.from_pretrained(source)
    data = {
        name: Dataset.from_dict({"text": s.texts, "label": s.labels}).map(
            lambda b: tok(b["text"], truncation=True, max_length=128), batched=True
        )
        for name, s in (("train", splits.train), ("validation", splits.validation), ("test", splits.test))
    }
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(splits.label_names))
    model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]
        ),
    )

    def metrics(pred):
        y = pred.predictions.argmax(-1)
        return {
            "accuracy": accuracy_score(pred.label_ids, y),
            "macro_f1": f1_score(pred.label_ids, y, average="macro"),
        }

    targs = TrainingArguments(
        output_dir=str(Path(args.workdir) / "peer"),
        learning_rate=args.peer_lr,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=args.epochs,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        seed=args.seed,
        report_to=[],
        disable_tqdm=True,
        **_peer_device(),
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=metrics,
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    test = trainer.evaluate(data["test"], metric_key_prefix="test")
    tokens = int(np.sum([len(x) for x in data["train"]["input_ids"]])) * args.epochs
    return {
        "train_wall_s": wall,
        "samples_per_s": len(splits.train) * args.epochs / wall,
        "tokens_per_s": tokens / wall,
        "peak_rss_mb": _peak_rss_mb(),
        "test_accuracy": test["test_accuracy"],
        "test_macro_f1": test["test_macro_f1"],
        "learning_rate": args.peer_lr,
    }


def liftkit_run(args: argparse.Namespace) -> dict:
    import numpy as np

    from liftkit.config import load_config
    from liftkit.pipeline import run

    overrides = {
        "data.dataset": args.dataset,
        "data.max_train_samples": args.max_train,
        "data.max_eval_samples": args.max_eval,
        "model.name": args.model,
        "train.epochs": args.epochs,
        "train.seed": args.seed,
        "output_dir": str(
            Path(args.workdir) / ("liftkit" if args.train_layers is None else f"liftkit-{args.train_layers}")
        ),
        "evaluate_base": False,
    }
    if args.train_layers is not None:  # "all": LoRA in every layer, nothing frozen to cache
        overrides["method.train_layers"] = None if args.train_layers == "all" else args.train_layers
    cfg = load_config(None, overrides)
    doc = run(cfg, log=lambda m: None).metrics
    t = doc["train"]
    splits = _splits(args.dataset, args.max_train, args.max_eval, args.seed)
    from liftkit.modeling import load_tokenizer

    tok = load_tokenizer(cfg.model)

    def count(texts: list[str]) -> int:
        return int(np.sum([len(x) for x in tok(texts, truncation=True, max_length=128)["input_ids"]]))

    train_tokens, val_tokens = count(splits.train.texts), count(splits.validation.texts)
    return {
        "train_wall_s": t["runtime_s"],
        "samples_per_s": t["samples_per_s"],
        "tokens_per_s": train_tokens * args.epochs / t["runtime_s"],
        "peak_rss_mb": _peak_rss_mb(),
        "test_accuracy": doc["finetuned"]["accuracy"],
        "test_macro_f1": doc["finetuned"]["macro_f1"],
        "learning_rate": cfg.learning_rate,
        "trainable_params": doc["parameters"]["trainable_params"],
        "train_layers": cfg.method.train_layers,
        "frozen_layers": t["frozen_layers"],
        "frozen_cached": t["frozen_cached"],
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
    }


def _peer_device() -> dict:
    """The peer trains where liftkit does, in the same precision: the CPU in fp32, else the GPU
    with bf16 (fp16 where bf16 is missing), as liftkit's `mixed_precision: auto` picks."""
    import torch

    if not torch.cuda.is_available():
        return {"use_cpu": True}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def matmul_peak_gflops(repeats: int = 10) -> float:
    """The machine's matmul throughput in liftkit's training precision (fp32 on the CPU, bf16 or
    fp16 on a GPU, as `_peer_device` picks): the ceiling any training run can reach."""
    import torch

    cuda = torch.cuda.is_available()
    half = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    size, where = (8192, {"device": "cuda", "dtype": half}) if cuda else (2048, {})
    a, b = torch.randn(size, size, **where), torch.randn(size, size, **where)
    torch.mm(a, b)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    if cuda:
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def _one_gpu() -> dict[str, str]:
    """Each child sees one GPU: on several, HF Trainer would spread the peer over all of them
    (DataParallel) while liftkit trains on one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {"CUDA_VISIBLE_DEVICES": visible.split(",")[0] if visible else "0"}


def _device_name() -> str:
    import torch

    return (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} CPUs"
    )


def layer_weights(model_name: str) -> tuple[float, int]:
    """Non-embedding matrix weights per transformer layer, and the number of layers."""
    from transformers import AutoModel

    from liftkit.modeling import resolve_model_source, transformer_layers

    model = AutoModel.from_pretrained(resolve_model_source(model_name))
    layers = transformer_layers(model)
    n = sum(p.numel() for p in layers.parameters() if p.ndim >= 2)
    return n / len(layers), len(layers)


def executed_flops(run: dict, epochs: int, model_name: str) -> float:
    """Matmul FLOPs liftkit's fit actually executed (2 per weight per token forward, 2 more backward
    to the inputs; LoRA's own weight gradients are negligible): a frozen bottom of k layers costs
    one forward over train + validation, the top trains every epoch and validates every epoch."""
    per_layer, layers = layer_weights(model_name)
    k = run["frozen_layers"]
    top, bottom = (layers - k) * per_layer, k * per_layer
    train, val = run["train_tokens"], run["val_tokens"]
    bottom_passes = 1 if run["frozen_cached"] else epochs  # recomputed bottoms run every epoch
    return epochs * (train * 4 * top + val * 2 * top) + bottom_passes * (train + val) * 2 * bottom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 train / 500 eval rows, 1 epoch")
    parser.add_argument("--dataset", default="emotion")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-lr", type=float, default=5e-4, help="the reference projects' LoRA learning rate")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-eval", type=int, default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--train-layers", default=None, help=argparse.SUPPRESS
    )  # liftkit child: override method.train_layers
    parser.add_argument("--child", choices=["peer", "liftkit"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps((peer if args.child == "peer" else liftkit_run)(args)))
        return
    if args.quick:
        args.max_train, args.max_eval, args.epochs = args.max_train or 1000, args.max_eval or 500, 1
    import tempfile

    args.workdir = args.workdir or tempfile.mkdtemp(prefix="liftkit-bench-")
    results = {}
    # liftkit with its defaults (LoRA in the top half, frozen bottom cached), then with LoRA in
    # every layer (nothing to cache): the second prices the default's accuracy trade-off
    for system, child, extra in (
        ("peer", "peer", []),
        ("liftkit", "liftkit", []),
        ("liftkit_all_layers", "liftkit", ["--train-layers", "all"]),
    ):
        cmd = [
            sys.executable,
            str(HERE),
            "--child",
            child,
            "--dataset",
            args.dataset,
            "--model",
            args.model,
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "--peer-lr",
            str(args.peer_lr),
            "--workdir",
            args.workdir,
            *extra,
        ]
        cmd += ["--max-train", str(args.max_train)] if args.max_train else []
        cmd += ["--max-eval", str(args.max_eval)] if args.max_eval else []
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **_one_gpu()}
        )
        if proc.returncode != 0:
            sys.exit(f"{system} failed:\n{proc.stderr[-3000:]}")
        results[system] = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = matmul_peak_gflops()
    achieved = executed_flops(results["liftkit"], args.epochs, args.model) / results["liftkit"]["train_wall_s"] / 1e9
    print(
        json.dumps(
            {
                "mode": "quick" if args.quick else "full",
                "device": _device_name(),
                "dataset": args.dataset,
                "model": args.model,
                "epochs": args.epochs,
                "train_rows": args.max_train or "all",
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                **results,
                "speedup_wall": results["peer"]["train_wall_s"] / results["liftkit"]["train_wall_s"],
                "speedup_wall_all_layers": results["peer"]["train_wall_s"]
                / results["liftkit_all_layers"]["train_wall_s"],
                "liftkit_gflops": achieved,
                "matmul_peak_gflops": peak,
                "fraction_of_peak": achieved / peak,
            }
        )
    )


if __name__ == "__main__":
    main()
