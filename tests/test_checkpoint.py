"""Checkpoints survive a kill at any step of their swap, and resuming picks the newest complete one."""

import json

import pytest

import liftkit
from liftkit import checkpoint
from liftkit.pipeline import run


@pytest.mark.parametrize(
    "where",
    ["before-moving-the-old-aside", "before-moving-the-new-in", "before-deleting-the-old"],
)
def test_a_swap_killed_at_any_step_resumes_to_the_uninterrupted_result(tiny_run_config, tmp_path, monkeypatch, where):
    full = run(
        tiny_run_config("bert", output_dir=str(tmp_path / "full"), **{"train.epochs": 3}), log=lambda m: None
    ).record

    # a kill inside epoch 2's swap of `last`, at the chosen step of the real swap code
    real_save_last, real_rename, real_rmtree = checkpoint.save_last, checkpoint.os.rename, checkpoint.shutil.rmtree
    step = {"active": False, "renames": 0}

    def save_last(root, model, optimizer, scheduler, state):
        step["active"] = state["epoch"] == 2
        real_save_last(root, model, optimizer, scheduler, state)

    def rename(src, dst):
        if step["active"]:
            step["renames"] += 1
            if (where, step["renames"]) in (("before-moving-the-old-aside", 1), ("before-moving-the-new-in", 2)):
                raise KeyboardInterrupt
        real_rename(src, dst)

    def rmtree(path, *args, **kwargs):
        if step["active"] and str(path).endswith("last.old") and where == "before-deleting-the-old":
            raise KeyboardInterrupt
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_last", save_last)
    monkeypatch.setattr(checkpoint.os, "rename", rename)
    monkeypatch.setattr(checkpoint.shutil, "rmtree", rmtree)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run(tiny_run_config("bert", output_dir=str(cut), **{"train.epochs": 3}), log=lambda m: None)
    for owner, name, real in (
        (checkpoint, "save_last", real_save_last),
        (checkpoint.os, "rename", real_rename),
        (checkpoint.shutil, "rmtree", real_rmtree),
    ):
        monkeypatch.setattr(owner, name, real)
    left = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert (
        left
        == {
            "before-moving-the-old-aside": ["best", "last", "last.tmp"],
            "before-moving-the-new-in": ["best", "last.old", "last.tmp"],
            "before-deleting-the-old": ["best", "last", "last.old"],
        }[where]
    )
    logs = []
    resumed = run(liftkit.load_config(cut / "config.yaml"), resume=True, log=logs.append).record
    assert "resumed from epoch 2 of 3" in " ".join(logs)  # the newest complete checkpoint won
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["best", "last"]
    assert [h.train_loss for h in resumed.train.history] == pytest.approx(
        [h.train_loss for h in full.train.history], rel=1e-5
    )
    assert resumed.finetuned.scores.loss == pytest.approx(full.finetuned.scores.loss, rel=1e-5)
    assert resumed.train.optimizer_steps == full.train.optimizer_steps  # counted across the resume


def test_a_half_written_checkpoint_is_never_taken_for_a_whole_one(tmp_path):
    folder = tmp_path / "last"
    folder.mkdir()
    (folder / "trainable.safetensors").write_bytes(b"x" * 100)
    (folder / "state.json").write_text(json.dumps({"epoch": 1}))
    checkpoint._write_manifest(folder, 1)
    assert checkpoint._complete(folder)["epoch"] == 1
    (folder / "trainable.safetensors").write_bytes(b"x" * 40)  # cut short
    assert checkpoint._complete(folder) is None
    assert checkpoint._epoch(folder) is None  # its state.json does not make it pass for a pre-manifest checkpoint


def test_kill_9_mid_training_then_resume_gives_the_same_bytes(tiny_models, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    def cmd(out, *extra):
        return [
            sys.executable,
            "-m",
            "liftkit.cli",
            "run",
            "--model",
            str(tiny_models["bert"]),
            "--max-train-samples",
            "1000",
            "--max-eval-samples",
            "32",
            "--epochs",
            "3",
            "--max-length",
            "32",
            "--output-dir",
            str(out),
            *extra,
        ]

    assert subprocess.run(cmd(tmp_path / "full"), capture_output=True).returncode == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (cut / "checkpoints" / "last" / "manifest.json").is_file():  # epoch 1 is saved
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (cut / "metrics.json").exists()  # killed mid-run, not after it
    resumed = subprocess.run(cmd(cut, "--resume", str(cut)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from epoch" in resumed.stderr
    assert (cut / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "full" / "adapter_model.safetensors"
    ).read_bytes()
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (tmp_path / "full", cut))
    assert a["finetuned"] == {
        **b["finetuned"],
        **{k: a["finetuned"][k] for k in ("runtime_s", "samples_per_s", "steps_per_s", "peak_memory_mb")},
    }


def test_checkpoints_written_before_manifests_are_still_recovered(tmp_path):
    def old_style(folder, epoch):
        folder.mkdir(parents=True)
        (folder / "trainable.safetensors").write_bytes(b"w" * 10)
        (folder / "state.json").write_text(json.dumps({"epoch": epoch}))

    old_style(tmp_path / "last.old", 1)  # an old liftkit killed between its two renames
    old_style(tmp_path / "last.tmp", 2)
    checkpoint.recover(tmp_path)
    assert json.loads((tmp_path / "last" / "state.json").read_text())["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_best_checkpoint_newer_than_last_is_dropped_on_resume(tmp_path):
    for name, epoch in (("last", 1), ("best", 2)):  # killed between saving best and last of epoch 2
        folder = tmp_path / name
        folder.mkdir()
        (folder / "state.json" if name == "last" else folder / "trainable.safetensors").write_text(
            json.dumps({"epoch": epoch})
        )
        checkpoint._write_manifest(folder, epoch)
    checkpoint.recover(tmp_path)
    assert (tmp_path / "last").is_dir() and not (tmp_path / "best").exists()
