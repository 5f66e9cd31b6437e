"""Inference speed: the reference projects' predict code vs liftkit's predictor, on one run.

On the emotion test split (2,000 texts) with a default `lift run`:
- peer A, the reference predict loop: AutoModelForSequenceClassification + PeftModel.from_pretrained
  + tokenizer, one sentence per call under torch.no_grad (what the reference notebooks do);
- peer B, `transformers.pipeline("text-classification")` on the merged model (liftkit's hf
  export, which plain transformers loads), batch_size 32;
- liftkit's predictor (`liftkit.load`) on torch (LoRA merged at load), on the ONNX export (fp32)
  and on the int8 export.
Each system runs in its own child process, as a user's program would: liftkit's ONNX predictor
never imports torch, and torch's spinning OpenMP threads in the same process would slow it (and
onnxruntime's would slow torch). Every child loads its system (timed from the child's start),
warms it up and times a block of single-text calls; the first round's children also time the
whole split (texts/s, accuracy). Each round starts the systems again, in turn (the order rotating
by one per round), for the next block of the same texts, so that a shared machine's drift (its
speed wanders by tens of percent within minutes) falls on every system alike. p50 / p99 latency
pool all rounds; load time is the median over rounds. Prints one JSON line: per system load time,
texts/s, p50/p99 ms, accuracy, and the ratios the acceptance asks for.

    python bench/infer_speed.py --run runs/emotion-lora-...   # a finished default emotion run
    python bench/infer_speed.py --quick                       # no run given: trains a small one; under 2 minutes

Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
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
    return run(cfg, log=lambda m: None).run_dir


CHILD_TIMEOUT_S = 1800  # one system's child: load, the whole split, a block of single calls


def _measure(
    load: Callable[[], Any],
    batch: Callable[[Any, list[str]], np.ndarray],
    single: Callable[[Any, str], Any],
    job: dict[str, Any],
) -> dict[str, Any]:
    """In a child: load time, from the child's start (interpreter and imports included: liftkit
    imports torch only when it needs it); with `job["throughput"]`, whole-split texts/s and
    accuracy; the milliseconds of each single-text call over `job["singles"]`."""
    texts, labels = job["texts"], np.asarray(job["labels"])
    system = load()
    load_s = time.time() - job["spawned"]
    for text in texts[:5]:  # warm-up: first calls allocate and pick kernels
        single(system, text)
    batch(system, texts[:64])
    result: dict[str, Any] = {"load_s": load_s}
    if job["throughput"]:
        start = time.perf_counter()
        predicted = batch(system, texts)
        batch_s = time.perf_counter() - start
        result |= {
            "texts_per_s": round(len(texts) / batch_s, 1),
            "accuracy": round(float((predicted == labels).mean()), 4),
        }
    ms = []
    for text in job["singles"]:
        start = time.perf_counter()
        single(system, text)
        ms.append((time.perf_counter() - start) * 1000)
    return result | {"single_ms": ms}


def peer_a(job: dict[str, Any]) -> dict[str, Any]:
    """The reference predict loop: base model + PeftModel, one text per call."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from liftkit.modeling import resolve_model_source

    run = Path(job["path"])
    manifest = json.loads((run / "liftkit.json").read_text())

    def load():
        tokenizer = AutoTokenizer.from_pretrained(run)
        base = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_source(manifest["base_model"]), num_labels=len(manifest["labels"])
        )
        return tokenizer, PeftModel.from_pretrained(base, run).eval()

    def single(system, text):
        tokenizer, model = system
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=manifest["max_length"])
        with torch.no_grad():
            return int(model(**inputs).logits.argmax(-1))

    def batch(system, many):
        return np.array([single(system, text) for text in many])

    return _measure(load, batch, single, job)


def peer_b(job: dict[str, Any]) -> dict[str, Any]:
    """transformers.pipeline on the merged model, batch_size 32."""
    from transformers import pipeline

    index = {name: i for i, name in enumerate(job["names"])}

    def load():
        return pipeline("text-classification", model=job["path"], device="cpu")

    def batch(classify, many):
        return np.array([index[out["label"]] for out in classify(many, batch_size=32, truncation=True)])

    def single(classify, text):
        return classify(text, truncation=True)

    return _measure(load, batch, single, job)


def ours(job: dict[str, Any]) -> dict[str, Any]:
    import liftkit

    return _measure(
        lambda: liftkit.load(job["path"]),
        lambda p, many: p.predict_proba(many, batch_size=64).argmax(1),
        lambda p, text: p.predict_proba([text]),
        job,
    )


def _child(system: str, job_file: Path) -> None:
    warnings.filterwarnings("ignore")
    if system.startswith("peer"):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    job = json.loads(job_file.read_text())
    print(json.dumps({"peer_a": peer_a, "peer_b": peer_b, "liftkit": ours}[system](job)))


