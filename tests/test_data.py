import gzip
import json

import numpy as np
import pytest

from liftkit.config import DataConfig
from liftkit.data import load_splits
from liftkit.errors import LiftError


def test_registered_name_resolves_to_lift_data_dir():
    splits = load_splits(DataConfig(dataset="emotion"))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (16000, 2000, 2000)
    assert splits.label_names == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert splits.source.endswith("emotion")
    assert splits.train.texts[0] == "i didnt feel humiliated" and splits.train.labels[0] == 0


def test_missing_validation_split_is_carved_stratified_and_seeded():
    splits = load_splits(DataConfig(dataset="imdb", validation_fraction=0.1, max_eval_samples=None))
    assert (len(splits.train), len(splits.validation)) == (22500, 2500)
    assert np.bincount(splits.validation.labels).tolist() == [1250, 1250]
    again = load_splits(DataConfig(dataset="imdb"))
    assert again.validation.texts[:5] == splits.validation.texts[:5]
    assert any("carved" in note for note in splits.notes)
    assert not set(splits.validation.texts[:200]) & set(splits.train.texts)


def test_subsampling_is_seeded_and_applies_to_eval_splits():
    cfg = DataConfig(dataset="rotten_tomatoes", max_train_samples=500, max_eval_samples=100)
    a, b, c = load_splits(cfg, seed=0), load_splits(cfg, seed=0), load_splits(cfg, seed=1)
    assert (len(a.train), len(a.validation), len(a.test)) == (500, 100, 100)
    assert a.train.texts == b.train.texts and a.train.texts != c.train.texts


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_local_single_csv_with_string_labels_and_custom_columns(tmp_path):
    path = tmp_path / "reviews.csv"
    lines = ["body,sentiment"] + [f"review number {i},{'good' if i % 2 else 'bad'}" for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    splits = load_splits(DataConfig(dataset=str(path), text_column="body", label_column="sentiment"))
    assert splits.label_names == ["bad", "good"]
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 60
    assert len(splits.test) == 12 and len(splits.validation) == 5


def test_local_folder_with_labels_json_and_gzip(tmp_path):
    (tmp_path / "labels.json").write_text('["neg", "pos"]')
    _write_jsonl(tmp_path / "train.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(20)])
    with gzip.open(tmp_path / "test.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "x", "label": "pos"}) + "\n")
    splits = load_splits(DataConfig(dataset=str(tmp_path)))
    assert splits.label_names == ["neg", "pos"] and splits.test.labels == [1]
    assert len(splits.validation) == 2


@pytest.mark.parametrize(
    "setup, fragment",
    [
        ("unknown", "is not a registered dataset"),
        ("missing_path", "does not exist"),
        ("missing_column", "column 'text' not found in the train split"),
        ("unknown_label", "label 'meh' in line 2 of the train split"),
        ("label_out_of_range", "label 7 in line 1"),
        ("empty_file", "is empty"),
        ("empty_folder", "holds no split files"),
        ("no_hub", "LIFT_DATA_DIR is not set"),
    ],
)
def test_bad_input_gives_one_clear_line(setup, fragment, tmp_path, monkeypatch):
    dataset = str(tmp_path)
    if setup == "unknown":
        dataset = "no_such_dataset_xyz"
    elif setup == "missing_path":
        dataset = str(tmp_path / "nope.csv")
    elif setup == "missing_column":
        _write_jsonl(tmp_path / "train.jsonl", [{"sentence": "a", "label": 0}])
    elif setup == "unknown_label":
        (tmp_path / "labels.json").write_text('["neg", "pos"]')
        _write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}])
    elif setup == "label_out_of_range":
        (tmp_path / "labels.json").write_text('["neg", "pos"]')
        _write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 7}])
    elif setup == "empty_file":
        (tmp_path / "train.jsonl").write_text("")
    elif setup == "no_hub":
        monkeypatch.delenv("LIFT_DATA_DIR")
        dataset = "emotion"
    with pytest.raises(LiftError) as err:
        load_splits(DataConfig(dataset=dataset))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_integer_labels_name_themselves_and_invent_no_empty_class(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"text": f"t{i}", "label": [1, 2][i % 2]} for i in range(20)])
    _write_jsonl(tmp_path / "test.jsonl", [{"text": f"x{i}", "label": [1, 2][i % 2]} for i in range(6)])
    splits = load_splits(DataConfig(dataset=str(tmp_path)))
    assert splits.label_names == ["1", "2"] and set(splits.train.labels) == {0, 1}
    assert splits.warnings == []


def test_what_may_mislead_is_warned_and_empty_texts_are_dropped(tmp_path):
    train = [{"text": f"t{i}", "label": ["a", "b", "c"][i % 3]} for i in range(30)] + [{"text": "", "label": "a"}, {"text": None, "label": "b"}]
    _write_jsonl(tmp_path / "train.jsonl", train)
    _write_jsonl(tmp_path / "validation.jsonl", [{"text": f"v{i}", "label": ["a", "b"][i % 2]} for i in range(4)])
    _write_jsonl(tmp_path / "test.jsonl", [{"text": f"x{i}", "label": ["a", "b", "c", "z"][i % 4]} for i in range(8)])
    splits = load_splits(DataConfig(dataset=str(tmp_path)))
    assert len(splits.train) == 30 and "" not in splits.train.texts
    assert splits.label_names == ["a", "b", "c", "z"]
    assert splits.warnings == [
        "dropped 2 row(s) with empty text from the train split of " + str(tmp_path) + " (first: line 31)",
        "the validation split has no rows of 1 class(es) ('c'): too small to measure them, add rows",
        "2 test row(s) have labels never seen in training ('z': 2): the model cannot predict them",
    ]
    with pytest.raises(LiftError, match=r"2 row\(s\) of the train split .* have no text \(first: line 31\): fill or drop them, or set data.drop_empty=true"):
        load_splits(DataConfig(dataset=str(tmp_path), drop_empty=False))


def test_data_warnings_reach_the_log_and_the_record(tiny_run_config, tmp_path):
    from liftkit.pipeline import run

    rows = [{"text": f"some words {i}", "label": ["a", "b"][i % 2]} for i in range(40)] + [{"text": " ", "label": "a"}]
    _write_jsonl(tmp_path / "data.jsonl", rows)
    logs = []
    result = run(tiny_run_config("bert", **{"data.dataset": str(tmp_path / "data.jsonl"), "train.epochs": 1}), log=logs.append)
    warning = next(w for w in result.record.data.warnings if w.startswith("dropped 1 row(s) with empty text"))
    assert f"warning: {warning}" in logs and warning in (result.run_dir / "report.md").read_text()
