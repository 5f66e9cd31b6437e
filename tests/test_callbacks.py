"""The training loop's events: who hears what, in which order, and what listeners can change."""

import json

import pytest
import torch

import liftkit
from liftkit import checkpoint
from liftkit.batching import Padding, tokenize
from liftkit.callbacks import Callback, Checkpointer, EarlyStopping
from liftkit.config import load_config
from liftkit.data import load_splits
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier, load_tokenizer
from liftkit.pipeline import run
from liftkit.train import fit, make_accelerator


class Recorder(Callback):
    def __init__(self, stop_after_epoch=None):
        self.events, self.steps, self.stop_after_epoch = [], [], stop_after_epoch

    def on_train_begin(self, state):
        self.events.append(("begin", state.epoch))

    def on_step(self, state):
        self.steps.append((state.epoch, state.step, state.lr))

    def on_eval(self, state, metrics):
        self.events.append(("eval", state.epoch, metrics.scores.accuracy, state.history[-1].val.scores.accuracy))

    def on_epoch_end(self, state):
        self.events.append(("epoch_end", state.epoch))
        if state.epoch == self.stop_after_epoch:
            state.should_stop = True

    def on_train_end(self, state):
        self.events.append(("end", state.epoch))


def _fit(tiny_models, callbacks, epochs=3):
    cfg = load_config(
        None,
        {
            "model.name": str(tiny_models["bert"]),
            "data.max_train_samples": 64,
            "data.max_eval_samples": 32,
            "train.epochs": epochs,
            "train.batch_size": 16,
        },
    )
    splits = load_splits(cfg.data)
    tok = load_tokenizer(cfg.model)
    model = load_classifier(cfg.model, splits.label_names, tok)
    model = METHODS["lora"].apply(model, cfg.method, arch_of(model))
    train, val = (tokenize(s, tok, 32) for s in (splits.train, splits.validation))
    return fit(
        model,
        train,
        val,
        cfg.train,
        make_accelerator(cfg.train),
        lr=cfg.learning_rate,
        padding=Padding.of(tok),
        callbacks=callbacks,
        log=lambda m: None,
    )


