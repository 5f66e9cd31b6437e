"""Shared fixtures: real (small) data from ../shared/data and tiny random models built offline.

The tiny models are real architectures (BERT, DistilBERT, GPT-2, llama) with random weights, saved to a
folder exactly as a downloaded checkpoint would be, so every code path a hub model takes is run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LIFT_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
# set for the whole session, not only per test: module-scoped fixtures run before a test's own setup
os.environ["LIFT_DATA_DIR"] = str(DATA_DIR)

# No test may touch the network: hub look-ups fail fast instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Under pytest-xdist (`-n auto`, the default addopts) the workers share the cores: one torch thread
# each (set before torch is imported, and inherited by the children the tests start), or their
# OpenMP pools, spinning on each other's cores, slow both by an order of magnitude.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (DATA_DIR / "emotion" / "train.jsonl.gz").is_file():
        raise RuntimeError(f"test data not found under {DATA_DIR}: put shared/ beside the repo or set LIFT_DATA_DIR")
    monkeypatch.setenv("LIFT_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    from liftkit.modeling import resolve_model_source

    return AutoTokenizer.from_pretrained(resolve_model_source("all-MiniLM-L6-v2"))


def _gpt2_tokenizer():
    """A byte-level BPE trained on emotion text, GPT-2 style: EOS but no pad token."""
    import gzip
    import json

    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    with gzip.open(DATA_DIR / "emotion" / "train.jsonl.gz", "rt") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(2000), f)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False)
    return GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


ENCODERS = ("bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "mpnet", "deberta-v2", "modernbert")
DECODERS = ("gpt2", "llama", "qwen2")
KINDS = ENCODERS + DECODERS  # every family with a record in liftkit.modeling.ARCHS that the grid trains
UNKNOWN = "megatron-bert"  # a family liftkit has no record for (BERT-shaped, so its targets are easy to name)


def _config(kind: str, tok):
    """A tiny random config of family `kind`: 2 layers, width 32, 2-4 heads."""
    from transformers import AutoConfig

    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    special = dict(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    per_kind = {
        "bert": dict(**size, max_position_embeddings=128),
        "megatron-bert": dict(**size, max_position_embeddings=128),
        "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128),
        "roberta": dict(**size, max_position_embeddings=130, pad_token_id=tok.pad_token_id),
        "xlm-roberta": dict(**size, max_position_embeddings=130, pad_token_id=tok.pad_token_id),
        "albert": dict(**size, embedding_size=16, max_position_embeddings=128),
        "electra": dict(**size, embedding_size=16, max_position_embeddings=128),
        "mpnet": dict(**size, max_position_embeddings=130, pad_token_id=tok.pad_token_id),
        "deberta-v2": dict(
            **size,
            max_position_embeddings=128,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=32,
        ),
        "modernbert": dict(
            **size,
            max_position_embeddings=128,
            global_attn_every_n_layers=2,
            local_attention=16,
            pad_token_id=tok.pad_token_id,
            cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
        ),
        "gpt2": dict(
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
        ),
        "llama": dict(
            **size | {"num_attention_heads": 4}, num_key_value_heads=2, max_position_embeddings=128, **special
        ),
        "qwen2": dict(
            **size | {"num_attention_heads": 4}, num_key_value_heads=2, max_position_embeddings=128, **special
        ),
    }
    return AutoConfig.for_model(kind, vocab_size=len(tok), **per_kind[kind])


def _build(kind: str, folder: Path) -> Path:
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    tok = _gpt2_tokenizer() if kind in DECODERS else _minilm_tokenizer()
    model = AutoModel.from_config(_config(kind, tok))
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: _build(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="session")
def tiny_cli_run(tmp_path_factory: pytest.TempPathFactory, tiny_models):
    """tiny_cli_run(name, "--dataset mrpc --epochs 1 ..."): `lift run` on the tiny BERT, into a
    fresh folder it returns; it must succeed. For module-scoped fixtures, which run before a test's
    own environment (`_env`) is set up: the session's cache folder is set here."""
    from liftkit.cli import main

    def run(name: str, args: str) -> Path:
        out = tmp_path_factory.mktemp(name) / "run"
        with pytest.MonkeyPatch.context() as env:
            env.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
            assert main(["run", "--model", str(tiny_models["bert"]), *args.split(), "--output-dir", str(out)]) == 0
        return out

    return run


