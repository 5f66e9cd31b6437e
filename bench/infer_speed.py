"""Inference speed: the reference projects' predict code vs liftkit's predictor, on one run.

On the emotion test split (2,000 texts) with a default `lift run`:
- peer A, the reference predict loop: AutoModelForSequenceClassification + PeftModel.from_pretrained
  + tokenizer, one sentence per call under torch.no_grad (what the reference notebooks do);
- peer B, `transformers.pipeline("text-classification")` on the merged model (liftkit's hf
  export, which plain transformers loads), batch_size 32;
- liftkit's predictor (`liftkit.load`) on torch (LoRA merged at load), on the ONNX export (fp32)
  and on the int8 export.
Each system is loaded (timed), warmed up, then timed over the whole split (texts/s) and over
single-text calls (p50 / p99 latency), all in this one process, one after another, so they
share the machine's state. Prints one JSON line: per system load time, texts/s, p50/p99 ms,
accuracy, and the ratios the acceptance asks for.

    python bench/infer_speed.py --run runs/emotion-lora-...   # a finished default emotion run
    python bench/infer_speed.py --quick                       # no run given: trains a small one; under 2 minutes

Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _test_split(run: Path) -> tuple[list[str], np.ndarray]:
    from liftkit.config import load_config
    from liftkit.data import load_splits

    cfg = load_config(run / "config.yaml")
    test = load_splits(cfg.data, cfg.train.seed).test
    return list(test.texts), np.asarray(test.labels)


def _quick_run(folder: Path) -> Path:
    """A small emotion LoRA run with the default settings otherwise (2,000 training rows, 1 epoch)."""
    from liftkit.config import load_config
    from liftkit.pipeline import run

    cfg = load_config(None, {"data.max_train_samples": 2000, "train.epochs": 1, "output_dir": str(folder / "run")})
    os.environ["TQDM_DISABLE"] = "1"  # no training progress bar in a benchmark's output
    return run(cfg, log=lambda m: None).run_dir


def _measure(name: str, load: Callable[[], Any], batch: Callable[[Any, list[str]], np.ndarray],
             single: Callable[[Any, str], Any], texts: list[str], labels: np.ndarray, singles: int) -> dict[str, Any]:
    """Load time, whole-split throughput and accuracy, single-text latency percentiles."""
    start = time.perf_counter()
    system = load()
    load_s = time.perf_counter() - start
    for text in texts[:5]:  # warm-up: first calls allocate and pick kernels
        single(system, text)
    batch(system, texts[:64])
    start = time.perf_counter()
    predicted = batch(system, texts)
    batch_s = time.perf_counter() - start
    times = []
    for text in texts[:singles]:
        start = time.perf_counter()
        single(system, text)
        times.append(time.perf_counter() - start)
    ms = sorted(t * 1000 for t in times)
    result = {
        "load_s": round(load_s, 2), "texts_per_s": round(len(texts) / batch_s, 1),
        "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "accuracy": round(float((predicted == labels).mean()), 4),
    }
    print(f"{name:>16}: {result}", file=sys.stderr)
    return result


def peer_a(run: Path, texts: list[str], labels: np.ndarray, singles: int) -> dict[str, Any]:
    """The reference predict loop: base model + PeftModel, one text per call."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from liftkit.modeling import resolve_model_source

    manifest = json.loads((run / "liftkit.json").read_text())

    def load():
        tokenizer = AutoTokenizer.from_pretrained(run)
        base = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_source(manifest["base_model"]), num_labels=len(manifest["labels"]))
        return tokenizer, PeftModel.from_pretrained(base, run).eval()

    def single(system, text):
        tokenizer, model = system
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=manifest["max_length"])
        with torch.no_grad():
            return int(model(**inputs).logits.argmax(-1))

    def batch(system, many):
        return np.array([single(system, text) for text in many])

    return _measure("peer A (loop)", load, batch, single, texts, labels, singles)


