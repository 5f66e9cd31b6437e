"""Accuracy with the defaults: the five reference datasets x seeds, each a plain default `lift run`.

Each (dataset, seed) is a child `lift run` (liftkit.runner) with nothing set but the dataset, the
seed and, for imdb, a stated subset (its full 22,500 training rows at up to 512 tokens would take
hours per run on a 2-core CPU). A folder that already holds a finished run is read, not rerun, so
an interrupted invocation continues where it stopped and seeds can be added later. Prints a
Markdown table (mean ± std over seeds of test accuracy and macro-F1, training time, the issue's
target and whether the mean meets it) and one JSON line with every run's figures.

    LIFT_DATA_DIR=../shared/data python bench/accuracy.py --output-dir runs/accuracy
    LIFT_DATA_DIR=../shared/data python bench/accuracy.py --datasets emotion --seeds 0 --output-dir runs/accuracy

Not a test: the whole table takes hours.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import mean_std, reused_run  # bench/common.py: python puts the script's folder on the path

# rows used where the full split would make one run exceed an hour here
SUBSETS = {"imdb": {"data.max_train_samples": 5000, "data.max_eval_samples": 2000}}
# the acceptance lines of issue 14: (metric, at least) per dataset
TARGETS = {
    "emotion": [("accuracy", 0.93)],
    "rotten_tomatoes": [("accuracy", 0.83)],
    "ag_news": [("macro_f1", 0.92)],
    "imdb": [("accuracy", 0.88)],
    "tweet_eval_emoji": [("macro_f1", 0.30), ("accuracy", 0.35)],
}


def one_run(dataset: str, seed: int, out: Path) -> dict:
    """The figures of the default run of `dataset` with `seed`, trained now unless already there."""
    folder = out / f"{dataset}-seed{seed}"
    record = reused_run(folder, {"data.dataset": dataset, "train.seed": seed, **SUBSETS.get(dataset, {})})
    scores = record.finetuned.scores
    row = {
        "dataset": dataset,
        "seed": seed,
        "accuracy": round(scores.accuracy, 4),
        "macro_f1": round(scores.macro_f1, 4),
        "train_s": round(record.train.runtime_s, 1),
        "train_rows": record.data.rows["train"],
        "test_rows": record.data.rows["test"],
        "method": record.run.method,
        "run": str(folder),
    }
    print(
        f"{dataset} seed {seed}: accuracy {row['accuracy']:.4f}, macro-F1 {row['macro_f1']:.4f}, train {row['train_s']:.0f} s",
        flush=True,
    )
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| dataset | train / test rows | seeds | accuracy | macro-F1 | train time (s) | target | met |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        means = {k: statistics.mean(r[k] for r in mine) for k in ("accuracy", "macro_f1")}
        targets = TARGETS.get(dataset, [])
        met = ("yes" if all(means[metric] >= bar for metric, bar in targets) else "**no**") if targets else "-"
        lines.append(
            f"| {dataset} | {mine[0]['train_rows']:,} / {mine[0]['test_rows']:,} | {len(mine)} "
            f"| {mean_std([r['accuracy'] for r in mine])} | {mean_std([r['macro_f1'] for r in mine])} "
            f"| {mean_std([r['train_s'] for r in mine], 0)} | {', '.join(f'{m} ≥ {b}' for m, b in targets) or '-'} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(TARGETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--output-dir", default="runs/accuracy", help="where the runs go; finished runs there are reused"
    )
    args = parser.parse_args()
    out = Path(args.output_dir)
    started = time.perf_counter()
    rows = [one_run(d, int(s), out) for d in args.datasets.split(",") for s in args.seeds.split(",")]
    print(table(rows))
    print(
        json.dumps(
            {
                "bench": "accuracy",
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "wall_s": round(time.perf_counter() - started),
                "runs": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
