"""Data-parallel training goes through accelerate / torch.distributed: 2 CPU processes, gloo."""

import json
import os
import socket
import subprocess
import sys

import pytest

import liftkit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("frozen", [0, 1], ids=["all-layers", "cached-bottom"])
def test_two_gloo_processes_share_the_work_and_save_one_run(tiny_models, tmp_path, frozen):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "liftkit.cli",
        "run",
        "--model",
        str(tiny_models["bert"]),
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "32",
        "--max-length",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--output-dir",
        str(out),
        "--set",
        f"method.train_layers={2 - frozen}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["train"]["processes"] == 2
    # 64 rows in batches of 8 = 8 batches per epoch, split over 2 processes: 4 optimizer steps each
    assert doc["train"]["optimizer_steps"] == 2 * 4
    assert doc["train"]["history"][-1]["train_loss"] > 0
    assert doc["train"]["frozen_layers"] == frozen and doc["train"]["frozen_cached"] == bool(frozen)
    preds = liftkit.load(out).predict(["i feel great", "so angry right now"])
    assert len(preds) == 2
