"""The run configuration: one typed, validated object, read from YAML and/or CLI overrides.

Every stage (data, model, method, train) takes its own section, so each can be built and tested
alone. The resolved config is written into the run directory; `lift run RUN_DIR/config.yaml`
reproduces the run. Nothing here imports torch: a config is read and checked in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liftkit import packaged
from liftkit.errors import LiftError, first_line
from liftkit.methods.options import OPTIONS, MethodOptions
from liftkit.record import METRICS
from liftkit.tasks import TASKS

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # packaged (liftkit.packaged): loads with no hub access
DEFAULT_METHOD = "lora"


PAIR_ENCODINGS = ("auto", "cross", "bi")


@dataclass
class DataConfig:
    """Where the labelled text comes from and how it is cut down and tokenized."""

    dataset: str = "emotion"  # registered short name, hub id, local folder or local file
    text_column: str = "text"
    # sentence pairs: the column of each row's second text. Unset: found where the columns are
    # GLUE's (sentence1/sentence2, premise/hypothesis, question/sentence, query/passage)
    text_pair_column: str | None = None
    # how a pair is encoded: cross (both texts in one sequence, attending to each other), bi (each
    # text encoded alone by the shared model, mean-pooled, a head on the pair's features: how
    # sentence-transformers models were trained), or auto: bi for a sentence-transformers base
    pair_encoding: str = "auto"
    label_column: str = "label"  # "labels" (multi-label) and "score" (regression) are found too
    # longer texts are truncated to this many tokens; auto: the 99th percentile of the training
    # texts' lengths, capped by the model (batches hold one length each, so a long cap costs only
    # the long texts, while a short fixed cap cuts most of a review)
    max_length: int | str = field(default="auto", metadata={"expects": "auto or a whole number of tokens (8 or more)"})
    # texts longer than max_length: truncate (cut, as always), or chunk: windows of max_length tokens
    # overlapping by chunk_stride, every window trained with its document's target (weighted so a
    # document counts once), a document's prediction pooled over its windows (chunk_pool)
    long_texts: str = "truncate"
    chunk_stride: int = 32  # tokens two consecutive windows share
    chunk_pool: str = "mean"  # mean or max of the windows' logits
    max_train_samples: int | None = None  # seeded random subset of train, as the reference projects
    max_eval_samples: int | None = None  # seeded random subset of validation and of test
    validation_fraction: float = 0.1  # carved from train (stratified) when there is no validation split
    test_fraction: float = 0.2  # carved from train when a single file has no test split
    drop_empty: bool = True  # drop rows whose text is empty (with a warning); false: such rows are an error
    # CSV/TSV multi-label cells: the separator between a row's labels ("billing|bug"); a blank cell
    # is then a row with no label. JSON files hold lists instead, and need none
    label_separator: str | None = None

    def problems(self) -> list[str]:
        out = []
        if not self.dataset:
            out.append("data.dataset is empty: name a dataset, e.g. --dataset emotion")
        whole = isinstance(self.max_length, numbers.Integral) and not isinstance(self.max_length, bool)
        if self.max_length != "auto" and not whole:  # a float or bool built in Python, not parsed from YAML
            out.append(f"data.max_length={self.max_length!r} must be auto or a whole number of tokens (8 or more)")
        elif whole and self.max_length < 8:
            out.append(f"data.max_length={self.max_length} is too small: use 8 or more (or auto)")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                out.append(f"data.{name}={value} must be a positive number of rows (or null for all)")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 1:
                out.append(f"data.{name}={value} must lie between 0 and 1")
        if self.long_texts not in ("truncate", "chunk"):
            out.append(f"data.long_texts={self.long_texts!r}: use truncate or chunk")
        if self.chunk_pool not in ("mean", "max"):
            out.append(f"data.chunk_pool={self.chunk_pool!r}: use mean or max")
        if self.chunk_stride < 0:
            out.append(f"data.chunk_stride={self.chunk_stride} must not be negative")
        if self.pair_encoding not in PAIR_ENCODINGS:
            out.append(f"data.pair_encoding={self.pair_encoding!r}: use {', '.join(PAIR_ENCODINGS)}")
        if self.label_separator is not None and not self.label_separator:
            out.append("data.label_separator is empty: name the character between a row's labels, e.g. '|'")
        return out


@dataclass
class TaskConfig:
    """What kind of target the labels are (liftkit.tasks) and how multi-label decisions are made."""

    # auto: multi_label when the label column holds lists (or data.label_separator is set),
    # regression when it holds fractional numbers, else single_label
    name: str = "auto"
    # multi-label: tuned (each label's threshold maximises its F1 on the validation split), a number
    # for every label, or {label: threshold} (others 0.5)
    threshold: float | str | dict[str, float] = field(
        default="tuned", metadata={"expects": "tuned, a number in (0, 1) or a mapping {label: threshold}"}
    )
    # tuned thresholds: a label with fewer validation positives than this keeps 0.5 (its F1 would swing on a row or two)
    min_positives: int = 5

    def problems(self) -> list[str]:
        out = []
        if self.name not in ("auto", *TASKS):
            out.append(f"task.name={self.name!r} is unknown: use auto, {', '.join(TASKS)}")
        values = self.threshold.values() if isinstance(self.threshold, dict) else [self.threshold]
        if isinstance(self.threshold, str) and self.threshold != "tuned":
            out.append(
                f"task.threshold={self.threshold!r}: use tuned, a number in (0, 1) or a mapping {{label: threshold}}"
            )
        elif not all(isinstance(v, str) or 0 < v < 1 for v in values):
            out.append(f"task.threshold={self.threshold!r}: every threshold must lie strictly between 0 and 1")
        if self.min_positives < 1:
            out.append(f"task.min_positives={self.min_positives} must be at least 1")
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
    # validation metric that picks the epoch whose weights are kept; auto: the task's (accuracy for
    # single-label, micro_f1 for multi-label)
    best_metric: str = "auto"
    early_stopping_patience: int = 0  # stop after this many epochs without improvement; 0 = never
    mixed_precision: str = "auto"  # auto: bf16/fp16 on a GPU, fp32 on the CPU; or no, fp16, bf16
    device: str = "auto"  # auto, cpu or cuda
    # compute the frozen bottom layers once and train from their cached output (see liftkit.frozen);
    # false: recompute them every step (same results, slower)
    cache_frozen: bool = True
    cache_max_gb: float = 4.0  # host memory the cache may take; above it, recompute every step
    log_every: int = 10  # optimizer steps per history.jsonl line (mean training loss over them, lr)
    report_to: str = (
        "none"  # also send the figures to: none, tensorboard (RUN_DIR/tensorboard) or mlflow (liftkit.tracking)
    )
    # the training loss (liftkit.losses); validation and test losses stay the task's plain one. auto:
    # cross_entropy for classes (binary per label for multi-label), mse for regression; focal
    # down-weights rows the model already gets right; huber (regression) is robust to outliers
    loss: str = "auto"
    focal_gamma: float = 2.0  # focal loss's focusing exponent (0: cross-entropy)
    label_smoothing: float = 0.0  # cross_entropy only: share of each target spread over all classes
    # none; balanced: each class weighted n_rows / (n_classes * its rows); or {label: weight}, others 1
    class_weights: str | dict[str, float] = field(
        default="none", metadata={"expects": "none, balanced or a mapping {label: weight}"}
    )

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
        if self.best_metric not in ("auto", *METRICS):
            out.append(f"train.best_metric={self.best_metric!r} is unknown: use auto or one of {', '.join(METRICS)}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            out.append(f"train.mixed_precision={self.mixed_precision!r}: use auto, no, fp16 or bf16")
        if self.cache_max_gb < 0:
            out.append(f"train.cache_max_gb={self.cache_max_gb} must not be negative")
        if self.device not in ("auto", "cpu", "cuda"):
            out.append(f"train.device={self.device!r}: use auto, cpu or cuda")
        if self.report_to not in ("none", "tensorboard", "mlflow"):
            out.append(f"train.report_to={self.report_to!r}: use none, tensorboard or mlflow")
        return out + self._loss_problems()

    def _loss_problems(self) -> list[str]:
        out = []
        losses = sorted({name for task in TASKS.values() for name in task.losses})
        if self.loss not in ("auto", *losses):
            out.append(f"train.loss={self.loss!r}: use auto, {', '.join(losses)}")
        if self.focal_gamma < 0:
            out.append(f"train.focal_gamma={self.focal_gamma} must not be negative")
        if not 0 <= self.label_smoothing < 1:
            out.append(f"train.label_smoothing={self.label_smoothing} must lie in [0, 1)")
        elif self.label_smoothing and self.loss == "focal":
            out.append("train.label_smoothing applies to the cross_entropy loss: set it to 0 with train.loss=focal")
        if isinstance(self.class_weights, str) and self.class_weights not in ("none", "balanced"):
            out.append(
                f"train.class_weights={self.class_weights!r}: use none, balanced or a mapping {{label: weight}}"
            )
        if isinstance(self.class_weights, dict) and not all(w > 0 for w in self.class_weights.values()):
            out.append("train.class_weights: every weight must be positive")
        return out


# settings that change where or how fast a run goes, not what it finds (lift tune, comparison pages)
NOT_RESULTS = (
    "train.device",
    "train.eval_batch_size",
    "train.cache_frozen",
    "train.cache_max_gb",
    "train.report_to",
    "train.log_every",
    "output_dir",
)


@dataclass
class RunConfig:
    """Everything one `lift run` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodOptions = field(default_factory=lambda: OPTIONS["lora"]())
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str | None = None  # default: runs/<dataset>-<method>-<timestamp>
    evaluate_base: bool = True  # evaluate the untrained-head base model first, for the comparison

    @property
    def learning_rate(self) -> float:
        """The peak learning rate this run uses."""
        return self.train.learning_rate or self.method.default_lr

    def problems(self) -> list[str]:
        """Every problem with the values, one message each (empty when all is well)."""
        return (
            self.data.problems()
            + self.task.problems()
            + self.model.problems()
            + self.method.all_problems()
            + self.train.problems()
        )

    def validate(self) -> RunConfig:
        """Collect every problem, then raise once, so a user fixes them all in one go."""
        _raise_if(self.problems())
        return self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method"] = {"name": self.method.name, **dataclasses.asdict(self.method)}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Build and check a config from plain values (YAML, CLI overrides): every value is parsed
        to its field's type, and every problem, of type or of value, is reported at once."""
        raw = dict(raw or {})
        problems: list[str] = []
        unknown = sorted(map(str, set(raw) - {f.name for f in dataclasses.fields(cls)}))
        if unknown:
            problems.append(
                f"unknown config section(s) {unknown}: allowed are data, task, model, method, train, output_dir, evaluate_base"
            )
        method_raw = raw.pop("method", None) or {}
        method_raw = dict(method_raw) if isinstance(method_raw, dict) else method_raw
        method_name = method_raw.pop("name", DEFAULT_METHOD) if isinstance(method_raw, dict) else DEFAULT_METHOD
        if not isinstance(method_name, str) or method_name not in OPTIONS:
            raise LiftError(f"unknown method {method_name!r}: choose one of {', '.join(sorted(OPTIONS))}")
        sections = {"data": DataConfig, "task": TaskConfig, "model": ModelConfig, "train": TrainConfig}
        built = {name: _build(kind, raw.pop(name, None), name, problems) for name, kind in sections.items()}
        built["method"] = _build(OPTIONS[method_name], method_raw, "method", problems)
        top = {f.name: f for f in dataclasses.fields(cls) if f.name not in built}  # output_dir, evaluate_base
        built.update(_parse_fields(top, {k: v for k, v in raw.items() if str(k) not in unknown}, "", problems))
        cfg = cls(**built)
        _raise_if(problems + cfg.problems())
        return cfg


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise LiftError("invalid config: " + "; ".join(problems))


