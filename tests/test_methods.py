"""Every method on every tiny architecture: trains, saves, reloads, predicts identically."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import KINDS

import liftkit
from liftkit.config import ModelConfig, load_config
from liftkit.data import load_splits
from liftkit.errors import LiftError
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier, load_tokenizer
from liftkit.pipeline import run

# what cannot apply, and the one line that says why
REFUSED = {
    ("mpnet", "prefix"): "'mpnet' attention does not go through transformers' AttentionInterface",
    ("deberta-v2", "prefix"): "'deberta-v2' attention does not go through transformers' AttentionInterface",
}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("kind", KINDS)
def test_method_trains_saves_reloads_and_predicts_identically(tiny_run_config, kind, method):
    cfg = tiny_run_config(kind, **{"method.name": method, "train.epochs": 1, "data.max_train_samples": 64})
    if (kind, method) in REFUSED:
        with pytest.raises(LiftError, match=REFUSED[kind, method]) as refused:
            run(cfg, log=lambda m: None)
        assert "use lora, ia3 or adapter" in str(refused.value) and "\n" not in str(refused.value)
        return
    result = run(cfg, log=lambda m: None)
    doc = result.metrics
    params = doc["parameters"]
    if method == "full":
        assert params["trainable_params"] == params["total_params"]
    else:
        assert 0 < params["trainable_params"] < params["total_params"]
    test = load_splits(cfg.data, cfg.train.seed).test
    probs = liftkit.load(result.run_dir).predict_proba(test.texts)
    labels = np.asarray(test.labels)
    assert float((probs.argmax(-1) == labels).mean()) == pytest.approx(doc["finetuned"]["accuracy"])
    assert float(-np.log(probs[np.arange(len(labels)), labels]).mean()) == pytest.approx(
        doc["finetuned"]["loss"], abs=1e-4
    )
    manifest = json.loads((result.run_dir / "liftkit.json").read_text())
    assert manifest["method"] == method


@pytest.mark.parametrize("encoding", ["cross", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_architecture_trains_on_sentence_pairs_and_predicts_them_as_it_trained(tiny_run_config, kind, encoding):
    """Pairs in one sequence (BERT's template, a decoder's EOS between) or each text alone: the
    reloaded model, fed through the predictor's own encoder, reproduces the run's test scores."""
    overrides = {
        "data.dataset": "mrpc",
        "data.pair_encoding": encoding,
        "train.epochs": 1,
        "data.max_train_samples": 48,
    }
    cfg = tiny_run_config(kind, **overrides)
    result = run(cfg, log=lambda m: None)
    test = load_splits(cfg.data, cfg.train.seed).test
    probs = liftkit.load(result.run_dir).predict_proba(test.rows())
    labels = np.asarray(test.labels)
    assert float((probs.argmax(-1) == labels).mean()) == pytest.approx(result.metrics["finetuned"]["accuracy"])
    assert float(-np.log(probs[np.arange(len(labels)), labels]).mean()) == pytest.approx(
        result.metrics["finetuned"]["loss"], abs=1e-4
    )


def _model(tiny_models, kind):
    cfg = ModelConfig(name=str(tiny_models[kind]))
    tok = load_tokenizer(cfg)
    model = load_classifier(cfg, ["a", "b", "c"], tok)
    return model.eval(), tok


def _apply(model, method, **options):
    opts = load_config(None, {"method.name": method, **{f"method.{k}": v for k, v in options.items()}}).method
    return METHODS[method].apply(model, opts, arch_of(model)).eval()


TEXTS = ["i feel fine", "i am quite sad about all of this today"]


def _logits(model, tok, texts):
    with torch.no_grad():
        return model(**tok(texts, padding=True, return_tensors="pt")).logits


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant, per_layer", [("houlsby", 2), ("pfeiffer", 1)])
def test_adapters_start_as_the_identity_and_sit_where_the_variant_says(tiny_models, kind, variant, per_layer):
    model, tok = _model(tiny_models, kind)
    before = _logits(model, tok, TEXTS)
    model = _apply(model, "adapter", variant=variant)
    assert torch.allclose(_logits(model, tok, TEXTS), before, atol=1e-6)
    adapters = [n for n, m in model.named_modules() if type(m).__name__ == "Bottleneck"]
    layers = 1 if kind == "albert" else 2  # two layers in every tiny model; ALBERT's share one set of weights
    assert len(adapters) == layers * per_layer
    head = arch_of(model).head
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".adapter." in n or n.split(".")[0] in head or any(f".{h}." in n for h in head) for n in trainable)


@pytest.mark.parametrize("kind", ["bert", "distilbert", "electra", "modernbert"])
def test_encoder_prefix_changes_attention_and_respects_padding(tiny_models, kind):
    model, tok = _model(tiny_models, kind)
    before = _logits(model, tok, TEXTS)
    model = _apply(model, "prefix", num_virtual_tokens=5)
    with torch.no_grad():  # a trained-looking prefix, not the near-zero initial one
        for name, param in model.named_parameters():
            if "liftkit_prefix" in name:
                param.normal_(0, 1.0)
    after = _logits(model, tok, TEXTS)
    assert not torch.allclose(after, before, atol=1e-4)  # the prefixes take part in attention
    alone = _logits(model, tok, TEXTS[:1])
    assert torch.allclose(after[0], alone[0], atol=1e-5)  # padding stays masked, prefix stays open
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("liftkit_prefix" in n for n in trainable)
    assert sum("liftkit_prefix" in n for n in trainable) == 2  # one prefix per layer


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decoder_prefix_goes_through_peft(tiny_models, kind):
    model, _ = _model(tiny_models, kind)
    model = _apply(model, "prefix")
    assert type(model).__name__ == "PeftModelForSequenceClassification"


def test_prompt_tuning_on_a_decoder_pools_a_real_token(tiny_models, tiny_run_config):
    # llama: rotary positions make left padding invisible, so padded and alone must agree
    cfg = tiny_run_config("llama", **{"method.name": "prompt", "train.epochs": 1})
    result = run(cfg, log=lambda m: None)
    predictor = liftkit.load(result.run_dir)
    assert (
        predictor.encoder.left and json.loads((result.run_dir / "liftkit.json").read_text())["padding_side"] == "left"
    )
    from transformers import AutoTokenizer

    assert (
        AutoTokenizer.from_pretrained(result.run_dir).padding_side == "left"
    )  # plain transformers pads the same side
    # predict never pads (one length per batch), so pad here: a left-padded row pools its own last token, not
    # a pad, and scores nearly as it does alone (the padding only moves the virtual tokens a little further away)
    from liftkit.tasks.single_label import probabilities as softmax

    rows = predictor.encoder.encode(TEXTS)
    assert len(rows[0]) < len(rows[1])
    together = softmax(predictor.backend(predictor.encoder.pad(rows)))
    alone = softmax(predictor.backend(predictor.encoder.pad(rows[:1])))
    np.testing.assert_allclose(together[0], alone[0], atol=1e-3)


def test_full_and_head_train_what_they_say(tiny_models):
    model, _ = _model(tiny_models, "distilbert")
    model = _apply(model, "head")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"pre_classifier", "classifier"}
    model = _apply(model, "full")
    assert all(p.requires_grad for p in model.parameters())


def test_each_method_has_its_own_learning_rate_unless_one_is_given():
    assert load_config(None, {"method.name": "full"}).learning_rate == 5e-5
    assert load_config(None, {"method.name": "lora"}).learning_rate == 2e-3
    assert load_config(None, {"method.name": "full", "train.learning_rate": 1e-4}).learning_rate == 1e-4


def test_a_method_that_cannot_apply_fails_before_training(tiny_run_config, monkeypatch):
    from liftkit import modeling, pipeline

    monkeypatch.setitem(
        modeling.ARCHS,
        "distilbert",
        modeling.ARCHS["distilbert"].__class__(
            "distilbert", head=("pre_classifier", "classifier"), lora_targets=("q_lin", "v_lin")
        ),
    )
    called = []
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: called.append("evaluate"))
    monkeypatch.setattr(pipeline, "fit", lambda *a, **k: called.append("fit"))
    cfg = tiny_run_config("distilbert", **{"method.name": "adapter"})
    with pytest.raises(LiftError, match="no adapter placement"):
        run(cfg, log=lambda m: None)
    assert called == []  # neither the base evaluation nor training started
    out = Path(cfg.output_dir)
    error = json.loads((out / "error.json").read_text())
    assert error["type"] == "LiftError" and "no adapter placement" in error["message"]
    assert "Traceback" in (out / error["traceback"]).read_text()
    assert (
        not (out / "metrics.json").exists()
        and not (out / "history.jsonl").exists()
        and not (out / "checkpoints").exists()
    )


def test_a_tokenizer_that_pads_left_keeps_padding_left(tiny_models, tiny_run_config, tmp_path):
    """Llama-family hub tokenizers default to left padding; liftkit keeps the tokenizer's side, records
    it in the manifest and in the saved tokenizer, and predicts with it."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "llama-left"
    shutil.copytree(tiny_models["llama"], folder)
    AutoTokenizer.from_pretrained(folder, padding_side="left").save_pretrained(folder)  # as such hub folders ship
    logs = []
    cfg = tiny_run_config("llama", **{"model.name": str(folder), "train.epochs": 1})
    result = run(cfg, log=logs.append)
    assert any("frozen-bottom cache: off (left padding" in line for line in logs)
    assert json.loads((result.run_dir / "liftkit.json").read_text())["padding_side"] == "left"
    assert AutoTokenizer.from_pretrained(result.run_dir).padding_side == "left"
    predictor = liftkit.load(result.run_dir)
    assert predictor.encoder.left
    test = load_splits(cfg.data, cfg.train.seed).test
    probs = predictor.predict_proba(test.texts)
    assert float((probs.argmax(-1) == np.asarray(test.labels)).mean()) == pytest.approx(
        result.record.finetuned.scores.accuracy
    )
