"""A standalone transformers folder: merged weights as safetensors, config with the label names,
tokenizer. It needs neither peft nor liftkit: `AutoModelForSequenceClassification` and
`transformers.pipeline` load it as they would any hub classifier."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from liftkit.modeling import quiet_loading


def write_hf(model: nn.Module, folder: Path) -> None:
    """`model` must be the plain architecture (a method's `merge` applied); the exporter writes
    the tokenizer beside it."""
    model.config.architectures = [type(model).__name__]
    with quiet_loading():  # no "Writing model shards" bar for one small file
        model.save_pretrained(folder)  # safetensors
