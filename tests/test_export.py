"""`lift export`: every method x format on tiny real architectures, loaded the way a client
without liftkit would load it, giving the run's own probabilities."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import KINDS

import liftkit
from liftkit.cli import main
from liftkit.methods import METHODS
from liftkit.modeling import ARCHS

TEXTS = [
    "i feel wonderful today",
    "so angry right now",
    "i am scared of what comes next and cannot sleep at night",
    "ok",
]
_EXPORTS = itertools.count()
MERGEABLE = ("lora", "ia3", "full", "head")
# decoder cases: GPT-2's transposed Conv1D under LoRA and IA3 merges, prompt tokens with left padding (on llama,
# whose rotary positions make left padding invisible), peft's KV-cache prefixes
DECODER_CASES = [("gpt2", "lora"), ("gpt2", "ia3"), ("llama", "prompt"), ("llama", "prefix")]


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory):
    """One short run per (architecture, method), trained hard enough that adapters move off their start."""
    from conftest import DATA_DIR

    root = tmp_path_factory.mktemp("export-runs")
    cache: dict[tuple[str, str], Path] = {}

    def get(kind: str, method: str) -> Path:
        if (kind, method) not in cache:
            out = root / f"{kind}-{method}"
            with pytest.MonkeyPatch.context() as env:  # conftest's per-test environment is not set up yet
                env.setenv("LIFT_DATA_DIR", str(DATA_DIR))
                env.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
                assert (
                    main(
                        [
                            "run",
                            "--model",
                            str(tiny_models[kind]),
                            "--method",
                            method,
                            "--max-train-samples",
                            "32",
                            "--max-eval-samples",
                            "24",
                            "--epochs",
                            "1",
                            "--max-length",
                            "32",
                            "--lr",
                            "0.02",
                            "--output-dir",
                            str(out),
                        ]
                    )
                    == 0
                )
            cache[kind, method] = out
        return cache[kind, method]

    return get


def _export(run: Path, fmt: str, *extra: str) -> Path:
    out = run.parent / f"{run.name}-{fmt}{''.join(extra).replace('--quantize', '-')}-{next(_EXPORTS)}"
    assert main(["export", str(run), "--format", fmt, "--output", str(out), *extra]) == 0
    return out


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_exports_to_onnx_and_mergeable_ones_to_hf(runs, method, capsys):
    run = runs("bert", method)
    capsys.readouterr()  # the run's own output
    expected = liftkit.load(run).predict_proba(TEXTS)
    formats = ["onnx"] + (["hf"] if method in MERGEABLE else [])
    for fmt in formats:
        out = _export(run, fmt)
        info = json.loads((out / "export.json").read_text())
        parity = info["parity"]
        assert parity["rows"] == 24 and parity["argmax_agreement"] == 1.0 and parity["max_abs_prob_diff"] <= 1e-4
        assert parity["export"]["accuracy"] == pytest.approx(parity["run"]["accuracy"])
        assert parity["run"]["accuracy"] == pytest.approx(
            json.loads((run / "metrics.json").read_text())["finetuned"]["accuracy"]
        )
        assert info["warnings"] == []
        got = liftkit.load(out).predict_proba(TEXTS)
        assert np.abs(got - expected).max() <= 1e-4, fmt
    if method not in MERGEABLE:
        capsys.readouterr()
        assert main(["export", str(run), "--format", "hf"]) == 2
        line = capsys.readouterr().err.strip()
        assert len(line.splitlines()) == 1 and "cannot be merged" in line and "--format onnx" in line


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("bert", "distilbert", "gpt2", "llama")])
def test_every_family_exports_with_parity_and_says_whether_its_attention_is_fused(runs, kind, capsys):
    """RoBERTa, ALBERT, ELECTRA, MPNet, DeBERTa-v2, ModernBERT, Qwen2 under LoRA: the ONNX graph
    and the merged hf folder give the run's probabilities; export.json and the log say when
    onnxruntime's optimizer had no attention fusion for the family."""
    run = runs(kind, "lora")
    expected = liftkit.load(run).predict_proba(TEXTS)
    fused = ARCHS[json.loads((run / "liftkit.json").read_text())["model_type"]].onnx_fusion is not None
    assert fused == (kind in ("roberta", "xlm-roberta", "electra"))  # BERT-shaped graphs
    for fmt in ("onnx", "hf"):
        capsys.readouterr()
        out = _export(run, fmt)
        info = json.loads((out / "export.json").read_text())
        assert info["parity"]["argmax_agreement"] == 1.0 and info["parity"]["max_abs_prob_diff"] <= 1e-4
        assert np.abs(liftkit.load(out).predict_proba(TEXTS) - expected).max() <= 1e-4
        assert info["attention_fused"] == (fused if fmt == "onnx" else None)  # read from the graph's ops
        assert ("attention not fused" in capsys.readouterr().err) == (fmt == "onnx" and not fused)


