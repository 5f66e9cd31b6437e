"""The README.md of a run folder or an export: a model card built from the run's own record.

Every figure comes from metrics.json (and, for an export, from what the export measured), so
the card never says more than the run showed. The front matter follows the Hugging Face hub's
model-card format (license, base_model, pipeline_tag, datasets, metrics, model-index), so a
folder pushed to the hub is described and its results are indexed.
"""

from __future__ import annotations

from typing import Any

import yaml

from liftkit import packaged
from liftkit.config import is_hub_id
from liftkit.record import RunRecord
from liftkit.report import TIMING_ROWS, comparison_table, metric_label, render_markdown_table, summary_lines
from liftkit.run_dir import Manifest
from liftkit.tasks import task_named


def model_card(record: RunRecord, manifest: Manifest, export: dict[str, Any] | None = None) -> str:
    """The card of a run folder, or (with `export`, the export.json being written) of its export."""
    sections = [
        _front_matter(record, manifest, export),
        _title(record, manifest, export),
        _results(record, export),
        _training(record, manifest),
        _labels(manifest.labels),
        _usage(manifest, export),
    ]
    return "\n".join(sections)


def _library(manifest: Manifest, export: dict[str, Any] | None) -> str:
    if export is not None:
        return "transformers" if export["format"] == "hf" else "onnx"
    return "peft" if "adapter_config.json" in manifest.files else "liftkit"


