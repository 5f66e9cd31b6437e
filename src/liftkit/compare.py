"""`lift compare`: several methods on the same data and seeds, one table.

Each method runs as its own `lift run` process, so its runtime and peak memory are its own (a
process's peak RSS only grows) and a method that crashes cannot take the others down: it shows in
the table as failed, with its error. The table's reference rows are the majority class and the
base model with its untrained head, measured by the runs themselves.
"""

from __future__ import annotations

import csv
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from liftkit import report, run_dir
from liftkit.config import load_config

COLUMNS = [  # (header, getter over a metrics document, format)
    ("trainable params", lambda d: d["parameters"]["trainable_params"], "{:,.0f}"),
    ("trainable %", lambda d: d["parameters"]["trainable_percent"], "{:.2f}"),
    ("train loss", lambda d: _best(d)["train_loss"], "{:.4f}"),
    ("val loss", lambda d: _best(d)["val_loss"], "{:.4f}"),
    ("accuracy", lambda d: d["finetuned"]["accuracy"], "{:.4f}"),
    ("macro-F1", lambda d: d["finetuned"]["macro_f1"], "{:.4f}"),
    ("precision", lambda d: d["finetuned"]["macro_precision"], "{:.4f}"),
    ("recall", lambda d: d["finetuned"]["macro_recall"], "{:.4f}"),
    ("train time (s)", lambda d: d["train"]["runtime_s"], "{:.1f}"),
    ("eval time (s)", lambda d: d["finetuned"]["runtime_s"], "{:.1f}"),
    ("train samples/s", lambda d: d["train"]["samples_per_s"], "{:.1f}"),
    ("train steps/s", lambda d: d["train"]["steps_per_s"], "{:.2f}"),
    ("peak memory (MB)", lambda d: d["train"]["peak_memory_mb"], "{:.0f}"),
    ("epochs", lambda d: d["train"]["epochs_run"], "{:.0f}"),
]
REFERENCE_COLUMNS = {"accuracy": "accuracy", "macro-F1": "macro_f1", "precision": "macro_precision", "recall": "macro_recall"}


def _best(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["train"]["history"][doc["train"]["best_epoch"] - 1]


def _run_one(config_path: Path, log_path: Path) -> str | None:
    """Run one method in a child process; return its one-line error, or None on success."""
    with log_path.open("w") as log:
        proc = subprocess.run([sys.executable, "-m", "liftkit.cli", "run", str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line.split(":")[0]]
    return (errors or lines or [f"exit code {proc.returncode}"])[-1][:300]


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
            cfg.output_dir = str(out_dir / f"{method}-seed{seed}")
            configs[method, seed] = cfg
    start = time.perf_counter()
    docs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    failures: dict[str, str] = {}
    for (method, seed), cfg in configs.items():
        if method in failures:
            continue
        path = out_dir / f"{method}-seed{seed}.yaml"
        run_dir.write_text(path, cfg.to_yaml())
        log(f"[{method}, seed {seed}] running (log: {path.with_suffix('.log')}) ...")
        error = _run_one(path, path.with_suffix(".log"))
        if error:
            failures[method] = error
            log(f"[{method}, seed {seed}] failed: {error}")
            continue
        doc = run_dir.read_json(Path(cfg.output_dir) / "metrics.json")
        docs[method].append(doc)
        log(f"[{method}, seed {seed}] accuracy {doc['finetuned']['accuracy']:.4f}, macro-F1 {doc['finetuned']['macro_f1']:.4f}")
    table = _table(methods, docs, failures)
    first = next((d[0] for d in docs.values() if d), None)
    result = {
        "dataset": first["run"]["dataset"] if first else overrides.get("data.dataset"),
        "model": first["run"]["model"] if first else overrides.get("model.name"),
        "seeds": seeds,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": first["run"]["device"] if first else None,
        "wall_time_s": time.perf_counter() - start,
        "table": table,
        "runs": {m: [str(configs[m, s].output_dir) for s in seeds] for m in methods if docs[m]},
        "failures": failures,
    }
    run_dir.write_json(out_dir / "comparison.json", result)
    run_dir.write_text(out_dir / "comparison.md", render_markdown(result))
    run_dir.write_text(out_dir / "comparison.csv", _csv(table))
    return result


def _table(methods: list[str], docs: dict[str, list[dict[str, Any]]], failures: dict[str, str]) -> list[list[str]]:
    header = ["method"] + [name for name, _, _ in COLUMNS]
    rows = [header]
    by_seed: dict[int, dict[str, Any]] = {}  # reference rows: one measurement per seed, not per method
    for doc in (d for ds in docs.values() for d in ds):
        seen = by_seed.setdefault(doc["run"]["seed"], {})
        for key in ("majority", "base"):
            if doc.get(key) and key not in seen:
                seen[key] = doc[key]
    for label, key in (("majority class", "majority"), ("base (untrained head)", "base")):
        refs = [seen[key] for seen in by_seed.values() if key in seen]
        row = [label]
        for name, _, fmt in COLUMNS:
            metric = REFERENCE_COLUMNS.get(name)
            row.append(_cell([r[metric] for r in refs], fmt) if metric and refs else "-")
        rows.append(row)
    for method in methods:
        if method in failures:
            rows.append([method] + [f"failed: {failures[method]}"] + ["-"] * (len(COLUMNS) - 1))
            continue
        rows.append([method] + [_cell([get(d) for d in docs[method]], fmt) for _, get, fmt in COLUMNS])
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
