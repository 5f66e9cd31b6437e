"""The `lift` command: parse arguments -> config -> library call. No logic of its own.

Each command imports what it runs inside its own function: `lift --help` answers at once and
`lift predict` loads no training code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from liftkit.errors import LiftError, first_line

# flag -> dotted config key; values are parsed as YAML scalars ("3" -> 3, "null" -> None)
RUN_FLAGS = {
    "--dataset": "data.dataset",
    "--text-column": "data.text_column",
    "--text-pair-column": "data.text_pair_column",
    "--pair-encoding": "data.pair_encoding",
    "--label-column": "data.label_column",
    "--task": "task.name",
    "--max-length": "data.max_length",
    "--max-train-samples": "data.max_train_samples",
    "--max-eval-samples": "data.max_eval_samples",
    "--model": "model.name",
    "--method": "method.name",
    "--r": "method.r",
    "--alpha": "method.alpha",
    "--dropout": "method.dropout",
    "--target-modules": "method.target_modules",
    "--epochs": "train.epochs",
    "--batch-size": "train.batch_size",
    "--lr": "train.learning_rate",
    "--grad-accum-steps": "train.grad_accum_steps",
    "--seed": "train.seed",
    "--best-metric": "train.best_metric",
    "--patience": "train.early_stopping_patience",
    "--mixed-precision": "train.mixed_precision",
    "--device": "train.device",
    "--report-to": "train.report_to",
    "--output-dir": "output_dir",
}


def _parse_value(key: str, text: str) -> Any:
    if key == "method.target_modules":
        return [t.strip() for t in text.split(",") if t.strip()]
    if key in (
        "data.dataset",
        "model.name",
        "output_dir",
        "data.text_column",
        "data.text_pair_column",
        "data.label_column",
    ):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.method_first:  # method first: its options must not be dropped by a later method switch
        out["method.name"] = args.method_first
    for flag, key in RUN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None and key != "method.name":
            out[key] = _parse_value(key, value)
    if getattr(args, "trust_remote_code", False):
        out["model.trust_remote_code"] = True
    for item in args.set or []:
        if "=" not in item:
            raise LiftError(f"--set {item!r} needs the form key=value, e.g. --set train.weight_decay=0.1")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(key.strip(), value)
    return out


def cmd_run(args: argparse.Namespace) -> None:
    from liftkit.config import load_config
    from liftkit.pipeline import run
    from liftkit.report import comparison_table, render_text, summary_lines
    from liftkit.run_dir import CONFIG, REPORT_HTML

    if args.resume:
        cfg = load_config(Path(args.resume) / CONFIG, _overrides(args))
        cfg.output_dir = args.resume
    else:
        cfg = load_config(args.config, _overrides(args))
    try:
        result = run(cfg, resume=bool(args.resume), log=lambda m: print(m, file=sys.stderr), overwrite=args.overwrite)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: `lift run --resume {cfg.output_dir}` continues from the last finished epoch "
            "(from the start if none finished)",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    print()
    print(render_text(comparison_table(result.record)))
    print()
    for line in summary_lines(result.record):
        print(line)
    print(f"run directory: {result.run_dir}")
    if (result.run_dir / REPORT_HTML).is_file():
        print(f"report: {result.run_dir / REPORT_HTML}")


def cmd_compare(args: argparse.Namespace) -> None:
    from liftkit.compare import compare
    from liftkit.config import load_config
    from liftkit.pages import write_compare_report
    from liftkit.report import render_text
    from liftkit.run_dir import new_comparison_dir

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise LiftError(f"--seeds {args.seeds!r} must be comma-separated integers, e.g. 0,1,2") from None
    if not methods or not seeds:
        raise LiftError("give at least one method (--methods lora,full) and one seed (--seeds 0)")
    overrides = _overrides(args)
    out = new_comparison_dir(args.output_dir, load_config(args.config, overrides).data.dataset)
    result = compare(args.config, overrides, methods, seeds, out, log=lambda m: print(m, file=sys.stderr))
    print()
    print(render_text(result["table"]))
    print(f"\ncomparison written to {out}/comparison.{{md,json,csv}}")
    if result["runs"]:
        try:
            print(f"report: {write_compare_report([out], out)}")
        except Exception as exc:  # the comparison's results are written; a figure must not turn them into a failure
            print(
                f"warning: compare.html not written ({first_line(exc)[:200]}): `lift report {out}` draws it again",
                file=sys.stderr,
            )


def cmd_tune(args: argparse.Namespace) -> None:
    from liftkit.config import load_config
    from liftkit.report import metric_label
    from liftkit.tune import read_space, search_space, tune

    if not args.trials or args.trials < 1:
        raise LiftError("lift tune needs --trials N: how many finished trials the study should hold, e.g. --trials 20")
    overrides = _overrides(args)
    # trials are scored by the task's search metric (validation macro-F1; micro-F1 for multi-label) unless
    # --best-metric names another; the epoch a trial keeps is picked by it too (liftkit.tune.objective_metric)
    cfg = load_config(args.config, overrides)
    space = search_space(cfg, read_space(args.config), fixed=overrides)
    study_dir = Path(args.study_dir or f"studies/{Path(cfg.data.dataset).name}-{cfg.method.name}")
    result = tune(
        cfg,
        space,
        args.trials,
        study_dir,
        args.storage,
        args.timeout,
        final=not args.no_final,
        pruner=args.pruner,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(
        f"best validation {metric_label(result.metric, result.task)} {result.best_value:.4f}: {result.best_config} (lift run {result.best_config})"
    )
    if result.run is not None:
        print(f"best configuration, trained and tested: {result.run}")
    print(f"report: {result.page}")


def cmd_report(args: argparse.Namespace) -> None:
    from liftkit.pages import write_report

    print(f"report: {write_report([Path(p) for p in args.paths], args.output)}")


def cmd_predict(args: argparse.Namespace) -> None:
    from liftkit.predict import check_input, load, read_texts, write_predictions

    if bool(args.texts) == bool(args.input):
        raise LiftError("give texts to classify either as arguments or with --input FILE, not both or neither")
    if args.input:
        check_input(Path(args.input))
    predictor = load(args.run_dir, backend=args.backend, device=args.device, trust_remote_code=args.trust_remote_code)
    if args.input:
        texts = read_texts(Path(args.input), args.text_column, args.text_pair_column, predictor.pairs)
    elif predictor.pairs:  # a model of sentence pairs: the arguments two by two
        if len(args.texts) % 2:
            raise LiftError(
                f"this model reads sentence pairs and {len(args.texts)} texts were given: pass them two by two (A1 B1 A2 B2 ...)"
            )
        texts = list(zip(args.texts[::2], args.texts[1::2]))
    else:
        texts = args.texts
    preds = predictor.predict(texts, batch_size=args.batch_size, progress=bool(args.input) and sys.stderr.isatty())
    if args.output:
        write_predictions(Path(args.output), texts, preds, predictor.labels, predictor.task)
        print(f"wrote {len(preds)} predictions to {args.output}", file=sys.stderr)
    else:
        for text, pred in zip(texts, preds):
            shown = "\t".join(text) if isinstance(text, tuple) else text
            print(f"{predictor.task.answer_line(pred)}\t{shown}")


def cmd_export(args: argparse.Namespace) -> None:
    from liftkit.export.exporter import export
    from liftkit.report import metric_label

    result = export(
        args.run_dir,
        args.format,
        quantize=args.quantize,
        output=args.output,
        force=args.force,
        max_samples=args.max_samples,
        trust_remote_code=args.trust_remote_code,
        log=lambda m: print(m, file=sys.stderr),
    )
    parity, info = result.info["parity"], result.info
    sample = f" ({parity['sample']})" if parity["sample"] else ""
    print(
        f"exported {info['format']}{' ' + info['quantize'] if info['quantize'] else ''} to {result.folder} "
        f"({info['model_file']}, {info['model_size_bytes'] / 1e6:.1f} MB)"
    )
    print(
        f"checked on {parity['rows']} test row{'s' if parity['rows'] != 1 else ''}{sample}: "
        + ", ".join(
            f"{metric_label(key, info['task'] or 'single_label')} {value:.4f} (run {parity['run'][key]:.4f})"
            for key, value in parity["export"].items()
        )
        + f", same answer on {parity.get('decision_agreement', parity.get('argmax_agreement', 0.0)) * 100:.2f}%, "
        f"max |dlogit| {parity['max_abs_logit_diff']:.2e}"
    )
    for warning in result.warnings:
        print(f"WARNING: {warning}")


def cmd_serve(args: argparse.Namespace) -> None:
    import signal

    import uvicorn

    from liftkit.predict import check_folder
    from liftkit.serve.app import ServeSettings, create_app

    settings = ServeSettings(
        paths=args.paths,
        models_dir=args.models_dir,
        max_models=args.max_models,
        backend=args.backend,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms,
        max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch_size=args.max_client_batch_size,
        max_input_chars=args.max_input_chars,
        trust_remote_code=args.trust_remote_code,
    )
    models = settings.check()
    if args.workers < 1:
        raise LiftError(f"--workers {args.workers} must be at least 1")
    for path in models.values():  # a damaged folder fails here, in one line, not as a server that never gets ready
        check_folder(path)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal: end with status 0 there
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    common = dict(host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=30)
    if args.workers > 1:  # each worker process loads the model and batches on its own
        os.environ["LIFT_SERVE_SETTINGS"] = json.dumps(dataclasses.asdict(settings))
        uvicorn.run("liftkit.serve.app:app_from_env", factory=True, workers=args.workers, **common)
    else:
        uvicorn.Server(uvicorn.Config(create_app(settings), **common)).run()


def _config_flags(p: argparse.ArgumentParser, skip: tuple[str, ...]) -> None:
    p.add_argument("config", nargs="?", help="YAML config (a recipe, or RUN_DIR/config.yaml); defaults otherwise")
    for flag, key in RUN_FLAGS.items():
        if flag not in skip:
            dest = "method_first" if key == "method.name" else None
            p.add_argument(flag, dest=dest, metavar=key.rsplit(".", 1)[-1].upper(), help=f"sets {key}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config key, e.g. train.weight_decay=0.1")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the model repository's own code to run (never taken from a file)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve runs or exports over HTTP (TEI-compatible /predict, /v1/classify, /metrics, a playground at /); "
        "runs of one base model share it",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="run folders (lift run) or export folders (lift export), each PATH or NAME=PATH (its folder name names it)",
    )
    p.add_argument("--models-dir", metavar="DIR", help="serve every run folder and export in DIR, by folder name")
    p.add_argument(
        "--max-models",
        type=int,
        metavar="N",
        help="models held in memory; past N the least recently used unloads, and loads again when asked for",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-batch-size", type=int, default=32, help="texts per forward")
    p.add_argument("--max-batch-tokens", type=int, default=16384, help="padded tokens per forward")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a lone request waits for company")
    p.add_argument("--max-concurrent-requests", type=int, default=512, help="requests in flight before 429")
    p.add_argument("--max-client-batch-size", type=int, default=32, help="texts in one request before 413")
    p.add_argument(
        "--max-input-chars",
        type=int,
        default=10000,
        help="characters in one text before 413 (unless it asks to truncate)",
    )
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own model and batcher")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the base model's own code to run (never taken from the folder)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lift", description="Lightweight fine-tuning for text classification.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_compare(sub)
    _add_tune(sub)
    _add_report(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_serve(sub)
    return parser


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="fine-tune, evaluate base vs fine-tuned, save the run directory")
    _config_flags(p, skip=())
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete a finished run in --output-dir and run again")
    p.set_defaults(func=cmd_run)


def _add_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="run several methods on the same data and seeds, one table")
    _config_flags(p, skip=("--method", "--seed", "--output-dir"))
    p.add_argument("--methods", default="head,lora,ia3,prefix,prompt,adapter,full", help="comma-separated methods")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; several give mean ± std")
    p.add_argument("--output-dir", help="comparison folder (default comparisons/<dataset>-<time>)")
    p.set_defaults(func=cmd_compare, method_first=None)


def _add_tune(sub: Any) -> None:
    p = sub.add_parser("tune", help="search a method's hyperparameters (Optuna), then train and test the best once")
    _config_flags(p, skip=("--output-dir",))
    p.add_argument("--trials", type=int, help="finished trials the study should hold (required)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument(
        "--study-dir", help="where the study, best.yaml and tune.html go (default studies/<dataset>-<method>)"
    )
    p.add_argument(
        "--storage", help="an Optuna RDB URL shared by several workers (default: SQLite in the study folder)"
    )
    p.add_argument(
        "--pruner",
        default="median",
        choices=["median", "hyperband"],
        help="how trials that trail the others are stopped",
    )
    p.add_argument("--no-final", action="store_true", help="skip training the best configuration once more on test")
    p.set_defaults(func=cmd_tune)


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="draw report.html for a run, or compare.html for a comparison or several runs")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a run folder, a comparison folder, or several run folders of one dataset",
    )
    p.add_argument(
        "--output", help="where compare.html goes for several run folders (default comparisons/<dataset>-<time>)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_report)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify texts with a saved run or an export")
    p.add_argument("run_dir", metavar="PATH", help="a run folder (lift run) or an export folder (lift export)")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--input", help="a .txt (one text per line), .jsonl or .csv file")
    p.add_argument(
        "--output", help="write predictions here instead of printing: .csv (a column per label), else JSON lines"
    )
    p.add_argument("--text-column", default="text", help="text field of --input .jsonl/.csv")
    p.add_argument(
        "--text-pair-column",
        default=None,
        help="second text field of --input .jsonl/.csv, for a model of sentence pairs (default text_pair, or GLUE's names)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: torch for runs and hf exports, onnxruntime for onnx exports",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the base model's own code to run (never taken from the run folder)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_predict)


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="write a run as a standalone transformers folder or ONNX, verified against the run"
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--format",
        required=True,
        choices=["hf", "onnx"],
        help="hf: merged transformers folder; onnx: ONNX graph + tokenizer",
    )
    p.add_argument("--quantize", choices=["int8"], help="onnxruntime dynamic int8 quantization (onnx only)")
    p.add_argument("--output", help="export folder (default: beside the run, RUN_DIR-<format>[-int8])")
    p.add_argument("--force", action="store_true", help="replace a non-empty --output")
    p.add_argument(
        "--max-samples",
        type=int,
        help="verify on a seeded sample of this many test rows (default: the whole test split)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the base model's own code to run (never taken from the run folder)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_export)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _quiet_libraries()
        args.func(args)
    except LiftError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ": `lift run --resume RUN_DIR` continues from the last checkpoint" if args.command == "run" else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
