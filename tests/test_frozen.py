"""Frozen-bottom caching: found where it is exact, off (with a reason) elsewhere, same results."""

import numpy as np
import pytest
import torch
from conftest import KINDS

import liftkit
from liftkit import frozen
from liftkit.batching import PadCollator, Padding, loader, tokenize
from liftkit.config import DataConfig, ModelConfig, load_config
from liftkit.data import load_splits
from liftkit.errors import LiftError
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier, load_tokenizer, transformer_layers
from liftkit.pipeline import run

STACKED = [kind for kind in KINDS if kind != "albert"]  # ALBERT shares one layer's weights: no bottom to freeze
CASES = (
    [(kind, "lora", 1) for kind in STACKED]
    + [(kind, "head", None) for kind in ("bert", "distilbert", "gpt2", "llama", "mpnet", "deberta-v2")]
    + [("bert", "ia3", 1), ("gpt2", "ia3", 1), ("distilbert", "adapter", 1), ("llama", "adapter", 1)]
    + [("bert", "prefix", 1), ("gpt2", "full", 1), ("bert", "full", 0)]
    + [("modernbert", "ia3", 1), ("mpnet", "adapter", 1), ("deberta-v2", "full", 1), ("modernbert", "prefix", 1)]
)


def _run(tiny_run_config, tmp_path, kind, method, train_layers, **extra):
    overrides = {
        "method.name": method,
        "method.train_layers": train_layers,
        "data.max_train_samples": 64,
        "output_dir": str(tmp_path / f"{kind}-{method}-{len(list(tmp_path.iterdir()))}"),
    }
    lines = []
    result = run(tiny_run_config(kind, **overrides, **extra), log=lines.append)
    return result, [line for line in lines if line.startswith("frozen-bottom cache")]


