"""Where training figures go: the `MetricLogger` protocol, the default JSONL history, and the
experiment trackers teams already run (TensorBoard, MLflow).

A logger receives flat dicts of numbers keyed by optimizer step (`MetricLogging` in
`liftkit.callbacks` decides what and when); torchtune's `MetricLoggerInterface` is the model, kept
smaller. A tracker is a logger that also takes the run's hyperparameters at start and, once the
run is saved, its test metrics (and for MLflow the run folder's files): `finish(record, run_dir)`.
Both go through the libraries' own writers (torch's `SummaryWriter`, `MlflowClient`), imported
only when asked for. Whoever opens loggers closes them (`pipeline`), also when a run fails.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from liftkit import run_dir as folders
from liftkit.errors import LiftError, first_line
from liftkit.record import METRICS, RunRecord


class MetricLogger(Protocol):
    def start(self, step: int) -> None:
        """Called once before training; `step` is the optimizer steps already taken (non-zero when
        resuming): anything logged after it belongs to the interrupted attempt and is dropped."""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record `metrics` (numbers) as of optimizer step `step`."""

    def close(self) -> None:
        """Flush and release whatever the logger holds."""


class JsonlLogger:
    """One JSON object per line in `path` (RUN_DIR/history.jsonl): the run's per-step history,
    readable with nothing but `json`. Lines are flushed as they are written, so a killed run keeps
    what it logged; a resumed run first drops the lines past its checkpoint."""

    def __init__(self, path: Path):
        self.path = path
        self._file: TextIO | None = None

    def start(self, step: int) -> None:
        kept = []
        if step and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self._file is None:
            raise RuntimeError("JsonlLogger.log called before start()")
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _step_of(line: str) -> float:
    """A history line's step; infinite (dropped on resume) for a line a kill cut short."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class Tracker(MetricLogger, Protocol):
    def finish(self, record: RunRecord, run_dir: Path) -> None:
        """The finished run: its test metrics (and whatever else the tracker keeps of it)."""


def trackers(report_to: str, run_dir: Path, params: dict[str, Any]) -> list[Tracker]:
    """The tracker `train.report_to` names (none: no tracker), for the run in `run_dir` with
    hyperparameters `params` (the config, flattened to dotted keys)."""
    if report_to == "tensorboard":
        return [TensorBoardTracker(run_dir / folders.TENSORBOARD, params)]
    if report_to == "mlflow":
        return [MlflowTracker(run_dir, params)]
    return []


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}; lists become their text."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def tag(key: str) -> str:
    """A history key -> its tracker name: loss -> train/loss, val_accuracy -> val/accuracy."""
    if key.startswith("val_"):
        return f"val/{key[4:]}"
    return {"loss": "train/loss", "lr": "train/lr", "train_loss": "train/epoch_loss"}.get(key, f"train/{key}")


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    }


def test_metrics(record: RunRecord) -> dict[str, float]:
    """The test figures a tracker receives at the end: test/<metric> for the fine-tuned model,
    test_base/<metric> for the base model, as metrics.json holds them."""
    out = {}
    for prefix, split in (("test", record.finetuned), ("test_base", record.base)):
        if split is not None:
            out.update(
                {
                    f"{prefix}/{key}": getattr(split.scores, key)
                    for key in METRICS
                    if getattr(split.scores, key) is not None
                }
            )
            if split.ece is not None:
                out[f"{prefix}/ece"] = split.ece
    return out


class TensorBoardTracker:
    """Scalars per step in RUN_DIR/tensorboard (`tensorboard --logdir runs/` shows every run):
    train/loss and train/lr every `train.log_every` steps, val/* per epoch, test/* at the end, and
    the hyperparameters in TensorBoard's HParams tab. A resumed run purges the events past its
    checkpoint, as history.jsonl does."""

    def __init__(self, folder: Path, params: dict[str, Any]):
        self.folder = folder
        self.params = params
        self._writer: Any = None
        self._step = 0

    def start(self, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # TensorBoard keeps the events *before* purge_step: those at the checkpoint's step belong to it
        self._writer = SummaryWriter(str(self.folder), purge_step=step + 1 if step else None)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for key, value in _numbers(metrics).items():
            if key != "epoch":
                self._writer.add_scalar(tag(key), value, step)
        self._step = step

    def finish(self, record: RunRecord, run_dir: Path) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = test_metrics(record)
        for key, value in final.items():
            self._writer.add_scalar(key, value, self._step)
        for summary in hparams(self.params, final):  # experiment, session start, session end
            self._writer.file_writer.add_summary(summary)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MlflowTracker:
    """One MLflow run per liftkit run, in the experiment named for its dataset: parameters,
    per-step metrics (names as TensorBoard's), test metrics, and the run's own files as artifacts
    (model, tokenizer, metrics, history, reports, plots, predictions; not checkpoints). The store
    is `MLFLOW_TRACKING_URI` when set, else a local ./mlruns folder (MLflow's file store, which is
    in maintenance mode upstream: liftkit opts into it for this default only). A resumed liftkit
    run continues its MLflow run (its id is kept in RUN_DIR/mlflow_run.json); MLflow cannot delete
    points, so those the interrupted attempt logged after its checkpoint stay in the history."""

    def __init__(self, run_dir: Path, params: dict[str, Any]):
        self.run_dir = run_dir
        self.params = params
        self._client: Any = None
        self._run_id = ""
        self._status = "FAILED"  # until finish() ran

    def start(self, step: int) -> None:
        from mlflow import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (Path.cwd() / "mlruns").as_uri()
        try:
            self._client = MlflowClient(tracking_uri=uri)
            self._open(step, uri)
        except Exception as exc:  # MLflow's own errors: a bad URI, an unreachable server, a read-only store
            self._client = None
            raise LiftError(
                f"MLflow tracking at {uri} failed ({first_line(exc)[:200]}): check MLFLOW_TRACKING_URI, or run with --report-to none"
            ) from None

    def _open(self, step: int, uri: str) -> None:
        """Continue the MLflow run of an interrupted attempt, or create one with the parameters."""
        from mlflow.entities import Param

        client = self._client
        self._run_id = self._earlier_run(step)
        if self._run_id:
            client.update_run(self._run_id, status="RUNNING")
            return
        name = str(self.params.get("data.dataset", "liftkit"))
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        self._run_id = client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id
        folders.write_json(self.run_dir / folders.MLFLOW_RUN, {"run_id": self._run_id, "tracking_uri": uri})
        params = [Param(key, str(value)[:6000]) for key, value in self.params.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            client.log_batch(self._run_id, params=params[i : i + 100])

    def _earlier_run(self, step: int) -> str:
        """The MLflow run an interrupted attempt of this run started, if resuming into the same store."""
        path = self.run_dir / folders.MLFLOW_RUN
        if not step or not path.is_file():
            return ""
        run_id = str(folders.read_json(path).get("run_id", ""))
        try:
            return self._client.get_run(run_id).info.run_id
        except Exception:  # another store, or a run deleted there since: start a new one
            return ""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(tag(key), value, now, step) for key, value in _numbers(metrics).items() if key != "epoch"]
        self._client.log_batch(self._run_id, metrics=rows)

    def finish(self, record: RunRecord, run_dir: Path) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = record.train.optimizer_steps
        self._client.log_batch(
            self._run_id, metrics=[Metric(key, value, now, step) for key, value in test_metrics(record).items()]
        )
        for path in folders.artifacts(run_dir):
            if path.is_dir():
                self._client.log_artifacts(self._run_id, str(path), artifact_path=path.name)
            else:
                self._client.log_artifact(self._run_id, str(path))
        self._status = "FINISHED"

    def close(self) -> None:
        if self._client is not None and self._run_id:
            self._client.set_terminated(self._run_id, status=self._status)
            self._client = None
