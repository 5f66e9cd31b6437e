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
    config.update(model_type="liftkit-test-custom", auto_map={
        "AutoConfig": "modeling_custom.CustomConfig", "AutoModelForSequenceClassification": "modeling_custom.CustomModel"})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class CustomConfig(BertConfig):\n    model_type = 'liftkit-test-custom'\n"
        "class CustomModel(BertForSequenceClassification):\n    config_class = CustomConfig\n"
    )
    run = tmp_path / "run"
    assert main(["run", "--model", str(tiny_models["bert"]), "--max-train-samples", "32", "--max-eval-samples", "16",
                 "--epochs", "1", "--max-length", "32", "--output-dir", str(run)]) == 0
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
