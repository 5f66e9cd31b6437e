"""Regression end to end: an stsb slice (sentence pairs, a 0-5 score) through run -> predict ->
export hf/onnx -> serve -> report on the tiny BERT; the metrics by hand; the loss and head start."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

import liftkit
from liftkit.cli import main
from liftkit.config import load_config
from liftkit.data import load_splits
from liftkit.errors import LiftError
from liftkit.losses import regression_criterion
from liftkit.run_dir import read_record
from liftkit.tasks.regression import REGRESSION

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar."),
    ("A woman is slicing an onion.", "A dog runs in the park."),
    ("Two kids are playing soccer.", "Children are playing football."),
]


@pytest.fixture(scope="module")
def run(tiny_cli_run) -> Path:
    return tiny_cli_run(
        "regression",
        "--dataset stsb --max-train-samples 160 --max-eval-samples 80 --epochs 2 --max-length 40 --lr 0.02",
    )


def test_metrics_by_hand():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    predicted = np.array([[0.5], [0.8], [2.6], [2.9], [4.4]])
    s = REGRESSION.metrics(predicted, y).scores
    assert s.spearman == pytest.approx(1.0)  # the same order
    errors = predicted[:, 0] - y
    assert s.mse == pytest.approx(np.mean(errors**2)) and s.loss == s.mse
    assert s.mae == pytest.approx(np.mean(np.abs(errors)))
    assert s.r2 == pytest.approx(1 - np.mean(errors**2) / np.var(y))
    centred = predicted[:, 0] - predicted.mean(), y - y.mean()
    assert s.pearson == pytest.approx(
        (centred[0] @ centred[1]) / np.sqrt((centred[0] @ centred[0]) * (centred[1] @ centred[1]))
    )
    reference = REGRESSION.reference(np.array([1.0, 3.0]), y, ["score"]).scores  # always the training mean, 2
    assert reference.mse == pytest.approx(np.mean((y - 2.0) ** 2)) and reference.spearman == 0.0
    assert s.accuracy is None and s.macro_f1 is None  # no class, no accuracy


def test_the_loss_is_the_mse_of_standardised_scores_and_huber_bends_at_one_deviation():
    train = np.array([0.0, 2.0, 4.0])  # standard deviation 1.633
    cfg = load_config(None, {}).train
    outputs, targets = torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 0.0])
    std = train.std()
    outputs.requires_grad_(True)
    loss = regression_criterion(cfg, ["score"], train)(outputs, targets)
    assert loss.item() == pytest.approx(np.mean(np.array([1.0, 3.0]) ** 2), rel=1e-5)  # the MSE, in the units
    loss.backward()  # the gradient is the standardised MSE's: d/dx mean((x/std)^2) = 2x / (n std^2)
    assert outputs.grad[:, 0].tolist() == pytest.approx((2 * np.array([1.0, 3.0]) / (2 * std**2)).tolist(), rel=1e-5)
    cfg.loss = "huber"
    z = np.array([1.0, 3.0]) / std  # 0.61 (quadratic) and 1.84 (linear)
    expected = np.mean([0.5 * z[0] ** 2, z[1] - 0.5]) * std**2
    assert regression_criterion(cfg, ["score"], train)(outputs, targets).item() == pytest.approx(expected, rel=1e-5)
    cfg.loss, cfg.class_weights = "auto", "balanced"
    with pytest.raises(LiftError, match="class_weights applies to classes"):
        regression_criterion(cfg, ["score"], train)


def test_an_stsb_run_is_regression_with_its_metrics_and_reference_rows(run):
    record = read_record(run)
    assert record.data.task == "regression" and "fractional numbers" in record.data.task_reason
    s = record.finetuned.scores
    assert None not in (s.spearman, s.pearson, s.mse, s.mae, s.r2) and s.accuracy is None
    assert record.majority.scores.r2 == pytest.approx(0.0, abs=0.05)  # the training mean
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"spearman", "pearson", "mse", "mae", "r2"} <= set(metrics["finetuned"])
    assert "accuracy" not in metrics["finetuned"]
    assert [m.error for m in record.mistakes] == sorted((m.error for m in record.mistakes), key=lambda e: -abs(e))
    report = (run / "report.md").read_text()
    assert "| Spearman |" in report and "training mean" in report
    assert record.train.best is not None and record.train.best.val.scores.spearman is not None


def test_the_head_starts_at_the_training_mean(tiny_run_config):
    from liftkit.pipeline import _prepare

    cfg = tiny_run_config(**{"data.dataset": "stsb", "data.max_train_samples": 64})
    p = _prepare(cfg, log=lambda m: None)
    from liftkit.batching import loader

    first = next(iter(loader(p.tokens["train"], 64, p.padding, shuffle=False)))
    first.pop("labels")
    with torch.no_grad():
        out = p.model.eval()(**first).logits[:, 0].numpy()
    mean = float(np.mean(p.splits.targets("train")))
    assert abs(out.mean() - mean) < 0.5 * float(np.std(p.splits.targets("train")))


def test_predict_returns_the_score(run, tmp_path):
    predictor = liftkit.load(run)
    answers = predictor.predict(PAIRS)
    values = predictor.predict_proba(PAIRS)
    assert values.shape == (3, 1) and [a["score"] for a in answers] == pytest.approx(values[:, 0].tolist())
    assert set(answers[0]) == {"score"}
    (tmp_path / "in.txt").write_text("".join(f"{a}\t{b}\n" for a, b in PAIRS))
    assert main(["predict", str(run), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.csv")]) == 0
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "text,text_pair,score" and len(lines) == 4


def test_hf_export_is_a_regression_model_for_a_plain_pipeline(run, tmp_path):
    from test_export import _blocked

    out = tmp_path / "hf"
    assert main(["export", str(run), "--format", "hf", "--output", str(out)]) == 0
    script = """
