"""Where figures go: the JSONL history (flushed, rewound on resume), TensorBoard and MLflow, each read
back with its own library and compared with metrics.json."""

import json

import pytest

from liftkit import tracking
from liftkit.config import load_config
from liftkit.errors import LiftError
from liftkit.pipeline import run
from liftkit.tracking import JsonlLogger


def test_lines_are_written_at_once_and_a_resume_drops_what_came_after_its_checkpoint(tmp_path):
    path = tmp_path / "history.jsonl"
    logger = JsonlLogger(path)
    logger.start(0)
    for step in (10, 20, 30):
        logger.log({"epoch": 1, "loss": step / 10, "lr": float("nan")}, step)
        assert len(path.read_text().splitlines()) == step // 10  # flushed: a kill keeps it
    logger.close()
    assert json.loads(path.read_text().splitlines()[0]) == {
        "step": 10,
        "epoch": 1,
        "loss": 1.0,
        "lr": None,
    }  # NaN is not JSON
    with path.open("a") as f:
        f.write('{"step": 40, "epoch": 2, "lo')  # a line a kill cut short
    resumed = JsonlLogger(path)
    resumed.start(20)
    resumed.log({"epoch": 2, "loss": 0.5}, 25)
    resumed.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20, 25]


def test_a_fresh_run_starts_an_empty_history(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 5}\n')
    logger = JsonlLogger(path)
    logger.start(0)
    logger.close()
    assert path.read_text() == ""


def _final_metrics(folder):
    """test/<metric> and test_base/<metric>, read from metrics.json itself."""
    doc = json.loads((folder / "metrics.json").read_text())
    keys = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "loss", "ece")
    return {
        f"{prefix}/{key}": doc[part][key]
        for prefix, part in (("test", "finetuned"), ("test_base", "base"))
        for key in keys
    }


def _history(folder):
    lines = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    return [row for row in lines if "loss" in row], [row for row in lines if "val_accuracy" in row]


