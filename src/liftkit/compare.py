"""`lift compare`: several methods on the same data and seeds, one table.

Each method and seed runs as its own child process (`liftkit.runner`), so its runtime and peak
memory are its own and a method that crashes cannot take the others down: it shows in the table as
failed, with its error. The table's reference rows are the majority class and the base model with
its untrained head, measured by the runs themselves.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from liftkit import report, run_dir
from liftkit.config import load_config
from liftkit.record import RunRecord
from liftkit.runner import run_child

COLUMNS: list[tuple[str, Callable[[RunRecord], float], str]] = [  # (header, getter over a run record, format)
    ("trainable params", lambda r: r.parameters.trainable_params, "{:,.0f}"),
    ("trainable %", lambda r: r.parameters.trainable_percent, "{:.2f}"),
    ("train loss", lambda r: r.train.best.train_loss, "{:.4f}"),
    ("val loss", lambda r: r.train.best.val.scores.loss, "{:.4f}"),
    ("accuracy", lambda r: r.finetuned.scores.accuracy, "{:.4f}"),
    ("macro-F1", lambda r: r.finetuned.scores.macro_f1, "{:.4f}"),
    ("precision", lambda r: r.finetuned.scores.macro_precision, "{:.4f}"),
    ("recall", lambda r: r.finetuned.scores.macro_recall, "{:.4f}"),
    ("train time (s)", lambda r: r.train.runtime_s, "{:.1f}"),
    ("eval time (s)", lambda r: r.finetuned.timing.runtime_s, "{:.1f}"),
    ("train samples/s", lambda r: r.train.samples_per_s, "{:.1f}"),
    ("train steps/s", lambda r: r.train.steps_per_s, "{:.2f}"),
    ("peak memory (MB)", lambda r: r.train.peak_memory_mb, "{:.0f}"),
    ("epochs", lambda r: r.train.epochs_run, "{:.0f}"),
]
REFERENCE_COLUMNS = {"accuracy": "accuracy", "macro-F1": "macro_f1", "precision": "macro_precision", "recall": "macro_recall"}


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


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
        log(f"[{method}, seed {seed}] accuracy {s.accuracy:.4f}, macro-F1 {s.macro_f1:.4f}")
    table = _table(methods, records, failures)
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


def _table(methods: list[str], records: dict[str, list[RunRecord]], failures: dict[str, str]) -> list[list[str]]:
    header = ["method"] + [name for name, _, _ in COLUMNS]
    rows = [header]
    by_seed: dict[int, dict[str, Any]] = {}  # reference rows: one measurement per seed, not per method
    for record in (r for rs in records.values() for r in rs):
        seen = by_seed.setdefault(record.run.seed, {})
        for key in ("majority", "base"):
            if getattr(record, key) is not None and key not in seen:
                seen[key] = getattr(record, key)
    for label, key in (("majority class", "majority"), ("base (untrained head)", "base")):
        refs = [seen[key] for seen in by_seed.values() if key in seen]
        row = [label]
        for name, _, fmt in COLUMNS:
            metric = REFERENCE_COLUMNS.get(name)
            row.append(_cell([getattr(r.scores, metric) for r in refs], fmt) if metric and refs else "-")
        rows.append(row)
    for method in methods:
        if method in failures:
            rows.append([method] + [f"failed: {failures[method]}"] + ["-"] * (len(COLUMNS) - 1))
            continue
        rows.append([method] + [_cell([get(r) for r in records[method]], fmt) for _, get, fmt in COLUMNS])
    return rows


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