def test_events_come_in_order_once_per_step_and_epoch(tiny_models):
    recorder = Recorder()
    summary = _fit(tiny_models, [recorder])
    assert [e[0] for e in recorder.events] == ["begin"] + ["eval", "epoch_end"] * 3 + ["end"]
    assert [e[1] for e in recorder.events if e[0] == "eval"] == [1, 2, 3]
    assert all(e[2] == e[3] for e in recorder.events if e[0] == "eval")  # on_eval gets what the history holds
    assert len(recorder.steps) == summary.optimizer_steps == 3 * 4  # 64 rows / 16 per step, 3 epochs
    assert [s[1] for s in recorder.steps] == list(range(1, 13))
    assert [s[0] for s in recorder.steps] == [1] * 4 + [2] * 4 + [3] * 4
    lrs = [s[2] for s in recorder.steps]
    assert (
        max(lrs) == pytest.approx(load_config().learning_rate, rel=0.2) and lrs[-1] < lrs[len(lrs) // 2]
    )  # warmup, then decay


def test_a_callback_can_stop_training(tiny_models):
    recorder = Recorder(stop_after_epoch=1)
    summary = _fit(tiny_models, [recorder])
    assert summary.epochs_run == 1 and summary.stopped_early
    assert [e[0] for e in recorder.events] == ["begin", "eval", "epoch_end", "end"]


@pytest.mark.parametrize(
    "epoch, best_epoch, epochs, stops",
    [(2, 1, 5, False), (3, 1, 5, True), (3, 3, 5, False), (5, 1, 5, False)],  # the last epoch has nothing left to stop
)
def test_early_stopping_waits_patience_epochs_after_the_best(epoch, best_epoch, epochs, stops):
    from liftkit.callbacks import Trainee, TrainState

    for event in (
        "on_epoch_end",
        "on_train_begin",
    ):  # on_train_begin: a resumed run decides as the uninterrupted one did
        state = TrainState(
            epochs=epochs,
            steps_per_epoch=1,
            is_main=True,
            trainee=Trainee(None, None, None),
            epoch=epoch,
            best_epoch=best_epoch,
        )
        getattr(EarlyStopping(patience=2), event)(state)
        assert state.should_stop is stops
    state = TrainState(
        epochs=epochs,
        steps_per_epoch=1,
        is_main=True,
        trainee=Trainee(None, None, None),
        epoch=epoch,
        best_epoch=best_epoch,
    )
    EarlyStopping(patience=0).on_epoch_end(state)
    assert not state.should_stop


def test_checkpointer_keeps_the_best_epoch_weights(tiny_models, tmp_path):
    class Spy(Callback):
        def __init__(self):
            self.weights = []

        def on_epoch_end(self, state):
            self.weights.append(checkpoint.trainable_state(state.trainee.model))

        def on_train_end(self, state):
            self.final = checkpoint.trainable_state(state.trainee.model)

    spy = Spy()
    summary = _fit(tiny_models, [Checkpointer(tmp_path / "ck"), spy], epochs=3)
    best = spy.weights[summary.best_epoch - 1]
    saved = checkpoint.load_file(tmp_path / "ck" / "best" / "trainable.safetensors")
    assert set(saved) == set(best) and all(torch.equal(saved[k], v) for k, v in best.items())
    assert json.loads((tmp_path / "ck" / "last" / "state.json").read_text())["epoch"] == 3
    # at the end the model holds the best epoch's weights (Checkpointer ends before the spy does)
    assert all(torch.equal(spy.final[k], v) for k, v in best.items())
    assert any(
        not torch.equal(a, b) for a, b in zip(spy.weights[0].values(), spy.weights[2].values())
    )  # epochs differ


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_run_writes_its_history_as_json_lines(tiny_run_config):
    result = run(tiny_run_config("bert", **{"train.log_every": 4}), log=lambda m: None)
    lines = _lines(result.run_dir / "history.jsonl")
    doc = result.metrics
    steps = [line for line in lines if "loss" in line]
    evals = [line for line in lines if "val_accuracy" in line]
    # 96 rows / 16 = 6 steps an epoch: a line every 4th step, and one for the steps left when an epoch ends
    assert [(s["epoch"], s["step"]) for s in steps] == [(1, 4), (1, 6), (2, 8), (2, 12)]
    assert steps[0]["lr"] > steps[1]["lr"] > 0 and steps[-1]["lr"] == 0  # linear decay to 0 at the last step
    assert [{k: v for k, v in e.items() if k != "step"} for e in evals] == doc["train"]["history"]
    assert [e["step"] for e in evals] == [6, 12]
    for (first, second), record, weights in zip(
        ((steps[0], steps[1]), (steps[2], steps[3])), doc["train"]["history"], ((4, 2), (2, 4))
    ):
        mean = (weights[0] * first["loss"] + weights[1] * second["loss"]) / 6
        assert mean == pytest.approx(record["train_loss"], rel=1e-5)  # the lines cover every row once


def test_a_resumed_run_has_the_history_of_an_uninterrupted_one(tiny_run_config, tmp_path, kill_after_first_epoch):
    full = run(
        tiny_run_config("bert", output_dir=str(tmp_path / "full"), **{"train.log_every": 4}), log=lambda m: None
    )
    kill_after_first_epoch(tiny_run_config("bert", output_dir=str(tmp_path / "cut"), **{"train.log_every": 4}))
    cut = tmp_path / "cut"
    assert json.loads((cut / "error.json").read_text())["type"] == "KeyboardInterrupt"
    with (cut / "history.jsonl").open("a") as f:  # what a kill after the checkpoint, mid-epoch 2, leaves behind
        f.write(json.dumps({"step": 10, "epoch": 2, "loss": 99.0, "lr": 0.1}) + "\n")
    resumed = run(liftkit.load_config(cut / "config.yaml"), resume=True, log=lambda m: None)
    a, b = _lines(full.run_dir / "history.jsonl"), _lines(cut / "history.jsonl")
    assert [(x["step"], sorted(x)) for x in a] == [(y["step"], sorted(y)) for y in b]
    for x, y in zip(a, b):
        for key in ("loss", "train_loss", "val_loss"):
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-5)
    assert not (cut / "error.json").exists()  # the finished run carries no stale error
    assert resumed.record.train.resumed_from_epoch == 1
