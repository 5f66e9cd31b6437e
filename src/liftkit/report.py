"""Metrics -> the side-by-side table (terminal) and report.md.

Pure formatting: every number shown is read from the metrics document the run wrote.
"""

from __future__ import annotations

from typing import Any

ROWS = [  # (label, key, format)
    ("accuracy", "accuracy", "{:.4f}"),
    ("macro-F1", "macro_f1", "{:.4f}"),
    ("macro precision", "macro_precision", "{:.4f}"),
    ("macro recall", "macro_recall", "{:.4f}"),
    ("weighted-F1", "weighted_f1", "{:.4f}"),
    ("loss", "loss", "{:.4f}"),
    ("eval runtime (s)", "runtime_s", "{:.1f}"),
    ("eval samples/s", "samples_per_s", "{:.1f}"),
    ("eval steps/s", "steps_per_s", "{:.2f}"),
]


def _cell(metrics: dict[str, Any] | None, key: str, fmt: str) -> str:
    if not metrics or metrics.get(key) is None:
        return "-"
    return fmt.format(metrics[key])


def comparison_table(doc: dict[str, Any]) -> list[list[str]]:
    """Rows of [metric, majority, base, fine-tuned, delta] on the test split."""
    base, tuned, majority = doc.get("base"), doc["finetuned"], doc.get("majority")
    table = [["test metric", "majority class", "base (untrained head)", f"fine-tuned ({doc['run']['method']})", "change vs base"]]
    for label, key, fmt in ROWS:
        delta = "-"
        if base and key in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "loss"):
            delta = f"{tuned[key] - base[key]:+.4f}"
        table.append([label, _cell(majority, key, fmt), _cell(base, key, fmt), _cell(tuned, key, fmt), delta])
    return table


def summary_lines(doc: dict[str, Any]) -> list[str]:
    p, t = doc["parameters"], doc["train"]
    lines = [
        f"trainable parameters: {p['trainable_params']:,} of {p['total_params']:,} ({p['trainable_percent']:.2f}%)",
        f"training: {t['epochs_run']} epoch(s), best epoch {t['best_epoch']}, {t['runtime_s']:.1f} s, "
        f"{t['samples_per_s']:.1f} samples/s, {t['steps_per_s']:.2f} steps/s, peak memory {t['peak_memory_mb']:.0f} MB",
    ]
    if t.get("frozen_layers"):
        how = "computed once and cached" if t["frozen_cached"] else "recomputed every step"
        lines.append(f"frozen bottom: embeddings + {t['frozen_layers']} layer(s), no dropout, {how}")
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


def render_markdown(doc: dict[str, Any]) -> str:
    run, data, t = doc["run"], doc["data"], doc["train"]
    out = [
        f"# {run['dataset']} · {run['model']} · {run['method']}",
        "",
        f"Run on {run['date']} on {run['device']} (torch {run['torch']}, liftkit {run['liftkit']}), seed {run['seed']}.",
        f"Data: {data['source']}; rows train {data['rows']['train']}, validation {data['rows']['validation']}, "
        f"test {data['rows']['test']}; {len(data['labels'])} labels.",
        *[f"- {note}" for note in data["notes"]],
        "",
        "## Test split: base vs fine-tuned",
        "",
        render_markdown_table(comparison_table(doc)),
        "",
        *[f"- {line}" for line in summary_lines(doc)],
        "",
        "## Per epoch",
        "",
        "| epoch | train loss | val loss | val accuracy | val macro-F1 |",
        "|---:|---:|---:|---:|---:|",
        *[
            f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {h['val_accuracy']:.4f} | {h['val_macro_f1']:.4f} |"
            for h in t["history"]
        ],
        "",
    ]
    return "\n".join(out)
