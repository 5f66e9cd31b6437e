"""Sentence pairs end to end: an mrpc slice through run -> predict -> export hf/onnx -> serve (TEI's
pair forms, /rerank) -> report on the tiny BERT, and pair tokenisation on every architecture."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

import liftkit
from liftkit.batching import model_inputs, pair_separator, tokenize
from liftkit.cli import main
from liftkit.config import load_config
from liftkit.data import Split, load_splits
from liftkit.errors import LiftError
from liftkit.modeling import load_tokenizer
from liftkit.run_dir import read_manifest, read_record

PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Stocks fell sharply on Monday.", "The weather was sunny in Paris."),
    ("He said the deal was done.", "The deal, he said, had been completed."),
]


@pytest.fixture(scope="module")
def run(tiny_cli_run) -> Path:
    return tiny_cli_run(
        "pairs", "--dataset mrpc --max-train-samples 120 --max-eval-samples 60 --epochs 2 --max-length 40 --lr 0.02"
    )


def test_an_mrpc_run_finds_the_pair_columns_and_feeds_token_types(run):
    record = read_record(run)
    assert any("'sentence1' + 'sentence2'" in note for note in record.data.notes)
    manifest = read_manifest(run)
    assert manifest.input_kind == "pair" and manifest.pair_separator is None  # BERT separates with [SEP] itself
    assert "token_type_ids" in manifest.inputs
    assert record.finetuned.scores.f1 is not None  # two classes: the positive class's F1, as GLUE reports MRPC
    assert all(m.text_pair for m in record.mistakes)
    page = (run / "report.html").read_text()
    assert "second text" in page and record.mistakes[0].text_pair.split()[0] in page


@pytest.mark.parametrize("kind", ["bert", "distilbert", "gpt2", "llama"])
def test_pairs_are_tokenized_as_each_architecture_reads_them_and_predict_encodes_the_same(kind, tiny_models):
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(load_config(None, {"model.name": str(tiny_models[kind])}).model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models[kind], num_labels=2)
    inputs = model_inputs(tokenizer, inspect.signature(model.forward).parameters)
    split = Split([a for a, _ in PAIRS], [0, 1, 1], [b for _, b in PAIRS])
    data = tokenize(split, tokenizer, 64, inputs=inputs)
    separator = pair_separator(tokenizer)
    if "token_type_ids" in inputs:  # BERT: the second text is type 1
        types = data.extra["token_type_ids"][0]
        assert types[0] == 0 and types[-1] == 1 and set(types.tolist()) == {0, 1}
    if kind in ("gpt2", "llama"):  # the pair template adds nothing between the texts: joined by EOS
        assert separator == tokenizer.eos_token and tokenizer.eos_token_id in data.ids[0].tolist()
    else:
        assert separator is None
    from liftkit.predict import Encoder

    folder = tiny_models[kind]
    tokenizer.save_pretrained(folder / "_tok")
    encoder = Encoder.from_folder(folder / "_tok", 64, False, tokenizer.pad_token_id, inputs, "pair", separator)
    rows = encoder.encode(PAIRS)
    assert [list(r) for r in rows] == [x.tolist() for x in data.ids]
    if "token_type_ids" in inputs:
        batch = encoder.pad(rows)
        assert batch["token_type_ids"][0, : len(rows[0])].tolist() == data.extra["token_type_ids"][0].tolist()


def test_longest_first_cuts_the_longer_text_of_a_pair(tiny_models):
    tokenizer = load_tokenizer(load_config(None, {"model.name": str(tiny_models["bert"])}).model)
    long, short = "word " * 40, "tiny text"
    data = tokenize(
        Split([long], [0], [short]), tokenizer, 16, inputs=("input_ids", "attention_mask", "token_type_ids")
    )
    assert len(data.ids[0]) == 16 and data.cut == 1
    types = data.extra["token_type_ids"][0]
    second = len(tokenizer(short, add_special_tokens=False)["input_ids"]) + 1  # its tokens and the final [SEP]
    assert int(types.sum()) == second  # the short text survived whole; the long one lost the tokens


def test_predict_takes_tuples_and_dicts_and_refuses_single_texts(run, tmp_path, capsys):
    predictor = liftkit.load(run)
    assert predictor.pairs and predictor.info["input"] == "pair"
    as_tuples = predictor.predict_proba(PAIRS)
    as_dicts = predictor.predict_proba([{"text": a, "text_pair": b} for a, b in PAIRS])
    assert np.array_equal(as_tuples, as_dicts)
    swapped = predictor.predict_proba([(b, a) for a, b in PAIRS])
    assert not np.allclose(as_tuples, swapped)  # the order of the texts matters to a cross-encoder
    with pytest.raises(LiftError, match=r"texts\[0\] is one text, but this model was trained on sentence pairs"):
        predictor.predict(["just one text"])
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"sentence1": a, "sentence2": b}) + "\n" for a, b in PAIRS))
    assert (
        main(["predict", str(run), "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl")])
        == 0
    )
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(w["text"], w["text_pair"]) for w in written] == PAIRS
    assert [w["label"] for w in written] == [a["label"] for a in predictor.predict(PAIRS)]
    assert main(["predict", str(run), PAIRS[0][0], PAIRS[0][1]]) == 0  # arguments two by two
    assert capsys.readouterr().out.strip().endswith(f"{PAIRS[0][0]}\t{PAIRS[0][1]}")


def test_a_single_text_model_refuses_a_pair(tiny_run_config):
    from liftkit.pipeline import run as lift_run

    out = lift_run(tiny_run_config(**{"train.epochs": 1}), log=lambda m: None).run_dir
    with pytest.raises(LiftError, match="is a sentence pair, but this model was trained on single texts"):
        liftkit.load(out).predict([("a", "b")])


def test_hf_export_answers_a_plain_pipeline_given_text_and_text_pair(run, tmp_path):
    from test_export import _blocked

    out = tmp_path / "hf"
    assert main(["export", str(run), "--format", "hf", "--output", str(out)]) == 0
    script = """