def peer_b(hf_export: Path, texts: list[str], labels: np.ndarray, singles: int, names: list[str]) -> dict[str, Any]:
    """transformers.pipeline on the merged model, batch_size 32."""
    from transformers import pipeline

    index = {name: i for i, name in enumerate(names)}

    def load():
        return pipeline("text-classification", model=str(hf_export), device="cpu")

    def batch(classify, many):
        return np.array([index[out["label"]] for out in classify(many, batch_size=32, truncation=True)])

    def single(classify, text):
        return classify(text, truncation=True)

    return _measure("peer B (pipeline)", load, batch, single, texts, labels, singles)


def ours(name: str, path: Path, texts: list[str], labels: np.ndarray, singles: int) -> dict[str, Any]:
    import liftkit

    return _measure(
        name, lambda: liftkit.load(path), lambda p, many: p.predict_proba(many, batch_size=64).argmax(1),
        lambda p, text: p.predict_proba([text]), texts, labels, singles,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a finished emotion LoRA run folder (default: train a small one)")
    parser.add_argument("--quick", action="store_true", help="500 texts, 100 single calls: under 2 minutes")
    parser.add_argument("--singles", type=int, help="single-text calls to time (default 300, quick 100)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from liftkit.export.exporter import export

    work = Path(tempfile.mkdtemp(prefix="liftkit-infer-bench-"))
    run = Path(args.run) if args.run else _quick_run(work)
    texts, labels = _test_split(run)
    if args.quick:
        texts, labels = texts[:500], labels[:500]
    singles = args.singles or (100 if args.quick else 300)
    exports = {}
    for fmt, quantize in (("hf", None), ("onnx", None), ("onnx", "int8")):
        start = time.perf_counter()
        result = export(run, fmt, quantize, output=work / f"{fmt}{quantize or ''}", max_samples=500, log=lambda m: None)
        exports[fmt + (quantize or "")] = (result.folder, round(time.perf_counter() - start, 1), result.info)
    names = json.loads((run / "liftkit.json").read_text())["labels"]
    systems = {
        "peer_a_reference_loop": peer_a(run, texts, labels, singles),
        "peer_b_pipeline_b32": peer_b(exports["hf"][0], texts, labels, singles, names),
        "liftkit_torch": ours("liftkit torch", run, texts, labels, singles),
        "liftkit_onnx_fp32": ours("liftkit onnx", exports["onnx"][0], texts, labels, singles),
        "liftkit_onnx_int8": ours("liftkit onnx int8", exports["onnxint8"][0], texts, labels, singles),
    }
    for key, name in (("liftkit_onnx_fp32", "onnx"), ("liftkit_onnx_int8", "onnxint8")):
        systems[key]["export_s"] = exports[name][1]
        systems[key]["model_mb"] = round(exports[name][2]["model_size_bytes"] / 1e6, 1)
    ours_keys = [k for k in systems if k.startswith("liftkit")]
    fastest = max(ours_keys, key=lambda k: systems[k]["texts_per_s"])
    quickest = min(ours_keys, key=lambda k: systems[k]["p50_ms"])
    a, b = systems["peer_a_reference_loop"], systems["peer_b_pipeline_b32"]
    print(json.dumps({
        "bench": "infer_speed", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()} CPU",
        "run": str(run), "texts": len(texts), "single_calls": singles, "quick": args.quick, "systems": systems,
        "ratios": {
            "fastest_backend": fastest,
            "throughput_vs_pipeline": round(systems[fastest]["texts_per_s"] / b["texts_per_s"], 2),
            "lowest_p50_backend": quickest,
            "p50_reference_loop_over_liftkit": round(a["p50_ms"] / systems[quickest]["p50_ms"], 2),
            "int8_minus_fp32_accuracy_points": round((systems["liftkit_onnx_int8"]["accuracy"] - systems["liftkit_onnx_fp32"]["accuracy"]) * 100, 2),
        },
    }))


if __name__ == "__main__":
    main()
