"""Run records -> tables: one run's side-by-side table (terminal) and report.md, and the
comparison table of several methods over seeds.

Pure formatting: every number shown is read from the `RunRecord`s the runs wrote.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

from liftkit.record import RunRecord, SplitMetrics
from liftkit.tasks import task_named

LABELS = {  # how each metric of `record.METRICS` is named in tables
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "macro_precision": "macro precision",
    "macro_recall": "macro recall",
    "weighted_f1": "weighted-F1",
    "f1": "F1 (positive class)",
    "loss": "loss",
    "micro_f1": "micro-F1",
    "samples_f1": "samples-F1",
    "hamming_loss": "Hamming loss",
    "label_ranking_ap": "label-ranking AP",
    "macro_roc_auc": "macro ROC-AUC",
    "spearman": "Spearman",
    "pearson": "Pearson",
    "mse": "MSE",
    "mae": "MAE",
    "r2": "R²",
}
TIMING_ROWS = [
    ("eval runtime (s)", "runtime_s", "{:.1f}"),
    ("eval samples/s", "samples_per_s", "{:.1f}"),
    ("eval steps/s", "steps_per_s", "{:.2f}"),
]


def _score(metrics: SplitMetrics | None, key: str) -> str:
    value = None if metrics is None else getattr(metrics.scores, key)
    return "-" if value is None else f"{value:.4f}"


def metric_label(key: str, task: str) -> str:
    """How tables name a metric of a run of `task`."""
    return task_named(task).accuracy_name if key == "accuracy" else LABELS[key]


def headline(scores: Any, task: str) -> str:
    """The task's two headline scores, as logs show them: "Spearman 0.8412, Pearson 0.8390"."""
    keys = task_named(task).scores[:2]
    return ", ".join(f"{metric_label(key, task)} {getattr(scores, key):.4f}" for key in keys)


def _timing(metrics: SplitMetrics | None, key: str, fmt: str) -> str:
    return "-" if metrics is None or metrics.timing is None else fmt.format(getattr(metrics.timing, key))


def comparison_table(record: RunRecord) -> list[list[str]]:
    """Rows of [metric, majority, base, fine-tuned, delta] on the test split."""
    base, tuned, majority = record.base, record.finetuned, record.majority
    task = task_named(record.data.task)
    table = [
        [
            "test metric",
            task.reference_name,
            "base (untrained head)",
            f"fine-tuned ({record.run.method})",
            "change vs base",
        ]
    ]
    for key in (key for key in task.scores if getattr(tuned.scores, key) is not None):
        both = base is not None and None not in (getattr(tuned.scores, key), getattr(base.scores, key))
        delta = f"{getattr(tuned.scores, key) - getattr(base.scores, key):+.4f}" if both else "-"
        table.append(
            [metric_label(key, task.name), _score(majority, key), _score(base, key), _score(tuned, key), delta]
        )
    for label, key, fmt in TIMING_ROWS:
        table.append([label, _timing(majority, key, fmt), _timing(base, key, fmt), _timing(tuned, key, fmt), "-"])
    return table


def summary_lines(record: RunRecord) -> list[str]:
    p, t = record.parameters, record.train
    lines = [
        f"trainable parameters: {p.trainable_params:,} of {p.total_params:,} ({p.trainable_percent:.2f}%)",
        f"training: {t.epochs_run} epoch(s), best epoch {t.best_epoch}, {t.runtime_s:.1f} s, "
        f"{t.samples_per_s:.1f} samples/s, {t.steps_per_s:.2f} steps/s, peak memory {t.peak_memory_mb:.0f} MB",
    ]
    if t.resumed_from_epoch:
        lines.append(
            f"resumed from epoch {t.resumed_from_epoch}: training time and throughput are those of the resumed part"
        )
    if t.frozen_layers:
        how = "computed once and cached" if t.frozen_cached else "recomputed every step"
        lines.append(f"frozen bottom: embeddings + {t.frozen_layers} layer(s), no dropout, {how}")
    return lines


