import pytest
import torch

from liftkit.config import ModelConfig, load_config
from liftkit.errors import LiftError
from liftkit.methods import METHODS
from liftkit.modeling import arch_of, load_classifier, load_tokenizer

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