def test_tensorboard_holds_what_metrics_json_and_the_history_hold(tiny_run_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run(tiny_run_config(**{"train.report_to": "tensorboard", "train.log_every": 2}), log=lambda m: None)
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    steps, epochs = _history(result.run_dir)
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [row["step"] for row in steps]
    assert [e.value for e in loss] == pytest.approx([row["loss"] for row in steps], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([row["lr"] for row in steps], rel=1e-6)
    record = result.record
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx(
        [h.val.scores.accuracy for h in record.train.history]
    )
    assert [e.step for e in events.Scalars("val/macro_f1")] == [row["step"] for row in epochs]
    for key, value in _final_metrics(result.run_dir).items():
        assert events.Scalars(key)[-1].value == pytest.approx(value, rel=1e-6), key
    hparams = events.PluginTagToContent("hparams")
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["method.name"].string_value == "lora"
    assert start.hparams["train.epochs"].number_value == 2


def _mlflow_run(tracking_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "emotion"]
    (found,) = client.search_runs([experiment.experiment_id])
    return client, found


def test_mlflow_gets_params_metrics_and_the_run_folder_in_a_local_mlruns_store(tiny_run_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = run(tiny_run_config(**{"train.report_to": "mlflow", "train.log_every": 2}), log=lambda m: None)
    client, found = _mlflow_run((tmp_path / "mlruns").as_uri())
    assert found.info.status == "FINISHED" and found.info.run_name == result.run_dir.name
    assert found.data.params["method.name"] == "lora" and found.data.params["train.epochs"] == "2"
    for key, value in _final_metrics(result.run_dir).items():
        assert found.data.metrics[key] == pytest.approx(value, rel=1e-9), key
    steps, epochs = _history(result.run_dir)
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(row["step"], pytest.approx(row["loss"])) for row in steps]
    val = client.get_metric_history(found.info.run_id, "val/macro_f1")
    assert [(m.step, m.value) for m in val] == [
        (row["step"], pytest.approx(h.val.scores.macro_f1)) for row, h in zip(epochs, result.record.train.history)
    ]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {
        "metrics.json",
        "config.yaml",
        "liftkit.json",
        "report.html",
        "plots",
        "adapter_model.safetensors",
    } <= artifacts
    assert "checkpoints" not in artifacts


def test_mlflow_honours_mlflow_tracking_uri(tiny_run_config, tmp_path, monkeypatch):
    store = tmp_path / "team-store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv(
        "MLFLOW_ALLOW_FILE_STORE", "true"
    )  # a file store named by the user (a server's URL needs nothing)
    monkeypatch.chdir(tmp_path)
    result = run(tiny_run_config(**{"train.report_to": "mlflow"}), log=lambda m: None)
    assert not (tmp_path / "mlruns").exists()
    _, found = _mlflow_run(store.as_uri())
    assert found.data.metrics["test/accuracy"] == pytest.approx(result.record.finetuned.scores.accuracy)


def test_an_unknown_tracker_is_refused_with_the_choices(tiny_run_config):
    with pytest.raises(LiftError, match="train.report_to='wandb': use none, tensorboard or mlflow"):
        tiny_run_config(**{"train.report_to": "wandb"}).validate()


def _resume(cfg):
    return run(load_config(cfg.output_dir + "/config.yaml"), resume=True, log=lambda m: None)


def test_a_resumed_run_keeps_its_tensorboard_events_up_to_the_checkpoint(tiny_run_config, kill_after_first_epoch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_run_config(**{"train.report_to": "tensorboard", "train.log_every": 2})
    kill_after_first_epoch(cfg)
    result = _resume(cfg)
    assert result.record.train.resumed_from_epoch == 1
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps, epochs = _history(result.run_dir)
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx(
        [h.val.scores.accuracy for h in result.record.train.history]
    )
    assert [e.step for e in events.Scalars("val/accuracy")] == [
        row["step"] for row in epochs
    ]  # epoch 1's line, at the checkpoint's step, kept
    assert [e.step for e in events.Scalars("train/loss")] == [row["step"] for row in steps]


def test_a_killed_run_marks_its_mlflow_run_failed_and_its_resume_finishes_the_same_run(
    tiny_run_config, tmp_path, monkeypatch, kill_after_first_epoch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = tiny_run_config(**{"train.report_to": "mlflow"})
    kill_after_first_epoch(cfg)
    _, killed = _mlflow_run((tmp_path / "mlruns").as_uri())
    assert killed.info.status == "FAILED"
    result = _resume(cfg)
    client, resumed = _mlflow_run((tmp_path / "mlruns").as_uri())  # still one run in the experiment: the same one
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    val = client.get_metric_history(resumed.info.run_id, "val/accuracy")
    assert [m.value for m in val] == pytest.approx([h.val.scores.accuracy for h in result.record.train.history])


def test_an_unusable_mlflow_store_fails_the_run_in_one_line_before_training(tiny_run_config, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (blocker / "store").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    with pytest.raises(
        LiftError,
        match=r"MLflow tracking at file://.* failed \(.*\): check MLFLOW_TRACKING_URI, or run with --report-to none",
    ):
        run(tiny_run_config(**{"train.report_to": "mlflow"}), log=lambda m: None)


def test_a_tracker_failing_after_the_run_is_saved_leaves_the_run_finished(tiny_run_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def broken(self, record, run_dir):
        raise ConnectionError("server went away")

    monkeypatch.setattr(tracking.MlflowTracker, "finish", broken)
    lines = []
    result = run(tiny_run_config(**{"train.report_to": "mlflow"}), log=lines.append)
    assert (result.run_dir / "liftkit.json").is_file() and not (result.run_dir / "error.json").exists()
    assert "warning: sending the finished run to mlflow failed (server went away); the run itself is saved" in lines