def render_text(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown_table(table: list[list[str]]) -> str:
    head, *body = table
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def render_markdown(record: RunRecord) -> str:
    run, data, t = record.run, record.data, record.train
    first, second = task_named(data.task).scores[:2]  # the task's headline metrics, per epoch
    out = [
        f"# {run.dataset} · {run.model} · {run.method}",
        "",
        f"Run on {run.date} on {run.device} (torch {run.torch}, liftkit {run.liftkit}), seed {run.seed}.",
        f"Data: {data.source}; rows train {data.rows['train']}, validation {data.rows['validation']}, "
        f"test {data.rows['test']}; {task_named(data.task).target(data.labels)}; task {data.task}"
        + (f" ({data.task_reason})." if data.task_reason else "."),
        *[f"- {note}" for note in data.notes],
        *[f"- **warning:** {warning}" for warning in data.warnings],
        "",
        "## Test split: base vs fine-tuned",
        "",
        render_markdown_table(comparison_table(record)),
        "",
        *[f"- {line}" for line in summary_lines(record)],
        "",
        "## Per epoch",
        "",
        f"| epoch | train loss | val loss | val {metric_label(first, data.task)} | val {metric_label(second, data.task)} |",
        "|---:|---:|---:|---:|---:|",
        *[
            f"| {h.epoch} | {h.train_loss:.4f} | {h.val.scores.loss:.4f} | {getattr(h.val.scores, first):.4f} | {getattr(h.val.scores, second):.4f} |"
            for h in t.history
        ],
        "",
    ]
    return "\n".join(out)


COLUMNS: list[tuple[str, Callable[[RunRecord], float], str]] = [  # (header, getter over a run record, format)
    ("trainable params", lambda r: r.parameters.trainable_params, "{:,.0f}"),
    ("trainable %", lambda r: r.parameters.trainable_percent, "{:.2f}"),
    ("train loss", lambda r: r.train.best.train_loss, "{:.4f}"),
    ("val loss", lambda r: r.train.best.val.scores.loss, "{:.4f}"),
    ("accuracy", lambda r: r.finetuned.scores.accuracy, "{:.4f}"),
    ("macro-F1", lambda r: r.finetuned.scores.macro_f1, "{:.4f}"),
    ("micro-F1", lambda r: r.finetuned.scores.micro_f1, "{:.4f}"),  # multi-label runs only
    ("F1 (positive)", lambda r: r.finetuned.scores.f1, "{:.4f}"),  # two-class runs only
    ("precision", lambda r: r.finetuned.scores.macro_precision, "{:.4f}"),
    ("recall", lambda r: r.finetuned.scores.macro_recall, "{:.4f}"),
    ("Spearman", lambda r: r.finetuned.scores.spearman, "{:.4f}"),  # regression runs only
    ("Pearson", lambda r: r.finetuned.scores.pearson, "{:.4f}"),
    ("MSE", lambda r: r.finetuned.scores.mse, "{:.4f}"),
    ("train time (s)", lambda r: r.train.runtime_s, "{:.1f}"),
    ("eval time (s)", lambda r: r.finetuned.timing.runtime_s, "{:.1f}"),
    ("train samples/s", lambda r: r.train.samples_per_s, "{:.1f}"),
    ("train steps/s", lambda r: r.train.steps_per_s, "{:.2f}"),
    ("peak memory (MB)", lambda r: r.train.peak_memory_mb, "{:.0f}"),
    ("epochs", lambda r: r.train.epochs_run, "{:.0f}"),
]
REFERENCE_COLUMNS = {
    "accuracy": "accuracy",
    "macro-F1": "macro_f1",
    "micro-F1": "micro_f1",
    "precision": "macro_precision",
    "recall": "macro_recall",
    "F1 (positive)": "f1",
    "Spearman": "spearman",
    "Pearson": "pearson",
    "MSE": "mse",
}
# shown where some run has the figure (classification and regression runs share no score)
OPTIONAL_COLUMNS = {
    "accuracy",
    "macro-F1",
    "micro-F1",
    "F1 (positive)",
    "precision",
    "recall",
    "Spearman",
    "Pearson",
    "MSE",
}


def _cell(values: list[float], fmt: str) -> str:
    if not values or None in values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def results_table(
    methods: list[str], records: dict[str, list[RunRecord]], failures: dict[str, str]
) -> list[list[str]]:
    """The comparison table: reference rows (majority class, base model), then one row per method
    (mean ± std over its seeds), or its error."""
    found = [r for rs in records.values() for r in rs]
    columns = [c for c in COLUMNS if c[0] not in OPTIONAL_COLUMNS or any(c[1](r) is not None for r in found)]
    header = ["method"] + [name for name, _, _ in columns]
    rows = [header]
    by_seed: dict[int, dict[str, Any]] = {}  # reference rows: one measurement per seed, not per method
    for record in (r for rs in records.values() for r in rs):
        seen = by_seed.setdefault(record.run.seed, {})
        for key in ("majority", "base"):
            if getattr(record, key) is not None and key not in seen:
                seen[key] = getattr(record, key)
    reference = task_named(found[0].data.task).reference_name if found else "majority class"
    for label, key in ((reference, "majority"), ("base (untrained head)", "base")):
        refs = [seen[key] for seen in by_seed.values() if key in seen]
        row = [label]
        for name, _, fmt in columns:
            metric = REFERENCE_COLUMNS.get(name)
            values = [getattr(r.scores, metric) for r in refs] if metric else []
            row.append(_cell(values, fmt) if values and None not in values else "-")
        rows.append(row)
    for method in methods:
        if method in failures:
            rows.append([method] + [f"failed: {failures[method]}"] + ["-"] * (len(columns) - 1))
            continue
        rows.append([method] + [_cell([get(r) for r in records[method]], fmt) for _, get, fmt in columns])
    return rows
