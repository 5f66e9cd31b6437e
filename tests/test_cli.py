"""The `lift` command: tables, predict file in/out, and one-line errors with exit code 2."""

import csv
import json

import pytest

from liftkit.cli import main


@pytest.fixture
def trained_run(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "run",
            "--model",
            str(tiny_models["bert"]),
            "--max-train-samples",
            "64",
            "--max-eval-samples",
            "32",
            "--epochs",
            "1",
            "--max-length",
            "32",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_run_cli_output(tiny_models, tmp_path, capsys):
    code = main(
        [
            "run",
            "--model",
            str(tiny_models["bert"]),
            "--max-train-samples",
            "48",
            "--max-eval-samples",
            "16",
            "--epochs",
            "1",
            "--output-dir",
            str(tmp_path / "r"),
            "--set",
            "train.weight_decay=0.0",
            "--r",
            "4",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "base (untrained head)" in out and "fine-tuned (lora)" in out and "accuracy" in out
    assert "trainable parameters" in out and str(tmp_path / "r") in out
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "weight_decay: 0.0" in saved and "r: 4" in saved


def test_predict_texts_and_files(trained_run, tmp_path, capsys):
    assert main(["predict", str(trained_run), "i feel happy", "i feel sad"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("i feel happy")
    labels = json.loads((trained_run / "liftkit.json").read_text())["labels"]
    assert lines[0].split("\t")[0] in labels

    inputs = {
        "in.txt": "first text\nsecond text\n\nthird text\n",
        "in.jsonl": "".join(json.dumps({"text": t}) + "\n" for t in ("first text", "second text", "third text")),
    }
    with (tmp_path / "in.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["id", "text"], [1, "first text"], [2, "second text"], [3, "third text"]])
    for name, body in inputs.items():
        (tmp_path / name).write_text(body)
    results = []
    for name in ("in.txt", "in.jsonl", "in.csv"):
        out = tmp_path / f"{name}.preds.jsonl"
        assert main(["predict", str(trained_run), "--input", str(tmp_path / name), "--output", str(out)]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["text"] for r in rows] == ["first text", "second text", "third text"]
        assert all(r["label"] in labels and sum(r["probabilities"].values()) == pytest.approx(1) for r in rows)
        results.append(rows)
    assert results[0] == results[1] == results[2]
    # a .csv output is a table a spreadsheet opens: text, label, score, one column per label
    out = tmp_path / "preds.csv"
    assert main(["predict", str(trained_run), "--input", str(tmp_path / "in.txt"), "--output", str(out)]) == 0
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["text"] for r in table] == ["first text", "second text", "third text"]
    assert [r["label"] for r in table] == [r["label"] for r in results[0]]
    assert all(float(r["score"]) == pytest.approx(float(r[r["label"]])) for r in table)
    assert sum(float(table[0][name]) for name in labels) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--dataset", "nonexistent_set"], "is not a registered dataset"),
        (
            ["run", "--dataset", "emotion", "--text-column", "body", "--max-train-samples", "10"],
            "column 'body' not found",
        ),
        (["run", "--model", "./no/such/model"], "does not exist"),
        (["run", "--epochs", "0"], "train.epochs=0"),
        (["run", "--method", "nope"], "unknown method"),
        (["predict", "/no/such/run", "hi"], "'/no/such/run' does not exist"),
        (["predict", ".", "--input", "missing.txt"], "not found"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a run would name its folder: runs/<dataset>-<method>-<time>
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # progress lines may come first
    assert last.startswith("error: ") and fragment in last and "Traceback" not in err
    # the error is on the terminal: a run that failed before training leaves no folder it named itself
    assert not list(tmp_path.glob("runs/*"))


def test_a_run_that_fails_in_a_folder_it_was_given_leaves_why_there(tmp_path, capsys):
    out = tmp_path / "mine"
    assert main(["run", "--dataset", "emotion", "--text-column", "body", "--output-dir", str(out)]) == 2
    assert (
        "column 'body' not found" in json.loads((out / "error.json").read_text())["message"]
    )  # what compare and tune read


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from liftkit.errors import LiftError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(LiftError):
        main(["run", "--debug", "--dataset", "nonexistent_set"])
