import pytest
import torch
from conftest import KINDS, UNKNOWN, _build

from liftkit.cli import main
from liftkit.config import ModelConfig, load_config
from liftkit.errors import LiftError
from liftkit.methods import METHODS
from liftkit.modeling import ARCHS, arch_of, found_arch, load_classifier, load_tokenizer, transformer_layers

LABELS = ["a", "b", "c"]


def _lora_model(path, **options):
    cfg = ModelConfig(name=str(path))
    tok = load_tokenizer(cfg)
    model = load_classifier(cfg, LABELS, tok)
    method_cfg = load_config(None, {f"method.{k}": v for k, v in options.items()}).method
    return METHODS["lora"].apply(model, method_cfg, arch_of(model)), tok


@pytest.mark.parametrize(
    "kind, targets, head",
    [
        ("bert", {"query", "value"}, {"pooler", "classifier"}),
        ("distilbert", {"q_lin", "v_lin"}, {"pre_classifier", "classifier"}),
        ("gpt2", {"c_attn"}, {"score"}),
    ],
)
def test_lora_targets_attention_and_trains_the_whole_head(tiny_models, kind, targets, head):
    model, _ = _lora_model(tiny_models[kind])
    wrapped = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if hasattr(mod, "lora_A")}
    assert wrapped == targets
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or any(f"{h}.modules_to_save" in n for h in head) for n in trainable)
    for h in head:  # every head parameter trains; none is LoRA-wrapped
        assert any(f"{h}.modules_to_save" in n for n in trainable), h
        assert not any(f"{h}." in n and "lora_" in n for n in trainable)
    frozen_base = [n for n, p in model.named_parameters() if not p.requires_grad and "lora_" not in n]
    assert frozen_base  # the body is frozen


def test_gpt2_gets_a_pad_token_on_tokenizer_and_model_config(tiny_models):
    model, tok = _lora_model(tiny_models["gpt2"])
    assert tok.pad_token == tok.eos_token
    assert model.config.pad_token_id == tok.pad_token_id is not None
    assert arch_of(model).fan_in_fan_out and model.peft_config["default"].fan_in_fan_out
    batch = tok(["i feel fine", "i am quite sad about all of it"], padding=True, return_tensors="pt")
    with torch.no_grad():  # right-padded rows pool their own last token: same logits as unpadded
        padded = model(**batch).logits[0]
        alone = model(**tok(["i feel fine"], return_tensors="pt")).logits[0]
    assert torch.allclose(padded, alone, atol=1e-5)


def test_explicit_targets_and_their_errors(tiny_models):
    model, _ = _lora_model(tiny_models["bert"], target_modules=["query", "key", "value"])
    assert {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")} == {
        "query",
        "key",
        "value",
    }
    with pytest.raises(LiftError, match="not found in this bert model"):
        _lora_model(tiny_models["bert"], target_modules=["q_proj"])
    with pytest.raises(LiftError, match="head modules"):
        _lora_model(tiny_models["bert"], target_modules=["classifier"])


def test_bad_model_path_and_offline_hub_miss(tmp_path):
    with pytest.raises(LiftError, match="does not exist"):
        load_tokenizer(ModelConfig(name=str(tmp_path / "missing-model")))
    with pytest.raises(LiftError, match="has no config.json"):
        load_tokenizer(ModelConfig(name=str(tmp_path)))
    with pytest.raises(LiftError, match="could not load model 'distilbert-base-uncased'"):
        load_tokenizer(ModelConfig(name="distilbert-base-uncased"))


def test_embedded_model_loads_offline_with_a_fresh_head():
    cfg = ModelConfig()
    tok = load_tokenizer(cfg)
    model = load_classifier(cfg, LABELS, tok)
    assert model.config.model_type == "bert" and model.num_labels == 3
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert next(model.parameters()).dtype == torch.float32