def _front_matter(record: RunRecord, manifest: Manifest, export: dict[str, Any] | None) -> str:
    from liftkit.data import REGISTRY

    scores = record.finetuned.scores
    dataset = record.run.dataset
    meta: dict[str, Any] = {}
    base = packaged.find(manifest.base_model)
    if base is not None:  # other models: whatever their own card says
        meta["license"] = base.license
    if is_hub_id(manifest.base_model):
        meta["base_model"] = manifest.base_model
    meta["library_name"] = _library(manifest, export)
    meta["pipeline_tag"] = "text-classification"
    meta["tags"] = ["liftkit", manifest.method, "text-classification"] + ([export["format"]] if export else [])
    hub_dataset = REGISTRY[dataset][0] if dataset in REGISTRY else dataset if is_hub_id(dataset) else None
    if hub_dataset:
        meta["datasets"] = [hub_dataset]
    meta["metrics"] = sorted({INDEX_METRICS[key][0] for key in INDEX_METRICS if getattr(scores, key) is not None})
    meta["model-index"] = [
        {
            "name": f"{dataset}-{manifest.method}",
            "results": [
                {
                    "task": {"type": "text-classification", "name": "Text Classification"},
                    "dataset": {"name": dataset, "type": hub_dataset or dataset, "split": "test"},
                    "metrics": _index_metrics(scores),
                }
            ],
        }
    ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


# how the hub's model-index names liftkit's scores: key -> (type, name, args)
INDEX_METRICS = {
    "accuracy": ("accuracy", "Accuracy", None),
    "macro_f1": ("f1", "Macro F1", {"average": "macro"}),
    "micro_f1": ("f1", "Micro F1", {"average": "micro"}),
    "spearman": ("spearmanr", "Spearman", None),
    "pearson": ("pearsonr", "Pearson", None),
    "mse": ("mse", "MSE", None),
}


def _index_metrics(scores: Any) -> list[dict[str, Any]]:
    """The test scores the run has, as the hub's model-index lists them."""
    out = []
    for key, (kind, name, args) in INDEX_METRICS.items():
        value = getattr(scores, key)
        if value is not None:
            out.append({"type": kind, "value": round(value, 4), "name": name, **({"args": args} if args else {})})
    return out


def _title(record: RunRecord, manifest: Manifest, export: dict[str, Any] | None) -> str:
    p, run = record.parameters, record.run
    what = f"{run.dataset} classifier: {manifest.base_model} + {manifest.method}"
    lines = [f"# {what}", ""]
    if export:
        quant = f", {export['quantize']} quantized" if export.get("quantize") else ""
        lines.append(
            f"An export ({export['format']}{quant}) of a [liftkit](https://github.com/liftkit/liftkit) run: "
            f"{_export_kind(export)}. Made {export['created']} by liftkit {export['liftkit']}."
        )
    else:
        lines.append(
            f"Fine-tuned with [liftkit](https://github.com/liftkit/liftkit) {run.liftkit} on {run.date}: the "
            f"{manifest.method} method trained {p.trainable_params:,} of {p.total_params:,} parameters "
            f"({p.trainable_percent:.2f}%)."
        )
    return "\n".join(lines) + "\n"


def _export_kind(export: dict[str, Any]) -> str:
    if export["format"] == "hf":
        return "a standalone transformers model (adapters merged into the weights) that needs neither peft nor liftkit"
    return "an ONNX graph (dynamic batch and sequence axes) that onnxruntime runs without torch"


def _results(record: RunRecord, export: dict[str, Any] | None) -> str:
    rows = record.data.rows
    lines = [
        f"## Results (test split, {rows['test']} rows)",
        "",
        render_markdown_table(comparison_table(record)[: -len(TIMING_ROWS)]),  # the scores, not the timings
        "",
    ]
    if export:
        parity = export["parity"]
        lines += [
            f"### This export against the run's model ({parity['rows']} test rows{', ' + parity['sample'] if parity.get('sample') else ''})",
            "",
            "| | the run's model | this export |",
            "|---|---:|---:|",
            *[
                f"| {metric_label(key, record.data.task)} | {value:.4f} | {parity['export'][key]:.4f} |"
                for key, value in parity["run"].items()
            ],
            "",
            f"max |Δ logit| {parity['max_abs_logit_diff']:.2e}, max |Δ probability| {parity['max_abs_prob_diff']:.2e}, "
            f"same answer on {parity.get('decision_agreement', parity.get('argmax_agreement', 0.0)) * 100:.2f}% of rows; model file {export['model_size_bytes'] / 1e6:.1f} MB.",
            *[f"\n**Warning:** {w}" for w in export.get("warnings", [])],
            "",
        ]
    return "\n".join(lines)


def _training(record: RunRecord, manifest: Manifest) -> str:
    run, data = record.run, record.data
    base = packaged.find(manifest.base_model)
    note = [f"- {base.card_note}"] if base is not None and base.card_note else []
    options = ", ".join(f"{k}={v}" for k, v in manifest.method_options.items() if v is not None) or "defaults"
    lines = [
        "## Training",
        "",
        f"- base model: `{manifest.base_model}` ({manifest.model_type})",
        *note,
        f"- method: {manifest.method} ({options}), learning rate {run.learning_rate:g}, seed {run.seed}",
        f"- data: {run.dataset} ({data.source}); rows train {data.rows['train']}, validation {data.rows['validation']}, test {data.rows['test']}; max length {manifest.max_length} tokens",
        *[f"- {note}" for note in data.notes],
        *[f"- {line}" for line in summary_lines(record)],
        f"- on {run.device}; torch {run.torch}, transformers {run.transformers}, peft {run.peft}, liftkit {run.liftkit}",
        "",
    ]
    return "\n".join(lines)


PAIR = ("A man is playing a guitar.", "Someone plays the guitar.")  # the usage examples' sentence pair


def _pipeline_call(manifest: Manifest) -> str:
    """The model card's call of a plain transformers pipeline on one example input."""
    if manifest.input_kind != "pair":
        return 'classify("i feel wonderful today", truncation=True)  # truncation: cut where training did'
    if manifest.pair_separator is not None:  # a decoder reads the pair joined, as it trained
        return f"classify({PAIR[0]!r} + {manifest.pair_separator!r} + {PAIR[1]!r}, truncation=True)  # a sentence pair"
    return f'classify({{"text": {PAIR[0]!r}, "text_pair": {PAIR[1]!r}}}, truncation=True)  # a sentence pair'


def _onnx_inputs(manifest: Manifest) -> list[str]:
    """The onnxruntime example's lines from one example input to `ids`, `mask` and `types`."""
    if manifest.pair_encoding == "bi":  # two rows, one per text, padded alike
        return [
            'tokenizer.enable_padding(pad_id=info["pad_id"])',
            f"encodings = tokenizer.encode_batch([{PAIR[0]!r}, {PAIR[1]!r}])  # a sentence pair: one row per text",
            "ids, mask = (np.array([getattr(e, k) for e in encodings], dtype=np.int64) for k in ('ids', 'attention_mask'))",
            "types = np.zeros_like(ids)",
        ]
    if manifest.input_kind == "pair":
        call = (
            f"tokenizer.encode({PAIR[0]!r} + {manifest.pair_separator!r} + {PAIR[1]!r})"
            if manifest.pair_separator is not None
            else f"tokenizer.encode({PAIR[0]!r}, {PAIR[1]!r})"
        )
        return [
            f"encoding = {call}  # a sentence pair",
            "ids, types = (np.array([x], dtype=np.int64) for x in (encoding.ids, encoding.type_ids))",
            "mask = np.ones_like(ids)",
        ]
    return [
        'ids = np.array([tokenizer.encode("i feel wonderful today").ids], dtype=np.int64)',
        "types, mask = np.zeros_like(ids), np.ones_like(ids)",
    ]


def _labels(labels: list[str]) -> str:
    return "## Labels\n\n" + ", ".join(f"{i}: `{name}`" for i, name in enumerate(labels)) + "\n"


def _usage(manifest: Manifest, export: dict[str, Any] | None) -> str:
    lines = ["## How to use", "", "With liftkit (`pip install liftkit`), from this folder:", "", "```python"]
    example = f"[({PAIR[0]!r}, {PAIR[1]!r})]" if manifest.input_kind == "pair" else '["i feel wonderful today"]'
    lines += ["import liftkit", "", 'predictor = liftkit.load(".")', f"predictor.predict({example})"]
    lines += ["```", ""]
    if export is None and manifest.pair_encoding == "bi":
        lines += [
            "A bi-encoder (liftkit's pair head over the model's body, each text encoded alone): load it with "
            "liftkit, or `lift export . --format onnx` for one graph that embeds and scores a pair.",
            "",
        ]
    elif export is None and _library(manifest, None) == "peft":
        lines += _with_peft(manifest)
    elif export is None:
        lines += [
            f"The {manifest.method} weights are liftkit's own (`liftkit_weights.safetensors`); to serve without "
            "liftkit, `lift export . --format onnx` (every method) or `--format hf` (methods that merge into the weights).",
            "",
        ]
    elif export["format"] == "hf":
        lines += _with_transformers(manifest)
    else:
        lines += _with_onnxruntime(manifest, export)
    return "\n".join(lines)


def _with_peft(manifest: Manifest) -> list[str]:
    task = task_named(manifest.task)
    problem = (
        f', problem_type="{task.problem_type}"' if task.card_pipeline else ""
    )  # what a fresh config would not guess
    return [
        "With plain transformers + peft (the classifier head is saved with the adapter):",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f"labels = {manifest.labels!r}",
        f'base = AutoModelForSequenceClassification.from_pretrained("{manifest.base_model}", num_labels=len(labels), '
        f"id2label=dict(enumerate(labels)){problem})",
        'model = PeftModel.from_pretrained(base, ".").eval()',
        'tokenizer = AutoTokenizer.from_pretrained(".")',
        "```",
        "",
        "or ship it without peft: `lift export . --format hf` (merged weights) or `--format onnx`.",
        "",
    ]


def _with_transformers(manifest: Manifest) -> list[str]:
    task = task_named(manifest.task)
    lines = [
        "With plain transformers (no peft, no liftkit):",
        "",
        *(
            [
                f"This model read long texts in windows of {manifest.max_length} tokens sharing {manifest.chunk[0]}, "
                f"{manifest.chunk[1]}-pooled (export.json `chunk`); a plain pipeline cuts a text at the first window, "
                "liftkit.load pools them all.",
                "",
            ]
            if manifest.chunk
            else []
        ),
        "```python",
        "from transformers import pipeline",
        "",
    ]
    lines += [
        f'classify = pipeline("text-classification", model="."{task.card_pipeline})',
        _pipeline_call(manifest),
        "```",
        "",
    ]
    if manifest.thresholds:
        chosen = ", ".join(f"{n} {t:.2f}" for n, t in zip(manifest.labels, manifest.thresholds))
        lines += [
            f"Each label applies at or above its own threshold (export.json `thresholds`, tuned on validation): {chosen}.",
            "",
        ]
    return lines


def _with_onnxruntime(manifest: Manifest, export: dict[str, Any]) -> list[str]:
    imports = [
        "import json",
        "import numpy as np",
        "import onnxruntime as ort",
        "from tokenizers import Tokenizer",
        "",
    ]
    return [
        "With onnxruntime and tokenizers only (no torch):",
        "",
        "```python",
        *imports,
        'info = json.load(open("export.json"))',
        'tokenizer = Tokenizer.from_file("tokenizer.json")',
        "tokenizer.no_padding()",
        'tokenizer.enable_truncation(info["max_length"])',
        f'session = ort.InferenceSession("{export["model_file"]}")',
        *_onnx_inputs(manifest),
        'feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}',
        "logits = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]",
        *task_named(manifest.task).card_onnx,
        "```",
        "",
        f"Batches pad with token id {export['pad_id']} on the {export['padding_side']} (attention mask 0 there).",
        "",
    ]
