"""`lift export`: a run folder -> a folder any client loads, verified by numbers.

Load the run's model, compute its logits on the run's test split (or a stated sample of it),
write the export into a staging folder, run the export on the same texts through the backend a
client would use, and record in export.json how far apart the two are (max |Δlogit|, agreement
of the decisions at the run's thresholds, the task's headline scores of each) beside what loading
needs. Only then does the staging
folder take the output's name, so a failed export leaves nothing half-written behind.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from transformers import AutoTokenizer

from liftkit.backends.onnx_backend import OnnxBackend
from liftkit.backends.torch_backend import TorchBackend, load_hf_export, load_run_model
from liftkit.config import load_config
from liftkit.data import load_splits
from liftkit.errors import LiftError, first_line
from liftkit.export.hf import write_hf
from liftkit.export.onnx import after_norm, quantize_int8, to_onnx
from liftkit.methods import METHODS
from liftkit.modelcard import model_card
from liftkit.modeling import ARCHS
from liftkit.predict import Encoder, Predictor, check_files
from liftkit.run_dir import (
    CONFIG,
    EXPORT_INFO,
    MODEL_CARD,
    Manifest,
    read_manifest,
    read_record,
    write_json,
    write_text,
)
from liftkit.tasks import Task, task_named
from liftkit.version import __version__

FORMATS = ("hf", "onnx")
QUANTIZATIONS = ("int8",)
PARITY_PROB = 1e-4  # an unquantized export must give the run's probabilities to this
INT8_POINTS = 1.0  # accuracy points an int8 export may lose before it is called out


@dataclass
class ExportResult:
    folder: Path
    info: dict[str, Any]  # what export.json holds

    @property
    def warnings(self) -> list[str]:
        return self.info["warnings"]


def default_output(run: Path, fmt: str, quantize: str | None) -> Path:
    """Beside the run: `<run>-hf`, `<run>-onnx`, `<run>-onnx-int8`."""
    return run.parent / f"{run.name}-{fmt}{'-' + quantize if quantize else ''}"


def check_request(run: Path, fmt: str, quantize: str | None, output: Path, force: bool) -> Manifest:
    """What can be refused before anything loads: format, quantization, the output folder, and a
    method whose weights the requested format cannot hold. Returns the run's manifest."""
    if fmt not in FORMATS:
        raise LiftError(f"export format {fmt!r} is unknown: use --format hf or --format onnx")
    if quantize is not None and (quantize not in QUANTIZATIONS or fmt != "onnx"):
        raise LiftError(
            f"--quantize {quantize} is not available for --format {fmt}: int8 quantization applies to --format onnx"
        )
    manifest = read_manifest(run)
    check_files(run, manifest.files)
    if manifest.method in METHODS and fmt == "hf" and METHODS[manifest.method].merge is None:
        raise LiftError(
            f"the {manifest.method} method adds modules that a plain {manifest.model_type} classifier has no place for, "
            "so its weights cannot be merged into a transformers folder: use --format onnx, which traces them into the graph"
        )
    if manifest.pair_encoding == "bi" and fmt == "hf":
        raise LiftError(
            "a bi-encoder (data.pair_encoding bi) pairs a transformers body with liftkit's own pair head, which no "
            "transformers classifier class holds: use --format onnx (one graph that embeds and scores a pair)"
        )
    out, here = output.resolve(), run.resolve()
    if out == here or here in out.parents:
        raise LiftError(f"--output {str(output)!r} is inside the run folder: pick a folder outside it")
    if out in here.parents:
        raise LiftError(f"--output {str(output)!r} holds the run folder itself: pick a new folder for the export")
    _check_replaceable(output, force)
    return manifest


def _check_replaceable(output: Path, force: bool) -> None:
    """An output folder may be new or empty; --force replaces an earlier export, never anything else."""
    if output.exists() and not output.is_dir():
        raise LiftError(f"export folder {str(output)!r} exists and is a file: pick another --output")
    if not output.exists() or not any(output.iterdir()):
        return
    if not (output / EXPORT_INFO).is_file():
        raise LiftError(
            f"export folder {str(output)!r} already holds other files (it is not an earlier export): pick another --output"
        )
    if not force:
        raise LiftError(
            f"export folder {str(output)!r} already holds an export: pass --force to replace it, or pick another --output"
        )


