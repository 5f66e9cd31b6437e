"""metrics.json is the typed run record: every key users' scripts read stays, new ones are added."""

import json

import pytest

from liftkit import run_dir
from liftkit.pipeline import run
from liftkit.record import METRICS, RunRecord

# every key metrics.json had before the typed record (liftkit 0.1.0, issue 4): never rename or move one
PINNED = """
run run.dataset run.model run.method run.seed run.learning_rate run.date run.device run.torch run.liftkit
data data.source data.labels data.rows data.rows.train data.rows.validation data.rows.test data.notes
parameters parameters.trainable_params parameters.total_params parameters.trainable_percent
majority majority.accuracy majority.macro_f1 majority.macro_precision majority.macro_recall majority.weighted_f1 majority.loss
base base.accuracy base.macro_f1 base.macro_precision base.macro_recall base.weighted_f1 base.loss
base.runtime_s base.samples_per_s base.steps_per_s base.peak_memory_mb
finetuned finetuned.accuracy finetuned.macro_f1 finetuned.macro_precision finetuned.macro_recall finetuned.weighted_f1
finetuned.loss finetuned.runtime_s finetuned.samples_per_s finetuned.steps_per_s finetuned.peak_memory_mb
train train.epochs_run train.best_epoch train.stopped_early train.resumed_from_epoch train.runtime_s train.samples_per_s
train.optimizer_steps train.processes train.steps_per_s train.peak_memory_mb train.frozen_layers train.frozen_cached
train.history train.history[].epoch train.history[].train_loss train.history[].val_accuracy train.history[].val_macro_f1
train.history[].val_macro_precision train.history[].val_macro_recall train.history[].val_weighted_f1 train.history[].val_loss
train.history[].val_runtime_s train.history[].val_samples_per_s train.history[].val_steps_per_s train.history[].val_peak_memory_mb
""".split()


def _paths(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + key
            if key in ("per_class", "confusion_matrix"):
                continue
            if isinstance(value, list) and value and isinstance(value[0], dict):
                yield from _paths(value[0], f"{prefix}{key}[].")
            else:
                yield from _paths(value, f"{prefix}{key}.")


def test_metrics_json_keeps_every_key_and_adds_per_class_scores_and_confusion(tiny_run_config):
    result = run(tiny_run_config("bert"), log=lambda m: None)
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    missing = [key for key in PINNED if key not in set(_paths(doc))]
    assert missing == []
    labels = doc["data"]["labels"]
    test_rows = doc["data"]["rows"]["test"]
    for part in ("majority", "base", "finetuned"):
        matrix = doc[part]["confusion_matrix"]
        assert len(matrix) == len(labels) and all(len(row) == len(labels) for row in matrix)
        assert sum(map(sum, matrix)) == test_rows
        per_class = doc[part]["per_class"]
        assert list(per_class) == labels
        assert [c["support"] for c in per_class.values()] == [sum(row) for row in matrix]  # true rows per class
    # the confusion matrix and the accuracy come from the same predictions
    matrix = doc["finetuned"]["confusion_matrix"]
    assert sum(matrix[i][i] for i in range(len(labels))) / test_rows == doc["finetuned"]["accuracy"]
    # the file is the typed record, and reads back into it unchanged
    record = run_dir.read_record(result.run_dir)
    assert isinstance(record, RunRecord) and record.to_dict() == doc == result.metrics
    assert (
        record.train.best.val.scores.accuracy
        == doc["train"]["history"][doc["train"]["best_epoch"] - 1]["val_accuracy"]
    )


def test_metric_names_come_from_one_place():
    from liftkit import config, report
    from liftkit.tasks import TASKS

    assert METRICS == (
        "accuracy",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "weighted_f1",
        "f1",
        "loss",
        "micro_f1",
        "samples_f1",
        "hamming_loss",
        "label_ranking_ap",
        "macro_roc_auc",
        "spearman",
        "pearson",
        "mse",
        "mae",
        "r2",
    )
    assert set(report.LABELS) == set(METRICS)
    assert all(set(task.scores) <= set(METRICS) for task in TASKS.values())
    assert config.TrainConfig(best_metric="weighted_f1").problems() == []
    assert "use auto or one of accuracy, macro_f1" in config.TrainConfig(best_metric="bleu").problems()[0]


def test_what_the_report_draws_is_stored_and_agrees_with_metrics_json(tiny_run_config):
    """ECE, label counts, the confident mistakes and the test probabilities: stored by the run, so
    `lift report` redraws without retraining, and consistent with each other."""
    import numpy as np

    from liftkit.evaluate import calibration

    result = run(tiny_run_config("bert"), log=lambda m: None)
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    predictions = run_dir.read_predictions(result.run_dir)
    labels = predictions["labels"]
    assert len(labels) == doc["data"]["rows"]["test"]
    for part in ("base", "finetuned"):
        probabilities = predictions[part]
        assert probabilities.shape == (len(labels), len(doc["data"]["labels"]))
        assert float((probabilities.argmax(1) == labels).mean()) == doc[part]["accuracy"]
        assert calibration(probabilities, labels).ece == pytest.approx(doc[part]["ece"], abs=1e-6)
    assert 0 <= doc["majority"]["ece"] <= 1 and all("val_ece" in h for h in doc["train"]["history"])
    counts = doc["data"]["label_counts"]
    assert {split: sum(c) for split, c in counts.items()} == doc["data"]["rows"]
    assert counts["test"] == np.bincount(labels, minlength=len(doc["data"]["labels"])).tolist()
    wrong = int((predictions["finetuned"].argmax(1) != labels).sum())
    mistakes = doc["mistakes"]
    assert len(mistakes) == min(20, wrong)
    assert [m["probability"] for m in mistakes] == sorted((m["probability"] for m in mistakes), reverse=True)
    assert all(m["label"] != m["predicted"] for m in mistakes)