@pytest.mark.parametrize("kind, method", DECODER_CASES)
def test_decoders_export_with_their_padding_and_pooling(runs, kind, method):
    run = runs(kind, method)
    expected = liftkit.load(run).predict_proba(TEXTS)
    for fmt in ["onnx"] + (["hf"] if method in MERGEABLE else []):
        out = _export(run, fmt)
        assert json.loads((out / "export.json").read_text())["parity"]["max_abs_prob_diff"] <= 1e-4
        assert np.abs(liftkit.load(out).predict_proba(TEXTS) - expected).max() <= 1e-4
    # predict batches one length at a time; padded anyway, on the right, a row scores as it does alone (left padding
    # moves a prompt's virtual tokens away from the text, one reason predict never pads)
    predictor = liftkit.load(run)
    if predictor.encoder.left:
        return
    rows = predictor.encoder.encode(TEXTS)
    together = predictor.backend(predictor.encoder.pad(rows))
    alone = predictor.backend(predictor.encoder.pad(rows[:1]))
    assert np.abs(together[0] - alone[0]).max() <= 1e-4


# as if those packages were not installed: importing them fails, importlib.util.find_spec says None
BLOCK = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
"""


def _blocked(script: str, blocked: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK + script, blocked, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hf_export_loads_with_plain_transformers_without_peft_or_liftkit(runs):
    run = runs("bert", "lora")
    out = _export(run, "hf")
    script = """
import json
from transformers import AutoModelForSequenceClassification, pipeline
folder, texts = sys.argv[2], json.loads(sys.argv[3])
model = AutoModelForSequenceClassification.from_pretrained(folder)
classify = pipeline("text-classification", model=folder, top_k=None)
rows = [{d["label"]: d["score"] for d in scores} for scores in classify(texts)]
assert not any(m.split(".")[0] in ("peft", "liftkit") for m, mod in sys.modules.items() if mod is not None)
print(json.dumps({"labels": [model.config.id2label[i] for i in range(model.config.num_labels)], "rows": rows}))
"""
    got = _blocked(script, "peft,liftkit", str(out), json.dumps(TEXTS))
    predictor = liftkit.load(run)
    assert got["labels"] == predictor.labels
    probs = np.array([[row[name] for name in predictor.labels] for row in got["rows"]])
    assert np.abs(probs - predictor.predict_proba(TEXTS)).max() <= 1e-4


def test_onnx_export_runs_without_torch(runs):
    run = runs("bert", "adapter")
    out = _export(run, "onnx")
    script = """
import json
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
import liftkit
folder, texts = sys.argv[2], json.loads(sys.argv[3])
ours = liftkit.load(folder).predict_proba(texts).tolist()
# the README's plain client: onnxruntime and tokenizers only
info = json.load(open(folder + "/export.json"))
tokenizer = Tokenizer.from_file(folder + "/tokenizer.json")
tokenizer.enable_truncation(info["max_length"])
session = ort.InferenceSession(folder + "/" + info["model_file"])
plain = []
for text in texts:
    encoding = tokenizer.encode(text)
    ids = np.array([encoding.ids], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.array([encoding.type_ids], dtype=np.int64)}
    assert [i.name for i in session.get_inputs()] == info["inputs"]  # BERT's token type ids are a graph input
    logits = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0][0]
    plain.append((np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()).tolist())
