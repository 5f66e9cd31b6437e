"""Multi-label end to end: a go_emotions slice through run -> predict -> export hf/onnx -> serve -> report,
on the tiny BERT; each step answers with label sets decided at the thresholds the run chose on validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

import liftkit
from liftkit.cli import main
from liftkit.config import load_config
from liftkit.data import load_splits
from liftkit.run_dir import read_manifest, read_record
from liftkit.tasks.multi_label import MULTI_LABEL

TEXTS = [
    "thank you so much, this made my day",
    "this is the worst thing i have ever read",
    "what do you mean by that?",
    "ok",
]


@pytest.fixture(scope="module")
def run(tiny_cli_run) -> Path:
    # every label with a validation positive gets its own threshold (min_positives 1), so leaks would show
    args = "--dataset go_emotions --max-train-samples 160 --max-eval-samples 120 --epochs 2 --max-length 32 --lr 0.02"
    return tiny_cli_run("multi", args + " --set task.min_positives=1")


def test_a_go_emotions_run_decides_multi_label_and_reports_its_metrics(run):
    record = read_record(run)
    assert record.data.task == "multi_label" and "lists" in record.data.task_reason
    s = record.finetuned.scores
    assert None not in (s.micro_f1, s.samples_f1, s.hamming_loss, s.label_ranking_ap, s.macro_roc_auc)
    assert record.finetuned.confusion_matrix == [] and len(record.finetuned.per_class) == 28
    assert record.majority.scores.micro_f1 is not None  # the most-frequent-set reference row
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["task"] == "multi_label"
    assert {"micro_f1", "samples_f1", "hamming_loss", "label_ranking_ap", "macro_roc_auc"} <= set(metrics["finetuned"])
    assert all("threshold" in c for c in metrics["finetuned"]["per_class"].values())
    report = (run / "report.md").read_text()
    assert "| micro-F1 |" in report and "most frequent set" in report and "subset accuracy" in report
    cfg = load_config(run / "config.yaml")
    assert cfg.task.name == "auto" and cfg.train.best_metric == "auto"  # a rerun decides again, from the data


def test_thresholds_are_tuned_on_the_validation_split_never_on_test(run):
    manifest = read_manifest(run)
    cfg = load_config(run / "config.yaml")
    splits = load_splits(cfg.data, cfg.train.seed, "multi_label")
    predictor = liftkit.load(run)

    def tuned_on(split: str) -> list[float]:
        probs = predictor.predict_proba(getattr(splits, split).texts)
        return MULTI_LABEL.thresholds("tuned", splits.label_names, lambda: (probs, splits.targets(split)), 1)

    on_validation, on_test = tuned_on("validation"), tuned_on("test")
    assert on_validation != on_test  # otherwise this test could not tell them apart
    assert manifest.thresholds == pytest.approx(on_validation)
    per_class = read_record(run).finetuned.per_class
    assert [per_class[n].threshold for n in manifest.labels] == pytest.approx(on_validation)


def test_predict_returns_every_labels_probability_and_the_set_at_the_thresholds(run, tmp_path, capsys):
    predictor = liftkit.load(run)
    probs = predictor.predict_proba(TEXTS)
    assert probs.shape == (4, 28) and not np.allclose(probs.sum(axis=1), 1)  # a sigmoid per label, not a softmax
    thresholds = read_manifest(run).thresholds
    for answer, row in zip(predictor.predict(TEXTS), probs):
        assert answer["labels"] == [n for n, p, t in zip(predictor.labels, row, thresholds) if p >= t]
        assert answer["probabilities"] == pytest.approx(dict(zip(predictor.labels, row.tolist())))
    assert predictor.info["task"] == "multi_label" and predictor.info["thresholds"]["neutral"] == thresholds[-1]
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["predict", str(run), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:2] == ["text", "labels"] and list(rows[0])[2:] == predictor.labels
    assert [r["labels"] for r in rows] == ["|".join(a["labels"]) for a in predictor.predict(TEXTS)]


def test_hf_export_is_a_multi_label_classifier_for_a_plain_pipeline(run, tmp_path):
    from test_export import _blocked

    out = tmp_path / "hf"
    assert main(["export", str(run), "--format", "hf", "--output", str(out)]) == 0
    script = """
