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
    train = [{"text": f"t{i}", "label": ["a", "b", "c"][i % 3]} for i in range(30)] + [
        {"text": "", "label": "a"},
        {"text": None, "label": "b"},
    ]
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
    with pytest.raises(
        LiftError,
        match=r"2 row\(s\) of the train split .* have no text \(first: line 31\): fill or drop them, or set data.drop_empty=true",
    ):
        load_splits(DataConfig(dataset=str(tmp_path), drop_empty=False))


def test_data_warnings_reach_the_log_and_the_record(tiny_run_config, tmp_path):
    from liftkit.pipeline import run

    rows = [{"text": f"some words {i}", "label": ["a", "b"][i % 2]} for i in range(40)] + [{"text": " ", "label": "a"}]
    _write_jsonl(tmp_path / "data.jsonl", rows)
    logs = []
    result = run(
        tiny_run_config("bert", **{"data.dataset": str(tmp_path / "data.jsonl"), "train.epochs": 1}), log=logs.append
    )
    warning = next(w for w in result.record.data.warnings if w.startswith("dropped 1 row(s) with empty text"))
    assert f"warning: {warning}" in logs and warning in (result.run_dir / "report.md").read_text()


def test_go_emotions_is_registered_and_read_as_multi_label():
    splits = load_splits(DataConfig(dataset="go_emotions"))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (43410, 5426, 5427)
    assert splits.task == "multi_label" and "lists" in splits.task_reason
    assert len(splits.label_names) == 28 and splits.label_names[-1] == "neutral"
    counts = splits.summary().label_counts["train"]
    assert counts[splits.label_names.index("neutral")] == 14219 and counts[splits.label_names.index("grief")] == 77
    targets = splits.targets("train")
    assert targets.shape == (43410, 28) and targets.dtype == np.float32
    assert (targets.sum(axis=1) >= 2).mean() == pytest.approx(0.16, abs=0.01)


def test_auto_task_follows_the_label_column_and_says_why(tmp_path):
    _write_jsonl(
        tmp_path / "train.jsonl", [{"text": f"t{i}", "labels": ["bug", "billing"][: i % 3]} for i in range(30)]
    )
    splits = load_splits(DataConfig(dataset=str(tmp_path / "train.jsonl")))
    assert splits.task == "multi_label" and "holds lists" in splits.task_reason
    assert splits.label_names == ["billing", "bug"]
    every = splits.train.labels + splits.validation.labels + splits.test.labels
    assert [] in every and [0, 1] in every  # a row with no label is kept: nothing applies to it
    assert splits.summary().task == "multi_label"
    single = load_splits(DataConfig(dataset="emotion", max_train_samples=50))
    assert single.task == "single_label" and single.task_reason == "auto: every label is a single value"


def test_csv_label_cells_split_at_the_separator_are_label_sets(tmp_path):
    rows = ["text,label"] + [f"ticket {i},{['billing|bug', 'bug', ''][i % 3]}" for i in range(30)]
    (tmp_path / "tickets.csv").write_text("\n".join(rows) + "\n")
    splits = load_splits(DataConfig(dataset=str(tmp_path / "tickets.csv"), label_separator="|"))
    assert splits.task == "multi_label" and "label_separator" in splits.task_reason
    labels = {
        t: l for split in (splits.train, splits.validation, splits.test) for t, l in zip(split.texts, split.labels)
    }
    assert len(labels) == 30 and labels["ticket 0"] == [0, 1] and labels["ticket 1"] == [1]
    assert labels["ticket 2"] == []  # a blank cell: no label applies, and the row is kept
    # without the separator the same file is single-label, "billing|bug" being one class name
    assert load_splits(DataConfig(dataset=str(tmp_path / "tickets.csv"))).label_names == ["billing|bug", "bug"]


def test_lists_and_single_labels_that_contradict_the_task_give_one_line(tmp_path):
    _write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"text": "a", "label": ["x"]}, {"text": "b", "label": "y"}, {"text": "c", "label": ["y"]}],
    )
    with pytest.raises(
        LiftError, match=r"line 2 .* holds one label \('y'\), not a list, while line 1 .* holds a list.*\['y'\]"
    ):
        load_splits(DataConfig(dataset=str(tmp_path / "mixed.jsonl")))
    _write_jsonl(tmp_path / "sets.jsonl", [{"text": f"t{i}", "label": ["x", "y"][: 1 + i % 2]} for i in range(20)])
    with pytest.raises(
        LiftError, match="holds a list of labels .* but task.name is single_label: use --task multi_label"
    ):
        load_splits(DataConfig(dataset=str(tmp_path / "sets.jsonl")), task="single_label")
    _write_jsonl(tmp_path / "one.jsonl", [{"text": f"t{i}", "label": ["x", "y"][i % 2]} for i in range(20)])
    with pytest.raises(
        LiftError, match="not a list: multi-label rows need a list of labels.*or use --task single_label"
    ):
        load_splits(DataConfig(dataset=str(tmp_path / "one.jsonl")), task="multi_label")


def test_label_sets_may_name_labels_from_labels_json_or_give_their_ids(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(["neg", "pos", "meh"]))
    _write_jsonl(
        tmp_path / "train.jsonl",
        [{"text": f"t{i}", "label": [["neg"], [1, 2], ["pos", "neg"]][i % 3]} for i in range(30)],
    )
    splits = load_splits(DataConfig(dataset=str(tmp_path)))
    assert splits.label_names == ["neg", "pos", "meh"]
    assert sorted(map(tuple, splits.train.labels + splits.validation.labels + splits.test.labels)) == sorted(
        [(0,), (1, 2), (0, 1)] * 10
    )
    _write_jsonl(tmp_path / "train.jsonl", [{"text": "t", "label": ["neg", "nope"]}] * 5)
    with pytest.raises(LiftError, match="label 'nope' in line 1 .* is not one of the 3 labels"):
        load_splits(DataConfig(dataset=str(tmp_path)))
