"""`lift tune`: search a method's hyperparameters with Optuna, then train the best once and test it.

A study is Optuna's: TPE proposes each trial's values from a search space (per method, defaults
below, overridable in the recipe's `tune:` section), the trial trains in this process
(`pipeline.train_only`: validation only, the test split is never seen) and reports its validation
score after every epoch (the task's search metric: macro-F1, micro-F1 for multi-label, unless
train.best_metric names another), so Optuna's median pruner stops trials that trail the others. The study
lives in a database (SQLite in the study folder by default, any Optuna RDB URL with `--storage`):
killing `lift tune` loses at most the trial in flight, rerunning the same command continues, and
several processes or machines can work one study. At the end the best configuration is written as
best.yaml, a recipe `lift run best.yaml` reproduces, and trained once more as a normal run, whose
test figures are the study's result; tune.html shows the trials.

Trials share what does not change between them: tokens (cached on disk) and, where the frozen
bottom is the same, its hidden states (`frozen.reuse_between_runs`: one copy, never more).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from liftkit import run_dir
from liftkit.callbacks import Callback, TrainState
from liftkit.config import NOT_RESULTS, RunConfig, parse_value, set_dotted
from liftkit.errors import LiftError, first_line
from liftkit.record import LOWER_IS_BETTER, SplitMetrics
from liftkit.report import metric_label
from liftkit.tracking import flatten

TRAIN_SPACE: dict[str, Any] = {  # every method; the learning rate's range follows the method's default
    "train.epochs": [2, 3, 4],
    "train.batch_size": [16, 32],
    "train.weight_decay": {"low": 0.0, "high": 0.1},
    "train.warmup_ratio": {"low": 0.0, "high": 0.2},
    "train.class_weights": ["none", "balanced"],
}
METHOD_SPACE: dict[str, dict[str, Any]] = {  # what each method adds (key: config key; list: choices; dict: a range)
    "lora": {
        "method.r": [4, 8, 16, 32],
        "method.alpha": [8, 16, 32, 64],
        "method.dropout": {"low": 0.0, "high": 0.3},
        "method.train_layers": ["50%", "100%"],
    },
    "ia3": {"method.train_layers": ["50%", "100%"]},
    "adapter": {"method.reduction_factor": [8, 16, 32], "method.variant": ["houlsby", "pfeiffer"]},
    "prefix": {"method.num_virtual_tokens": [10, 20, 40]},
    "prompt": {"method.num_virtual_tokens": [10, 20, 40]},
    "ptuning": {"method.num_virtual_tokens": [10, 20, 40], "method.encoder_hidden_size": [64, 128, 256]},
}


def search_space(cfg: RunConfig, overrides: dict[str, Any] | None = None, fixed: Iterable[str] = ()) -> dict[str, Any]:
    """The space of `cfg`'s method: the defaults above, then the recipe's `tune.space` entries
    (null removes a key); keys in `fixed` (set on the command line) are not searched."""
    default_lr = cfg.method.default_lr
    space = {
        "train.learning_rate": {"low": default_lr / 10, "high": default_lr * 5, "log": True},
        **TRAIN_SPACE,
        **METHOD_SPACE.get(cfg.method.name, {}),
    }
    for key, spec in (overrides or {}).items():
        if spec is None:
            space.pop(key, None)
        elif isinstance(spec, list) and spec or isinstance(spec, dict) and {"low", "high"} <= set(spec):
            space[key] = spec
        else:
            raise LiftError(
                f"tune.space.{key}={spec!r}: give a list of choices, or a range {{low: A, high: B, log: true}}"
            )
    for key in fixed:
        space.pop(key, None)
    return space


def _suggest(trial: Any, key: str, spec: Any, whole: bool) -> Any:
    if isinstance(spec, list):
        return trial.suggest_categorical(key, spec)
    suggest = trial.suggest_int if whole else trial.suggest_float
    return suggest(key, spec["low"], spec["high"], log=bool(spec.get("log")))


def checked_space(cfg: RunConfig, space: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """`space` ready to draw from, and for each key whether it draws whole numbers. Every key must
    name a setting, a range's bounds are numbers (YAML reads 1e-4 as text: parsed here, as a
    config is) with low < high (> 0 on a log scale), and every choice must be a valid value: a
    mistake fails now, in one line, not in the trial that draws it."""
    ready, whole = {}, {}
    for key, spec in space.items():
        section, _, name = key.partition(".")
        holder = getattr(cfg, section, None) if section in ("data", "model", "method", "train") else None
        fields = {f.name: f for f in dataclasses.fields(holder)} if holder is not None else {}
        if name not in fields:
            raise LiftError(
                f"tune.space names {key!r}, which is not a setting of this run: use keys such as train.learning_rate or method.r"
            )
        whole[key] = str(fields[name].type).split("|")[0].strip() == "int"
        if isinstance(spec, list):
            for choice in spec:
                with_values(cfg, {key: choice})  # raises the config's own one-line error
            ready[key] = spec
            continue
        unknown = set(spec) - {"low", "high", "log"}
        low, problem_low = parse_value(spec.get("low"), "int" if whole[key] else "float", f"tune.space.{key}.low")
        high, problem_high = parse_value(spec.get("high"), "int" if whole[key] else "float", f"tune.space.{key}.high")
        log, _ = parse_value(spec.get("log", False), "bool", "log")
        if unknown or problem_low or problem_high or not (low < high and (low > 0 or not log)):
            raise LiftError(
                f"tune.space.{key}={spec!r}: a range is {{low: A, high: B, log: true|false}} with numbers A < B (A > 0 on a log scale)"
            )
        ready[key] = {"low": low, "high": high, "log": bool(log)}
    return ready, whole


def with_values(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`cfg` with dotted keys set (and checked, as any config is)."""
    raw = cfg.to_dict()
    for key, value in values.items():
        set_dotted(raw, key, value)
    return RunConfig.from_dict(raw)


