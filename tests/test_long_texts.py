"""Long texts in windows (data.long_texts chunk): windows as the tokenizer cuts them, a document's
windows weighted to count once in the loss and pooled into its prediction, the same in training,
evaluation, predict, export and serve."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

import liftkit
from liftkit.batching import loader, tokenize
from liftkit.cli import main
from liftkit.config import load_config
from liftkit.data import Split, load_splits
from liftkit.errors import LiftError
from liftkit.losses import single_label_criterion
from liftkit.modeling import load_tokenizer
from liftkit.predict import pool_windows
from liftkit.run_dir import read_manifest, read_record

LONG = " ".join(f"word{i}" for i in range(60))  # far past a 16-token window


def test_a_documents_windows_are_pooled_by_hand():
    logits = np.array([[1.0, 0.0], [3.0, -2.0], [2.0, 5.0], [0.5, 0.5]], dtype=np.float32)
    documents = np.array([0, 0, 0, 1])  # a document of 3 windows, then one of 1
    assert pool_windows(logits, documents, "mean").tolist() == [[2.0, 1.0], [0.5, 0.5]]
    assert pool_windows(logits, documents, "max").tolist() == [[3.0, 5.0], [0.5, 0.5]]


def test_windows_overlap_by_the_stride_and_carry_their_documents_target_and_weight(tiny_models):
    tokenizer = load_tokenizer(load_config(None, {"model.name": str(tiny_models["bert"])}).model)
    data = tokenize(Split([LONG, "short"], [1, 0]), tokenizer, 16, chunk=(4, "mean"))
    documents = data.documents.tolist()
    assert documents[-1] == 1 and documents.count(0) >= 4 and documents.count(1) == 1
    first, second = data.ids[0].tolist(), data.ids[1].tolist()
    assert len(first) == 16 and first[-5:-1] == second[1:5]  # 4 tokens shared, [CLS]/[SEP] around each window
    assert data.labels.tolist() == [1] * documents.count(0) + [0]
    assert data.weights.tolist() == pytest.approx([1 / documents.count(0)] * documents.count(0) + [1.0])
    assert data.document_targets().tolist() == [1, 0]


def test_the_loss_counts_a_long_document_once_not_once_per_window():
    cfg = load_config(None, {}).train
    criterion = single_label_criterion(cfg, ["a", "b"], [0, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 0, 1])  # three windows of document 0, one of document 1
    rows = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0])
    each = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    by_hand = (each[:3].mean() + each[3]) / 2
    assert criterion(logits, labels, rows).item() == pytest.approx(by_hand.item())
    assert criterion(logits, labels).item() == pytest.approx(each.mean().item())  # unweighted: every row once


@pytest.fixture(scope="module")
def run(tiny_cli_run) -> Path:
    args = "--dataset imdb --max-train-samples 48 --max-eval-samples 24 --epochs 1 --max-length 32"
    return tiny_cli_run("chunk", args + " --set data.long_texts=chunk --set data.chunk_stride=8")


def test_a_chunked_run_trains_on_windows_and_scores_documents(run):
    record = read_record(run)
    assert record.data.rows["test"] == 24 and record.finetuned.timing is not None
    manifest = read_manifest(run)
    assert manifest.chunk == [8, "mean"]
    cfg = load_config(run / "config.yaml")
    test = load_splits(cfg.data, cfg.train.seed).test
    predictor = liftkit.load(run)
    probs = predictor.predict_proba(test.texts)  # a row per review, its windows pooled
    assert probs.shape == (24, 2)
    accuracy = float((probs.argmax(-1) == np.asarray(test.labels)).mean())
    assert accuracy == pytest.approx(record.finetuned.scores.accuracy)
    (text,) = [t for t in test.texts if len(t.split()) > 100][:1]
    rows = predictor.encode([text])
    assert len(rows[0].parts) > 3  # a long review is several windows, run in one call
    windows = predictor.backend(predictor.encoder.pad([part for part in rows[0].parts]))
    assert predictor.logits([text])[0] == pytest.approx(windows.mean(axis=0), abs=1e-5)


def test_an_onnx_export_and_the_server_pool_the_same_windows(run, tmp_path):
    from test_serve import serving

    out = tmp_path / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--output", str(out)]) == 0
    info = json.loads((out / "export.json").read_text())
    assert info["chunk"] == [8, "mean"] and info["parity"]["decision_agreement"] == 1.0
    texts = [LONG, "a short review, one window"]
    expected = liftkit.load(run).predict_proba(texts)
    assert np.abs(liftkit.load(out).predict_proba(texts) - expected).max() < 1e-4
    with serving(run) as (url, _):
        got = httpx.post(url + "/predict", json={"inputs": [[LONG], ["a short review, one window"]]}).json()
    labels = liftkit.load(run).labels
    for answer, row in zip(got, expected):
        assert {d["label"]: d["score"] for d in answer} == pytest.approx(dict(zip(labels, row)), abs=1e-5)


def test_chunking_refuses_pairs_and_a_stride_that_leaves_nothing_new(tiny_run_config):
    from liftkit.pipeline import run as lift_run

    with pytest.raises(LiftError, match="windows single texts, and this data holds sentence pairs"):
        lift_run(tiny_run_config(**{"data.dataset": "mrpc", "data.long_texts": "chunk"}), log=lambda m: None)
    with pytest.raises(
        LiftError, match=r"data.chunk_stride=46 leaves windows of 48 tokens \(46 of text\) nothing new"
    ):
        lift_run(tiny_run_config(**{"data.long_texts": "chunk", "data.chunk_stride": 46}), log=lambda m: None)
    with pytest.raises(LiftError, match="data.chunk_pool='sum': use mean or max"):
        load_config(None, {"data.chunk_pool": "sum"})


def test_a_loader_of_windows_batches_them_with_their_weights(tiny_models):
    from liftkit.batching import Padding

    tokenizer = load_tokenizer(load_config(None, {"model.name": str(tiny_models["bert"])}).model)
    data = tokenize(Split([LONG, "short"], [1, 0]), tokenizer, 16, chunk=(4, "mean"))
    batches = list(loader(data, 64, Padding.of(tokenizer), shuffle=False))
    assert sum(len(b["labels"]) for b in batches) == len(data)
    assert sorted(w for b in batches for w in b["weights"].tolist())[-1] == pytest.approx(1.0)
