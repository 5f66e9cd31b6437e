"""What the accuracy benchmarks share: liftkit's default runs trained once and reused, the mean ±
std cell of their tables, the peer's child process and the JSON line they end with. Not a
benchmark itself."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from liftkit import run_dir
from liftkit.config import load_config
from liftkit.record import RunRecord
from liftkit.runner import run_child


def reused_run(folder: Path, overrides: dict[str, Any]) -> RunRecord:
    """The record of the `lift run` that `overrides` describe, in `folder`: read when that folder
    holds it finished, resumed when interrupted, else trained now in a child process. A folder
    holding a run of other settings is refused rather than reported as this one."""
    cfg = load_config(None, {**overrides, "output_dir": str(folder)})
    stored = folder / run_dir.CONFIG
    if stored.is_file() and _settings(yaml.safe_load(stored.read_text())) != _settings(yaml.safe_load(cfg.to_yaml())):
        raise SystemExit(f"{folder} holds a run with other settings than these: pass another --output-dir")
    if (folder / run_dir.MANIFEST).is_file():
        return run_dir.read_record(folder)
    child = run_child(cfg, resume=stored.is_file())
    if child.error is not None:
        raise SystemExit(f"{folder.name}: {child.error}")
    return child.record


def _settings(config: dict) -> dict:
    """A stored config.yaml without where it was written: what makes two runs the same run."""
    return {k: v for k, v in config.items() if k != "output_dir"}


def mean_std(values: list[float], digits: int = 4) -> str:
    """mean ± std over seeds; one seed has no spread to show."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def lora_peer(model: Any) -> Any:
    """The peer's adapter, as the reference projects write it: peft LoRA r=8 on query/value."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]
    )
    return get_peft_model(model, config)


def peer_trainer(
    model: Any, tokenizer: Any, data: dict, metrics: Any, *, workdir: Path, epochs: int, seed: int, best: str
) -> Any:
    """Plain HF Trainer as the peer runs it: lr 5e-4, batch 16, an evaluation per epoch on
    validation, the epoch with the best `best` metric kept, dynamic padding."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    targs = TrainingArguments(
        output_dir=str(workdir),
        learning_rate=5e-4,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=epochs,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model=best,
        seed=seed,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    return Trainer(
        model=model,
        args=targs,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics,
    )


def child_row(cmd: list[str], what: str) -> dict:
    """Run a benchmark's own child process (a peer trains alone in its memory); its last stdout
    line is its JSON row."""
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_peer_options(parser: Any, quick: str) -> None:
    """The options a bench with liftkit's seeded runs and one peer run shares (`quick`: what
    --quick cuts the data to, for its help)."""
    import argparse

    parser.add_argument("--seeds", default="0,1,2", help="liftkit's seeds; the peer trains once, with the first")
    parser.add_argument(
        "--epochs", type=int, default=3, help="the peer's epochs (liftkit's runs keep their default 3)"
    )
    parser.add_argument("--quick", action="store_true", help=f"{quick}, 1 epoch")
    parser.add_argument("--no-peer", action="store_true", help="liftkit's rows only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)


def peer_command(script: Path, args: Any, seed: int, *given: str) -> list[str]:
    """The command that trains the peer in a child process of `script` (`add_peer_options`'
    --child), with the run's epochs, output folder and --quick, and `given` (a dataset)."""
    cmd = [sys.executable, str(script), "--child", *given, "--seed", str(seed), "--epochs", str(args.epochs)]
    return cmd + ["--output-dir", args.output_dir, *(["--quick"] if args.quick else [])]


def per_epoch_ratio(peer: dict, ours: dict) -> float:
    """The peer's training time per epoch over liftkit's: the peer may be given fewer epochs
    (--epochs) than liftkit's default 3."""
    return (peer["train_s"] / peer["epochs"]) / (ours["train_s"] / ours["epochs"])


def runs_line(bench: str, started: float, rows: list[dict]) -> str:
    """The JSON line a benchmark of runs ends with: its name, the date, its wall time (from the
    `time.perf_counter()` value `started`) and every run's row."""
    return json.dumps(
        {
            "bench": bench,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "wall_s": round(time.perf_counter() - started),
            "runs": rows,
        }
    )
