"""Sentence pairs (mrpc) and scores (stsb): liftkit's default runs, cross- and bi-encoded, against
the peer a user would write.

The peer is plain HF Trainer + peft as the reference projects write it: LoRA r=8 on query/value
in every layer, lr 5e-4, 3 epochs, the pair in one sequence (a cross-encoder) cut at 128 tokens,
the epoch with the best validation accuracy (mrpc) or Spearman (stsb) kept; stsb trains a
one-output `problem_type="regression"` head on the raw 0-5 scores (the model's own MSE). liftkit's
rows are its default runs with `data.pair_encoding` set to `cross` and to `bi`, one per seed,
reused from `--output-dir` when finished there (bench/common.py). Each system trains in its own
child process, one after the other. Prints a Markdown table per dataset (test accuracy and
positive-class F1, or Spearman and Pearson; train time) and one JSON line with every figure.

    LIFT_DATA_DIR=../shared/data python bench/pairs.py --output-dir runs/pairs
    LIFT_DATA_DIR=../shared/data python bench/pairs.py --quick      # 600 train rows, 1 epoch

Not a test: the full comparison takes well over an hour on a 2-core CPU.
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
DATASETS = ("mrpc", "stsb")
ENCODINGS = ("cross", "bi")
# what each dataset's table shows: (key in a row, column header)
COLUMNS = {
    "mrpc": (("accuracy", "test accuracy"), ("f1", "test F1")),
    "stsb": (("spearman", "test Spearman"), ("pearson", "test Pearson")),
}


def peer(args: argparse.Namespace) -> dict:
    """HF Trainer + peft LoRA on the pair in one sequence."""
    import numpy as np
    from datasets import Dataset
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from liftkit.config import DataConfig
    from liftkit.data import load_splits
    from liftkit.modeling import resolve_model_source

    regression = args.dataset == "stsb"
    splits = load_splits(
        DataConfig(dataset=args.dataset, max_train_samples=args.max_train, max_eval_samples=args.max_eval), args.seed
    )
    source = resolve_model_source("all-MiniLM-L6-v2")
    tok = AutoTokenizer.from_pretrained(source)
    data = {
        name: Dataset.from_dict(
            {
                "a": getattr(splits, name).texts,
                "b": getattr(splits, name).pairs,
                "labels": [float(y) for y in getattr(splits, name).labels]
                if regression
                else getattr(splits, name).labels,
            }
        ).map(lambda x: tok(x["a"], x["b"], truncation=True, max_length=128), batched=True, remove_columns=["a", "b"])
        for name in ("train", "validation", "test")
    }
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=1 if regression else 2, **({"problem_type": "regression"} if regression else {})
    )
    model = lora_peer(model)

    def metrics(pred):
        if regression:
            predicted = pred.predictions.reshape(-1)
            return {
                "spearman": float(spearmanr(predicted, pred.label_ids).statistic),
                "pearson": float(pearsonr(predicted, pred.label_ids).statistic),
            }
        decided = np.asarray(pred.predictions).argmax(-1)
        return {"accuracy": accuracy_score(pred.label_ids, decided), "f1": f1_score(pred.label_ids, decided)}

    trainer = peer_trainer(
        model,
        tok,
        data,
        metrics,
        workdir=Path(args.output_dir) / "peer-work",
        epochs=args.epochs,
        seed=args.seed,
        best="spearman" if regression else "accuracy",
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    test = trainer.evaluate(data["test"], metric_key_prefix="test")
    keys = [key for key, _ in COLUMNS[args.dataset]]
    return {
        "dataset": args.dataset,
        "system": "peer (HF Trainer + peft LoRA, cross-encoded)",
        "seed": args.seed,
        "train_s": round(wall, 1),
        **{key: round(test[f"test_{key}"], 4) for key in keys},
        "train_rows": len(splits.train),
        "epochs": args.epochs,
    }


def liftkit_run(args: argparse.Namespace, dataset: str, encoding: str, seed: int) -> dict:
    """liftkit's default run with the pair encoding set (and, with --quick, the subset)."""
    folder = Path(args.output_dir) / f"{dataset}-{encoding}-seed{seed}"
    overrides = {"data.dataset": dataset, "data.pair_encoding": encoding, "train.seed": seed}
    if args.quick:
        overrides.update(
            {"data.max_train_samples": args.max_train, "data.max_eval_samples": args.max_eval, "train.epochs": 1}
        )
    record = reused_run(folder, overrides)
    s = record.finetuned.scores
    row = {
        "dataset": dataset,
        "system": f"liftkit default, {encoding}-encoded",
        "seed": seed,
        "train_s": round(record.train.runtime_s, 1),
        **{key: round(getattr(s, key), 4) for key, _ in COLUMNS[dataset]},
        "train_rows": record.data.rows["train"],
        "epochs": record.train.epochs_run,
        "run": str(folder),
    }
    if record.base is not None:  # the untrained head: for a bi-encoder on stsb, the base model's own cosine
        row["base"] = {key: round(getattr(record.base.scores, key), 4) for key, _ in COLUMNS[dataset]}
    return row


def table(dataset: str, rows: list[dict]) -> str:
    (first, first_name), (second, second_name) = COLUMNS[dataset]
    lines = [f"| {dataset} | seeds | {first_name} | {second_name} | train time (s) |", "|---|---:|---:|---:|---:|"]
    mine = [r for r in rows if r["dataset"] == dataset]
    for system in dict.fromkeys(r["system"] for r in mine):
        these = [r for r in mine if r["system"] == system]
        lines.append(
            f"| {system} | {len(these)} | {mean_std([r[first] for r in these])} | {mean_std([r[second] for r in these])} "
            f"| {mean_std([r['train_s'] for r in these], 0)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output-dir", default="runs/pairs", help="liftkit's runs (reused when finished), the peer's work"
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--encodings", default=",".join(ENCODINGS), help="liftkit's pair encodings to run")
    add_peer_options(parser, "600 train / 300 eval rows")
    parser.add_argument("--dataset", default="mrpc", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.max_train, args.max_eval = (600, 300) if args.quick else (None, None)
    if args.quick:
        args.epochs = 1
    if args.child:
        print(json.dumps(peer(args)))
        return
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for dataset in args.datasets.split(","):
        rows += [liftkit_run(args, dataset, e, s) for e in args.encodings.split(",") for s in seeds]
        if not args.no_peer:
            cmd = peer_command(HERE, args, seeds[0], "--dataset", dataset)
            rows.append(child_row(cmd, f"the peer on {dataset}"))
    for row in rows:
        shown = ", ".join(f"{name} {row[key]:.4f}" for key, name in COLUMNS[row["dataset"]])
        print(f"{row['dataset']}, {row['system']}, seed {row['seed']}: {shown}, train {row['train_s']:.0f} s")
    for dataset in args.datasets.split(","):
        print(table(dataset, rows))
        peer_rows = [r for r in rows if r["dataset"] == dataset and r["system"].startswith("peer")]
        for encoding in args.encodings.split(","):
            ours = [
                r for r in rows if r["dataset"] == dataset and r["system"] == f"liftkit default, {encoding}-encoded"
            ]
            if ours and peer_rows:
                ratio = per_epoch_ratio(peer_rows[0], ours[0])
                print(f"{dataset}: train time per epoch, peer / liftkit {encoding} (seed {seeds[0]}): {ratio:.2f}x")
    print(runs_line("pairs", started, rows))


if __name__ == "__main__":
    main()
