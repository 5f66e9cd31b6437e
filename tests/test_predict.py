"""Opening a run folder someone sent you never runs code unless you say so."""

import json
import shutil

from liftkit.cli import main


def _run_pointing_at_custom_code(tiny_models, tmp_path):
    """A trained run whose manifest names a base model folder with its own modeling code, and asks
    for trust_remote_code. Importing that code would leave a marker file."""
    marker = tmp_path / "code-ran"
    custom = tmp_path / "custom-model"
    shutil.copytree(tiny_models["bert"], custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(
        model_type="liftkit-test-custom",
        auto_map={
            "AutoConfig": "modeling_custom.CustomConfig",
            "AutoModelForSequenceClassification": "modeling_custom.CustomModel",
        },
    )
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class CustomConfig(BertConfig):\n    model_type = 'liftkit-test-custom'\n"
        "class CustomModel(BertForSequenceClassification):\n    config_class = CustomConfig\n"
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--model",
                str(tiny_models["bert"]),
                "--max-train-samples",
                "32",
                "--max-eval-samples",
                "16",
                "--epochs",
                "1",
                "--max-length",
                "32",
                "--output-dir",
                str(run),
            ]
        )
        == 0
    )
    manifest = json.loads((run / "liftkit.json").read_text())
    manifest.update(base_model=str(custom), trust_remote_code=True)
    (run / "liftkit.json").write_text(json.dumps(manifest))
    return run, marker


def test_a_run_folder_cannot_switch_on_remote_code(tiny_models, tmp_path, capsys):
    run, marker = _run_pointing_at_custom_code(tiny_models, tmp_path)
    assert main(["predict", str(run), "hello"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "needs its own code to load" in last and "--trust-remote-code" in last
    assert not marker.exists()  # nothing from that folder ran
    # the caller's word does switch it on: the same folder's code runs (so the check above could fail)
    main(["predict", str(run), "hello", "--trust-remote-code"])
    assert marker.read_text() == "ran"


def test_a_config_file_cannot_switch_on_remote_code_either(tiny_models, tmp_path, capsys):
    run, marker = _run_pointing_at_custom_code(tiny_models, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("trust_remote_code: false", "trust_remote_code: true"))
    assert main(["run", str(config), "--output-dir", str(tmp_path / "again")]) == 2
    assert "pass --trust-remote-code yourself" in capsys.readouterr().err
    assert not marker.exists()


# --- the fast predictor -------------------------------------------------------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import liftkit  # noqa: E402
from liftkit.errors import LiftError  # noqa: E402

MIXED = ["ok", "i feel wonderful today and so does everyone", "bad", "so angry right now", "i am scared", "fine", "hm"]


@pytest.fixture(scope="module")
def small_runs(tiny_models, tmp_path_factory):
    from conftest import DATA_DIR

    root = tmp_path_factory.mktemp("predict-runs")
    out = {}
    with pytest.MonkeyPatch.context() as env:  # conftest's per-test environment is not set up yet
        env.setenv("LIFT_DATA_DIR", str(DATA_DIR))
        env.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        for kind in ("bert", "gpt2"):
            out[kind] = root / kind
            assert (
                main(
                    [
                        "run",
                        "--model",
                        str(tiny_models[kind]),
                        "--max-train-samples",
                        "32",
                        "--max-eval-samples",
                        "16",
                        "--epochs",
                        "1",
                        "--max-length",
                        "32",
                        "--lr",
                        "0.02",
                        "--output-dir",
                        str(out[kind]),
                    ]
                )
                == 0
            )
    return out


def test_every_text_gets_its_own_scores_whatever_the_batching(small_runs):
    predictor = liftkit.load(small_runs["bert"])
    one_by_one = np.stack([predictor.predict_proba([text])[0] for text in MIXED])
    for batch_size in (1, 2, 3, 64):
        np.testing.assert_allclose(predictor.predict_proba(MIXED, batch_size=batch_size), one_by_one, atol=1e-5)
    assert [p["label"] for p in predictor.predict(MIXED)] == [predictor.labels[i] for i in one_by_one.argmax(1)]


def test_backends_agree_and_say_which_ran(small_runs, tmp_path):
    run = small_runs["bert"]
    torch_probs = liftkit.load(run).predict_proba(MIXED)
    on_onnx = liftkit.load(run, backend="onnx")
    assert on_onnx.info["backend"] == "onnx"
    np.testing.assert_allclose(on_onnx.predict_proba(MIXED), torch_probs, atol=1e-4)
    hf, onnx = tmp_path / "hf", tmp_path / "onnx"
    assert main(["export", str(run), "--format", "hf", "--output", str(hf)]) == 0
    assert main(["export", str(run), "--format", "onnx", "--output", str(onnx)]) == 0
    np.testing.assert_allclose(liftkit.load(hf, backend="onnx").predict_proba(MIXED), torch_probs, atol=1e-4)
    with pytest.raises(LiftError, match="is an ONNX export, which holds no torch weights: use backend 'onnx'"):
        liftkit.load(onnx, backend="torch")
    with pytest.raises(LiftError, match="backend 'tensorrt' is unknown"):
        liftkit.load(run, backend="tensorrt")


def test_loading_prints_nothing(small_runs, capfd):
    capfd.readouterr()
    liftkit.load(small_runs["bert"]).predict(["fine"])
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_run_folder_from_before_pad_ids_were_recorded_still_predicts(small_runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(small_runs["gpt2"], old)
    manifest = json.loads((old / "liftkit.json").read_text())
    del manifest["pad_id"], manifest["files"]
    (old / "liftkit.json").write_text(json.dumps(manifest))
    np.testing.assert_allclose(
        liftkit.load(old).predict_proba(MIXED), liftkit.load(small_runs["gpt2"]).predict_proba(MIXED), atol=1e-6
    )
    assert liftkit.load(old).encoder.pad_id == liftkit.load(small_runs["gpt2"]).encoder.pad_id


def test_a_text_without_tokens_is_named(small_runs):
    """GPT-2 adds no special tokens: an empty text would reach the model as a zero-length row."""
    with pytest.raises(LiftError, match=r"1 text\(s\) give this model no tokens at all \(texts\[1\]"):
        liftkit.load(small_runs["gpt2"]).predict(["fine", ""])
    assert len(liftkit.load(small_runs["bert"]).predict(["fine", ""])) == 2  # BERT's [CLS] [SEP] are tokens


def test_the_encoder_cuts_on_the_side_the_tokenizer_says(small_runs, tmp_path):
    from transformers import AutoTokenizer

    from liftkit.predict import Encoder

    folder = tmp_path / "left"
    shutil.copytree(small_runs["bert"], folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "truncation_side": "left"}))
    text = " ".join(f"word{i}" for i in range(60))
    expected = AutoTokenizer.from_pretrained(folder)([text], truncation=True, max_length=16)["input_ids"]
    assert Encoder.from_folder(folder, 16, left=False).encode([text]) == expected
    assert (
        expected
        != AutoTokenizer.from_pretrained(small_runs["bert"])([text], truncation=True, max_length=16)["input_ids"]
    )
