"""The run configuration: one typed, validated object, read from YAML and/or CLI overrides.

Every stage (data, model, method, train) takes its own section, so each can be built and tested
alone. The resolved config is written into the run directory; `lift run RUN_DIR/config.yaml`
reproduces the run. Nothing here imports torch: a config is read and checked in milliseconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liftkit.errors import LiftError
from liftkit.methods.options import OPTIONS, MethodOptions
from liftkit.record import METRICS

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass
class DataConfig:
    """Where the labelled text comes from and how it is cut down and tokenized."""

    dataset: str = "emotion"  # registered short name, hub id, local folder or local file
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 128  # longer texts are truncated to this many tokens
    max_train_samples: int | None = None  # seeded random subset of train, as the reference projects
    max_eval_samples: int | None = None  # seeded random subset of validation and of test
    validation_fraction: float = 0.1  # carved from train (stratified) when there is no validation split
    test_fraction: float = 0.2  # carved from train when a single file has no test split

    def problems(self) -> list[str]:
        out = []
        if not self.dataset:
            out.append("data.dataset is empty: name a dataset, e.g. --dataset emotion")
        if self.max_length < 8:
            out.append(f"data.max_length={self.max_length} is too small: use 8 or more")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                out.append(f"data.{name}={value} must be a positive number of rows (or null for all)")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 1:
                out.append(f"data.{name}={value} must lie between 0 and 1")
        return out


@dataclass
class ModelConfig:
    """Which pretrained model to adapt."""

    name: str = DEFAULT_MODEL  # the embedded default, a hub id or a local folder
    trust_remote_code: bool = False  # never run a model repository's own code unless asked to
    revision: str | None = None  # hub revision (branch, tag or commit)

    def problems(self) -> list[str]:
        return [] if self.name else ["model.name is empty: pass --model NAME_OR_PATH"]


@dataclass
class TrainConfig:
    """The optimisation: one AdamW loop with linear warmup and decay."""

    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 128
    learning_rate: float | None = None  # peak lr; null: the method's own default (LoRA 2e-3, full 5e-5, ...)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06  # fraction of optimizer steps spent warming the lr up from 0
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 1.0  # clip gradients at this norm; 0 disables clipping
    seed: int = 0
    best_metric: str = "accuracy"  # validation metric that picks the epoch whose weights are kept
    early_stopping_patience: int = 0  # stop after this many epochs without improvement; 0 = never
    mixed_precision: str = "auto"  # auto: bf16/fp16 on a GPU, fp32 on the CPU; or no, fp16, bf16
    device: str = "auto"  # auto, cpu or cuda
    # compute the frozen bottom layers once and train from their cached output (see liftkit.frozen);
    # false: recompute them every step (same results, slower)
    cache_frozen: bool = True
    cache_max_gb: float = 4.0  # host memory the cache may take; above it, recompute every step
    log_every: int = 10  # optimizer steps per history.jsonl line (mean training loss over them, lr)

    def problems(self) -> list[str]:
        out = []
        for name in ("epochs", "batch_size", "eval_batch_size", "grad_accum_steps", "log_every"):
            if getattr(self, name) < 1:
                out.append(f"train.{name}={getattr(self, name)} must be at least 1")
        if self.learning_rate is not None and self.learning_rate <= 0:
            out.append(f"train.learning_rate={self.learning_rate} must be positive")
        if not 0 <= self.warmup_ratio < 1:
            out.append(f"train.warmup_ratio={self.warmup_ratio} must lie in [0, 1)")
        if self.weight_decay < 0 or self.max_grad_norm < 0 or self.early_stopping_patience < 0:
            out.append("train.weight_decay, max_grad_norm and early_stopping_patience must not be negative")
        if self.best_metric not in METRICS:
            out.append(f"train.best_metric={self.best_metric!r} is unknown: use one of {', '.join(METRICS)}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            out.append(f"train.mixed_precision={self.mixed_precision!r}: use auto, no, fp16 or bf16")
        if self.cache_max_gb < 0:
            out.append(f"train.cache_max_gb={self.cache_max_gb} must not be negative")
        if self.device not in ("auto", "cpu", "cuda"):
            out.append(f"train.device={self.device!r}: use auto, cpu or cuda")
        return out


@dataclass
class RunConfig:
    """Everything one `lift run` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodOptions = field(default_factory=lambda: OPTIONS["lora"]())
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str | None = None  # default: runs/<dataset>-<method>-<timestamp>
    evaluate_base: bool = True  # evaluate the untrained-head base model first, for the comparison

    @property
    def learning_rate(self) -> float:
        """The peak learning rate this run uses."""
        return self.train.learning_rate or self.method.default_lr

    def validate(self) -> RunConfig:
        """Collect every problem, then raise once, so a user fixes them all in one go."""
        problems = self.data.problems() + self.model.problems() + self.method.all_problems()
        problems += self.train.problems()
        if problems:
            raise LiftError("invalid config: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method"] = {"name": self.method.name, **dataclasses.asdict(self.method)}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        raw = dict(raw or {})
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise LiftError(f"unknown config section(s) {sorted(unknown)}: allowed are data, model, method, train, output_dir, evaluate_base")
        method_raw = dict(raw.pop("method", None) or {})
        method_name = method_raw.pop("name", "lora")
        if method_name not in OPTIONS:
            raise LiftError(f"unknown method {method_name!r}: choose one of {', '.join(sorted(OPTIONS))}")
        return cls(
            data=_build(DataConfig, raw.pop("data", None), "data"),
            model=_build(ModelConfig, raw.pop("model", None), "model"),
            method=build_options(method_name, method_raw),
            train=_build(TrainConfig, raw.pop("train", None), "train"),
            **raw,
        )


def build_options(method: str, raw: dict[str, Any] | None) -> MethodOptions:
    """The options of `method` from a mapping (a config's method section, a run's manifest)."""
    return _build(OPTIONS[method], raw, "method")


def _build(kind: type, raw: dict[str, Any] | None, section: str) -> Any:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise LiftError(f"config section {section!r} must be a mapping, got {raw!r}")
    allowed = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise LiftError(f"unknown key(s) {unknown} in config section {section!r}: allowed are {', '.join(sorted(allowed))}")
    return kind(**raw)


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `raw["train"]["epochs"] = value` from `"train.epochs"`; used for CLI overrides."""
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise LiftError(f"cannot set {dotted!r}: {key!r} is not a section")
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or start from defaults), apply dotted overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            path = path / "config.yaml"
        if not path.is_file():
            raise LiftError(f"config file {str(path)!r} not found: pass a YAML file or a run directory")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise LiftError(f"config file {str(path)!r} is not valid YAML ({str(exc).splitlines()[0]}): fix the syntax") from None
        if not isinstance(raw, dict):
            raise LiftError(f"config file {str(path)!r} must hold a mapping of sections (data, model, method, train)")
    for dotted, value in (overrides or {}).items():
        if dotted == "method.name" and value != (raw.get("method") or {}).get("name", "lora"):
            raw["method"] = {}  # options of another method do not carry over
        set_dotted(raw, dotted, value)
    try:
        return RunConfig.from_dict(raw).validate()
    except TypeError as exc:  # a dataclass got a value of the wrong shape
        raise LiftError(f"invalid config: {exc}") from None
