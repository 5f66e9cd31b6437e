"""Fine-tuning methods, one module each, behind one small interface.

A method knows three things: its options (a dataclass, part of the run config), how to turn a
freshly loaded classification model into the model to train (`apply`), and how to put a saved
run back onto a base model (`load`). Adding a method is one module plus one line in `METHODS`.
"""

from __future__ import annotations

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

    def problems(self) -> list[str]:
        """Return one message per invalid option (empty when all is well)."""
        return []


@dataclass(frozen=True)
class Method:
    """What the training and prediction code needs from a method."""

    options: type[MethodOptions]
    # model with trainable parts chosen (head included), ready to train
    apply: Callable[[nn.Module, MethodOptions, Arch], nn.Module]
    # base model + saved run dir -> model ready for inference
    load: Callable[[nn.Module, Path], nn.Module]


def _registry() -> dict[str, Method]:
    from liftkit.methods import lora

    return {"lora": lora.METHOD}


METHODS: dict[str, Method] = _registry()
