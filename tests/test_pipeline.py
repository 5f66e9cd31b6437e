"""End to end on tiny models and a slice of real data: train, save, reload, same predictions."""

import json

import numpy as np
import pytest
import torch

import liftkit
from liftkit import run_dir
from liftkit.data import load_splits
from liftkit.errors import LiftError
from liftkit.pipeline import run


def _test_metrics_from_predictor(result, cfg):
    predictor = liftkit.load(result.run_dir)
    test = load_splits(cfg.data, cfg.train.seed).test
    probs = predictor.predict_proba(test.texts)
    labels = np.asarray(test.labels)
    return (
        probs,
        float((probs.argmax(-1) == labels).mean()),
        float(-np.log(probs[np.arange(len(labels)), labels]).mean()),
    )


@pytest.mark.parametrize("kind", ["bert", "distilbert", "gpt2"])
def test_run_saves_a_dir_whose_reload_reproduces_the_reported_test_metrics(tiny_run_config, kind):
    cfg = tiny_run_config(kind)
    result = run(cfg, log=lambda m: None)
    out = result.run_dir
    for name in (
        "config.yaml",
        "metrics.json",
        "report.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "liftkit.json",
        "tokenizer_config.json",
        "history.jsonl",
    ):
        assert (out / name).is_file(), name
    assert not (out / "labels.json").exists()  # the label names live in liftkit.json alone
    doc = json.loads((out / "metrics.json").read_text())
    assert doc == json.loads(json.dumps(result.metrics))
    for key in (
        "accuracy",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "weighted_f1",
        "loss",
        "runtime_s",
        "samples_per_s",
        "steps_per_s",
    ):
        assert key in doc["finetuned"] and key in doc["base"]
    assert len(doc["train"]["history"]) == 2 and doc["train"]["samples_per_s"] > 0
    assert 0 < doc["parameters"]["trainable_percent"] < 100
    # the saved model is the evaluated model
    _, accuracy, loss = _test_metrics_from_predictor(result, cfg)
    assert accuracy == pytest.approx(doc["finetuned"]["accuracy"])
    assert loss == pytest.approx(doc["finetuned"]["loss"], abs=1e-4)
    # the saved config reproduces the run
    assert liftkit.load_config(out / "config.yaml").model.name == cfg.model.name


def test_training_learns_on_real_text(tiny_run_config):
    cfg = tiny_run_config("bert", **{"data.max_train_samples": 400, "train.epochs": 3, "train.learning_rate": 3e-3})
    doc = run(cfg, log=lambda m: None).metrics
    first, last = doc["train"]["history"][0], doc["train"]["history"][-1]
    assert last["train_loss"] < first["train_loss"]
    assert doc["finetuned"]["loss"] < doc["base"]["loss"]


def test_same_seed_same_result_on_cpu(tiny_run_config, tmp_path):
    a = run(tiny_run_config("bert", output_dir=str(tmp_path / "a")), log=lambda m: None).metrics
    b = run(tiny_run_config("bert", output_dir=str(tmp_path / "b")), log=lambda m: None).metrics
    assert a["finetuned"]["loss"] == b["finetuned"]["loss"]
    assert [h["train_loss"] for h in a["train"]["history"]] == [h["train_loss"] for h in b["train"]["history"]]


def test_interrupted_run_resumes_from_its_last_checkpoint(tiny_run_config, tmp_path, kill_after_first_epoch):
    full = run(tiny_run_config("bert", output_dir=str(tmp_path / "full")), log=lambda m: None).metrics
    kill_after_first_epoch(tiny_run_config("bert", output_dir=str(tmp_path / "cut")))
    assert not (tmp_path / "cut" / "liftkit.json").exists()
    resumed = run(liftkit.load_config(tmp_path / "cut" / "config.yaml"), resume=True, log=lambda m: None).metrics
    assert resumed["train"]["resumed_from_epoch"] == 1
    assert [h["train_loss"] for h in resumed["train"]["history"]] == pytest.approx(
        [h["train_loss"] for h in full["train"]["history"]], rel=1e-5
    )
    assert resumed["finetuned"]["loss"] == pytest.approx(full["finetuned"]["loss"], rel=1e-5)


def test_a_finished_run_dir_is_not_overwritten(tiny_run_config):
    cfg = tiny_run_config("bert", **{"train.epochs": 1})
    run(cfg, log=lambda m: None)
    with pytest.raises(LiftError, match="already holds a finished run"):
        run(tiny_run_config("bert", **{"train.epochs": 1}), log=lambda m: None)


def test_plain_peft_loads_the_run_dir_and_agrees_with_liftkit(tiny_run_config):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    cfg = tiny_run_config("distilbert", **{"train.epochs": 1})
    result = run(cfg, log=lambda m: None)
    labels = json.loads((result.run_dir / "liftkit.json").read_text())["labels"]
    texts = ["i feel wonderful and loved", "this makes me so angry", "i am afraid of the dark"]
    model = AutoPeftModelForSequenceClassification.from_pretrained(result.run_dir, num_labels=len(labels)).eval()
    tok = AutoTokenizer.from_pretrained(result.run_dir)
    with torch.no_grad():
        plain = torch.softmax(model(**tok(texts, padding=True, return_tensors="pt")).logits, -1).numpy()
    ours = liftkit.load(result.run_dir).predict_proba(texts)
    np.testing.assert_allclose(plain, ours, atol=1e-5)


