"""`lift compare`: several methods on the same data and seeds, one table.

Each method and seed runs as its own child process (`liftkit.runner`), so its runtime and peak
memory are its own and a method that crashes cannot take the others down: it shows in the table as
failed, with its error. The table's reference rows are the majority class and the base model with
its untrained head, measured by the runs themselves.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any, Callable

from liftkit import report, run_dir
from liftkit.config import load_config
from liftkit.record import RunRecord
from liftkit.runner import run_child


def compare(
    config: str | Path | None,
    overrides: dict[str, Any],
    methods: list[str],
    seeds: list[int],
    out_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every method for every seed; write comparison.{md,json,csv} into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = {}
    for method in methods:  # validate every config first: a typo fails before hours of training
        for seed in seeds:
            cfg = load_config(config, {**overrides, "method.name": method, "train.seed": seed})
            cfg.output_dir = str(run_dir.member_dir(out_dir, method, seed))
            configs[method, seed] = cfg
    start = time.perf_counter()
    records: dict[str, list[RunRecord]] = {m: [] for m in methods}
    failures: dict[str, str] = {}
    for (method, seed), cfg in configs.items():
        if method in failures:
            continue
        log(f"[{method}, seed {seed}] running (log: {run_dir.log_path(Path(cfg.output_dir))}) ...")
        child = run_child(cfg)
        if child.error is not None:
            failures[method] = str(child.error)
            log(f"[{method}, seed {seed}] failed: {child.error}")
            continue
        records[method].append(child.record)
        s = child.record.finetuned.scores
        log(f"[{method}, seed {seed}] {report.headline(s, child.record.data.task)}")
    table = report.results_table(methods, records, failures)
    first = next((r[0] for r in records.values() if r), None)
    result = {
        "dataset": first.run.dataset if first else overrides.get("data.dataset"),
        "model": first.run.model if first else overrides.get("model.name"),
        "seeds": seeds,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": first.run.device if first else None,
        "wall_time_s": time.perf_counter() - start,
        "table": table,
        "runs": {m: [str(configs[m, s].output_dir) for s in seeds] for m in methods if records[m]},
        "failures": failures,
    }
    run_dir.write_json(out_dir / "comparison.json", result)
    run_dir.write_text(out_dir / "comparison.md", render_markdown(result))
    run_dir.write_text(out_dir / "comparison.csv", _csv(table))
    return result


def _csv(table: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(table)
    return buffer.getvalue()


def render_markdown(result: dict[str, Any]) -> str:
    seeds = ", ".join(map(str, result["seeds"]))
    lines = [
        f"# Comparison: {result['dataset']} · {result['model']}",
        "",
        f"{result['date']} on {result['device']}; seeds {seeds}; wall time {result['wall_time_s'] / 60:.1f} min. "
        "Test split metrics; train/val loss of the best epoch; mean ± std over seeds where there are several.",
        "",
        report.render_markdown_table(result["table"]),
        "",
    ]
    return "\n".join(lines)
