"""The run-folder contract: the manifest predict reads, including those older liftkits wrote."""

import json

from liftkit import run_dir


def test_a_manifest_from_before_method_options_and_padding_side_still_loads(tmp_path):
    old = {"liftkit": "0.1.0", "method": "adapter", "base_model": "all-MiniLM-L6-v2", "model_type": "bert",
           "labels": ["neg", "pos"], "max_length": 64, "trust_remote_code": False, "revision": None}
    (tmp_path / "liftkit.json").write_text(json.dumps(old))
    (tmp_path / "config.yaml").write_text("method:\n  name: adapter\n  variant: pfeiffer\n  reduction_factor: 4\n")
    manifest = run_dir.read_manifest(tmp_path)
    assert manifest.padding_side == "right"
    assert manifest.method_options == {"variant": "pfeiffer", "reduction_factor": 4}


def test_a_manifest_from_a_newer_liftkit_loads_what_this_one_knows(tmp_path):
    new = {"liftkit": "9.0", "method": "lora", "base_model": "m", "model_type": "bert", "labels": ["a"], "max_length": 8,
           "padding_side": "left", "method_options": {"r": 4}, "something_new": [1, 2]}
    (tmp_path / "liftkit.json").write_text(json.dumps(new))
    manifest = run_dir.read_manifest(tmp_path)
    assert (manifest.padding_side, manifest.method_options, manifest.liftkit) == ("left", {"r": 4}, "9.0")
