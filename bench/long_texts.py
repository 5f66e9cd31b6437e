"""Long reviews: windows (`data.long_texts: chunk`) against truncation, on imdb.

Three default `lift run`s on the same imdb subsets (5,000 train / 2,000 validation / 2,000 test
rows, as bench/accuracy.py uses): `max_length 128` in overlapping windows pooled per review,
`max_length auto` (the 99th percentile of the training reviews, capped at the model's 512)
truncated, and `max_length 128` truncated. For each: test accuracy overall and on the reviews
longer than 512 tokens (where truncation loses text even at the model's limit), train time, and
the time `liftkit.load(run).predict` takes over the test reviews. liftkit's runs are reused from
`--output-dir` when finished there (bench/common.py). Prints a Markdown table and one JSON line.

    LIFT_DATA_DIR=../shared/data python bench/long_texts.py --output-dir runs/long_texts
    LIFT_DATA_DIR=../shared/data python bench/long_texts.py --seeds 0 --quick   # 500 / 200 rows, 1 epoch

Not a test: the full comparison takes hours on a 2-core CPU (the 512-token run alone, ~1 hour a seed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import mean_std, reused_run, runs_line  # bench/common.py, beside this script

SETTINGS = {  # key -> (what the table calls it, the run's overrides)
    "chunk128": ("128-token windows, mean-pooled", {"data.max_length": 128, "data.long_texts": "chunk"}),
    "auto": ("truncated at auto (the model's 512)", {"data.max_length": "auto"}),
    "trunc128": ("truncated at 128", {"data.max_length": 128}),
}
LONG = 512  # a review longer than this many tokens loses text under any truncation


def one(args: argparse.Namespace, key: str, seed: int) -> dict:
    """One setting's run (trained unless finished) and what it measures on test."""
    import numpy as np

    import liftkit
    from liftkit import run_dir
    from liftkit.config import load_config
    from liftkit.data import load_splits
    from liftkit.modeling import load_tokenizer

    name, overrides = SETTINGS[key]
    folder = Path(args.output_dir) / f"imdb-{key}-seed{seed}"
    rows = {"data.max_train_samples": 500, "data.max_eval_samples": 200, "train.epochs": 1} if args.quick else {}
    subsets = {"data.max_train_samples": 5000, "data.max_eval_samples": 2000}
    record = reused_run(folder, {"data.dataset": "imdb", "train.seed": seed, **subsets, **rows, **overrides})
    cfg = load_config(folder / "config.yaml")
    test = load_splits(cfg.data, cfg.train.seed).test
    tokenizer = load_tokenizer(cfg.model)
    lengths = np.array([len(ids) for ids in tokenizer(test.texts, truncation=False)["input_ids"]])
    predictor = liftkit.load(folder)
    start = time.perf_counter()
    probs = predictor.predict_proba(test.texts)
    predict_s = time.perf_counter() - start
    right = probs.argmax(-1) == np.asarray(test.labels)
    stored = run_dir.read_predictions(folder)["finetuned"]  # what the run measured, for the same rows
    assert np.abs(stored - probs).max() < 1e-3, "the reloaded model disagrees with the run's own test pass"
    return {
        "setting": name,
        "seed": seed,
        "accuracy": round(float(right.mean()), 4),
        "accuracy_long": round(float(right[lengths > LONG].mean()), 4),
        "long_reviews": int((lengths > LONG).sum()),
        "test_rows": len(test),
        "train_s": round(record.train.runtime_s, 1),
        "predict_s": round(predict_s, 1),
        "max_length": run_dir.read_manifest(folder).max_length,
        "run": str(folder),
    }


def table(rows: list[dict]) -> str:
    lines = [
        f"| setting | max length | seeds | test accuracy | accuracy on reviews > {LONG} tokens | train time (s) | predict time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == name]
        lines.append(
            f"| {name} | {mine[0]['max_length']} | {len(mine)} | {mean_std([r['accuracy'] for r in mine])} "
            f"| {mean_std([r['accuracy_long'] for r in mine])} ({mine[0]['long_reviews']} reviews) "
            f"| {mean_std([r['train_s'] for r in mine], 0)} | {mean_std([r['predict_s'] for r in mine], 1)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="runs/long_texts", help="the runs (reused when finished)")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"which of {', '.join(SETTINGS)}")
    parser.add_argument("--quick", action="store_true", help="500 train / 200 eval rows, 1 epoch")
    args = parser.parse_args()
    started = time.perf_counter()
    keys = [k for k in SETTINGS if k in args.settings.split(",")]
    rows = [one(args, key, int(seed)) for seed in args.seeds.split(",") for key in keys]
    for row in rows:
        print(
            f"{row['setting']}, seed {row['seed']}: accuracy {row['accuracy']:.4f}, on long reviews "
            f"{row['accuracy_long']:.4f}, train {row['train_s']:.0f} s, predict {row['predict_s']:.1f} s"
        )
    print(table(rows))
    print(runs_line("long_texts", started, rows))


if __name__ == "__main__":
    main()