def build_options(method: str, raw: dict[str, Any] | None) -> MethodOptions:
    """The options of `method` from a mapping (a config's method section, a run's manifest)."""
    problems: list[str] = []
    options = _build(OPTIONS[method], raw, "method", problems)
    _raise_if(problems + options.all_problems())
    return options


def _build(kind: type, raw: Any, section: str, problems: list[str]) -> Any:
    """`kind` from the mapping `raw`, each value parsed to its field's type. A value that cannot be
    parsed adds a problem and leaves the field at its default, so later checks still run."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        problems.append(f"config section {section!r} must be a mapping of keys to values, got {raw!r}")
        return kind()
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(map(str, set(raw) - set(fields)))
    if unknown:
        problems.append(
            f"unknown key(s) {unknown} in config section {section!r}: allowed are {', '.join(sorted(fields))}"
        )
    return kind(**_parse_fields(fields, raw, section, problems))


def _parse_fields(
    fields: dict[str, dataclasses.Field], raw: dict[str, Any], section: str, problems: list[str]
) -> dict[str, Any]:
    """The values of `raw` that name one of `fields`, each parsed to its field's type; the others
    add a problem and are left out (their field keeps its default)."""
    values = {}
    for name, value in raw.items():
        if name in fields:
            key = f"{section}.{name}" if section else name
            parsed, problem = parse_value(value, str(fields[name].type), key, fields[name].metadata.get("expects"))
            if problem:
                problems.append(problem)
            else:
                values[name] = parsed
    return values


_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}
_WHAT = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false (or yes/no, 1/0)",
    "str": "a text",
    "list[str]": "a list of names (or one comma-separated text)",
    "None": "null",
}


def parse_value(value: Any, annotation: str, key: str, expects: str | None = None) -> tuple[Any, str | None]:
    """`value` as the type `annotation` names ("int", "float | None", "list[str] | None", ...), or a
    problem naming the key, the value and what is allowed (`expects`, where the type says too
    little). YAML reads 5e-5 as text and the CLI passes text: both are parsed here, so every
    spelling of a number works."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None:
        return (
            (None, None)
            if "None" in kinds
            else (None, f"{key} must not be null: give {_WHAT.get(kinds[0], kinds[0])}")
        )
    for kind in kinds:
        ok, parsed = _parse_as(kind, value)
        if ok:
            return parsed, None
    allowed = expects or " or ".join(_WHAT.get(k, k) for k in kinds)
    return None, f"{key}={value!r} must be {allowed}"