import json
from transformers import pipeline
folder, pairs = sys.argv[2], json.loads(sys.argv[3])
classify = pipeline("text-classification", model=folder, top_k=None)
print(json.dumps([{d["label"]: d["score"] for d in classify({"text": a, "text_pair": b})} for a, b in pairs]))
"""
    got = _blocked(script, "peft,liftkit", str(out), json.dumps(PAIRS))
    predictor = liftkit.load(run)
    plain = np.array([[row[n] for n in predictor.labels] for row in got])
    assert np.abs(plain - predictor.predict_proba(PAIRS)).max() <= 1e-4


def test_onnx_export_takes_token_types_and_matches_the_run(run, tmp_path):
    import onnx

    out = tmp_path / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--output", str(out)]) == 0
    graph_inputs = {i.name for i in onnx.load(str(out / "model.onnx")).graph.input}
    assert "token_type_ids" in graph_inputs
    info = json.loads((out / "export.json").read_text())
    assert info["input_kind"] == "pair" and info["parity"]["decision_agreement"] == 1.0
    assert info["parity"]["max_abs_prob_diff"] < 1e-4
    exported = liftkit.load(out)
    assert np.abs(exported.predict_proba(PAIRS) - liftkit.load(run).predict_proba(PAIRS)).max() < 1e-4


def test_the_server_reads_every_tei_input_form_and_reranks(run):
    from test_serve import serving

    predictor = liftkit.load(run)
    probs = predictor.predict_proba(PAIRS)
    with serving(run) as (url, _):
        one = httpx.post(url + "/predict", json={"inputs": list(PAIRS[0])}).json()  # ["a", "b"]: one pair
        assert {d["label"]: d["score"] for d in one} == pytest.approx(dict(zip(predictor.labels, probs[0])), abs=1e-5)
        batch = httpx.post(url + "/predict", json={"inputs": [list(p) for p in PAIRS]}).json()
        assert len(batch) == 3 and [b[0]["label"] for b in batch] == [a["label"] for a in predictor.predict(PAIRS)]
        for body, fragment in (
            (
                {"inputs": "one text"},
                'inputs[0] is one text, but this model reads sentence pairs: send each as ["text"',
            ),
            ({"inputs": [["one text"]]}, "inputs[0] is one text, but this model reads sentence pairs"),
        ):
            response = httpx.post(url + "/predict", json=body)
            assert response.status_code == 422 and fragment in response.json()["error"]
        classify = httpx.post(url + "/v1/classify", json={"pairs": [list(p) for p in PAIRS]}).json()["results"]
        assert [r["label"] for r in classify] == [a["label"] for a in predictor.predict(PAIRS)]
        query, texts = PAIRS[0][0], [PAIRS[1][1], PAIRS[0][1], PAIRS[2][1]]
        ranked = httpx.post(url + "/rerank", json={"query": query, "texts": texts, "return_text": True}).json()
        positive = predictor.predict_proba([(query, t) for t in texts])[:, 1]
        assert [r["index"] for r in ranked] == np.argsort(-positive, kind="stable").tolist()
        assert [r["score"] for r in ranked] == pytest.approx(sorted(positive, reverse=True), abs=1e-5)
        assert [r["text"] for r in ranked] == [texts[r["index"]] for r in ranked]
        raw = httpx.post(url + "/rerank", json={"query": query, "texts": texts, "raw_scores": True}).json()
        logits = predictor.logits([(query, t) for t in texts])
        assert {r["index"]: r["score"] for r in raw} == pytest.approx(
            dict(enumerate(logits[:, 1] - logits[:, 0])), abs=1e-4
        )
        assert "text" not in raw[0]
        assert httpx.get(url + "/info").json()["input"] == "pair"


@pytest.mark.parametrize("encoding", ["cross", "bi"])
@pytest.mark.parametrize("method", ["lora", "ia3", "prefix", "prompt", "adapter", "full", "head"])
def test_every_method_trains_on_pairs_in_either_encoding(method, encoding, tiny_run_config):
    from liftkit.pipeline import run as lift_run

    cfg = tiny_run_config(
        **{
            "data.dataset": "mrpc",
            "data.pair_encoding": encoding,
            "method.name": method,
            "train.epochs": 1,
            "data.max_train_samples": 48,
        }
    )
    result = lift_run(cfg, log=lambda m: None)
    manifest = read_manifest(result.run_dir)
    assert manifest.input_kind == "pair" and manifest.pair_encoding == encoding
    got = liftkit.load(result.run_dir).predict_proba(PAIRS)
    assert got.shape == (3, 2) and np.allclose(got.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("encoding", ["cross", "bi"])
def test_frozen_bottom_caching_gives_the_same_losses_on_pairs(encoding, tiny_run_config, tmp_path):
    from liftkit.pipeline import run as lift_run

    losses = []
    for cached in (True, False):
        cfg = tiny_run_config(
            **{
                "data.dataset": "mrpc",
                "data.pair_encoding": encoding,
                "method.train_layers": 1,
                "train.cache_frozen": cached,
                "train.epochs": 1,
                "output_dir": str(tmp_path / f"cache-{cached}"),
            }
        )
        record = lift_run(cfg, log=lambda m: None).record
        assert record.train.frozen_cached is cached
        losses.append([h.train_loss for h in record.train.history])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


@pytest.fixture(scope="module")
def bi_run(tiny_cli_run) -> Path:
    return tiny_cli_run(
        "bi",
        "--dataset stsb --pair-encoding bi --max-train-samples 120 --max-eval-samples 60 --epochs 1 --max-length 32",
    )


def test_a_bi_encoder_scores_each_text_alone_and_exports_one_onnx_graph(bi_run, tmp_path):
    import torch

    from liftkit.backends.torch_backend import load_run_model
    from liftkit.bi_encoder import BiEncoder

    manifest = read_manifest(bi_run)
    assert manifest.pair_encoding == "bi" and manifest.pair_separator is None
    model = load_run_model(bi_run, manifest)
    assert isinstance(model, BiEncoder)
    predictor = liftkit.load(bi_run)
    scores = predictor.predict_proba(PAIRS)[:, 0]
    # by hand: each text alone through the body, mean-pooled, the cosine through the 1->1 head
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bi_run)  # the run's own, as saved
    with torch.no_grad():

        def embed(text: str) -> torch.Tensor:
            ids = tokenizer(text, truncation=True, max_length=32, return_tensors="pt")
            return model.body(**ids)[0].mean(dim=1)[0]

        head = model.classifier
        by_hand = [
            float(head.weight[0, 0] * torch.cosine_similarity(embed(a), embed(b), dim=0) + head.bias[0])
            for a, b in PAIRS
        ]
    assert scores.tolist() == pytest.approx(by_hand, abs=1e-4)
    assert np.allclose(predictor.predict_proba([(b, a) for a, b in PAIRS])[:, 0], scores, atol=1e-5)  # symmetric
    out = tmp_path / "onnx"
    assert main(["export", str(bi_run), "--format", "onnx", "--output", str(out)]) == 0
    info = json.loads((out / "export.json").read_text())
    assert info["pair_encoding"] == "bi" and info["parity"]["decision_agreement"] == 1.0
    assert np.abs(liftkit.load(out).predict_proba(PAIRS)[:, 0] - scores).max() < 1e-4
    with pytest.raises(LiftError, match="use --format onnx"):
        from liftkit.export.exporter import export

        export(bi_run, "hf", output=tmp_path / "hf")


def test_a_bi_regression_head_starts_on_the_targets_scale(bi_run):
    from liftkit.run_dir import read_predictions

    cfg = load_config(bi_run / "config.yaml")
    train = load_splits(cfg.data, cfg.train.seed).targets("train")
    base = read_predictions(bi_run)["base"][:, 0]  # the untrained body's cosines through the started head
    assert abs(base.mean() - train.mean()) < 0.3 * train.std()
    assert 0.3 * train.std() < base.std() < 3 * train.std()  # a raw cosine's spread would be ~0.1


def test_auto_encodes_pairs_as_a_bi_encoder_for_sentence_transformers_bases(tiny_models, tmp_path):
    import shutil

    from liftkit.bi_encoder import is_sentence_encoder

    assert not is_sentence_encoder(str(tiny_models["bert"]))
    folder = tmp_path / "st-model"
    shutil.copytree(tiny_models["bert"], folder)
    (folder / "modules.json").write_text("[]")
    assert is_sentence_encoder(str(folder))
    from liftkit.pipeline import _prepare

    logged: list[str] = []
    cfg = load_config(
        None,
        {"model.name": str(folder), "data.dataset": "mrpc", "data.max_train_samples": 16, "data.max_eval_samples": 8},
    )
    p = _prepare(cfg, logged.append)
    assert p.pair_encoding == "bi" and any(
        "encoding bi (auto: the base is a sentence-transformers model)" in m for m in logged
    )
    assert p.tokens["train"].group == 2 and len(p.tokens["train"].ids) == 2 * len(p.tokens["train"])


def test_pair_columns_can_be_named_and_a_missing_one_is_named(tmp_path):
    rows = [{"q": f"question {i}", "d": f"document {i}", "label": i % 2} for i in range(20)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    file = str(tmp_path / "train.jsonl")
    wrong = load_config(None, {"data.dataset": file, "data.text_column": "q", "data.text_pair_column": "qq"}).data
    with pytest.raises(LiftError, match="column 'qq' not found .* pass --text-pair-column NAME"):
        load_splits(wrong)
    named = load_config(
        None, {"data.dataset": str(tmp_path / "train.jsonl"), "data.text_column": "q", "data.text_pair_column": "d"}
    ).data
    splits = load_splits(named)
    assert splits.pair_columns == ("q", "d") and splits.train.pairs is not None
    assert all(p.startswith("document") for p in splits.train.pairs)
