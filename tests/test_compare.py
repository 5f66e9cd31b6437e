"""`lift compare`: one table, a row per method, failures shown and survived."""

import csv
import json

from transformers import AlbertConfig, AlbertModel

from liftkit.cli import main


def _tiny_albert(folder, tokenizer_source):
    """An architecture liftkit has no record for: LoRA works, adapters cannot be placed."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_source)
    AlbertModel(
        AlbertConfig(
            vocab_size=tok.vocab_size,
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_compare_runs_each_method_and_reports_failures(tiny_models, tmp_path, capsys):
    model = _tiny_albert(tmp_path / "albert", tiny_models["bert"])
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--model",
            str(model),
            "--methods",
            "lora,adapter,head",
            "--seeds",
            "0,1",
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
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "comparison.json").read_text())
    rows = {row[0]: row for row in result["table"]}
    assert set(rows) == {"method", "majority class", "base (untrained head)", "lora", "adapter", "head"}
    assert rows["adapter"][1].startswith("failed: liftkit has no adapter placement")  # read from its error.json
    assert "±" in rows["lora"][5]  # two seeds: mean ± std
    header = result["table"][0]
    for name in (
        "trainable params",
        "train loss",
        "val loss",
        "accuracy",
        "macro-F1",
        "precision",
        "recall",
        "train time (s)",
        "eval time (s)",
        "train samples/s",
        "train steps/s",
        "peak memory (MB)",
        "epochs",
    ):
        assert name in header
    lora_params = int(rows["lora"][1].split(" ")[0].replace(",", ""))
    head_params = int(rows["head"][1].split(" ")[0].replace(",", ""))
    assert lora_params > head_params > 0
    assert (out / "lora-seed1" / "adapter_model.safetensors").is_file()
    error = json.loads((out / "adapter-seed0" / "error.json").read_text())
    assert error["type"] == "LiftError" and (out / "adapter-seed0" / error["traceback"]).is_file()
    assert (out / "adapter-seed0" / "run.log").is_file() and not (
        out / "adapter-seed1"
    ).exists()  # a failed method is not retried
    assert list(csv.reader((out / "comparison.csv").open()))[0] == header
    assert "| lora |" in (out / "comparison.md").read_text()
    assert "failed" in printed and "lora" in printed
    page = out / "compare.html"  # the picture of the same: error bars over the two seeds, the failure named
    assert f"report: {page}" in printed
    source = page.read_text()
    assert source.count("<img ") == 2 and "failed: liftkit has no adapter placement" in source
    assert (out / "plots" / "tradeoffs.png").is_file() and (out / "plots" / "learning_curves.png").is_file()
