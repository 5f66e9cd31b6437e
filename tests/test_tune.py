"""`lift tune`: a real Optuna study over tiny trials: it searches, prunes, resumes after a kill,
shares one study between processes, keeps memory flat, and writes a best.yaml `lift run` accepts."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from transformers import PreTrainedModel

from liftkit import pipeline, run_dir
from liftkit.batching import CachedSplit
from liftkit.callbacks import TrainState
from liftkit.cli import main
from liftkit.config import load_config
from liftkit.errors import LiftError
from liftkit.record import Scores, SplitMetrics
from liftkit.tune import ReportToOptuna, checked_space, make_pruner, open_study, read_space, search_space, tune

SMALL = ["--max-train-samples", "64", "--max-eval-samples", "32", "--max-length", "32", "--batch-size", "16"]


def _finished(study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=study_dir.name, storage=f"sqlite:///{study_dir / 'study.db'}")
    return [
        t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]


def test_a_tiny_study_runs_and_its_best_yaml_reproduces_with_lift_run(tiny_models, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study_dir = tmp_path / "study"
    code = main(["tune", "--model", str(tiny_models["bert"]), *SMALL, "--trials", "3", "--study-dir", str(study_dir)])
    assert code == 0
    out = capsys.readouterr().out
    trials = _finished(study_dir)
    assert (
        len(trials) == 3 and len({tuple(sorted(t.params.items())) for t in trials}) == 3
    )  # three different proposals
    best_yaml = study_dir / "best.yaml"
    assert f"lift run {best_yaml}" in out and "report:" in out
    best = max((t for t in trials if t.value is not None), key=lambda t: t.value)
    cfg = load_config(best_yaml)
    assert (
        cfg.train.learning_rate == pytest.approx(best.params["train.learning_rate"])
        and cfg.method.r == best.params["method.r"]
    )
    final = run_dir.read_record(study_dir / "best-run")  # trained once more (in a child process) and tested
    assert final.run.learning_rate == pytest.approx(best.params["train.learning_rate"])
    # the same training as the trial's: its per-epoch validation macro-F1 is the one the trial reported
    assert [h.val.scores.macro_f1 for h in final.train.history] == pytest.approx(
        [best.intermediate_values[e] for e in sorted(best.intermediate_values)]
    )
    assert main(["run", str(best_yaml)]) == 0  # lift run accepts it as it is, into a folder of its own
    (again,) = (tmp_path / "runs").iterdir()
    assert run_dir.read_record(again).finetuned.scores.accuracy == pytest.approx(final.finetuned.scores.accuracy)
    page = (study_dir / "tune.html").read_text()
    assert page.count("<img ") == 3 and "best-run" in page


def test_a_trial_that_trails_the_study_is_pruned_at_that_epoch():
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    )
    for value in (0.6, 0.7):  # two finished trials that reached these scores at epoch 1
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    state = TrainState(epochs=3, steps_per_epoch=1, is_main=True, trainee=None, epoch=1)
    good, bad = study.ask(), study.ask()
    ReportToOptuna(good).on_eval(state, SplitMetrics(Scores(0.8, 0.8, 0.8, 0.8, 0.8, 0.3)))  # ahead: goes on
    with pytest.raises(optuna.TrialPruned, match="0.2000 at epoch 1"):
        ReportToOptuna(bad).on_eval(state, SplitMetrics(Scores(0.3, 0.2, 0.2, 0.2, 0.2, 1.5)))
    assert bad.number == 3 and study.trials[3].intermediate_values == {1: 0.2}


def test_lift_tunes_pruners_judge_a_trial_from_its_second_epoch_on():
    """A trial that trails after its first epoch is kept for a second (the first epoch ends at
    different points of different schedules); trailing after the second, it is pruned."""
    for name in ("median", "hyperband"):
        study = optuna.create_study(direction="maximize", pruner=make_pruner(name))
        for value in (0.7, 0.75, 0.8, 0.85):  # finished trials, ahead at every epoch
            trial = study.ask()
            for epoch in (1, 2, 3):
                trial.report(value, epoch)
            study.tell(trial, value)
        trailing = study.ask()
        trailing.report(0.1, 1)
        assert not trailing.should_prune(), name
        if name == "median":  # Hyperband's brackets share the trials out: its later rungs need more of them
            trailing.report(0.1, 2)
            assert trailing.should_prune()
    with pytest.raises(LiftError, match="pruner 'asha' is unknown: use median or hyperband"):
        make_pruner("asha")


def _count_finished(db: Path) -> int:
    """Finished trials in a study database that another process is writing, read without Optuna
    (whose load_study would race the writer creating its schema)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[
                0
            ]
    except sqlite3.Error:  # not created yet, or its tables not yet
        return 0


