"""The run-folder contract: what a run saves where, and how it is read back.

```
RUN_DIR/
  config.yaml                 the resolved config: `lift run RUN_DIR/config.yaml` reproduces the run
  liftkit.json                manifest: what loading the model needs (method and its options, base
                              model, labels, max_length, padding side, versions); read by predict
  adapter_config.json         \\ a standard peft adapter folder (PEFT methods): loads with plain
  adapter_model.safetensors   /  peft, classifier head included (modules_to_save)
  liftkit_weights.safetensors the trainable tensors of liftkit's own methods (instead of the pair above)
  tokenizer.json, ...         the tokenizer, pad token set
  metrics.json                the run record (liftkit.record): every figure, measured by this run
  history.jsonl               per-step training loss and lr, per-epoch validation (liftkit.tracking)
  report.md                   the human-readable comparison
  report.html, plots/*.png    the same and more as pictures (liftkit.pages, liftkit.plots): `lift report` redraws them
  predictions.safetensors     test-split probabilities of the base and fine-tuned models, and the labels
  tensorboard/                the run's TensorBoard events (train.report_to: tensorboard)
  mlflow_run.json             the MLflow run it reports to (train.report_to: mlflow)
  README.md                   the model card (liftkit.modelcard), built from metrics.json
  error.json, error.txt       why the run failed (type, message; the traceback), while it has
  checkpoints/last, best      per-epoch training state (resume) and best-epoch weights
```
A comparison folder holds one such run folder per method and seed, `<method>-seed<seed>/`.
An export folder (`lift export`) holds the model in its format (`model.safetensors` + config.json,
or `model.onnx`), the tokenizer, README.md and `export.json`: what loading it needs (format,
labels, max_length, padding) and what the export measured against its run (liftkit.export).
Only this module decides paths. Files are written beside their final name and renamed into
place, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from liftkit.config import portable_name
from liftkit.errors import LiftError, first_line
from liftkit.record import RunRecord, known_fields

MANIFEST = "liftkit.json"
CONFIG = "config.yaml"
METRICS = "metrics.json"
HISTORY = "history.jsonl"
REPORT = "report.md"
ERROR = "error.json"
TRACEBACK = "error.txt"
RUN_LOG = "run.log"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"  # held (flock) by the run writing the folder; holds the holder's pid
WEIGHTS = "liftkit_weights.safetensors"  # trainable tensors of a method peft does not cover
MODEL_CARD = "README.md"
EXPORT_INFO = "export.json"  # an export folder's manifest and parity figures
PREDICTIONS = "predictions.safetensors"
REPORT_HTML = "report.html"
PLOTS = "plots"
TENSORBOARD = "tensorboard"
MLFLOW_RUN = "mlflow_run.json"  # the MLflow run this run reports to (train.report_to: mlflow), for resuming
COMPARISON = "comparison.json"  # a comparison folder's record (liftkit.compare)
COMPARE_HTML = "compare.html"


def _stem(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(dataset).name.split(".")[0] or "data")


def new_run_dir(output_dir: str | None, dataset: str, method: str) -> Path:
    if output_dir:
        return Path(output_dir)
    return Path("runs") / f"{_stem(dataset)}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"


def new_comparison_dir(output_dir: str | None, dataset: str) -> Path:
    if output_dir:
        return Path(output_dir)
    return Path("comparisons") / f"{_stem(dataset)}-{time.strftime('%Y%m%d-%H%M%S')}"


def member_dir(parent: Path, method: str, seed: int) -> Path:
    """The run folder of one method and seed inside a comparison (or search) folder."""
    return parent / f"{method}-seed{seed}"


@contextmanager
def lock(run_dir: Path) -> Iterator[None]:
    """Hold an OS lock on RUN_DIR/.lock while a run writes there: a second run into the same folder
    fails at once, naming the process that holds it. The OS releases the lock however the holder
    ends (exception, Ctrl-C, kill -9), so a stale lock never blocks a resume."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = (run_dir / LOCK).open("a+")
    except OSError as exc:
        raise LiftError(
            f"cannot write into the run folder {str(run_dir)!r} ({first_line(exc)}): pick another --output-dir"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise LiftError(
                f"run folder {str(run_dir)!r} is in use by {holder}: wait for it to finish, or pick another --output-dir"
            ) from None
        raise LiftError(
            f"cannot lock the run folder {str(run_dir)!r} ({first_line(exc)}): put runs on a local disk"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"lift (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# what every run may write besides the files its manifest lists (see the layout above)
RUN_FILES = (
    CONFIG,
    MANIFEST,
    METRICS,
    HISTORY,
    REPORT,
    MODEL_CARD,
    ERROR,
    TRACEBACK,
    RUN_LOG,
    CHECKPOINTS,
    PREDICTIONS,
    REPORT_HTML,
    PLOTS,
    TENSORBOARD,
    MLFLOW_RUN,
)


def artifacts(run_dir: Path) -> list[Path]:
    """What a finished run is made of, for a tracker to keep: the model files its manifest lists,
    config, manifest, metrics, history, reports, model card, plots and predictions (not the
    checkpoints, logs or anything else that happens to be in the folder)."""
    names = [
        CONFIG,
        MANIFEST,
        METRICS,
        HISTORY,
        REPORT,
        MODEL_CARD,
        REPORT_HTML,
        PLOTS,
        PREDICTIONS,
        *(Path(f).name for f in read_manifest(run_dir).files),
    ]
    return [run_dir / name for name in dict.fromkeys(names) if (run_dir / name).exists()]


def finished(run_dir: Path) -> bool:
    """A run ended here: its manifest is the last file a run writes."""
    return (run_dir / MANIFEST).is_file()


def started(run_dir: Path) -> bool:
    """A run trained here and has not finished: it left checkpoints a new run must not mix with (a
    run that failed before its first checkpoint leaves nothing a rerun would pick up)."""
    return not finished(run_dir) and checkpoint_dir(run_dir).exists()


def clear(run_dir: Path) -> None:
    """Delete what a run wrote into `run_dir` (for --overwrite): the files every run writes, those
    its manifest lists, and its checkpoints. Anything else in the folder stays."""
    names = set(RUN_FILES)
    try:
        names.update(read_json(run_dir / MANIFEST).get("files", []))
    except (OSError, ValueError, AttributeError):
        pass  # no manifest (an unfinished run) or a damaged one: the fixed names only
    for name in names:
        path = run_dir / Path(name).name  # names only: a damaged manifest cannot point elsewhere
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS


def history_path(run_dir: Path) -> Path:
    return run_dir / HISTORY


def log_path(run_dir: Path) -> Path:
    """Where a run started as a child process (compare, tune) has its output captured."""
    return run_dir / RUN_LOG


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run dirs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@dataclass
class Manifest:
    """What loading a run's model needs, and all that `predict` reads: the run dir's liftkit.json."""

    liftkit: str  # version that wrote the run
    method: str
    base_model: str
    model_type: str
    labels: list[str]
    max_length: int
    padding_side: str = "right"  # batching.Padding's side; manifests older than the prompt methods lack it: right
    trust_remote_code: bool = False  # what the training run was allowed; informational: loading asks the caller
    revision: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)  # the method section of the config, name excluded
    pad_id: int | None = None  # the token batches are padded with; older manifests: the tokenizer's pad token
    files: list[str] = field(
        default_factory=list
    )  # weight and tokenizer files save_model wrote (what --overwrite deletes)
    task: str = "single_label"  # liftkit.tasks: what the logits mean (older manifests: single_label)
    thresholds: list[float] | None = None  # multi-label: each label's decision threshold, in labels' order
    # what the model is fed (input_ids, attention_mask, BERT's token_type_ids); older manifests: the first two
    inputs: list[str] = field(default_factory=lambda: ["input_ids", "attention_mask"])
    # what one input is: "text", or "pair" (sentence pairs: two texts in, one prediction out)
    input_kind: str = "text"
    pair_separator: str | None = None  # pairs the tokenizer does not separate (decoders): joined by this
    pair_encoding: str | None = None  # pairs: cross (one sequence) or bi (liftkit.bi_encoder); None for texts
    # long texts in windows (data.long_texts chunk): [stride, pool]; None: cut at max_length
    chunk: list | None = None


def save_model(
    run_dir: Path,
    save_weights: Callable[[Path], None],
    tokenizer: Any,
    manifest: Manifest,
    card: Callable[[Manifest], str],
) -> None:
    """Write weights (through the method's saver), tokenizer and model card, then the manifest
    (which holds the label names, one source, and lists the weight and tokenizer files), each
    atomically. `card` writes the model card from the finished manifest. The manifest comes last: its presence means the run finished (`finished`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=run_dir, prefix=".model."))
    try:
        save_weights(staging)
        tokenizer.save_pretrained(staging)
        (staging / MODEL_CARD).unlink(missing_ok=True)  # peft's blank template; ours follows
        manifest.files = sorted(path.name for path in staging.iterdir())
        for path in staging.iterdir():
            os.replace(path, run_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_text(run_dir / MODEL_CARD, card(manifest))
    write_json(run_dir / MANIFEST, dataclasses.asdict(manifest))


def read_manifest(run_dir: str | Path) -> Manifest:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a folder" if run_dir.exists() else "does not exist"
        raise LiftError(f"run folder {str(run_dir)!r} {what}: pass the folder `lift run` wrote")
    if not (run_dir / MANIFEST).is_file():
        raise LiftError(
            f"{str(run_dir)!r} is not a liftkit run directory (no {MANIFEST}): pass the folder `lift run` wrote"
        )
    try:
        raw = read_json(run_dir / MANIFEST)
        if "method_options" not in raw and (run_dir / CONFIG).is_file():
            # runs written before the manifest carried the method's options: take them from the config
            method = dict((yaml.safe_load((run_dir / CONFIG).read_text()) or {}).get("method") or {})
            method.pop("name", None)
            raw["method_options"] = method
        manifest = known_fields(Manifest, raw)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise damaged(run_dir, f"{MANIFEST} is unreadable or incomplete ({first_line(exc)[:160]})") from None
    if not isinstance(manifest.labels, list) or not manifest.labels or not isinstance(manifest.method_options, dict):
        raise damaged(run_dir, f"{MANIFEST} lacks its label list or method options")
    manifest.base_model = portable_name(manifest.base_model)  # runs that recorded the packaged model's alias
    return manifest


EXPORT_KEYS = ("format", "labels", "max_length", "padding_side", "pad_id", "method", "base_model")


def read_export_info(folder: str | Path) -> dict[str, Any]:
    """An export folder's export.json, checked for what loading needs."""
    folder = Path(folder)
    try:
        info = read_json(folder / EXPORT_INFO)
    except (OSError, ValueError) as exc:
        raise damaged(folder, f"{EXPORT_INFO} is unreadable ({first_line(exc)[:160]})") from None
    missing = [key for key in EXPORT_KEYS if not isinstance(info, dict) or key not in info]
    if missing:
        raise damaged(folder, f"{EXPORT_INFO} lacks {', '.join(missing)}")
    info.setdefault("model_file", "model.onnx")
    if info["format"] not in ("hf", "onnx") or Path(str(info["model_file"])).name != info["model_file"]:
        raise damaged(folder, f"{EXPORT_INFO} names an unknown format or a model file outside the folder")
    needed = [info["model_file"]] if info["format"] == "onnx" else ["config.json", "model.safetensors"]
    lost = [name for name in needed + ["tokenizer.json"] if not (folder / name).is_file()]
    if lost:
        raise damaged(folder, f"{', '.join(lost)} {'is' if len(lost) == 1 else 'are'} missing")
    return info


def damaged(run_dir: Path, what: str) -> LiftError:
    """The one line for a run or export folder that lost or broke a file."""
    if (run_dir / EXPORT_INFO).is_file():
        return LiftError(
            f"export folder {str(run_dir)!r} is damaged: {what}; copy it again, or export its run again (lift export)"
        )
    return LiftError(f"run folder {str(run_dir)!r} is damaged: {what}; copy it again, or retrain")


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_json(run_dir / METRICS, record.to_dict())


def read_record(run_dir: str | Path) -> RunRecord:
    """The record of a finished run (its metrics.json)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise LiftError(f"{str(run_dir)!r} holds no finished run (no {METRICS}): pass a folder `lift run` completed")
    return RunRecord.from_dict(read_json(path))


def write_predictions(run_dir: Path, labels: Any, finetuned: Any, base: Any | None) -> None:
    """Test-split class probabilities (rows in the split's order) and true labels (class ids,
    multi-hot rows, or scores), as safetensors (no pickle): what the report's plots are redrawn from."""
    import numpy as np
    from safetensors.numpy import save

    labels = np.asarray(labels)
    arrays = {  # class ids stay integers; multi-hot rows and scores stay floats
        "labels": labels.astype(np.float32 if labels.dtype.kind == "f" else np.int64),
        "finetuned": np.asarray(finetuned, dtype=np.float32),
    }
    if base is not None:
        arrays["base"] = np.asarray(base, dtype=np.float32)
    write_bytes(run_dir / PREDICTIONS, save(arrays))


def read_predictions(run_dir: Path) -> dict[str, Any] | None:
    """The arrays `write_predictions` saved; None for runs older than them."""
    from safetensors.numpy import load_file

    path = run_dir / PREDICTIONS
    if not path.is_file():
        return None
    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises its own error type for a cut or foreign file
        raise damaged(run_dir, f"{PREDICTIONS} is unreadable ({first_line(exc)[:160]})") from None


def write_error(run_dir: Path, exc: BaseException) -> None:
    """Record why a run failed: error.json (type, message, where the traceback is) and the
    traceback itself in error.txt, so whoever started the run (compare, tune) reads a structure,
    not a log."""
    text = "".join(traceback.format_exception(exc))
    write_text(run_dir / TRACEBACK, text)
    message = first_line(exc)
    write_json(run_dir / ERROR, {"type": type(exc).__name__, "message": message, "traceback": TRACEBACK})


def read_error(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / ERROR
    return read_json(path) if path.is_file() else None


def clear_error(run_dir: Path) -> None:
    """A run that finishes (after a resume, say) no longer carries the error of an earlier attempt."""
    for name in (ERROR, TRACEBACK):
        (run_dir / name).unlink(missing_ok=True)