def test_evaluating_the_base_model_does_not_change_training(tiny_run_config, tmp_path):
    with_base = run(tiny_run_config("bert", output_dir=str(tmp_path / "a")), log=lambda m: None).metrics
    without = run(
        tiny_run_config("bert", output_dir=str(tmp_path / "b"), evaluate_base=False), log=lambda m: None
    ).metrics
    assert without["base"] is None
    assert with_base["finetuned"]["loss"] == without["finetuned"]["loss"]


def test_predict_needs_nothing_but_the_manifest_and_weights(tiny_run_config):
    cfg = tiny_run_config(
        "bert",
        **{"method.name": "adapter", "method.variant": "pfeiffer", "method.reduction_factor": 4, "train.epochs": 1},
    )
    result = run(cfg, log=lambda m: None)
    texts = ["i feel wonderful and loved", "this makes me so angry"]
    before = liftkit.load(result.run_dir).predict_proba(texts)
    manifest = json.loads((result.run_dir / "liftkit.json").read_text())
    assert manifest["method_options"] == {
        "train_layers": None,
        "variant": "pfeiffer",
        "reduction_factor": 4,
        "non_linearity": "relu",
    }
    (result.run_dir / "config.yaml").unlink()  # the config is for reproducing the run, not for loading it
    np.testing.assert_array_equal(liftkit.load(result.run_dir).predict_proba(texts), before)


@pytest.mark.parametrize(
    "setting, method, said, kept",
    [
        ("auto", "lora", "max length: 128 tokens (auto", 128),
        (1000, "lora", "data.max_length=1000 is more than this model takes with this method (128 tokens)", 128),
        ("auto", "prompt", "max length: 108 tokens (auto", 108),  # 20 virtual tokens take positions too
    ],
)
def test_max_length_follows_the_data_and_never_passes_the_model(tiny_run_config, setting, method, said, kept):
    """Movie reviews are longer than the tiny BERT's 128 positions: auto takes the model's limit,
    and a larger number is cut to it with a warning (it used to crash on a position index)."""
    cfg = tiny_run_config(
        **{
            "data.dataset": "imdb",
            "data.max_train_samples": 32,
            "data.max_eval_samples": 16,
            "train.epochs": 1,
            "data.max_length": setting,
            "method.name": method,
        }
    )
    lines = []
    result = run(cfg, log=lines.append)
    assert any(said in line for line in lines)
    assert json.loads((result.run_dir / "liftkit.json").read_text())["max_length"] == kept
    assert (
        liftkit.load_config(result.run_dir / "config.yaml").data.max_length == setting
    )  # the setting, not its value: a rerun recomputes


def test_a_resume_refuses_data_that_changed_since_the_kill(tiny_run_config, tmp_path, kill_after_first_epoch):
    # max_length auto is resolved from the training texts: resuming on longer texts would tokenize
    # the rest of the run differently from its first epoch, so the resume names the change instead
    data = tmp_path / "reviews.jsonl"
    words = "the plot was slow but the acting kept me watching until the very end".split()

    def write(repeat: int) -> None:
        rows = [{"text": " ".join(words[: 4 + i % 10] * repeat), "label": ["neg", "pos"][i % 2]} for i in range(120)]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    write(1)
    kill_after_first_epoch(
        tiny_run_config(
            "bert", **{"data.dataset": str(data), "data.max_length": "auto", "output_dir": str(tmp_path / "cut")}
        )
    )
    write(3)
    config = (tmp_path / "cut" / "config.yaml").read_text()
    with pytest.raises(
        LiftError,
        match=r"the training data changed since the interrupted run \(data.max_length \d+ then, \d+ now; training data digest \w+ then, \w+ now\): resume with",
    ):
        run(liftkit.load_config(tmp_path / "cut" / "config.yaml"), resume=True, log=lambda m: None)
    # a data.* override given with --resume is refused the same way, and leaves the config as it was
    write(1)
    with pytest.raises(LiftError, match=r"training rows \d+ then, \d+ now"):
        run(
            liftkit.load_config(tmp_path / "cut" / "config.yaml", {"data.max_train_samples": 60}),
            resume=True,
            log=lambda m: None,
        )
    assert (tmp_path / "cut" / "config.yaml").read_text() == config
    resumed = run(liftkit.load_config(tmp_path / "cut" / "config.yaml"), resume=True, log=lambda m: None).metrics
    assert resumed["train"]["resumed_from_epoch"] == 1


def test_a_checkpoint_from_before_settings_were_kept_still_resumes(tmp_path):
    from liftkit import checkpoint
    from liftkit.pipeline import _check_unchanged

    root = run_dir.checkpoint_dir(tmp_path)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint.save_last(
        root, model, optimizer, scheduler, {"epoch": 1, "history": [], "best_epoch": 1, "best_score": 0.5, "step": 6}
    )
    _check_unchanged(tmp_path, {"data.max_length": 64, "training rows": 90})  # nothing to compare: no error