def test_smollm2_converts_once_from_its_gguf_and_loads_as_a_llama_classifier(monkeypatch, tmp_path):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path))
    cfg = ModelConfig(name="smollm2-135m")
    tok = load_tokenizer(cfg)
    model = load_classifier(cfg, LABELS, tok)
    arch = arch_of(model)
    assert arch.model_type == "llama" and arch.decoder
    assert tok.pad_token is not None and model.config.pad_token_id == tok.pad_token_id
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    cached = tmp_path / "models" / "smollm2-135m-instruct" / "model.safetensors"
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    load_tokenizer(cfg)  # a second load reads the cache, it does not convert again
    assert cached.stat().st_mtime_ns == stamp
    batch = tok(["i love this", "worst day ever, nothing works"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_every_family_record_is_in_the_tiny_grid():
    assert set(KINDS) == set(ARCHS)


@pytest.mark.parametrize("kind", KINDS)
def test_each_family_record_names_modules_its_models_have(tiny_models, kind):
    """A record is only as good as its names: every default target and placement pattern finds
    one module per layer (ALBERT: one shared layer), and the head it lists is the one the model's
    structure shows."""
    import re

    cfg = ModelConfig(name=str(tiny_models[kind]))
    model = load_classifier(cfg, LABELS, load_tokenizer(cfg))
    arch = ARCHS[model.config.model_type]
    assert set(found_arch(model).head) == set(arch.head)
    layers = len(transformer_layers(model)) if transformer_layers(model) is not None else 1
    names = [n for n, _ in model.named_modules()]
    for target in {*arch.lora_targets, *arch.ia3_targets}:
        hits = [n for n in names if n == target or n.endswith("." + target)]
        assert len(hits) == layers or (target == "output.dense" and len(hits) == 2 * layers), (target, hits)
    for pattern in (arch.attention, arch.attention_output, arch.ffn_output):
        if pattern is not None:
            assert len([n for n in names if re.search(pattern, n)]) == layers, pattern


@pytest.fixture(scope="module")
def unknown_model(tmp_path_factory):
    return _build(UNKNOWN, tmp_path_factory.mktemp("unknown") / UNKNOWN)


def test_a_family_without_a_record_trains_its_head_in_full_and_asks_for_lora_targets(unknown_model):
    cfg = ModelConfig(name=str(unknown_model))
    model = load_classifier(cfg, LABELS, load_tokenizer(cfg))
    assert model.config.model_type not in ARCHS
    arch = arch_of(model)
    assert arch.head == ("pooler", "classifier") and not arch.decoder and not arch.lora_targets
    for method in ("head", "full"):
        opts = load_config(None, {"method.name": method}).method
        applied = METHODS[method].apply(load_classifier(cfg, LABELS, load_tokenizer(cfg)), opts, arch)
        trainable = {n for n, p in applied.named_parameters() if p.requires_grad}
        assert {n.split(".")[0] for n in trainable} >= {"classifier"} and any(".pooler." in n for n in trainable)
    with pytest.raises(LiftError) as asked:
        _lora_model(unknown_model)
    line = str(asked.value)
    assert "no default LoRA targets for 'megatron-bert' models: pass --target-modules" in line
    assert "query" in line and "value" in line and "classifier" not in line and "\n" not in line
    for method in ("adapter", "prefix"):
        opts = load_config(None, {"method.name": method}).method
        with pytest.raises(LiftError, match="megatron-bert"):
            METHODS[method].apply(load_classifier(cfg, LABELS, load_tokenizer(cfg)), opts, arch)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_the_target_modules_advice_works_end_to_end(unknown_model, tmp_path, capsys, method):
    """`lift run` on an unknown family: the error names the flag and the layers; following it trains."""
    args = ["run", "--model", str(unknown_model), "--method", method, "--max-train-samples", "32"]
    args += ["--max-eval-samples", "16", "--epochs", "1", "--max-length", "32"]
    assert main([*args, "--output-dir", str(tmp_path / "refused")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the run's own log lines
    assert line.startswith("error: ") and "--target-modules" in line and "query" in line
    assert main([*args, "--target-modules", "query,value", "--output-dir", str(tmp_path / "run")]) == 0
    import liftkit

    predictor = liftkit.load(tmp_path / "run")
    assert predictor.predict_proba(["i feel fine"]).shape == (1, 6)