def _in_child(system: str, job: dict[str, Any], work: Path) -> dict[str, Any]:
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job | {"spawned": time.time()}))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", system, "--job", str(job_file)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        sys.exit(f"{system} child ran past {CHILD_TIMEOUT_S} s and was stopped")
    except (IndexError, json.JSONDecodeError):
        sys.exit(f"{system} child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def _measure_all(
    systems: dict[str, tuple[str, dict[str, Any]]],
    texts: list[str],
    labels: list[int],
    singles: int,
    rounds: int,
    work: Path,
) -> dict[str, dict[str, Any]]:
    """Every system's figures: round 1 also measures throughput and accuracy; every round times
    the next block of single-text calls, the systems taking turns in an order that rotates by
    one each round (so no system always runs first); load time is the median over rounds."""
    per_round = -(-singles // rounds)
    results: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {key: [] for key in systems}
    loads: dict[str, list[float]] = {key: [] for key in systems}
    keys = list(systems)
    for r in range(rounds):
        block = texts[r * per_round : min(singles, (r + 1) * per_round)]
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            kind, extra = systems[key]
            out = _in_child(
                kind, {"texts": texts, "labels": labels, "singles": block, "throughput": r == 0, **extra}, work
            )
            times[key] += out.pop("single_ms")
            loads[key].append(out.pop("load_s"))
            if r == 0:
                results[key] = out
                print(f"{key:>22}: {out}", file=sys.stderr)
    for key, ms in times.items():
        ms.sort()
        results[key] |= {
            "load_s": round(statistics.median(loads[key]), 2),
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        }
        print(
            f"{key:>22}: p50 {results[key]['p50_ms']} ms, p99 {results[key]['p99_ms']} ms over {len(ms)} calls",
            file=sys.stderr,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a finished emotion LoRA run folder (default: train a small one)")
    parser.add_argument("--quick", action="store_true", help="500 texts, 100 single calls: under 2 minutes")
    parser.add_argument("--singles", type=int, help="single-text calls to time (default 300, quick 100)")
    parser.add_argument("--child", choices=["peer_a", "peer_b", "liftkit"], help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.job)
    if args.singles is not None and args.singles < 2:
        parser.error("--singles must be 2 or more")
    warnings.filterwarnings("ignore")
    os.environ["TQDM_DISABLE"] = "1"  # no training progress bar in a benchmark's output (read when tqdm is imported)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from liftkit.export.exporter import export

    work = Path(tempfile.mkdtemp(prefix="liftkit-infer-bench-"))
    run = Path(args.run) if args.run else _quick_run(work)
    texts, labels = _test_split(run)
    if args.quick:
        texts, labels = texts[:500], labels[:500]
    singles = min(args.singles or (100 if args.quick else 300), len(texts))
    exports = {}
    for fmt, quantize in (("hf", None), ("onnx", None), ("onnx", "int8")):
        start = time.perf_counter()
        result = export(
            run, fmt, quantize, output=work / f"{fmt}{quantize or ''}", max_samples=500, log=lambda m: None
        )
        exports[fmt + (quantize or "")] = (result.folder, round(time.perf_counter() - start, 1), result.info)
    names = json.loads((run / "liftkit.json").read_text())["labels"]
    systems = _measure_all(
        {
            "peer_a_reference_loop": ("peer_a", {"path": str(run)}),
            "peer_b_pipeline_b32": ("peer_b", {"path": str(exports["hf"][0]), "names": names}),
            "liftkit_torch": ("liftkit", {"path": str(run)}),
            "liftkit_onnx_fp32": ("liftkit", {"path": str(exports["onnx"][0])}),
            "liftkit_onnx_int8": ("liftkit", {"path": str(exports["onnxint8"][0])}),
        },
        texts,
        [int(x) for x in labels],
        singles,
        2 if args.quick else 3,
        work,
    )
    for key, name in (("liftkit_onnx_fp32", "onnx"), ("liftkit_onnx_int8", "onnxint8")):
        systems[key]["export_s"] = exports[name][1]
        systems[key]["model_mb"] = round(exports[name][2]["model_size_bytes"] / 1e6, 1)
    # weights the int8 export left in float because quantizing them cost accuracy (exporter._int8)
    systems["liftkit_onnx_int8"]["kept_float"] = len(exports["onnxint8"][2]["kept_float"])
    ours_keys = [k for k in systems if k.startswith("liftkit")]
    fastest = max(ours_keys, key=lambda k: systems[k]["texts_per_s"])
    quickest = min(ours_keys, key=lambda k: systems[k]["p50_ms"])
    a, b = systems["peer_a_reference_loop"], systems["peer_b_pipeline_b32"]
    print(
        json.dumps(
            {
                "bench": "infer_speed",
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "machine": f"{platform.machine()} CPU",
                "run": str(run) if args.run else "a quick run (deleted)",
                "texts": len(texts),
                "single_calls": singles,
                "quick": args.quick,
                "systems": systems,
                "ratios": {
                    "fastest_backend": fastest,
                    "throughput_vs_pipeline": round(systems[fastest]["texts_per_s"] / b["texts_per_s"], 2),
                    "lowest_p50_backend": quickest,
                    "p50_reference_loop_over_liftkit": round(a["p50_ms"] / systems[quickest]["p50_ms"], 2),
                    "int8_minus_fp32_accuracy_points": round(
                        (systems["liftkit_onnx_int8"]["accuracy"] - systems["liftkit_onnx_fp32"]["accuracy"]) * 100, 2
                    ),
                },
            }
        )
    )
    shutil.rmtree(work, ignore_errors=True)  # the exports (~115 MB) and the quick run


if __name__ == "__main__":
    main()
