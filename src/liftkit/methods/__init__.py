"""Fine-tuning methods, one module each, behind one small interface.

A method knows four things: its options (a dataclass, part of the run config), how to turn a
freshly loaded classification model into the model to train (`apply`: trainable parts chosen,
head included), how to write what it trained into a run directory (`save`), and how to put a
saved run back onto a base model (`load`). Methods that peft covers save standard peft adapter
folders; liftkit's own methods save their trainable tensors as safetensors. Adding a method is
one module plus one line in `_registry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

if TYPE_CHECKING:  # keep `import liftkit.config` free of torch
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class MethodOptions:
    """Base of every method's options; subclasses add their own fields."""

    name: ClassVar[str] = ""
    # learning rate used when train.learning_rate is null: methods that train a few parameters
    # from scratch want a far larger step than full fine-tuning of pretrained weights
    default_lr: ClassVar[float] = 1e-3

    # adapt only the top N transformer layers, or the top "P%" of them (null: all). The layers below
    # then stay frozen and training computes them once instead of every step (see liftkit.frozen)
    train_layers: int | str | None = None

    def problems(self) -> list[str]:
        """Return one message per invalid option (empty when all is well)."""
        return []

    def all_problems(self) -> list[str]:
        """`problems()` plus the checks every method shares."""
        out = self.problems()
        layers = self.train_layers
        if isinstance(layers, bool) or not (
            layers is None or (isinstance(layers, int) and layers >= 0) or (isinstance(layers, str) and _percent(layers) is not None)
        ):
            out.append(f"method.train_layers={layers!r} must be a number of layers (0 or more), a share such as '50%', or null for all")
        return out


def _percent(text: str) -> float | None:
    """0 < P <= 100 from "P%", else None."""
    try:
        value = float(text.strip().removesuffix("%")) if text.strip().endswith("%") else None
    except ValueError:
        return None
    return value if value is not None and 0 < value <= 100 else None


def layer_count(train_layers: int | str | None, total: int) -> int | None:
    """How many top layers `train_layers` means in a model of `total` layers (None: all)."""
    if isinstance(train_layers, str):
        return min(total, math.ceil(total * _percent(train_layers) / 100 - 1e-9))
    return train_layers


@dataclass(frozen=True)
class Method:
    """What the training and prediction code needs from a method."""

    options: type[MethodOptions]
    apply: Callable[[nn.Module, MethodOptions, Arch], nn.Module]
    save: Callable[[nn.Module, Path], None]
    load: Callable[[nn.Module, MethodOptions, Arch, Path], nn.Module]
    # True when the body sees embeddings, not token ids (prompt tuning): decoders then pad on the
    # left, since they pool the last position and cannot find padding among embeddings
    feeds_embeddings: bool = False


def _registry() -> dict[str, Method]:
    from liftkit.methods import adapter, full, head, ia3, lora, prefix, prompt

    return {
        "lora": lora.METHOD,
        "ia3": ia3.METHOD,
        "prompt": prompt.PROMPT,
        "ptuning": prompt.PTUNING,
        "prefix": prefix.METHOD,
        "adapter": adapter.METHOD,
        "full": full.METHOD,
        "head": head.METHOD,
    }


METHODS: dict[str, Method] = _registry()
