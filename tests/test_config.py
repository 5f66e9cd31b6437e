import pytest
import yaml

from liftkit.config import RunConfig, load_config
from liftkit.errors import LiftError


def test_defaults_are_the_documented_main_job():
    cfg = load_config()
    assert (cfg.data.dataset, cfg.model.name, cfg.method.name) == ("emotion", "all-MiniLM-L6-v2", "lora")
    assert cfg.model.trust_remote_code is False


def test_yaml_round_trip_reproduces_the_config(tmp_path):
    cfg = load_config(None, {"train.epochs": 5, "method.r": 4, "method.target_modules": ["query"], "data.max_train_samples": 500})
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["method"] == {"name": "lora", "r": 4, "alpha": 16, "dropout": 0.1, "target_modules": ["query"], "train_layers": "50%"}


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
    with pytest.raises(LiftError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
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
