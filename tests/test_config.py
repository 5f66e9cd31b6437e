import pytest
import yaml

from liftkit.config import RunConfig, load_config
from liftkit.errors import LiftError


def test_defaults_are_the_documented_main_job():
    cfg = load_config()
    assert (cfg.data.dataset, cfg.model.name, cfg.method.name) == ("emotion", "all-MiniLM-L6-v2", "lora")
    assert cfg.model.trust_remote_code is False


def test_yaml_round_trip_reproduces_the_config(tmp_path):
    cfg = load_config(
        None, {"train.epochs": 5, "method.r": 4, "method.target_modules": ["query"], "data.max_train_samples": 500}
    )
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["method"] == {
        "name": "lora",
        "r": 4,
        "alpha": 16,
        "dropout": 0.1,
        "target_modules": ["query"],
        "train_layers": "50%",
    }


def test_a_run_dir_is_accepted_as_config_path(tmp_path):
    (tmp_path / "config.yaml").write_text(load_config(None, {"train.seed": 7}).to_yaml())
    assert load_config(tmp_path).train.seed == 7


def test_every_problem_is_reported_at_once():
    with pytest.raises(LiftError) as err:
        load_config(None, {"train.epochs": 0, "train.learning_rate": -1, "method.r": 0, "train.best_metric": "bleu"})
    message = str(err.value)
    for fragment in ("train.epochs=0", "learning_rate", "method.r=0", "best_metric"):
        assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"train.epoch": 3}, "unknown key(s) ['epoch']"),
        ({"method.name": "magic"}, "unknown method 'magic'"),
        ({"train.epochs": "three"}, "invalid config"),
    ],
)
def test_bad_keys_and_values_are_named(overrides, fragment):
    with pytest.raises(
        LiftError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        load_config(None, overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(LiftError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(LiftError, match="not valid YAML"):
        load_config(bad)


def test_from_dict_rejects_unknown_sections():
    with pytest.raises(LiftError, match="unknown config section"):
        RunConfig.from_dict({"trainer": {}})


def test_a_method_name_is_taken_once():
    from dataclasses import dataclass

    from liftkit.methods.options import OPTIONS, LoraOptions, MethodOptions

    @dataclass
    class TunedLora(LoraOptions):  # keeps the parent's name: a variant, not a new method
        r: int = 16

    assert OPTIONS["lora"] is LoraOptions
    with pytest.raises(ValueError, match="two option classes name the method 'lora'"):

        @dataclass
        class Clash(MethodOptions):
            name = "lora"

    assert OPTIONS["lora"] is LoraOptions


@pytest.mark.parametrize("text, value", [("5e-5", 5e-5), ("1e-3", 1e-3), ("0.00005", 5e-5), ("2E-3", 2e-3)])
def test_every_spelling_of_a_learning_rate_works(text, value, tmp_path):
    from liftkit.cli import _parse_value

    assert (
        load_config(None, {"train.learning_rate": _parse_value("train.learning_rate", text)}).train.learning_rate
        == value
    )
    (tmp_path / "c.yaml").write_text(f"train:\n  learning_rate: {text}\n")  # YAML reads 5e-5 as text
    assert load_config(tmp_path / "c.yaml").train.learning_rate == value


@pytest.mark.parametrize(
    "raw, parsed",
    [
        ({"train.epochs": "1"}, ("epochs", 1)),
        ({"train.cache_frozen": "no"}, ("cache_frozen", False)),
        ({"train.cache_frozen": 1}, ("cache_frozen", True)),
        ({"train.epochs": 2.0}, ("epochs", 2)),
    ],
)
def test_values_are_parsed_to_their_declared_type(raw, parsed):
    name, value = parsed
    got = getattr(load_config(None, raw).train, name)
    assert got == value and type(got) is type(value)


def test_yaml_words_that_read_as_booleans_or_numbers_still_work(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "train:\n  mixed_precision: no\nmodel:\n  revision: 2\n"
    )  # YAML 1.1: no -> false, 2 -> int
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.train.mixed_precision == "no" and cfg.model.revision == "2"
    (tmp_path / "e.yaml").write_text("train:\n")  # an empty section, then a flag for it
    assert load_config(tmp_path / "e.yaml", {"train.epochs": 5}).train.epochs == 5
    from liftkit.cli import _parse_value

    assert (
        load_config(None, {"train.mixed_precision": _parse_value("train.mixed_precision", "no")}).train.mixed_precision
        == "no"
    )
    (tmp_path / "t.yaml").write_text("model:\n  trust_remote_code: 'False'\n")  # a file saying no is fine
    assert load_config(tmp_path / "t.yaml").model.trust_remote_code is False


@pytest.mark.parametrize("given, parsed", [(None, "auto"), ("auto", "auto"), ("64", 64), (256, 256)])
def test_max_length_is_auto_by_default_or_a_number(given, parsed):
    cfg = load_config(None, {} if given is None else {"data.max_length": given})
    assert cfg.data.max_length == parsed and type(cfg.data.max_length) is type(parsed)


@pytest.mark.parametrize(
    "given, fragment",
    [("long", "data.max_length='long' must be auto or a whole number"), (4, "data.max_length=4 is too small")],
)
def test_a_bad_max_length_is_named(given, fragment):
    with pytest.raises(LiftError, match=fragment):
        load_config(None, {"data.max_length": given})


@pytest.mark.parametrize("given", [256.0, True])
def test_a_max_length_built_in_python_must_be_whole(given):
    # a config built in Python skips YAML's parsing: 256.0 would otherwise reach the tokenizer as a float
    from liftkit.config import DataConfig

    with pytest.raises(LiftError, match=f"data.max_length={given!r} must be auto or a whole number"):
        RunConfig(data=DataConfig(max_length=given)).validate()


def test_a_numpy_integer_max_length_is_a_whole_number():
    import numpy as np

    from liftkit.config import DataConfig

    assert RunConfig(data=DataConfig(max_length=np.int64(128))).validate().data.max_length == 128


def test_a_packaged_model_brings_its_own_recipe_where_the_user_sets_none(tmp_path):
    from liftkit.packaged import MPNET

    ours = MPNET.defaults["lora"]
    assert ours  # chosen with lift tune (docs/results.md)

    def value(cfg, dotted):
        section, key = dotted.split(".")
        return getattr(getattr(cfg, section), key)

    cfg = load_config(None, {"model.name": "all-mpnet-base-v2"})
    assert all(value(cfg, dotted) == v for dotted, v in ours.items())
    mine = load_config(None, {"model.name": "mpnet", "train.learning_rate": 1e-4})
    assert mine.train.learning_rate == 1e-4  # the user's value wins
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  name: mpnet\nmethod:\n  name: lora\n  train_layers: 2\n")
    assert load_config(recipe).method.train_layers == 2  # so does a recipe's
    assert load_config(None, {}).train.learning_rate is None  # MiniLM: liftkit's defaults
    assert load_config(None, {"model.name": "mpnet", "method.name": "full"}).train.learning_rate is None
    # a run's config.yaml records what the run used, so reading it back changes nothing
    saved = tmp_path / "config.yaml"
    saved.write_text(cfg.to_yaml())
    assert load_config(saved).train.learning_rate == cfg.train.learning_rate
