"""Where an ONNX export's single-text time goes: onnxruntime's own per-node profile, summed by
operator type, beside the bare session call and liftkit's whole `predict_proba([text])`.

    python bench/onnx_profile.py runs/emotion-default-onnx-int8            # 2 threads (onnxruntime's default here)
    python bench/onnx_profile.py runs/emotion-default-onnx-int8 --threads 1

Feeds test texts of `--dataset` (emotion's test split by default), one per call. Prints a table (operator,
nodes per call, µs per call, median µs per node, share) and one JSON line. Profiling adds its
own cost to every node, so the per-node figures run above the unprofiled call; compare them with
each other, and compare versions of onnxruntime by running this script under each.

Not a test: it takes seconds to a minute.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _texts(dataset: str, count: int) -> list[str]:
    from liftkit.config import DataConfig
    from liftkit.data import load_splits

    return list(load_splits(DataConfig(dataset=dataset), 0).test.texts)[:count]


def _median_ms(call, items) -> float:
    for item in items[:20]:  # warm-up
        call(item)
    times = []
    for item in items:
        start = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="a `lift export --format onnx` folder")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    parser.add_argument("--dataset", default="emotion")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    import onnxruntime as ort

    import liftkit

    info = json.loads((args.export / "export.json").read_text())
    predictor = liftkit.load(args.export)
    texts = _texts(args.dataset, args.calls)
    rows = [np.array([row], dtype=np.int64) for row in predictor.encode(texts)]

    def session(profile: bool) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.intra_op_num_threads = args.threads
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
        return ort.InferenceSession(str(args.export / info["model_file"]), options, providers=["CPUExecutionProvider"])

    def feeder(s: ort.InferenceSession):
        names = [i.name for i in s.get_inputs()]
        return lambda ids: s.run(None, {n: {"input_ids": ids, "attention_mask": np.ones_like(ids)}[n] for n in names})

    plain = feeder(session(False))
    figures = {
        "tokenize_ms": _median_ms(lambda t: predictor.encode([t]), texts),
        "session_run_ms": _median_ms(plain, rows),
        "predict_proba_ms": _median_ms(lambda t: predictor.predict_proba([t]), texts),
    }
    profiled = session(True)
    run = feeder(profiled)
    for ids in rows:
        run(ids)
    trace_file = Path(profiled.end_profiling())
    trace = json.loads(trace_file.read_text())
    shutil.rmtree(trace_file.parent, ignore_errors=True)
    calls = sum(1 for e in trace if e.get("cat") == "Session" and e["name"] == "model_run")
    per_op: dict[str, list[float]] = collections.defaultdict(list)
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]].append(event["dur"])
    total = sum(sum(v) for v in per_op.values()) / calls
    print(f"{'operator':<28}{'nodes/call':>11}{'us/call':>10}{'us/node':>9}{'share':>8}")
    ops = {}
    for op, durations in sorted(per_op.items(), key=lambda kv: -sum(kv[1])):
        per_call = sum(durations) / calls
        ops[op] = {
            "nodes_per_call": round(len(durations) / calls, 1),
            "us_per_call": round(per_call, 1),
            "median_us_per_node": float(np.median(durations)),
        }
        print(
            f"{op:<28}{len(durations) / calls:>11.1f}{per_call:>10.1f}{np.median(durations):>9.1f}{per_call / total:>8.1%}"
        )
    print(
        json.dumps(
            {
                "bench": "onnx_profile",
                "export": str(args.export),
                "onnxruntime": ort.__version__,
                "threads": args.threads or "default",
                "calls": calls,
                "mean_tokens": round(float(np.mean([r.shape[1] for r in rows])), 1),
                **{k: round(v, 3) for k, v in figures.items()},
                "profiled_kernel_us_per_call": round(total, 1),
                "ops": ops,
            }
        )
    )


if __name__ == "__main__":
    main()
