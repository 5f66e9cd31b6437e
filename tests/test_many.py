"""Many classifiers on one base (`liftkit.many`): one copy of the base, the bottom run once, each
classifier answering exactly as it does alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import liftkit
from liftkit.errors import LiftError
from liftkit.many import Many, ModelExists, UnknownModel, load_many, named_paths

TEXTS = ["i feel great today", "this is awful", "so scared of the exam", "calm"]
PAIRS = [("a man plays guitar", "someone plays music"), ("the cat sleeps", "stocks fell sharply")]


@pytest.fixture(scope="module")
def runs(many_runs):
    return many_runs


def _close(many: dict, alone: list[dict]) -> None:
    """Answers equal: the same decision and every probability within 1e-5."""
    for a, b in zip(many, alone):
        assert {k: v for k, v in a.items() if k != "probabilities"} == {
            k: v for k, v in b.items() if k != "probabilities"
        }
        for label, p in b.get("probabilities", {}).items():
            assert abs(a["probabilities"][label] - p) < 1e-5


def test_every_classifier_answers_as_it_does_alone_and_the_base_is_held_once(runs):
    many = load_many(runs)
    members = {name: many.member(name) for name in runs}
    # one base digest for all of them, and the same tensor objects under their bottom layers
    assert len({m.base for m in members.values()}) == 1
    q = "bert.encoder.layer.0.attention.self.query.weight"
    first = members["lora"].model.get_parameter("base_model.model." + q)
    assert members["head"].model.get_parameter(q) is first
    assert members["ia3"].model.get_parameter("base_model.model." + q) is first
    # where each one's own layers start: LoRA (by default) and IA3 (asked) in the top layer of 2,
    # the head method above both; adapters (in every layer by default) and prompt tuning (which
    # changes the input) run alone, on the same base tensors
    depths = {name: m.depth for name, m in members.items()}
    assert depths["lora"] == depths["ia3"] == depths["multi"] == depths["bi"] == 1
    assert depths["head"] == 2 and depths["adapter"] == depths["prompt"] == 0
    # LoRA members' top layers run as one batch, each row adding its own LoRA product
    assert {n for n, m in members.items() if m.lora is not None} == {"lora", "lora-rt", "multi", "bi"}
    for name, path in runs.items():
        given = PAIRS if name == "bi" else TEXTS
        _close(many.predict(given, model=name), liftkit.load(path).predict(given))


def test_one_mixed_batch_equals_each_model_alone(runs):
    """Rows of six models in one call, the bottom computed once over the distinct rows."""
    many = load_many(runs)
    names = ["lora", "lora-rt", "ia3", "adapter", "head", "prompt", "multi"]
    members = [many.member(n) for n in names]
    jobs = [(m, m.predictor.encode(TEXTS[: 1 + i % 4])) for i, m in enumerate(members)]
    jobs.append((many.member("bi"), many.member("bi").predictor.encode(PAIRS)))
    mixed = many.logits_many(jobs)
    for (member, rows), logits in zip(jobs, mixed):
        alone = liftkit.load(member.path).logits_of(rows)
        np.testing.assert_allclose(logits, alone, atol=1e-5)


def test_fan_out_keys_answers_by_model(runs):
    many = load_many({k: runs[k] for k in ("lora", "ia3", "multi")})
    answers = many.predict(TEXTS, model=["lora", "ia3", "multi"])
    assert list(answers) == ["lora", "ia3", "multi"]
    assert "labels" in answers["multi"][0] and "label" in answers["lora"][0]


def test_bases_with_different_weights_are_not_shared(runs, tiny_cli_run, tmp_path):
    import shutil

    import torch
    from transformers import AutoModel

    from liftkit.run_dir import read_manifest

    base = read_manifest(runs["lora"]).base_model
    other = tmp_path / "other-base"
    model = AutoModel.from_pretrained(base)
    with torch.no_grad():
        model.encoder.layer[0].output.dense.bias.add_(0.5)  # same name, same shapes, other weights
    model.save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (Path(base) / name).is_file():
            shutil.copy(Path(base) / name, other / name)
    moved = tmp_path / "moved"
    shutil.copytree(runs["ia3"], moved)
    _rebase(moved, str(other))
    many = load_many({"lora": runs["lora"], "moved": moved})
    assert many.member("lora").base != many.member("moved").base
    _close(many.predict(TEXTS, model="moved"), liftkit.load(moved).predict(TEXTS))


def _rebase(run: Path, base: str) -> None:
    import json

    manifest = json.loads((run / "liftkit.json").read_text())
    manifest["base_model"] = base
    (run / "liftkit.json").write_text(json.dumps(manifest))


def test_least_recently_used_models_unload_and_reload_on_demand(runs):
    reloads = []
    many = Many(max_models=2, on_reload=reloads.append)
    for name in ("lora", "ia3", "head"):
        many.add(name, runs[name])
    assert list(many.loaded) == ["ia3", "head"] and many.names == ["lora", "ia3", "head"]
    _close(many.predict(TEXTS, model="lora"), liftkit.load(runs["lora"]).predict(TEXTS))
    assert reloads == ["lora"] and list(many.loaded) == ["head", "lora"]


def test_names_and_folders_are_checked_in_one_line(runs, tmp_path):
    many = load_many({"lora": runs["lora"]})
    with pytest.raises(ModelExists, match="already loaded"):
        many.add("lora", runs["ia3"])
    with pytest.raises(UnknownModel, match="no model named 'nope': loaded are lora"):
        many.remove("nope")
    with pytest.raises(LiftError, match="not usable in a URL"):
        many.add("a/b", runs["ia3"])
    with pytest.raises(LiftError, match="does not exist"):
        many.add("ghost", tmp_path / "ghost")
    assert many.names == ["lora"]  # nothing else changed
    with pytest.raises(LiftError, match="two models are named 'run'"):
        named_paths([str(runs["lora"]), str(runs["ia3"])])
    assert list(named_paths([f"a={runs['lora']}", f"b={runs['ia3']}"])) == ["a", "b"]


def test_an_export_is_hosted_beside_runs_as_one_model_of_its_own(runs, tmp_path):
    from liftkit.cli import main

    out = tmp_path / "lora-onnx"
    assert main(["export", str(runs["ia3"]), "--format", "onnx", "--output", str(out)]) == 0
    many = load_many({"lora": runs["lora"], "exported": out})
    exported = many.member("exported")
    assert exported.model is None and exported.depth == 0 and exported.predictor.info["backend"] == "onnx"
    both = many.predict(TEXTS, model=["lora", "exported"])
    _close(both["exported"], liftkit.load(out).predict(TEXTS))
    _close(both["lora"], liftkit.load(runs["lora"]).predict(TEXTS))
