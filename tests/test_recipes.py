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
def test_recipe_runs_offline_with_the_embedded_model(path):
    cfg = load_config(path, {"model.name": "all-MiniLM-L6-v2"})
    assert cfg.model.name == "all-MiniLM-L6-v2" and cfg.validate()