def _parse_as(kind: str, value: Any) -> tuple[bool, Any]:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    text = value.strip() if isinstance(value, str) else None
    if kind == "bool":
        if isinstance(value, bool):
            return True, value
        word = text.lower() if text is not None else (str(int(value)) if number and value in (0, 1) else None)
        return (True, word in _TRUE) if word in _TRUE | _FALSE else (False, None)
    if kind == "int":
        if number and float(value).is_integer():
            return True, int(value)
        try:
            return (True, int(text)) if text is not None else (False, None)
        except ValueError:
            return False, None
    if kind == "float":
        try:
            parsed = float(value) if number else float(text) if text is not None else None
        except ValueError:
            return False, None
        return (True, parsed) if parsed is not None and math.isfinite(parsed) else (False, None)
    if kind == "str":
        if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/yes as a boolean: `mixed_precision: no`
            return True, "yes" if value else "no"
        return (
            (True, value if isinstance(value, str) else str(value))
            if isinstance(value, str) or number
            else (False, None)
        )
    if kind == "dict[str, float]":
        if not isinstance(value, dict) or not value:
            return False, None
        weights = {str(k): _parse_as("float", v)[1] for k, v in value.items()}
        return (True, weights) if all(w is not None for w in weights.values()) else (False, None)
    if kind == "list[str]":
        if isinstance(value, str):
            return True, [part.strip() for part in value.split(",") if part.strip()]
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        return (True, list(value)) if ok else (False, None)
    return False, None


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `raw["train"]["epochs"] = value` from `"train.epochs"`; used for CLI overrides."""
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        if node.get(key) is None:  # absent, or an empty section in the YAML (`train:`)
            node[key] = {}
        node = node[key]
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
            raise LiftError(
                f"config file {str(path)!r} is not valid YAML ({first_line(exc)}): fix the syntax"
            ) from None
        if not isinstance(raw, dict):
            raise LiftError(f"config file {str(path)!r} must hold a mapping of sections (data, model, method, train)")
    raw.pop("tune", None)  # a recipe's search space: lift tune reads it (liftkit.tune), a run does not
    overrides = overrides or {}
    if path is not None and "model.trust_remote_code" not in overrides:
        _no_trust_from_files(raw, path)
    for dotted, value in overrides.items():
        section = raw.get("method") if isinstance(raw.get("method"), dict) else {}
        if dotted == "method.name" and value != section.get("name", DEFAULT_METHOD):
            raw["method"] = {}  # options of another method do not carry over
        set_dotted(raw, dotted, value)
    _model_defaults(raw)
    return RunConfig.from_dict(raw)


def _model_defaults(raw: dict[str, Any]) -> None:
    """A packaged model's own recipe for the run's method (`Packaged.defaults`), where neither the
    file nor the command line set the key: config.yaml then records the values the run used."""
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    method = raw.get("method") if isinstance(raw.get("method"), dict) else {}
    record = packaged.find(str(model.get("name") or DEFAULT_MODEL))
    for dotted, value in (record.defaults.get(method.get("name") or DEFAULT_METHOD, {}) if record else {}).items():
        section, _, key = dotted.partition(".")
        if not isinstance(raw.get(section), dict) or raw[section].get(key) is None:
            set_dotted(raw, dotted, value)


def _no_trust_from_files(raw: dict[str, Any], path: Path) -> None:
    """Running a model repository's own code is the caller's decision, never a file's: a recipe or
    a run folder someone sent you must not switch it on."""
    model = raw.get("model")
    if (
        isinstance(model, dict)
        and parse_value(model.get("trust_remote_code"), "bool | None", "model.trust_remote_code")[0]
    ):
        raise LiftError(
            f"config file {str(path)!r} sets model.trust_remote_code, which would run the model repository's own code: "
            "pass --trust-remote-code yourself if you trust it, or set it to false"
        )


def is_hub_id(name: str) -> bool:
    """Whether a model or dataset name has the shape of a hub id (NAME or ORG/NAME), not a path."""
    return not name.startswith((".", "/", "~")) and name.count("/") <= 1


def portable_name(name: str) -> str:
    """The base model's name as a run folder records it: the hub id of a packaged model (which
    every liftkit resolves to its package, and plain peft to the hub), else the name as given.
    Never the package's folder on the training machine, which means nothing once copied."""
    model = packaged.find(name)
    return model.hub_id if model else name