def export(
    run: str | Path,
    fmt: str,
    quantize: str | None = None,
    output: str | Path | None = None,
    force: bool = False,
    max_samples: int | None = None,
    trust_remote_code: bool = False,
    log: Callable[[str], None] = print,
) -> ExportResult:
    """Export the run folder `run` as `fmt` (hf or onnx, optionally int8) into `output`."""
    run = Path(run).resolve()  # `lift export .` names its default output beside the run, not inside it
    output = Path(output) if output is not None else default_output(run, fmt, quantize)
    manifest = check_request(run, fmt, quantize, output, force)
    record = read_record(run)
    task = task_named(manifest.task)
    texts, labels, sample = _test_texts(run, max_samples, task)
    model = load_run_model(run, manifest, trust_remote_code, merge=False)
    log(f"running the run's model ({manifest.method} on {manifest.base_model}) on {len(texts)} test rows ...")
    encoder = Encoder.of_run(run, manifest)
    reference = Predictor(manifest.labels, encoder, TorchBackend(model, "cpu"), {}).logits(texts)
    method = METHODS[manifest.method]
    if method.merge is not None:
        model = method.merge(model)
    tokenizer = AutoTokenizer.from_pretrained(run, trust_remote_code=trust_remote_code)
    tokenizer.model_max_length = manifest.max_length  # a plain pipeline(..., truncation=True) cuts where training did
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        log(f"writing the {fmt}{' ' + quantize if quantize else ''} export ...")
        model_file, fused = _write(model, tokenizer, encoder, staging, fmt)
        if fused is False:
            log(_unfused(manifest.model_type))

        def logits(file: str) -> np.ndarray:
            backend = (
                OnnxBackend(staging / file)
                if fmt == "onnx"
                else TorchBackend(load_hf_export(staging, trust_remote_code), "cpu")
            )
            return Predictor(manifest.labels, encoder, backend, {}).logits(texts)

        kept: tuple[str, ...] = ()
        if quantize == "int8":
            lost = functools.partial(_points_lost, task, manifest, reference, labels)
            model_file, exported, kept = _int8(staging, logits, lost, log)
        else:
            exported = logits(model_file)
        info = _info(manifest, run, fmt, quantize, model_file, staging, encoder.pad_id)
        info["attention_fused"] = fused
        if quantize:
            info["kept_float"] = list(kept)  # nodes left unquantized: see _int8
        info["parity"], info["warnings"] = _parity(task, manifest, reference, exported, labels, sample, quantize)
        write_json(staging / EXPORT_INFO, info)
        write_text(staging / MODEL_CARD, model_card(record, manifest, info))
        _place(staging, output, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(output, info)


def _unfused(model_type: str) -> str:
    """The log line of an ONNX graph whose attention runs op by op, and why."""
    family = ARCHS.get(model_type)
    why = (
        "onnxruntime's optimizer matched no attention in it"
        if family is not None and family.onnx_fusion
        else "liftkit fuses BERT-family encoders only"
    )
    return f"attention not fused in this {model_type} graph ({why}): it runs op by op, same results, slower"


def _test_texts(run: Path, max_samples: int | None, task: Task) -> tuple[list[str], np.ndarray, str | None]:
    """The run's own test split, read as the run read it (its config.yaml), or a seeded sample;
    the labels as the run's task holds them (class ids, or multi-hot rows)."""
    try:
        cfg = load_config(run / CONFIG)
        splits = load_splits(cfg.data, cfg.train.seed, task.name)
    except LiftError as exc:
        raise LiftError(f"every export is verified on the run's test split, which cannot be read: {exc}") from None
    texts, labels = splits.test.rows(), splits.targets("test")
    if max_samples is not None and max_samples < len(texts):
        if max_samples < 1:
            raise LiftError(f"--max-samples {max_samples} must be at least 1")
        keep = np.sort(np.random.default_rng(0).choice(len(texts), max_samples, replace=False))
        return [texts[i] for i in keep], labels[keep], f"a seeded sample of {max_samples} of {len(texts)} rows"
    return texts, labels, None


def _write(model: Any, tokenizer: Any, encoder: Encoder, folder: Path, fmt: str) -> tuple[str, bool | None]:
    """The model files of the export; returns the name of the one a backend loads, and (ONNX)
    whether its attention was fused."""
    tokenizer.save_pretrained(folder)
    # tokenizer.json as the run tokenizes: truncated at its max_length, unpadded (the base model's
    # file may pad every text to a fixed length, which a plain client would then feed the model)
    encoder.tokenizer.save(str(folder / "tokenizer.json"))
    if fmt == "hf":
        write_hf(model, folder)
        return "model.safetensors", None
    return "model.onnx", to_onnx(model, folder / "model.onnx", encoder.inputs)


def _int8(
    folder: Path,
    logits: Callable[[str], np.ndarray],
    lost: Callable[[np.ndarray], float],
    log: Callable[[str], None],
) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """model.onnx quantized to model.int8.onnx, checked on the export's test rows: every weight
    first; where that loses more than INT8_POINTS, again with the weights that read a layer norm's
    output kept in float (`onnx.after_norm`): those stay fp32 in size and speed, the rest is int8.
    Returns the file, its logits and the nodes kept in float."""
    source, target = folder / "model.onnx", folder / "model.int8.onnx"
    quantize_int8(source, target)
    exported, kept = logits(target.name), ()
    if (points := lost(exported)) > INT8_POINTS and (norm_fed := after_norm(source)):
        log(
            f"int8 lost {points:.2f} points on the check rows: quantizing again with the "
            f"{len(norm_fed)} weights that read a layer norm's output kept in float ..."
        )
        quantize_int8(source, target, keep_float=norm_fed)
        exported, kept = logits(target.name), norm_fed
    source.unlink()
    return target.name, exported, kept


def _info(
    manifest: Manifest, run: Path, fmt: str, quantize: str | None, model_file: str, folder: Path, pad_id: int | None
) -> dict[str, Any]:
    """export.json without its parity figures; `pad_id` as the run's encoder resolved it (older
    manifests name no pad id: the tokenizer's pad token then)."""
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    return {
        "format": fmt,
        "quantize": quantize,
        "model_file": model_file,
        "model_size_bytes": files[model_file],
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "liftkit": __version__,
        "source_run": run.name,
        "method": manifest.method,
        "base_model": manifest.base_model,
        "model_type": manifest.model_type,
        "labels": manifest.labels,
        "max_length": manifest.max_length,
        "padding_side": manifest.padding_side,
        "pad_id": pad_id,
        "files": files,
        "task": manifest.task,
        "thresholds": manifest.thresholds,
        "inputs": list(manifest.inputs),
        "input_kind": manifest.input_kind,
        "pair_separator": manifest.pair_separator,
        "pair_encoding": manifest.pair_encoding,
        "chunk": manifest.chunk,
    }


def _parity(
    task: Task,
    manifest: Manifest,
    reference: np.ndarray,
    exported: np.ndarray,
    labels: np.ndarray,
    sample: str | None,
    quantize: str | None,
) -> tuple[dict[str, Any], list[str]]:
    """How far the export is from the run's own model on the same texts, and what to say of it:
    logits, probabilities, and the decisions at the run's thresholds (the predicted class; each
    label's yes or no for multi-label), and the task's headline scores of each."""
    ref_scores = task.metrics(reference, labels, manifest.labels, manifest.thresholds).scores
    exp_scores = task.metrics(exported, labels, manifest.labels, manifest.thresholds).scores
    ref_p, exp_p = task.probabilities(reference), task.probabilities(exported)
    headline = task.scores[:2]
    if "accuracy" in task.scores and "accuracy" not in headline:
        headline = (*headline, "accuracy")
    lead = _lead(task)  # what the change is reported in
    agreement = task.agreement(ref_p, exp_p, manifest.thresholds)
    parity = {
        "split": "test",
        "rows": int(len(labels)),
        "sample": sample,
        "max_abs_logit_diff": float(np.abs(reference - exported).max()),
        "max_abs_prob_diff": float(np.abs(ref_p - exp_p).max()),
        "decision_agreement": agreement,  # per row (single-label) or per (row, label) (multi-label)
        **(
            {"argmax_agreement": agreement} if manifest.thresholds is None else {}
        ),  # argmax decisions: the key older readers know
        "run": {key: getattr(ref_scores, key) for key in headline},
        "export": {key: getattr(exp_scores, key) for key in headline},
        f"{lead}_change_points": round((getattr(exp_scores, lead) - getattr(ref_scores, lead)) * 100, 4),
    }
    warnings = []
    if quantize and -parity[f"{lead}_change_points"] > INT8_POINTS:
        warnings.append(
            f"{quantize} quantization lost {-parity[f'{lead}_change_points']:.2f} {lead} points against the run's model "
            f"({getattr(ref_scores, lead):.4f} -> {getattr(exp_scores, lead):.4f}): ship the unquantized export if that matters"
        )
    if not quantize and parity["max_abs_prob_diff"] > PARITY_PROB:
        warnings.append(
            f"the export's probabilities differ from the run's by up to {parity['max_abs_prob_diff']:.2e} (more than "
            f"{PARITY_PROB:g}): check its predictions before shipping it, and please report it"
        )
    return parity, warnings


def _lead(task: Task) -> str:
    """The score an export's change is reported in, and an int8 export is allowed to lose: accuracy
    where the task has it, else its headline metric."""
    return "accuracy" if "accuracy" in task.scores else task.headline


def _points_lost(
    task: Task, manifest: Manifest, reference: np.ndarray, labels: np.ndarray, exported: np.ndarray
) -> float:
    """What `exported` loses against the run's `reference`, in points of `_lead`."""
    before, after = (
        getattr(task.metrics(x, labels, manifest.labels, manifest.thresholds).scores, _lead(task))
        for x in (reference, exported)
    )
    return (before - after) * 100


def _place(staging: Path, output: Path, force: bool) -> None:
    """The finished staging folder takes the output's name; an existing output (an earlier
    export, with --force) is moved aside first and deleted only once the new one is in place."""
    staging.chmod(0o755)  # mkdtemp makes folders private; exports are meant to be shared
    _check_replaceable(output, force)  # again: something may have appeared there meanwhile
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{time.time_ns()}"
        output.rename(old)
    try:
        staging.rename(output)
    except OSError as exc:
        if old is not None:
            old.rename(output)
        raise LiftError(
            f"could not move the export into {str(output)!r} ({first_line(exc)}): check that folder's permissions, or pick another --output"
        ) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
