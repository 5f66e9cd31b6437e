"""Class weights on skewed data: macro-F1 with `train.class_weights: balanced` against none, same seeds.

Each (setting, seed) is a child `lift run` (liftkit.runner), so every run is measured alone. Prints
one JSON line: per setting, the test accuracy and macro-F1 of each seed, their means and standard
deviations, and the change balanced weights make.

    LIFT_DATA_DIR=../shared/data python bench/class_weights.py                       # tweet_eval_emoji, 10k train rows, seeds 0,1,2
    LIFT_DATA_DIR=../shared/data python bench/class_weights.py --max-train-samples 2000 --seeds 0

Not a test: it takes minutes to hours.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from liftkit.config import load_config
from liftkit.runner import run_child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="tweet_eval_emoji")
    parser.add_argument(
        "--max-train-samples",
        type=int,
        default=10000,
        help="training rows (default 10,000 of 45,000: a full run takes ~15 min here)",
    )
    parser.add_argument("--max-eval-samples", type=int, help="validation and test rows (default: all)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output-dir", help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = Path(args.output_dir or tempfile.mkdtemp(prefix="liftkit-class-weights-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for setting in ("none", "balanced"):
        scores: dict[str, list[float]] = {"accuracy": [], "macro_f1": []}
        for seed in seeds:
            cfg = load_config(
                None,
                {
                    "data.dataset": args.dataset,
                    "data.max_train_samples": args.max_train_samples,
                    "data.max_eval_samples": args.max_eval_samples,
                    "train.class_weights": setting,
                    "train.seed": seed,
                    "evaluate_base": False,
                    "output_dir": str(out / f"{setting}-seed{seed}"),
                },
            )
            child = run_child(cfg)
            if child.error is not None:
                raise SystemExit(f"{setting}, seed {seed}: {child.error}")
            s = child.record.finetuned.scores
            scores["accuracy"].append(round(s.accuracy, 4))
            scores["macro_f1"].append(round(s.macro_f1, 4))
            print(
                f"class_weights={setting} seed {seed}: accuracy {s.accuracy:.4f}, macro-F1 {s.macro_f1:.4f}",
                flush=True,
            )
        results[setting] = scores

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        }

    print(
        json.dumps(
            {
                "bench": "class_weights",
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "dataset": args.dataset,
                "max_train_samples": args.max_train_samples,
                "max_eval_samples": args.max_eval_samples,
                "seeds": seeds,
                "runs": str(out),
                "wall_s": round(time.perf_counter() - started),
                "settings": {
                    k: {"per_seed": v, "accuracy": summary(v["accuracy"]), "macro_f1": summary(v["macro_f1"])}
                    for k, v in results.items()
                },
                "macro_f1_change": round(
                    statistics.mean(results["balanced"]["macro_f1"]) - statistics.mean(results["none"]["macro_f1"]), 4
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