import json
from transformers import pipeline
folder, pairs = sys.argv[2], json.loads(sys.argv[3])
score = pipeline("text-classification", model=folder, function_to_apply="none")
assert score.model.config.problem_type == "regression"
print(json.dumps([score({"text": a, "text_pair": b})["score"] for a, b in pairs]))
"""
    got = _blocked(script, "peft,liftkit", str(out), json.dumps(PAIRS))
    assert np.abs(np.array(got) - liftkit.load(run).predict_proba(PAIRS)[:, 0]).max() <= 1e-4
    parity = json.loads((out / "export.json").read_text())["parity"]
    assert parity["decision_agreement"] == 1.0 and "spearman_change_points" in parity


def test_onnx_export_keeps_the_scores(run, tmp_path):
    out = tmp_path / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--output", str(out)]) == 0
    assert np.abs(liftkit.load(out).predict_proba(PAIRS) - liftkit.load(run).predict_proba(PAIRS)).max() < 1e-4


def test_the_server_returns_the_score_and_reranks_by_it(run):
    from test_serve import serving

    predictor = liftkit.load(run)
    values = predictor.predict_proba(PAIRS)[:, 0]
    with serving(run) as (url, _):
        tei = httpx.post(url + "/predict", json={"inputs": list(PAIRS[0])}).json()
        assert tei == [{"label": "score", "score": pytest.approx(values[0], abs=1e-5)}]
        results = httpx.post(url + "/v1/classify", json={"pairs": [list(p) for p in PAIRS]}).json()["results"]
        assert [r["score"] for r in results] == pytest.approx(values.tolist(), abs=1e-5)
        assert "probabilities" not in results[0]
        texts = [b for _, b in PAIRS]
        ranked = httpx.post(url + "/rerank", json={"query": PAIRS[0][0], "texts": texts}).json()
        expected = predictor.predict_proba([(PAIRS[0][0], t) for t in texts])[:, 0]
        assert [r["index"] for r in ranked] == np.argsort(-expected, kind="stable").tolist()
        info = httpx.get(url + "/info").json()
        assert info["task"] == "regression" and "spearman" in info["test_metrics"]


def test_the_report_shows_the_scatter_the_residuals_and_the_largest_errors(run):
    page = (run / "report.html").read_text()
    for section in ("Predicted vs true score", "Errors by true score", "largest errors", "second text"):
        assert section in page
    assert "Confusion matrices" not in page and "Calibration" not in page
    assert {"scatter.png", "residuals.png", "learning_curves.png"} <= {p.name for p in (run / "plots").iterdir()}


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"task.name": "single_label"}, "a fraction, but task.name is single_label: use --task regression"),
        ({"train.loss": "cross_entropy"}, "train.loss='cross_entropy' does not train a regression model"),
    ],
)
def test_contradicting_settings_stop_with_one_line(overrides, fragment, tiny_run_config):
    from liftkit.pipeline import run as lift_run

    with pytest.raises(LiftError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        lift_run(tiny_run_config(**{"data.dataset": "stsb", **overrides}), log=lambda m: None)


def test_text_labels_under_task_regression_are_refused(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"text": f"t{i}", "label": "good" if i else 1.5}) + "\n" for i in range(6))
    )
    cfg = load_config(None, {"data.dataset": str(tmp_path / "train.jsonl"), "task.name": "regression"})
    with pytest.raises(LiftError, match=r"line 2 of the train split .* holds 'good', not a number"):
        load_splits(cfg.data, 0, "regression")
