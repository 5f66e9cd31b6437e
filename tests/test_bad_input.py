"""Bad input, as a user meets it on the command line: one line that names the problem and the fix,
exit code 2, no traceback. Read the table: input -> what `lift` answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from liftkit.cli import main


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _texts(n: int = 24) -> list[str]:
    return [f"some text number {i} about feelings" for i in range(n)]


# --- data files the run cases train on: (name, rows) -------------------------------------------
def repeated_header(tmp):
    rows = [{"text": t, "label": ["a", "b"][i % 2]} for i, t in enumerate(_texts())]
    rows.insert(10, {"text": "text", "label": "label"})
    return _jsonl(tmp / "header.jsonl", rows)


def one_class(tmp):
    return _jsonl(tmp / "one.jsonl", [{"text": t, "label": 1} for t in _texts()])


def three_rows(tmp):
    return _jsonl(tmp / "three.jsonl", [{"text": t, "label": ["a", "b", "a"][i]} for i, t in enumerate(_texts(3))])


def null_label(tmp):
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(_texts())] + [{"text": "fine", "label": None}]
    return _jsonl(tmp / "null-label.jsonl", rows)


def empty_texts_strict(tmp):
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(_texts())] + [{"text": "  ", "label": 0}]
    return _jsonl(tmp / "empty.jsonl", rows)


RUN_CASES = [  # (id, extra argv given a tmp folder, expected fragment of the one line)
    ("lr-not-a-number", lambda tmp: ["--lr", "fast"], "train.learning_rate='fast' must be a number"),
    ("epochs-fraction", lambda tmp: ["--epochs", "2.5"], "train.epochs=2.5 must be a whole number"),
    ("batch-size-fraction", lambda tmp: ["--batch-size", "2.5"], "train.batch_size=2.5 must be a whole number"),
    ("seed-text", lambda tmp: ["--set", "train.seed=abc"], "train.seed='abc' must be a whole number"),
    ("epochs-text", lambda tmp: ["--set", "train.epochs=abc"], "train.epochs='abc' must be a whole number"),
    ("bool-text", lambda tmp: ["--set", "train.cache_frozen=abc"], "train.cache_frozen='abc' must be true or false"),
    ("top-level-bool", lambda tmp: ["--set", "evaluate_base=maybe"], "evaluate_base='maybe' must be true or false"),
    (
        "samples-text-in-yaml",
        lambda tmp: [str(_yaml(tmp, "data:\n  max_train_samples: forty\n"))],
        "data.max_train_samples='forty' must be a whole number or null",
    ),
    (
        "several-at-once",
        lambda tmp: ["--epochs", "0", "--set", "train.seed=x", "--set", "train.epoch=3"],
        "unknown key(s) ['epoch'] in config section 'train'",
    ),
    (
        "several-at-once-2",
        lambda tmp: ["--epochs", "0", "--set", "train.seed=x", "--set", "train.epoch=3"],
        "train.seed='x' must be a whole number; train.epochs=0 must be at least 1",
    ),
    (
        "trust-from-a-file",
        lambda tmp: [str(_yaml(tmp, "model:\n  trust_remote_code: true\n"))],
        "pass --trust-remote-code yourself",
    ),
    (
        "repeated-header",
        lambda tmp: ["--dataset", str(repeated_header(tmp))],
        "looks like a repeated header row (label 'label')",
    ),
    (
        "one-class",
        lambda tmp: ["--dataset", str(one_class(tmp))],
        "has 1 class ('1'): a classifier needs at least two",
    ),
    ("three-rows", lambda tmp: ["--dataset", str(three_rows(tmp))], "a classifier needs at least two"),
    (
        "empty-text-strict",
        lambda tmp: ["--dataset", str(empty_texts_strict(tmp)), "--set", "data.drop_empty=false"],
        "1 row(s) of the train split",
    ),
    (
        "null-label-strict",
        lambda tmp: ["--dataset", str(null_label(tmp)), "--set", "data.drop_empty=false"],
        "have no label (first: line 25)",
    ),
    (
        "method-section-a-word",
        lambda tmp: [str(_yaml(tmp, "method: lora\n"))],
        "config section 'method' must be a mapping",
    ),
    ("method-name-a-list", lambda tmp: [str(_yaml(tmp, "method:\n  name: [a]\n"))], "unknown method ['a']"),
    (
        "number-as-key",
        lambda tmp: [str(_yaml(tmp, "train:\n  1: 2\n  epochs: 1\n"))],
        "unknown key(s) ['1'] in config section 'train'",
    ),
    (
        "bad-precision",
        lambda tmp: ["--mixed-precision", "half"],
        "train.mixed_precision='half': use auto, no, fp16 or bf16",
    ),
]


def _yaml(tmp: Path, text: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(text)
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error: ")
    return last


@pytest.mark.parametrize("make, fragment", [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_run_answers_bad_input_with_one_line(make, fragment, tiny_models, tmp_path, capsys):
    argv = make(tmp_path)
    config = [a for a in argv if a.endswith(".yaml")]
    flags = [a for a in argv if not a.endswith(".yaml")]
    code = main(
        [
            "run",
            *config,
            "--model",
            str(tiny_models["bert"]),
            "--max-length",
            "32",
            "--epochs",
            "1",
            "--output-dir",
            str(tmp_path / "out"),
            *flags,
        ]
    )
    assert code == 2
    assert fragment in _one_line(capsys)


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    from conftest import DATA_DIR

    out = tmp_path_factory.mktemp("bad-input") / "run"
    with pytest.MonkeyPatch.context() as env:  # the per-test environment of conftest is not set up yet
        env.setenv("LIFT_DATA_DIR", str(DATA_DIR))
        env.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        assert (
            main(
                [
                    "run",
                    "--model",
                    str(tiny_models["bert"]),
                    "--max-train-samples",
                    "48",
                    "--max-eval-samples",
                    "24",
                    "--epochs",
                    "1",
                    "--max-length",
                    "32",
                    "--output-dir",
                    str(out),
                ]
            )
            == 0
        )
    return out


def truncate(size: int):
    def damage(run: Path) -> None:
        path = run / "adapter_model.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[:size] if size < len(data) else data[: len(data) // 2])

    return damage


def relabel(run: Path) -> None:
    manifest = json.loads((run / "liftkit.json").read_text())
    manifest["labels"] = manifest["labels"][:4]
    (run / "liftkit.json").write_text(json.dumps(manifest))


def drop_tokenizer(run: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (run / name).unlink(missing_ok=True)


def _drop_key(run: Path, key: str) -> None:
    manifest = json.loads((run / "liftkit.json").read_text())
    del manifest[key]
    (run / "liftkit.json").write_text(json.dumps(manifest))


def _input(tmp: Path, name: str, data: bytes) -> list[str]:
    (tmp / name).write_bytes(data)
    return ["--input", str(tmp / name)]


PREDICT_CASES = [  # (id, damage to a copy of a good run, extra argv given a tmp folder, expected fragment)
    ("null-text", None, lambda tmp: _input(tmp, "in.jsonl", b'{"text": "fine"}\n{"text": null}\n'), "line 2 of"),
    ("number-text", None, lambda tmp: _input(tmp, "in.jsonl", b'{"text": 5}\n'), "'text' is int 5, not a text"),
    (
        "not-utf8",
        None,
        lambda tmp: _input(tmp, "in.txt", "ok\ncaf\u00e9\n".encode("latin-1")),
        "is not UTF-8 text (line 2",
    ),
    ("malformed-jsonl", None, lambda tmp: _input(tmp, "in.jsonl", b'{"text": "a"}\n{"text": "b"\n'), "line 2 of"),
    (
        "batch-size-0",
        None,
        lambda tmp: ["hello", "--batch-size", "0"],
        "batch_size=0 must be a whole number of at least 1",
    ),
    ("adapter-0-bytes", truncate(0), lambda tmp: ["hello"], "is damaged: its weights cannot be loaded"),
    ("adapter-1000-bytes", truncate(1000), lambda tmp: ["hello"], "is damaged: its weights cannot be loaded"),
    ("adapter-cut-in-half", truncate(10**9), lambda tmp: ["hello"], "is damaged: its weights cannot be loaded"),
    (
        "adapter-missing",
        lambda run: (run / "adapter_model.safetensors").unlink(),
        lambda tmp: ["hello"],
        "adapter_model.safetensors listed in liftkit.json is missing",
    ),
    (
        "adapter-missing-old-manifest",
        lambda run: (_drop_key(run, "files"), (run / "adapter_model.safetensors").unlink()),
        lambda tmp: ["hello"],
        "adapter_model.safetensors (the adapter and the classifier head) is missing",
    ),
    (
        "tokenizer-json-missing",
        lambda run: (run / "tokenizer.json").unlink(),
        lambda tmp: ["hello"],
        "tokenizer.json listed in liftkit.json is missing",
    ),
    (
        "tokenizer-deleted",
        drop_tokenizer,
        lambda tmp: ["hello"],
        "is damaged: tokenizer.json, tokenizer_config.json listed in liftkit.json are missing",
    ),
    (
        "tokenizer-deleted-old-manifest",
        lambda run: (_drop_key(run, "files"), drop_tokenizer(run)),
        lambda tmp: ["hello"],
        "is damaged: its tokenizer cannot be loaded",
    ),
    (
        "labels-do-not-fit-head",
        relabel,
        lambda tmp: ["hello"],
        "its saved head does not fit the 4 labels in liftkit.json",
    ),
    (
        "manifest-missing",
        lambda run: (run / "liftkit.json").unlink(),
        lambda tmp: ["hello"],
        "is not a liftkit run directory",
    ),
    (
        "manifest-not-json",
        lambda run: (run / "liftkit.json").write_text("{oops"),
        lambda tmp: ["hello"],
        "is damaged: liftkit.json is unreadable or incomplete",
    ),
    (
        "manifest-a-list",
        lambda run: (run / "liftkit.json").write_text("[1, 2]"),
        lambda tmp: ["hello"],
        "is damaged: liftkit.json is unreadable or incomplete",
    ),
    (
        "manifest-without-labels",
        lambda run: _drop_key(run, "labels"),
        lambda tmp: ["hello"],
        "is damaged: liftkit.json",
    ),
]


@pytest.mark.parametrize("damage, make, fragment", [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES])
def test_predict_answers_bad_input_with_one_line(damage, make, fragment, trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if damage is not None:
        damage(run)
    assert main(["predict", str(run), *make(tmp_path)]) == 2
    line = _one_line(capsys)
    assert fragment in line
    assert (
        "huggingface.co" not in line and "hub" not in line.lower()
    )  # a local folder's damage is not a download problem


def test_predict_in_python_checks_its_inputs(trained):
    import liftkit
    from liftkit.errors import LiftError

    predictor = liftkit.load(trained)
    assert predictor.predict([]) == [] and predictor.predict_proba([]).shape == (0, len(predictor.labels))
    with pytest.raises(
        LiftError, match=r"2 item\(s\) to classify are not text \(texts\[1\] is int, texts\[2\] is NoneType\)"
    ):
        predictor.predict(["fine", 3, None])
    with pytest.raises(LiftError, match="batch_size=0"):
        predictor.predict(["fine"], batch_size=0)


def test_a_bom_in_data_or_input_files_is_read_as_text(tiny_models, tmp_path, trained, capsys):
    rows = [{"text": t, "label": ["a", "b"][i % 2]} for i, t in enumerate(_texts(40))]
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert (
        main(
            [
                "run",
                "--dataset",
                str(tmp_path / "bom.jsonl"),
                "--model",
                str(tiny_models["bert"]),
                "--epochs",
                "1",
                "--max-length",
                "32",
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    (tmp_path / "in.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "fine"}\n')
    assert main(["predict", str(trained), "--input", str(tmp_path / "in.jsonl")]) == 0


def test_debug_shows_the_traceback_instead(tiny_models, tmp_path):
    from liftkit.errors import LiftError

    with pytest.raises(LiftError, match="train.epochs=2.5"):
        main(["run", "--debug", "--epochs", "2.5", "--output-dir", str(tmp_path / "out")])
