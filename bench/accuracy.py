"""Accuracy with the defaults, against each model's own full fine-tuning: datasets x models x recipes x seeds.

Recipes: `default` is a plain default `lift run` of the model (the embedded MiniLM, or MPNet with
its own defaults, `liftkit.packaged`); `full` is full fine-tuning, each learning rate of
--full-lrs run on seed 0, the one with the best validation score (the run's kept epoch) then run on
every seed: the best of a stated sweep, its choice made on validation, never on test.

Each (dataset, seed) is a child `lift run` (liftkit.runner) with nothing set but the dataset, the
seed and, for imdb, a stated subset (its full 22,500 training rows at up to 512 tokens would take
hours per run on a 2-core CPU). A folder that already holds a finished run is read, not rerun, so
an interrupted invocation continues where it stopped and seeds can be added later. Prints a
Markdown table (mean ± std over seeds of test accuracy and macro-F1, training time, the issue's
target and whether the mean meets it), the same runs as issue 24 lays them out (a column per model
and recipe, each default's distance to its model's own full fine-tuning) and one JSON line with
every run's figures.

    LIFT_DATA_DIR=../shared/data python bench/accuracy.py --output-dir runs/accuracy
    LIFT_DATA_DIR=../shared/data python bench/accuracy.py --datasets emotion --seeds 0 --output-dir runs/accuracy
    LIFT_DATA_DIR=../shared/data python bench/accuracy.py --datasets rotten_tomatoes --models minilm,mpnet \
        --recipes default,full --seeds 0,1,2 --output-dir runs/accuracy

Not a test: the whole table takes hours.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import mean_std, reused_run, runs_line  # bench/common.py: python puts the script's folder on the path

# rows used where the full split would make one run exceed an hour here
SUBSETS = {"imdb": {"data.max_train_samples": 5000, "data.max_eval_samples": 2000}}
# the acceptance lines of issue 14 (the embedded MiniLM's defaults): (metric, at least) per dataset
TARGETS = {
    "emotion": [("accuracy", 0.93)],
    "rotten_tomatoes": [("accuracy", 0.83)],
    "ag_news": [("macro_f1", 0.92)],
    "imdb": [("accuracy", 0.88)],
    "tweet_eval_emoji": [("macro_f1", 0.30), ("accuracy", 0.35)],
}
# issue 24's lines for all-mpnet-base-v2 with its own defaults
MPNET_TARGETS = {
    "emotion": [("accuracy", 0.93)],
    "rotten_tomatoes": [("accuracy", 0.88)],
    "ag_news": [("macro_f1", 0.92)],
    "mrpc": [("accuracy", 0.85)],
    "go_emotions": [("macro_f1", 0.46)],
}
MODELS = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
# the metric issue 24 compares a recipe to its model's ceiling with: test accuracy, unless named here
PRIMARY = {"ag_news": "macro_f1", "tweet_eval_emoji": "macro_f1", "go_emotions": "macro_f1"}


def one_run(dataset: str, seed: int, out: Path, model: str = "minilm", lr: float | None = None) -> dict:
    """The figures of one run of `dataset` with `seed`, trained now unless already there: the
    model's default recipe, or (`lr`) full fine-tuning at that learning rate."""
    recipe = "default" if lr is None else "full"
    overrides = {"data.dataset": dataset, "train.seed": seed, **SUBSETS.get(dataset, {})}
    if model != "minilm":  # the embedded model's runs set no model, as the first invocations wrote them
        overrides["model.name"] = MODELS[model]
    if lr is not None:
        overrides.update({"method.name": "full", "train.learning_rate": lr})
    # the embedded model's default runs keep the folder names of the first invocations, to be reused
    name = (
        f"{dataset}-seed{seed}"
        if (model, recipe) == ("minilm", "default")
        else f"{model}-{recipe}-{dataset}{'' if lr is None else f'-lr{lr:g}'}-seed{seed}"
    )
    folder = out / name
    record = reused_run(folder, overrides)
    scores = record.finetuned.scores
    best = record.train.best
    row = {
        "dataset": dataset,
        "model": model,
        "recipe": recipe,
        "lr": lr,
        "seed": seed,
        "val_score": round(best.val.scores.accuracy if best else float("nan"), 4),
        "accuracy": round(scores.accuracy, 4),
        "macro_f1": round(scores.macro_f1, 4),
        "train_s": round(record.train.runtime_s, 1),
        "train_rows": record.data.rows["train"],
        "test_rows": record.data.rows["test"],
        "method": record.run.method,
        "run": str(folder),
    }
    print(
        f"{dataset} {model} {recipe}{'' if lr is None else f' lr {lr:g}'} seed {seed}: accuracy {row['accuracy']:.4f}, "
        f"macro-F1 {row['macro_f1']:.4f}, train {row['train_s']:.0f} s",
        flush=True,
    )
    return row