import json
from transformers import pipeline
folder, texts = sys.argv[2], json.loads(sys.argv[3])
classify = pipeline("text-classification", model=folder, top_k=None)
assert classify.model.config.problem_type == "multi_label_classification"
print(json.dumps([{d["label"]: d["score"] for d in scores} for scores in classify(texts)]))
"""
    got = _blocked(script, "peft,liftkit", str(out), json.dumps(TEXTS))
    predictor = liftkit.load(run)
    plain = np.array([[row[n] for n in predictor.labels] for row in got])
    assert np.abs(plain - predictor.predict_proba(TEXTS)).max() <= 1e-4  # sigmoid, as the run's own
    info = json.loads((out / "export.json").read_text())
    assert info["task"] == "multi_label" and info["thresholds"] == read_manifest(run).thresholds


def test_onnx_exports_carry_the_thresholds_and_their_parity_covers_the_decisions(run, tmp_path):
    for extra, name in (([], "onnx"), (["--quantize", "int8"], "int8")):
        out = tmp_path / name
        assert main(["export", str(run), "--format", "onnx", "--output", str(out), *extra]) == 0
        parity = json.loads((out / "export.json").read_text())["parity"]
        assert "argmax_agreement" not in parity and 0.9 <= parity["decision_agreement"] <= 1
        assert {"micro_f1", "macro_f1", "accuracy"} <= set(parity["run"])
        exported = liftkit.load(out)
        assert exported.thresholds == read_manifest(run).thresholds
        if not extra:
            assert parity["decision_agreement"] == 1.0 and parity["max_abs_prob_diff"] < 1e-4
            assert [a["labels"] for a in exported.predict(TEXTS)] == [
                a["labels"] for a in liftkit.load(run).predict(TEXTS)
            ]


def test_the_server_answers_with_sigmoid_scores_and_label_sets(run):
    from test_serve import serving

    predictor = liftkit.load(run)
    with serving(run) as (url, _):
        tei = httpx.post(url + "/predict", json={"inputs": TEXTS[0]}).json()
        assert len(tei) == 28 and sum(d["score"] for d in tei) > 1.0001  # every label's own probability
        assert {d["label"]: d["score"] for d in tei} == pytest.approx(
            predictor.predict([TEXTS[0]])[0]["probabilities"], abs=1e-5
        )
        results = httpx.post(url + "/v1/classify", json={"texts": TEXTS, "top_k": 3}).json()["results"]
        assert [r["labels"] for r in results] == [a["labels"] for a in predictor.predict(TEXTS)]
        assert all(len(r["probabilities"]) == 3 for r in results)
        info = httpx.get(url + "/info").json()
        assert info["task"] == "multi_label" and info["thresholds"] == dict(
            zip(predictor.labels, read_manifest(run).thresholds)
        )
        assert "micro_f1" in info["test_metrics"] and info["accuracy_name"] == "subset accuracy"


def test_the_report_shows_per_label_pictures_and_no_confusion_matrix(run):
    page = (run / "report.html").read_text()
    for section in (
        "Per-label scores",
        "Precision-recall per label",
        "Label co-occurrence",
        "Calibration",
        "most confident mistakes",
    ):
        assert section in page
    assert "Confusion matrices" not in page
    assert {"precision_recall.png", "co_occurrence.png", "per_class.png", "calibration.png"} <= {
        p.name for p in (run / "plots").iterdir()
    }


def test_a_comparison_of_multi_label_runs_shows_micro_f1(run, tmp_path):
    from liftkit.pages import write_compare_report
    from liftkit.report import results_table

    record = read_record(run)
    table = results_table(["lora"], {"lora": [record]}, {})
    column = table[0].index("micro-F1")
    assert table[-1][column] == f"{record.finetuned.scores.micro_f1:.4f}"
    assert table[1][0] == "most frequent set" and table[1][column] == f"{record.majority.scores.micro_f1:.4f}"
    page = write_compare_report([run], tmp_path / "compare").read_text()
    assert "micro-F1" in page
