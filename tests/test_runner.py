"""Runs in child processes: a record back on success, a structured error on failure, never a log scrape."""

import os
import signal

from liftkit import run_dir
from liftkit.config import load_config
from liftkit.runner import _error, run_child


def test_a_child_run_returns_its_record_or_its_error(tiny_models, tmp_path):
    small = {
        "model.name": str(tiny_models["bert"]),
        "data.max_train_samples": 32,
        "data.max_eval_samples": 16,
        "train.epochs": 1,
    }
    ok = load_config(None, {**small, "output_dir": str(tmp_path / "ok")})
    child = run_child(ok)
    assert (
        child.error is None and child.record.finetuned.scores == run_dir.read_record(tmp_path / "ok").finetuned.scores
    )
    assert "epoch 1" in run_dir.log_path(tmp_path / "ok").read_text()

    missing = tmp_path / "gone.jsonl"
    missing.write_text('{"text": "a", "label": 0}\n')
    bad = load_config(None, {**small, "data.dataset": str(missing), "output_dir": str(tmp_path / "bad")})
    os.remove(missing)  # valid when checked, gone when the child reads it
    child = run_child(bad)
    assert child.record is None
    assert child.error.type == "LiftError" and "does not exist" in child.error.message
    assert "Traceback" in child.error.traceback.read_text() and str(child.error) == child.error.message


def test_a_child_that_dies_without_a_word_is_named_by_how_it_died(tmp_path):
    log = tmp_path / "run.log"
    error = _error(tmp_path, -signal.SIGKILL, log)
    assert error.type == "Killed" and "SIGKILL" in error.message and str(log) in error.message
    assert _error(tmp_path, 3, log).type == "Exit"


def test_what_the_child_would_refuse_is_refused_without_a_child_and_nothing_is_lost(tiny_models, tmp_path):
    small = {
        "model.name": str(tiny_models["bert"]),
        "data.max_train_samples": 32,
        "data.max_eval_samples": 16,
        "train.epochs": 1,
    }
    cfg = load_config(None, {**small, "output_dir": str(tmp_path / "done")})
    assert run_child(cfg).error is None
    before = (tmp_path / "done" / "metrics.json").read_text()
    again = run_child(load_config(None, {**small, "output_dir": str(tmp_path / "done")}))
    assert again.error.type == "LiftError" and "already holds a finished run" in again.error.message
    assert (tmp_path / "done" / "metrics.json").read_text() == before and not (
        tmp_path / "done" / "error.json"
    ).exists()
    model = tmp_path / "no-such-model"
    gone = run_child(load_config(None, {**small, "model.name": str(model), "output_dir": str(tmp_path / "gone")}))
    assert "does not exist" in gone.error.message and not (tmp_path / "gone").exists()


def test_the_callers_trust_reaches_the_child(tiny_models, tmp_path):
    """A child reads its config from a file, which alone may not switch remote code on: the runner
    passes the caller's --trust-remote-code along."""
    cfg = load_config(
        None,
        {
            "model.name": str(tiny_models["bert"]),
            "model.trust_remote_code": True,
            "data.max_train_samples": 32,
            "data.max_eval_samples": 16,
            "train.epochs": 1,
            "output_dir": str(tmp_path / "trusted"),
        },
    )
    child = run_child(cfg)
    assert child.error is None, child.error
