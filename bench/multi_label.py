"""Multi-label on go_emotions: liftkit's default `lift run` against the peer a user would write.

The peer is plain HF Trainer + peft, as the reference projects write it: LoRA r=8 on query/value
in every layer, `problem_type="multi_label_classification"` (so the model's own loss is binary
cross-entropy), lr 5e-4, texts cut at 128 tokens, the epoch with the best validation micro-F1
kept, and every label decided at 0.5 on test. liftkit's rows are its default runs (one per seed,
reused from `--output-dir` when finished there, as bench/accuracy.py does): LoRA in the top half,
the frozen bottom cached, each label's threshold tuned on validation. Each system trains in its
own child process, one after the other. Prints a Markdown table (test micro-F1, macro-F1, subset
accuracy, train time) and one JSON line with every figure.

    LIFT_DATA_DIR=../shared/data python bench/multi_label.py --output-dir runs/multi_label
    LIFT_DATA_DIR=../shared/data python bench/multi_label.py --quick     # 2,000 train rows, 1 epoch

Not a test: the full comparison takes over an hour on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import (
    add_peer_options,
    child_row,
    lora_peer,
    mean_std,
    peer_command,
    peer_trainer,
    per_epoch_ratio,
    reused_run,
    runs_line,
)  # bench/common.py, beside this script

HERE = Path(__file__).resolve()


def peer(args: argparse.Namespace) -> dict:
    """HF Trainer + peft LoRA with the multi-label problem type, thresholds 0.5."""
    import numpy as np
    from datasets import Dataset, Features, Sequence, Value
    from sklearn.metrics import f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from liftkit.config import DataConfig
    from liftkit.data import load_splits
    from liftkit.modeling import resolve_model_source

    splits = load_splits(
        DataConfig(dataset="go_emotions", max_train_samples=args.max_train, max_eval_samples=args.max_eval), args.seed
    )
    source = resolve_model_source("all-MiniLM-L6-v2")
    tok = AutoTokenizer.from_pretrained(source)
    features = Features({"text": Value("string"), "labels": Sequence(Value("float32"))})  # BCE wants float targets
    data = {
        name: Dataset.from_dict(
            {"text": getattr(splits, name).texts, "labels": splits.targets(name).tolist()}, features=features
        ).map(lambda b: tok(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"])
        for name in ("train", "validation", "test")
    }
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(splits.label_names), problem_type="multi_label_classification"
    )
    model = lora_peer(model)

    def metrics(pred):
        decided = (1 / (1 + np.exp(-pred.predictions)) >= 0.5).astype(int)
        truth = pred.label_ids.astype(int)
        return {
            "micro_f1": f1_score(truth, decided, average="micro", zero_division=0),
            "macro_f1": f1_score(truth, decided, average="macro", zero_division=0),
            "subset_accuracy": float((decided == truth).all(axis=1).mean()),
        }

    trainer = peer_trainer(
        model,
        tok,
        data,
        metrics,
        workdir=Path(args.output_dir) / "peer-work",
        epochs=args.epochs,
        seed=args.seed,
        best="micro_f1",
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    test = trainer.evaluate(data["test"], metric_key_prefix="test")
    return {
        "system": "peer (HF Trainer + peft LoRA, thresholds 0.5)",
        "seed": args.seed,
        "train_s": round(wall, 1),
        "micro_f1": round(test["test_micro_f1"], 4),
        "macro_f1": round(test["test_macro_f1"], 4),
        "subset_accuracy": round(test["test_subset_accuracy"], 4),
        "train_rows": len(splits.train),
        "epochs": args.epochs,
    }


def liftkit_run(args: argparse.Namespace, seed: int) -> dict:
    """liftkit's default run (nothing set but the dataset, the seed and, with --quick, the subset)."""
    folder = Path(args.output_dir) / f"go_emotions-seed{seed}"
    overrides = {"data.dataset": "go_emotions", "train.seed": seed}
    if args.quick:
        overrides.update(
            {
                "data.max_train_samples": args.max_train,
                "data.max_eval_samples": args.max_eval,
                "train.epochs": args.epochs,
            }
        )
    record = reused_run(folder, overrides)
    s = record.finetuned.scores
    return {
        "system": "liftkit default (LoRA top half, tuned thresholds)",
        "seed": seed,
        "train_s": round(record.train.runtime_s, 1),
        "micro_f1": round(s.micro_f1, 4),
        "macro_f1": round(s.macro_f1, 4),
        "subset_accuracy": round(s.accuracy, 4),
        "train_rows": record.data.rows["train"],
        "epochs": record.train.epochs_run,
        "run": str(folder),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| system | seeds | test micro-F1 | test macro-F1 | subset accuracy | train time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        lines.append(
            f"| {system} | {len(mine)} | {mean_std([r['micro_f1'] for r in mine])} | {mean_std([r['macro_f1'] for r in mine])} "
            f"| {mean_std([r['subset_accuracy'] for r in mine])} | {mean_std([r['train_s'] for r in mine], 0)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output-dir",
        default="runs/multi_label",
        help="liftkit's runs (reused when finished) and the peer's work folder",
    )
    add_peer_options(parser, "2,000 train / 500 eval rows")
    args = parser.parse_args()
    args.max_train, args.max_eval = (2000, 500) if args.quick else (None, None)
    if args.quick:
        args.epochs = 1
    if args.child:
        print(json.dumps(peer(args)))
        return
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [liftkit_run(args, seed) for seed in seeds]
    if not args.no_peer:
        cmd = peer_command(HERE, args, seeds[0])
        rows.append(child_row(cmd, "the peer"))
    for row in rows:
        print(
            f"{row['system']}, seed {row['seed']}: micro-F1 {row['micro_f1']:.4f}, macro-F1 {row['macro_f1']:.4f}, train {row['train_s']:.0f} s"
        )
    print(table(rows))
    ours = [r for r in rows if r["system"].startswith("liftkit")]
    theirs = [r for r in rows if r["system"].startswith("peer")]
    if ours and theirs:
        print(f"train time per epoch, peer / liftkit (seed {seeds[0]}): {per_epoch_ratio(theirs[0], ours[0]):.2f}x")
    print(runs_line("multi_label", started, rows))


if __name__ == "__main__":
    main()