@pytest.fixture(scope="session")
def many_runs(tiny_cli_run) -> dict[str, Path]:
    """Quick runs of the tiny BERT, one base, for serving many: every way a method meets the shared
    bottom (LoRA and IA3 in the top layer, the head alone, adapters and prompt tuning in layer 0),
    two single-label datasets, a multi-label one and sentence pairs."""
    quick = "--max-train-samples 48 --max-eval-samples 16 --epochs 1 --max-length 24 --lr 0.02"
    return {
        "lora": tiny_cli_run("m-lora", f"--dataset emotion {quick}"),
        "lora-rt": tiny_cli_run("m-lora-rt", f"--dataset rotten_tomatoes {quick} --seed 1"),
        "ia3": tiny_cli_run("m-ia3", f"--dataset emotion --method ia3 --set method.train_layers=1 {quick}"),
        "adapter": tiny_cli_run("m-adapter", f"--dataset emotion --method adapter {quick}"),
        "head": tiny_cli_run("m-head", f"--dataset emotion --method head {quick}"),
        "prompt": tiny_cli_run("m-prompt", f"--dataset emotion --method prompt {quick}"),
        "multi": tiny_cli_run("m-multi", f"--dataset go_emotions {quick} --set task.min_positives=1"),
        "bi": tiny_cli_run("m-bi", f"--dataset mrpc --pair-encoding bi {quick}"),
    }


@pytest.fixture
def tiny_run_config(tiny_models, tmp_path):
    """A config for a fast end-to-end run on a slice of emotion with the tiny BERT."""
    from liftkit.config import load_config

    def make(kind: str = "bert", **overrides):
        base = {
            "model.name": str(tiny_models[kind]),
            "data.dataset": "emotion",
            "data.max_train_samples": 96,
            "data.max_eval_samples": 48,
            "data.max_length": 48,
            "train.epochs": 2,
            "train.batch_size": 16,
            "train.eval_batch_size": 32,
            "output_dir": str(tmp_path / f"run-{kind}"),
        }
        base.update(overrides)
        return load_config(None, base)

    return make


@pytest.fixture
def chromium() -> str:
    """The system's Chromium (pages are checked in a real browser). Where there is none the test
    is skipped, except under .ci/run (LIFT_REQUIRE_BROWSER=1), which installs it: there a missing
    browser fails the test rather than passing it unseen."""
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        if os.environ.get("LIFT_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium on this machine, and LIFT_REQUIRE_BROWSER=1: apt-get install -y chromium")
        pytest.skip("no Chromium on this machine (.ci/run installs it)")
    return path


@pytest.fixture
def browser_page(chromium):
    """A page in the system's headless Chromium, and the list its console errors and uncaught page
    errors land in."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page, errors
        browser.close()


@pytest.fixture
def kill_after_first_epoch(monkeypatch):
    """kill(cfg): run `cfg` until its first epoch's checkpoint is saved, then interrupt it as a
    Ctrl-C would (the run leaves its folder as a real interruption does)."""
    from liftkit import checkpoint
    from liftkit.pipeline import run

    def kill(cfg) -> None:
        real_save_last = checkpoint.save_last

        def save_then_die(*args, **kwargs):
            real_save_last(*args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(checkpoint, "save_last", save_then_die)
        try:
            with pytest.raises(KeyboardInterrupt):
                run(cfg, log=lambda m: None)
        finally:
            monkeypatch.setattr(checkpoint, "save_last", real_save_last)

    return kill