@pytest.mark.parametrize("kind, method, train_layers", CASES)
def test_caching_the_frozen_bottom_changes_no_result(tiny_run_config, tmp_path, kind, method, train_layers):
    cached, log_on = _run(tiny_run_config, tmp_path, kind, method, train_layers)
    recomputed, log_off = _run(tiny_run_config, tmp_path, kind, method, train_layers, **{"train.cache_frozen": False})
    assert log_on[0].startswith("frozen-bottom cache: on") and log_off[0].startswith(
        "frozen-bottom cache: off (train.cache_frozen is false)"
    )
    for a, b in zip(cached.metrics["train"]["history"], recomputed.metrics["train"]["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
    assert cached.metrics["finetuned"]["loss"] == pytest.approx(recomputed.metrics["finetuned"]["loss"], abs=1e-4)
    # the saved run holds the whole model again: reloading it reproduces the reported test loss
    test = load_splits(tiny_run_config(kind).data, 0).test
    probs = liftkit.load(cached.run_dir).predict_proba(test.texts)
    labels = np.asarray(test.labels)
    assert float(-np.log(probs[np.arange(len(labels)), labels]).mean()) == pytest.approx(
        cached.metrics["finetuned"]["loss"], abs=1e-4
    )


@pytest.mark.parametrize("kind", ["bert", "mpnet", "deberta-v2"])
def test_states_reused_from_the_previous_run_give_the_same_results(tiny_run_config, tmp_path, kind):
    """lift tune's trials share one cache: a run fed the states an earlier run computed trains as
    a run that computed its own (MPNet's and DeBERTa's layers return tuples, which the stand-ins
    must mimic even when this run never ran its bottom)."""
    alone, _ = _run(tiny_run_config, tmp_path, kind, "lora", 1)
    with frozen.reuse_between_runs():
        _run(tiny_run_config, tmp_path, kind, "lora", 1)
        again, log = _run(tiny_run_config, tmp_path, kind, "lora", 1)
    assert "reused from the previous run" in log[0]
    for a, b in zip(alone.metrics["train"]["history"], again.metrics["train"]["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)


def test_over_budget_or_unfrozen_models_fall_back_with_a_reason(tiny_run_config, tmp_path):
    _, log = _run(tiny_run_config, tmp_path, "bert", "lora", 1, **{"train.cache_max_gb": 0})
    assert log[0].startswith("frozen-bottom cache: off (would need")
    _, log = _run(tiny_run_config, tmp_path, "bert", "lora", None)
    assert "is used before or in the first layer: set method.train_layers" in log[0]
    _, log = _run(tiny_run_config, tmp_path, "gpt2", "prompt", None)
    assert log[0].startswith("frozen-bottom cache: off (a trainable tensor")
    _, log = _run(tiny_run_config, tmp_path, "albert", "lora", "50%")  # one shared layer: a share of it is all
    assert log[0] == "frozen-bottom cache: off (found no transformer layer list in this model)"


def _model(tiny_models, kind, method, **options):
    cfg = ModelConfig(name=str(tiny_models[kind]))
    tok = load_tokenizer(cfg)
    model = load_classifier(cfg, ["a", "b", "c"], tok)
    opts = load_config(None, {"method.name": method, **{f"method.{k}": v for k, v in options.items()}}).method
    return METHODS[method].apply(model, opts, arch_of(model)), tok


def _depth(model, tok):
    batch = tok(["i feel fine", "sad"], padding=True, return_tensors="pt")
    return frozen.frozen_depth(model, transformer_layers(model), batch)[0]


@pytest.mark.parametrize(
    "kind, method, options, depth",
    [
        ("bert", "lora", {"train_layers": None}, 0),
        ("bert", "lora", {"train_layers": 1}, 1),
        ("bert", "lora", {"train_layers": 2}, 0),
        ("bert", "lora", {}, 1),
        ("gpt2", "ia3", {"train_layers": "100%"}, 0),
        ("bert", "adapter", {"train_layers": "1%"}, 1),
        ("distilbert", "head", {}, 2),
        ("bert", "full", {}, 0),
        ("bert", "full", {"train_layers": 1}, 1),
        ("bert", "prompt", {}, 0),
        ("gpt2", "prefix", {}, 0),
        ("bert", "prefix", {"train_layers": 1}, 1),
        ("llama", "ia3", {"train_layers": 1}, 1),
        ("gpt2", "adapter", {"train_layers": 1}, 1),
    ],
)
def test_the_frozen_depth_is_measured_from_where_training_starts(tiny_models, kind, method, options, depth):
    model, tok = _model(tiny_models, kind, method, **options)
    assert _depth(model, tok) == depth


def test_train_layers_places_the_method_in_the_top_layers_only(tiny_models):
    model, _ = _model(tiny_models, "bert", "lora", train_layers=1)
    lora = {n for n, _ in model.named_modules() if n.endswith("lora_A")}
    assert lora and all(".layer.1." in n for n in lora)
    model, _ = _model(tiny_models, "gpt2", "full", train_layers=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".h.1." in n for n in trainable) and not any(".h.0." in n or ".wte." in n for n in trainable)


def test_cached_training_never_runs_the_frozen_layers_and_matches_them(tiny_models):
    model, tok = _model(tiny_models, "bert", "lora", train_layers=1)
    data = tokenize(load_splits(DataConfig(dataset="emotion", max_train_samples=40), 0).train, tok, 48)
    bottom, (cached,) = frozen.plan(model, [data], Padding.of(tok), True, 1.0, 16, torch.device("cpu"), lambda m: None)
    assert bottom.cached and bottom.depth == 1
    # each row's cached states are those it gets alone: padding in the cache batch changed nothing
    collate = PadCollator(tok.pad_token_id)
    for i in range(3):
        alone = bottom.features(collate([data[i]]))[0]
        torch.testing.assert_close(cached[i]["hidden"], alone, atol=1e-5, rtol=1e-5)
    calls = []
    bottom.layers[0].register_forward_hook(lambda *a: calls.append(1))
    runner = frozen.Runner(model, bottom)
    batch = next(iter(loader(cached, 8, Padding.of(tok), shuffle=True)))
    with bottom.top_only():
        runner.train()
        runner(**batch).loss.backward()
        runner.eval()
        with torch.no_grad():
            from_cache = runner(**batch).loss
    assert not calls  # the frozen layer never ran in training
    batch.pop("hidden")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).loss, from_cache, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kind, method, options, message",
    [
        ("bert", "lora", {"train_layers": 3}, "the model has 2 layers"),
        ("bert", "lora", {"train_layers": 0}, "leaves LoRA nothing to adapt"),
        ("bert", "prompt", {"train_layers": 1}, "prompt methods add virtual tokens at the input"),
        ("gpt2", "prefix", {"train_layers": 1}, "peft feeds the prefixes to every layer"),
        ("bert", "head", {"train_layers": 1}, "the head method trains no layer"),
    ],
)
def test_impossible_layer_choices_fail_with_the_fix(tiny_models, kind, method, options, message):
    with pytest.raises(LiftError, match=message):
        _model(tiny_models, kind, method, **options)


@pytest.mark.parametrize("value", [-1, "half", "0%", "150%", True])
def test_invalid_train_layers_is_a_config_error(value):
    with pytest.raises(
        LiftError, match="must be a number of layers .0 or more., a share such as '50%', or null for all"
    ):
        load_config(None, {"method.train_layers": value})


def test_lora_adapts_the_top_half_by_default_and_shares_round_up():
    from liftkit.modeling import layer_count

    assert load_config(None).method.train_layers == "50%"
    assert [layer_count("50%", n) for n in (1, 2, 6, 12, 30)] == [1, 1, 3, 6, 15]
    assert layer_count("34%", 6) == 3 and layer_count("100%", 6) == 6 and layer_count(None, 6) is None
