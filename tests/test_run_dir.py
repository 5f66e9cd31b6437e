"""The run-folder contract: the manifest predict reads, including those older liftkits wrote."""

import json

from liftkit import run_dir


def test_a_manifest_from_before_method_options_and_padding_side_still_loads(tmp_path):
    old = {
        "liftkit": "0.1.0",
        "method": "adapter",
        "base_model": "all-MiniLM-L6-v2",
        "model_type": "bert",
        "labels": ["neg", "pos"],
        "max_length": 64,
        "trust_remote_code": False,
        "revision": None,
    }
    (tmp_path / "liftkit.json").write_text(json.dumps(old))
    (tmp_path / "config.yaml").write_text("method:\n  name: adapter\n  variant: pfeiffer\n  reduction_factor: 4\n")
    manifest = run_dir.read_manifest(tmp_path)
    assert manifest.padding_side == "right"
    assert manifest.method_options == {"variant": "pfeiffer", "reduction_factor": 4}


def test_a_manifest_from_a_newer_liftkit_loads_what_this_one_knows(tmp_path):
    new = {
        "liftkit": "9.0",
        "method": "lora",
        "base_model": "m",
        "model_type": "bert",
        "labels": ["a"],
        "max_length": 8,
        "padding_side": "left",
        "method_options": {"r": 4},
        "something_new": [1, 2],
    }
    (tmp_path / "liftkit.json").write_text(json.dumps(new))
    manifest = run_dir.read_manifest(tmp_path)
    assert (manifest.padding_side, manifest.method_options, manifest.liftkit) == ("left", {"r": 4}, "9.0")


def _run_cmd(tiny_models, out, *extra):
    import sys

    return [
        sys.executable,
        "-m",
        "liftkit.cli",
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
        *extra,
    ]


def test_a_second_run_into_a_busy_folder_fails_at_once_naming_the_holder(tiny_models, tmp_path):
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    first = subprocess.Popen(
        _run_cmd(tiny_models, out, "--seed", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while "pid" not in ((out / ".lock").read_text() if (out / ".lock").exists() else ""):
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lock"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)  # hold it there, lock taken, for as long as the second needs
        try:
            second = subprocess.run(
                _run_cmd(tiny_models, out, "--seed", "2"), capture_output=True, text=True, timeout=120
            )
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2
        last = second.stderr.strip().splitlines()[-1]
        assert (
            last.startswith("error: run folder")
            and f"is in use by lift (pid {first.pid}" in last
            and "Traceback" not in second.stderr
        )
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    saved = (out / "config.yaml").read_text()
    assert (
        "seed: 1" in saved and json.loads((out / "metrics.json").read_text())["run"]["seed"] == 1
    )  # one run's folder, whole


def test_the_lock_goes_with_its_holder_even_on_kill_9(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import pytest

    from liftkit.errors import LiftError

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from liftkit import run_dir; import pathlib, time\n"
            f"with run_dir.lock(pathlib.Path({str(tmp_path)!r})):\n    print('locked', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LiftError, match=f"is in use by lift \\(pid {holder.pid}"):
            with run_dir.lock(tmp_path):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the OS has released it: taken again at once
        try:
            with run_dir.lock(tmp_path):
                break
        except LiftError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_finished_run_is_replaced_only_with_overwrite(tiny_models, tmp_path):
    import subprocess

    out = tmp_path / "run"
    assert subprocess.run(_run_cmd(tiny_models, out), capture_output=True).returncode == 0
    (out / "notes.txt").write_text("the user's, not the run's")
    again = subprocess.run(_run_cmd(tiny_models, out), capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr and "--overwrite" in again.stderr
    resumed = subprocess.run(_run_cmd(tiny_models, out, "--resume", str(out)), capture_output=True, text=True)
    assert resumed.returncode == 2 and "nothing is left to resume" in resumed.stderr
    both = subprocess.run(
        _run_cmd(tiny_models, out, "--resume", str(out), "--overwrite"), capture_output=True, text=True
    )
    assert both.returncode == 2 and "pass one of them" in both.stderr
    replaced = subprocess.run(
        _run_cmd(tiny_models, out, "--overwrite", "--method", "head"), capture_output=True, text=True
    )
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "metrics.json").read_text())["run"]["method"] == "head"
    assert (
        not (out / "adapter_model.safetensors").exists() and not (out / "adapter_config.json").exists()
    )  # the old run's files went
    assert (out / "notes.txt").read_text() == "the user's, not the run's"  # only what a run writes is deleted


def test_a_new_run_does_not_mix_with_an_interrupted_one(tiny_models, tmp_path):
    import subprocess

    out = tmp_path / "run"
    (out / "checkpoints" / "last").mkdir(parents=True)  # what an interrupted run leaves
    refused = subprocess.run(_run_cmd(tiny_models, out), capture_output=True, text=True)
    assert refused.returncode == 2 and "holds an interrupted run: --resume it, or --overwrite it" in refused.stderr


def test_a_run_that_failed_before_training_can_simply_be_run_again(tiny_models, tmp_path):
    import subprocess

    out = tmp_path / "run"
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": f"words {i}", "label": 1}) + "\n" for i in range(30)))  # one class
    failed = subprocess.run(_run_cmd(tiny_models, out, "--dataset", str(data)), capture_output=True, text=True)
    assert failed.returncode == 2 and (out / "error.json").is_file()
    data.write_text("".join(json.dumps({"text": f"words {i}", "label": i % 2}) + "\n" for i in range(30)))  # fixed
    again = subprocess.run(_run_cmd(tiny_models, out, "--dataset", str(data)), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert not (out / "error.json").exists() and (out / "metrics.json").is_file()