def full_runs(dataset: str, seeds: list[int], out: Path, model: str, lrs: list[float]) -> list[dict]:
    """Full fine-tuning: every lr on the first seed, the best on validation on every seed."""
    sweep = [one_run(dataset, seeds[0], out, model, lr) for lr in lrs]
    best = max(sweep, key=lambda r: r["val_score"])
    print(f"{dataset} {model} full: lr {best['lr']:g} kept (validation accuracy {best['val_score']:.4f})", flush=True)
    return [best] + [one_run(dataset, seed, out, model, best["lr"]) for seed in seeds[1:]]


def table(rows: list[dict]) -> str:
    """One line per dataset x model x recipe: mean ± std over seeds, the target where there is one."""
    lines = [
        "| dataset | model | recipe | train / test rows | seeds | accuracy | macro-F1 | train time (s) | target | met |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for key in dict.fromkeys((r["dataset"], r["model"], r["recipe"]) for r in rows):
        dataset, model, recipe = key
        mine = [r for r in rows if (r["dataset"], r["model"], r["recipe"]) == key]
        means = {k: statistics.mean(r[k] for r in mine) for k in ("accuracy", "macro_f1")}
        targets = (TARGETS if model == "minilm" else MPNET_TARGETS).get(dataset, []) if recipe == "default" else []
        met = ("yes" if all(means[metric] >= bar for metric, bar in targets) else "**no**") if targets else "-"
        how = recipe if mine[0]["lr"] is None else f"full, lr {mine[0]['lr']:g}"
        lines.append(
            f"| {dataset} | {model} | {how} | {mine[0]['train_rows']:,} / {mine[0]['test_rows']:,} | {len(mine)} "
            f"| {mean_std([r['accuracy'] for r in mine])} | {mean_std([r['macro_f1'] for r in mine])} "
            f"| {mean_std([r['train_s'] for r in mine], 0)} | {', '.join(f'{m} ≥ {b}' for m, b in targets) or '-'} | {met} |"
        )
    return "\n".join(lines)


def ceiling_table(rows: list[dict]) -> str:
    """Issue 24's shape: a line per dataset, a column per model x recipe (the dataset's metric, mean ±
    std, seeds, train time), and each model's default against its own full fine-tuning in points,
    where both ran: the distance the `within 1.0 point` line is about."""
    columns = [(m, r) for m in MODELS for r in ("default", "full")]
    lines = [
        "| dataset | metric | "
        + " | ".join(f"{m} {r}" for m, r in columns)
        + " | "
        + " | ".join(f"{m} default - full (points)" for m in MODELS)
        + " |",
        "|---|---|" + "---:|" * (len(columns) + len(MODELS)),
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        metric = PRIMARY.get(dataset, "accuracy")
        means, cells = {}, []
        for model, recipe in columns:
            mine = [r for r in rows if (r["dataset"], r["model"], r["recipe"]) == (dataset, model, recipe)]
            if mine:
                means[model, recipe] = statistics.mean(r[metric] for r in mine)
                train_s = statistics.mean(r["train_s"] for r in mine)
                cells.append(f"{mean_std([r[metric] for r in mine])} ({len(mine)}; {train_s:.0f} s)")
            else:
                cells.append("-")
        gaps = [
            f"{100 * (means[m, 'default'] - means[m, 'full']):+.2f}"
            if (m, "default") in means and (m, "full") in means
            else "-"
            for m in MODELS
        ]
        lines.append(f"| {dataset} | {metric} | " + " | ".join(cells + gaps) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(TARGETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="minilm", help=f"of {', '.join(MODELS)}")
    parser.add_argument("--recipes", default="default", help="default (the model's own) and/or full")
    parser.add_argument("--full-lrs", default="3e-5,5e-5,1e-4", help="full fine-tuning's sweep (on the first seed)")
    parser.add_argument(
        "--output-dir", default="runs/accuracy", help="where the runs go; finished runs there are reused"
    )
    args = parser.parse_args()
    out = Path(args.output_dir)
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(x) for x in args.full_lrs.split(",")]
    rows = []
    for dataset in args.datasets.split(","):
        for model in args.models.split(","):
            for recipe in args.recipes.split(","):
                if recipe == "full":
                    rows += full_runs(dataset, seeds, out, model, lrs)
                else:
                    rows += [one_run(dataset, seed, out, model) for seed in seeds]
    print(table(rows))
    print(ceiling_table(rows))
    print(runs_line("accuracy", started, rows))


if __name__ == "__main__":
    main()
