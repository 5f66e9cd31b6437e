from pathlib import Path

import pytest

from liftkit.config import load_config
from liftkit.data import REGISTRY

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_is_a_recipe_per_reference_experiment():
    names = {p.stem for p in RECIPES}
    for dataset in REGISTRY:
        assert any(name.startswith(dataset) for name in names), f"no recipe for {dataset}"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid_and_names_its_reference_model(path):
    cfg = load_config(path)
    assert cfg.data.dataset in REGISTRY
    assert cfg.model.name in ("distilbert-base-uncased", "gpt2")  # the reference projects' models


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_offline_with_the_embedded_model(path, tmp_path):
    """Each recipe, as its header says to run it offline, on a slice of its data: trains, saves, and
    the saved model reproduces the reported test accuracy; the recipe's own settings are the run's."""
    import dataclasses
    import json

    import liftkit
    from liftkit.data import load_splits
    from liftkit.pipeline import run

    recipe = load_config(path)
    small = {
        "data.max_train_samples": 32,
        "data.max_eval_samples": 16,
        "train.epochs": 1,
        "output_dir": str(tmp_path / "run"),
    }
    cfg = load_config(path, {"model.name": "all-MiniLM-L6-v2", **small})
    result = run(cfg, log=lambda m: None)
    record = result.record
    assert (record.run.dataset, record.run.model, record.run.method) == (
        recipe.data.dataset,
        "all-MiniLM-L6-v2",
        recipe.method.name,
    )
    assert record.run.learning_rate == recipe.learning_rate and record.data.rows["train"] == 32
    manifest = json.loads((result.run_dir / "liftkit.json").read_text())
    assert manifest["max_length"] == recipe.data.max_length or (
        recipe.data.max_length == "auto" and 8 <= manifest["max_length"] <= 512
    )
    assert manifest["method_options"] == dataclasses.asdict(recipe.method)
    splits = load_splits(cfg.data, cfg.train.seed, cfg.task.name)
    predictor = liftkit.load(result.run_dir)
    again = predictor.task.metrics(
        predictor.logits(splits.test.rows()), splits.targets("test"), predictor.labels, predictor.thresholds
    )
    headline = predictor.task.headline
    assert getattr(again.scores, headline) == pytest.approx(getattr(record.finetuned.scores, headline), abs=1e-5)
    assert (result.run_dir / "history.jsonl").is_file()