def _tune_process(tiny_models, study_dir: Path, trials: int, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "liftkit.cli",
        "tune",
        "--model",
        str(tiny_models["bert"]),
        *SMALL,
        "--trials",
        str(trials),
        "--study-dir",
        str(study_dir),
        "--no-final",
        *extra,
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"}
    )


def test_a_killed_study_resumes_where_it_stopped(tiny_models, tmp_path):
    study_dir = tmp_path / "study"
    first = _tune_process(tiny_models, study_dir, 5)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None and _count_finished(study_dir / "study.db") < 2:
        time.sleep(0.3)
    first.send_signal(signal.SIGKILL)  # no clean-up of any kind
    first.wait()
    kept = {t.number: (t.params, t.value) for t in _finished(study_dir)}
    assert 2 <= len(kept) < 5
    again = _tune_process(tiny_models, study_dir, 5)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"{len(kept)} of 5 trials finished" in err  # it continued, it did not start over
    trials = _finished(study_dir)
    assert len(trials) == 5
    assert {t.number: (t.params, t.value) for t in trials if t.number in kept} == kept


def test_two_processes_work_one_sqlite_study(tiny_models, tmp_path):
    study_dir = tmp_path / "study"
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [_tune_process(tiny_models, study_dir, 4, "--storage", storage) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    study = optuna.load_study(study_name="study", storage=storage)
    finished = [
        t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert 4 <= len(finished) <= 5  # each worker stops once the study holds 4; one may finish its trial in flight
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both did trials
    assert not (study_dir / "study.db").exists()  # the shared storage, not the default


def test_trials_share_the_frozen_bottom_and_memory_does_not_grow(tiny_run_config, tmp_path, monkeypatch):
    cfg = tiny_run_config(**{"data.max_train_samples": 200})
    live: list[set[int]] = []
    models: list[int] = []
    real = pipeline.train_only

    def counted(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        finally:
            gc.collect()
            live.append({id(o) for o in gc.get_objects() if isinstance(o, CachedSplit)})
            models.append(sum(isinstance(o, PreTrainedModel) for o in gc.get_objects()))

    monkeypatch.setattr(pipeline, "train_only", counted)
    lines: list[str] = []
    space = search_space(
        cfg, {"method.train_layers": None, "train.batch_size": None}
    )  # one frozen boundary, one batching
    gc.collect()
    before = sum(isinstance(o, PreTrainedModel) for o in gc.get_objects())  # other tests' models may be alive
    tune(cfg, space, 4, tmp_path / "study", final=False, log=lines.append)
    assert [len(ids) for ids in live] == [
        2,
        2,
        2,
        2,
    ]  # train and validation states of one boundary, however many trials
    assert all(ids == live[0] for ids in live)  # the same two, computed by the first trial and reused by the others
    assert models == [before] * 4  # no trial's model outlives it
    gc.collect()
    assert sum(isinstance(o, CachedSplit) for o in gc.get_objects()) == 0  # dropped when the study stops


def test_the_search_space_follows_the_recipe_and_the_command_line(tiny_run_config, tmp_path):
    cfg = tiny_run_config()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "data:\n  dataset: emotion\ntune:\n  space:\n    method.r: [2, 4]\n    train.warmup_ratio: null\n    method.alpha: {low: 4, high: 64, log: true}\n"
    )
    space = search_space(cfg, read_space(recipe), fixed={"train.epochs": 2})
    assert space["method.r"] == [2, 4] and "train.warmup_ratio" not in space and "train.epochs" not in space
    assert space["method.alpha"] == {"low": 4, "high": 64, "log": True} and space["train.learning_rate"]["log"] is True
    assert load_config(recipe).data.dataset == "emotion"  # lift run reads such a recipe, tune section and all
    recipe.write_text("tune:\n  space:\n    method.r: 8\n")
    with pytest.raises(LiftError, match=r"tune.space.method.r=8: give a list of choices, or a range"):
        search_space(cfg, read_space(recipe))
    recipe.write_text("tune:\n  trials: 8\n")
    with pytest.raises(LiftError, match=r"unknown key\(s\) \['trials'\] in the tune section"):
        read_space(recipe)
    with pytest.raises(LiftError, match=r"tune.space names 'train.epoch', which is not a setting of this run"):
        tune(cfg, {"train.epoch": [1, 2]}, 1, tmp_path / "s", final=False, log=lambda m: None)
    with pytest.raises(
        LiftError,
        match=r"a range is \{low: A, high: B, log: true\|false\} with numbers A < B \(A > 0 on a log scale\)",
    ):
        tune(
            cfg,
            {"train.weight_decay": {"low": 0.0, "high": 0.1, "log": True}},
            1,
            tmp_path / "s",
            final=False,
            log=lambda m: None,
        )
    with pytest.raises(
        LiftError, match=r"method.r='eight' must be a whole number"
    ):  # a bad choice fails before any trial
        tune(cfg, {"method.r": [4, "eight"]}, 1, tmp_path / "s", final=False, log=lambda m: None)
    space, whole = checked_space(
        cfg, {"train.learning_rate": {"low": "1e-4", "high": "1e-2", "log": True}, "method.r": {"low": 4, "high": 16}}
    )
    assert space["train.learning_rate"] == {"low": 1e-4, "high": 1e-2, "log": True} and whole == {
        "train.learning_rate": False,
        "method.r": True,
    }
    space, whole = checked_space(
        cfg, {"data.max_length": ["auto", 256], "train.batch_size": [16, 32]}
    )  # long texts: is the whole review worth its cost?
    assert space["data.max_length"] == ["auto", 256] and whole["data.max_length"]
    with pytest.raises(LiftError, match=r"data.max_length='long' must be auto or a whole number"):
        checked_space(cfg, {"data.max_length": ["auto", "long"]})
    with pytest.raises(LiftError, match="cannot open the study storage 'nosuchdb://x'"):
        open_study(tmp_path / "s", "x", "nosuchdb://x", 0)


def test_a_study_refuses_to_continue_another_search(tiny_run_config, tmp_path):
    cfg = tiny_run_config(**{"train.epochs": 1})
    space = {"train.learning_rate": [1e-3, 1e-2]}
    tune(cfg, space, 1, tmp_path / "study", final=False, log=lambda m: None)
    other = tiny_run_config(**{"train.epochs": 1, "data.max_length": 24})
    with pytest.raises(
        LiftError,
        match=r"was started with other settings \(differs in config.data.max_length\): rerun it as it was, or pass another --study-dir",
    ):
        tune(other, space, 2, tmp_path / "study", final=False, log=lambda m: None)
    result = tune(cfg, space, 2, tmp_path / "study", final=False, log=lambda m: None)  # the same search continues
    assert result.trials.get("complete", 0) + result.trials.get("pruned", 0) == 2


def test_a_multi_label_study_is_scored_by_validation_micro_f1(tiny_models, tmp_path, capsys):
    """On go_emotions the study maximises validation micro-F1 (the task's search metric), each trial
    keeps the epoch that score picks, and the final run is a multi-label run with tuned thresholds."""
    study_dir = tmp_path / "study"
    args = ["tune", "--model", str(tiny_models["bert"]), "--dataset", "go_emotions", *SMALL, "--epochs", "2"]
    assert main([*args, "--trials", "2", "--study-dir", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert "best validation micro-F1" in out
    trials = _finished(study_dir)
    final = run_dir.read_record(study_dir / "best-run")
    best = max((t for t in trials if t.value is not None), key=lambda t: t.value)
    assert final.data.task == "multi_label" and load_config(study_dir / "best.yaml").train.best_metric == "micro_f1"
    assert [h.val.scores.micro_f1 for h in final.train.history] == pytest.approx(
        [best.intermediate_values[e] for e in sorted(best.intermediate_values)]
    )
    assert "val micro-F1" in (study_dir / "tune.html").read_text()