class ReportToOptuna(Callback):
    """After every validation pass, hands the epoch's validation score (`metric`) to the trial;
    raises optuna.TrialPruned when the pruner says the trial trails the others at that epoch."""

    def __init__(self, trial: Any, metric: str = "macro_f1"):
        self.trial = trial
        self.metric = metric

    def on_eval(self, state: TrainState, metrics: SplitMetrics) -> None:
        import optuna

        value = getattr(metrics.scores, self.metric)
        self.trial.report(value, state.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation {self.metric} {value:.4f} at epoch {state.epoch} trails the study")


def objective_metric(cfg: RunConfig) -> tuple[str, str]:
    """(the validation score a study maximises, the task): train.best_metric where it names a
    score to maximise, else the task's search metric (the data are read once to know the task)."""
    from liftkit.data import load_splits
    from liftkit.tasks import TASKS, check_best_metric

    splits = load_splits(cfg.data, cfg.train.seed, cfg.task.name)
    task = TASKS[splits.task]
    chosen = cfg.train.best_metric
    check_best_metric(chosen, task, len(splits.label_names))
    return (task.search_metric if chosen == "auto" or chosen in LOWER_IS_BETTER else chosen), task.name


@dataclass
class TuneResult:
    study_dir: Path
    best_value: float  # best validation score (`metric`)
    best_params: dict[str, Any]
    best_config: Path  # best.yaml
    run: Path | None  # the best configuration trained once more and tested (None: --no-final)
    trials: dict[str, int]  # state -> count
    page: Path
    metric: str = "macro_f1"  # the validation score the study maximised
    task: str = "single_label"


def make_pruner(name: str) -> Any:
    """The study's pruner. Epochs are searched too, so the first epoch ends at different points of
    different schedules (and a trial adapting half the layers starts slower than one adapting all):
    trials are compared from their second epoch on, and only once three trials have finished.
    Epochs are reported 1-based, and Optuna prunes from step == n_warmup_steps, hence 2."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, reduction_factor=3)
    raise LiftError(f"pruner {name!r} is unknown: use median or hyperband")


def open_study(study_dir: Path, name: str, storage: str | None, seed: int, pruner: str = "median") -> Any:
    """The study in `storage` (default: SQLite in the study folder), created or continued.

    The sampler is seeded by `seed` for a new study; a continued one (a rerun, another worker)
    seeds it with the trials so far and the process, so workers do not walk the same sequence of
    proposals."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial INFO lines: liftkit prints its own
    study_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(study_dir / 'study.db').resolve()}"
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", optuna.exceptions.ExperimentalWarning
                )  # heartbeats: stable in use, "experimental" in name
                backend = RDBStorage(
                    url,
                    engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                    # a worker killed mid-trial stops beating; its trial is failed and retried by whoever runs next
                    heartbeat_interval=20,
                    grace_period=60,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
            break
        except Exception as exc:  # SQLAlchemy's errors: a bad URL, a missing driver, an unreachable server
            # workers started together race to create a new database's tables: the loser retries
            if attempt < 5 and type(exc).__name__ in ("OperationalError", "IntegrityError"):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise LiftError(
                f"cannot open the study storage {url!r} ({first_line(exc)[:200]}): pass an Optuna RDB URL such as sqlite:///study.db"
            ) from None
    study = optuna.create_study(
        study_name=name,
        storage=backend,
        direction="maximize",
        pruner=make_pruner(pruner),
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        load_if_exists=True,
    )
    if study.trials:
        study.sampler = optuna.samplers.TPESampler(
            seed=hash((seed, len(study.trials), os.getpid())) % 2**31, n_startup_trials=5
        )
    return study


def finished_trials(study: Any) -> int:
    import optuna

    return len(
        study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    )


def tune(
    cfg: RunConfig,
    space: dict[str, Any],
    trials: int,
    study_dir: Path,
    storage: str | None = None,
    timeout: float | None = None,
    final: bool = True,
    pruner: str = "median",
    log: Callable[[str], None] = print,
) -> TuneResult:
    """Search `space` (see `search_space`) until the study holds `trials` finished (complete or
    pruned) trials or `timeout` seconds pass, then write best.yaml, train the best configuration
    once (`final`) and draw tune.html."""
    import optuna
    import torch

    from liftkit import frozen, pages

    space, whole = checked_space(cfg, space)
    metric, task = objective_metric(cfg)
    if cfg.train.best_metric == "auto":  # the epoch a trial keeps is the one the study scores it by
        cfg = with_values(cfg, {"train.best_metric": metric})
    named = f"validation {metric_label(metric, task)}"
    study = open_study(study_dir, study_dir.resolve().name, storage, cfg.train.seed, pruner)
    _check_same_search(study, cfg, space)
    study.set_user_attr("objective", named)
    done = finished_trials(study)
    log(
        f"study {study.study_name} in {storage or study_dir / 'study.db'}: {done} of {trials} trials finished; searching {', '.join(space)}"
    )

    objective = _objective(cfg, space, whole, metric, named, log)

    def pruned(study: Any, trial: Any) -> None:
        if trial.state == optuna.trial.TrialState.PRUNED:
            log(f"trial {trial.number}: pruned at epoch {max(trial.intermediate_values, default=0)}")

    stop = optuna.study.MaxTrialsCallback(
        trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    )
    if done < trials:
        with frozen.reuse_between_runs():
            # a trial whose values cannot train (a LiftError, or too large for the GPU) fails alone, its reason logged by Optuna
            study.optimize(
                objective,
                n_trials=trials - done,
                timeout=timeout,
                callbacks=[stop, pruned],
                gc_after_trial=True,
                catch=(LiftError, torch.cuda.OutOfMemoryError),
            )
    return _conclude(study, cfg, study_dir, final, log, pages, metric, task)


def _objective(
    cfg: RunConfig, space: dict[str, Any], whole: dict[str, Any], metric: str, named: str, log: Callable[[str], None]
) -> Callable[[Any], float]:
    """What a trial does: draw its values, train on them (validation only), and answer the kept
    epoch's validation `metric`."""
    from liftkit.pipeline import train_only

    def objective(trial: Any) -> float:
        values = {key: _suggest(trial, key, spec, whole[key]) for key, spec in space.items()}
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial_cfg = with_values(cfg, values)
        try:
            summary = train_only(trial_cfg, [ReportToOptuna(trial, metric)], log=lambda m: None)
        finally:
            gc.collect()  # the trial's model and optimizer go now, not whenever the collector runs
        best = getattr(summary.best.val.scores, metric)  # the kept epoch's, as the final run will keep it
        chosen = ", ".join(f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in values.items())
        log(f"trial {trial.number}: {named} {best:.4f} ({chosen})")
        return best

    return objective


def _check_same_search(study: Any, cfg: RunConfig, space: dict[str, Any]) -> None:
    """A study continues only the search it began: the same settings that shape results and the
    same space (a rerun, or another worker). Anything else would rank answers to different
    questions together. Settings a newer liftkit added (absent from the study's record) pass."""
    import json

    now = {
        k: v
        for k, v in flatten(json.loads(json.dumps({"config": cfg.to_dict(), "space": space}))).items()
        if k.removeprefix("config.") not in NOT_RESULTS
    }
    then = study.user_attrs.get("setup")
    if then is None:
        study.set_user_attr("setup", now)
        return
    changed = sorted(key for key in then if now.get(key) != then[key])
    if changed:
        raise LiftError(
            f"study {study.study_name!r} was started with other settings (differs in {', '.join(changed[:5])}): "
            "rerun it as it was, or pass another --study-dir"
        )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _conclude(
    study: Any,
    cfg: RunConfig,
    study_dir: Path,
    final: bool,
    log: Callable[[str], None],
    pages: Any,
    metric: str,
    task: str,
) -> TuneResult:
    """best.yaml from the best trial, its run (trained and tested once), tune.html."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise LiftError(
            f"no trial of study {study.study_name!r} completed (all pruned or failed): run more --trials, or widen tune.space"
        )
    best = study.best_trial
    best_cfg = with_values(cfg, best.params)
    best_cfg.output_dir = None  # `lift run best.yaml` makes its own folder (best-run/ holds the tune's)
    best_yaml = study_dir / "best.yaml"
    named = f"validation {metric_label(metric, task)}"
    header = f"# lift tune: trial {best.number} of study {study.study_name}, {named} {best.value:.4f}\n# reproduce: lift run {best_yaml}\n"
    run_dir.write_text(best_yaml, header + best_cfg.to_yaml())
    log(f"best: trial {best.number}, {named} {best.value:.4f}; written to {best_yaml}")
    final_run = _final_run(best_cfg, best.number, study_dir / "best-run", log) if final else None
    page = pages.write_tune_report(study, study_dir, final_run)
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return TuneResult(study_dir, best.value, dict(best.params), best_yaml, final_run, counts, page, metric, task)


def _final_run(best_cfg: RunConfig, number: int, out: Path, log: Callable[[str], None]) -> Path | None:
    """Train the best configuration once more, in a child process as `lift compare` does (its
    time and memory are its own), and evaluate it on test. A finished run of that configuration
    is kept; an interrupted one is resumed; another worker training it right now is left to it."""
    from liftkit.runner import run_child

    cfg = copy.deepcopy(best_cfg)
    cfg.output_dir = str(out)
    same = (out / run_dir.CONFIG).is_file() and yaml.safe_load((out / run_dir.CONFIG).read_text()) == yaml.safe_load(
        cfg.to_yaml()
    )
    if run_dir.finished(out) and same:
        log(f"the best configuration's run is in {out} already")
        return out
    resume = same and run_dir.started(out)
    if not same and (run_dir.finished(out) or run_dir.started(out)):
        run_dir.clear(out)  # the run of an earlier best: this one replaces it
    log(
        f"training the best configuration (trial {number}) once more and testing it: {out}"
        + (" (resuming)" if resume else "")
    )
    child = run_child(cfg, resume=resume)
    if child.error is not None:
        if "in use by" in child.error.message:  # another worker of the study holds the folder's lock
            log(f"another worker is training the best configuration in {out}")
            return None
        raise LiftError(f"the best configuration's run failed: {child.error} (log: {run_dir.log_path(out)})")
    s, task = child.record.finetuned.scores, child.record.data.task
    shown = ", ".join(
        f"{metric_label(key, task)} {getattr(s, key):.4f}"
        for key in ("accuracy", "macro_f1", "micro_f1", "spearman", "pearson")
        if getattr(s, key) is not None
    )
    log(f"test {shown}, training {child.record.train.runtime_s:.0f} s")
    return out


def read_space(recipe: str | Path | None) -> dict[str, Any] | None:
    """The `tune: space:` section of a recipe YAML (None: no recipe, or no such section)."""
    if recipe is None:
        return None
    path = Path(recipe)
    raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    section = raw.get("tune") if isinstance(raw, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("space", {}), dict):
        raise LiftError(
            f"{str(path)!r}: the tune section must be a mapping with a `space` mapping of config keys, e.g. space: {{method.r: [4, 8, 16]}}"
        )
    unknown = set(section) - {"space"}
    if unknown:
        raise LiftError(f"{str(path)!r}: unknown key(s) {sorted(unknown)} in the tune section: only `space` is read")
    return section.get("space") or {}