assert not any(m.split(".")[0] in ("torch", "transformers", "peft") for m, mod in sys.modules.items() if mod is not None)
print(json.dumps({"ours": ours, "plain": plain}))
"""
    got = _blocked(script, "torch,transformers,peft,accelerate", str(out), json.dumps(TEXTS))
    expected = liftkit.load(run).predict_proba(TEXTS)
    assert np.abs(np.array(got["ours"]) - expected).max() <= 1e-4
    assert np.abs(np.array(got["plain"]) - expected).max() <= 1e-4


def test_int8_is_smaller_and_states_what_it_cost(runs, capsys):
    run = runs("bert", "lora")
    fp32 = _export(run, "onnx")
    capsys.readouterr()
    int8 = _export(run, "onnx", "--quantize", "int8")
    printed = capsys.readouterr().out
    info = json.loads((int8 / "export.json").read_text())
    assert (
        info["quantize"] == "int8" and info["model_file"] == "model.int8.onnx" and not (int8 / "model.onnx").exists()
    )
    assert info["model_size_bytes"] < 0.5 * json.loads((fp32 / "export.json").read_text())["model_size_bytes"]
    parity = info["parity"]
    assert parity["accuracy_change_points"] == pytest.approx(
        (parity["export"]["accuracy"] - parity["run"]["accuracy"]) * 100
    )
    assert f"accuracy {parity['export']['accuracy']:.4f} (run {parity['run']['accuracy']:.4f})" in printed
    loaded = liftkit.load(int8).info
    assert (loaded["source"], loaded["format"], loaded["quantize"], loaded["backend"], loaded["method"]) == (
        "export",
        "onnx",
        "int8",
        "onnx",
        "lora",
    )


def _flipping(real, when):
    """int8 quantization whose graph negates the logits (every prediction flips) when `when(keep_float)`."""

    def quantize(source, target, keep_float=()):
        real(source, target, keep_float)
        if not when(keep_float):
            return
        import onnx
        from onnx import helper

        graph = onnx.load(str(target))
        out = graph.graph.output[0].name
        last = next(n for n in graph.graph.node if out in n.output)
        last.output[0] = out + "_raw"
        graph.graph.node.append(helper.make_node("Neg", [out + "_raw"], [out]))
        onnx.save(graph, str(target))

    return quantize


def test_a_quantized_export_that_loses_accuracy_says_so(runs, monkeypatch, capsys):
    """The warning path, forced: an int8 export whose graph flips every prediction, with or
    without the layer-norm-fed weights in float."""
    from liftkit.export import exporter

    monkeypatch.setattr(exporter, "quantize_int8", _flipping(exporter.quantize_int8, lambda kept: True))
    out = _export(runs("bert", "lora"), "onnx", "--quantize", "int8")
    info = json.loads((out / "export.json").read_text())
    assert info["warnings"] and "int8 quantization lost" in info["warnings"][0]
    printed = capsys.readouterr()
    assert "quantizing again with the" in printed.err and "WARNING: int8 quantization lost" in printed.out
    assert "**Warning:** int8 quantization lost" in (out / "README.md").read_text()


def test_int8_keeps_layer_norm_fed_weights_in_float_when_quantizing_them_costs_accuracy(runs, monkeypatch, capsys):
    """An int8 graph that loses accuracy only while the weights reading a layer norm's output are
    quantized (as MPNet's did: 64 points on emotion) is quantized again with those in float."""
    import onnx

    from liftkit.export import exporter
    from liftkit.export.onnx import after_norm

    run = runs("mpnet", "lora")
    fp32 = _export(run, "onnx")
    norm_fed = after_norm(fp32 / "model.onnx")
    graph = onnx.load(str(fp32 / "model.onnx")).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    assert norm_fed and all(producer[n.input[0]] == "LayerNormalization" for n in graph.node if n.name in norm_fed)
    capsys.readouterr()
    monkeypatch.setattr(exporter, "quantize_int8", _flipping(exporter.quantize_int8, lambda kept: not kept))
    out = _export(run, "onnx", "--quantize", "int8")
    info = json.loads((out / "export.json").read_text())
    assert info["kept_float"] == list(norm_fed) and not info["warnings"]
    assert f"with the {len(norm_fed)} weights that read a layer norm's output kept in float" in capsys.readouterr().err
    int8 = onnx.load(str(out / "model.int8.onnx")).graph
    ops = {n.name: n.op_type for n in int8.node}
    assert all(ops[name] == "MatMul" for name in norm_fed)  # left as they were
    assert any(n.op_type == "MatMulInteger" for n in int8.node)  # the rest quantized
    assert info["parity"]["accuracy_change_points"] >= -exporter.INT8_POINTS
    assert np.abs(liftkit.load(out).predict_proba(TEXTS) - liftkit.load(run).predict_proba(TEXTS)).max() < 0.05


def test_a_copied_run_folder_loads_anywhere(tmp_path, monkeypatch):
    """Trained on the embedded model: the folder names it by its hub id, not by the package's path."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--max-train-samples",
                "32",
                "--max-eval-samples",
                "16",
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
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert json.loads((out / "liftkit.json").read_text())["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "site-packages" not in "".join(p.read_text() for p in out.glob("*.json"))
    before = liftkit.load(out).predict_proba(TEXTS)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    monkeypatch.chdir(tmp_path / "elsewhere")
    np.testing.assert_allclose(liftkit.load("copy").predict_proba(TEXTS), before, atol=1e-6)


def _front_matter(path: Path) -> tuple[dict, str]:
    import yaml

    text = path.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_run_and_export_folders_carry_a_real_model_card(runs):
    run = runs("bert", "lora")
    record = json.loads((run / "metrics.json").read_text())
    meta, body = _front_matter(run / "README.md")
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "peft" and "lora" in meta["tags"]
    assert meta["datasets"] == ["dair-ai/emotion"] and meta["metrics"] == ["accuracy", "f1"]
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0] == {
        "type": "accuracy",
        "value": round(record["finetuned"]["accuracy"], 4),
        "name": "Accuracy",
    }
    assert "[More Information Needed]" not in body
    for fact in [
        f"{record['parameters']['trainable_params']:,} of {record['parameters']['total_params']:,}",
        "r=8",
        "alpha=16",
        f"rows train {record['data']['rows']['train']}",
        f"{record['finetuned']['accuracy']:.4f}",
        "| majority class |",
        f"{record['train']['runtime_s']:.1f} s",
        "0: `sadness`",
        "liftkit.load",
        "PeftModel.from_pretrained",
    ]:
        assert fact in body, fact
    meta, body = _front_matter(_export(run, "hf") / "README.md")
    assert meta["library_name"] == "transformers" and 'pipeline("text-classification", model=".")' in body
    assert "This export against the run's model" in body
    meta, body = _front_matter(_export(run, "onnx") / "README.md")
    assert meta["library_name"] == "onnx" and "ort.InferenceSession" in body
    meta, _ = _front_matter(runs("bert", "adapter") / "README.md")
    assert meta["library_name"] == "liftkit"


def _one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_bad_export_requests_fail_with_one_line(runs, tmp_path, capsys):
    run = runs("bert", "lora")
    capsys.readouterr()
    cases = [
        (["export", str(tmp_path / "nope"), "--format", "onnx"], "does not exist"),
        (["export", str(tmp_path), "--format", "onnx"], "is not a liftkit run directory"),
        (["export", str(run), "--format", "hf", "--quantize", "int8"], "int8 quantization applies to --format onnx"),
        (["export", str(run), "--format", "onnx", "--output", str(run / "inside")], "is inside the run folder"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2
        assert fragment in _one_error(capsys), argv
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    weights = damaged / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    assert main(["export", str(damaged), "--format", "onnx"]) == 2
    assert "is damaged: its weights cannot be loaded" in _one_error(capsys)
    (damaged / "adapter_model.safetensors").unlink()
    assert main(["export", str(damaged), "--format", "onnx"]) == 2
    assert "adapter_model.safetensors listed in liftkit.json is missing" in _one_error(capsys)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind


def test_an_existing_output_is_replaced_only_with_force_and_only_if_it_is_an_export(runs, tmp_path, capsys):
    run = runs("bert", "head")
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for force in ([], ["--force"]):
        assert main(["export", str(run), "--format", "onnx", "--output", str(out), *force]) == 2
        assert "already holds other files (it is not an earlier export): pick another --output" in _one_error(capsys)
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["export", str(run), "--format", "onnx", "--output", str(run.parent), "--force"]) == 2
    assert "holds the run folder itself" in _one_error(capsys)
    shutil.rmtree(out)
    assert main(["export", str(run), "--format", "onnx", "--output", str(out), "--max-samples", "5"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", "onnx", "--output", str(out)]) == 2
    assert "already holds an export: pass --force to replace it" in _one_error(capsys)
    assert main(["export", str(run), "--format", "onnx", "--output", str(out), "--force"]) == 0
    assert json.loads((out / "export.json").read_text())["parity"]["rows"] == 24  # the new one replaced the old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old folder is gone, no staging left


def test_export_from_inside_the_run_folder_lands_beside_it(runs, monkeypatch):
    run = runs("bert", "head")
    monkeypatch.chdir(run)
    assert main(["export", ".", "--format", "onnx"]) == 0
    assert (run.parent / f"{run.name}-onnx" / "export.json").is_file()


def test_the_exported_tokenizer_cuts_and_pads_as_the_run_did(runs):
    """The base model's tokenizer.json may pad every text to a fixed length; a plain client reading
    the export's file must get the run's ids: truncated at its max_length, unpadded."""
    from tokenizers import Tokenizer

    run = runs("bert", "head")
    out = _export(run, "onnx")
    spec = json.loads((out / "tokenizer.json").read_text())
    assert spec["padding"] is None and spec["truncation"]["max_length"] == 32
    plain = Tokenizer.from_file(str(out / "tokenizer.json"))
    long_text = " ".join(["feeling"] * 100)
    assert [len(plain.encode(t).ids) for t in ("ok", long_text)] == [3, 32]
    assert liftkit.load(out).encoder.encode(["ok", long_text]) == [
        e.ids for e in plain.encode_batch(["ok", long_text])
    ]


def test_export_verifies_on_a_stated_sample_when_asked(runs, tmp_path):
    out = tmp_path / "sampled"
    assert (
        main(["export", str(runs("bert", "head")), "--format", "onnx", "--output", str(out), "--max-samples", "10"])
        == 0
    )
    parity = json.loads((out / "export.json").read_text())["parity"]
    assert parity["rows"] == 10 and parity["sample"] == "a seeded sample of 10 of 24 rows"
