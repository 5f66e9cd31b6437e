"""`lift compare`: one table, a row per method, failures shown and survived."""

import csv
import json

from conftest import UNKNOWN, _build

from liftkit.cli import main


def test_compare_runs_each_method_and_reports_failures(tmp_path, capsys):
    model = _build(UNKNOWN, tmp_path / UNKNOWN)  # a family without a record: full works, adapters have no placement
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--model",
            str(model),
            "--methods",
            "full,adapter,head",
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
    assert set(rows) == {"method", "majority class", "base (untrained head)", "full", "adapter", "head"}
    assert rows["adapter"][1].startswith("failed: liftkit has no adapter placement")  # read from its error.json
    assert "±" in rows["full"][5]  # two seeds: mean ± std
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
    full_params = int(rows["full"][1].split(" ")[0].replace(",", ""))
    head_params = int(rows["head"][1].split(" ")[0].replace(",", ""))
    assert full_params > head_params > 0
    assert (out / "full-seed1" / "liftkit.json").is_file()
    error = json.loads((out / "adapter-seed0" / "error.json").read_text())
    assert error["type"] == "LiftError" and (out / "adapter-seed0" / error["traceback"]).is_file()
    assert (out / "adapter-seed0" / "run.log").is_file() and not (
        out / "adapter-seed1"
    ).exists()  # a failed method is not retried
    assert list(csv.reader((out / "comparison.csv").open()))[0] == header
    assert "| full |" in (out / "comparison.md").read_text()
    assert "failed" in printed and "full" in printed
    page = out / "compare.html"  # the picture of the same: error bars over the two seeds, the failure named
    assert f"report: {page}" in printed
    source = page.read_text()
    assert source.count("<img ") == 2 and "failed: liftkit has no adapter placement" in source
    assert (out / "plots" / "tradeoffs.png").is_file() and (out / "plots" / "learning_curves.png").is_file()
