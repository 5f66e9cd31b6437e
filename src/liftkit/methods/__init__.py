"""Fine-tuning methods, one module each, behind one small interface (`base.Method`).

A method knows four things: its options (a dataclass in `methods.options`, part of the run config),
how to turn a freshly loaded classification model into the model to train (`apply`: trainable
parts chosen, head included), how to write what it trained into a run directory (`save`), and how
to put a saved run back onto a base model (`load`). Methods that peft covers save standard peft
adapter folders; liftkit's own methods save their trainable tensors as safetensors.

Adding a method: an options class in `methods/options.py` (it registers itself by name) and a
module `methods/<name>.py` that ends with `register(Method(...))`. `METHODS` imports a method's
module the first time the method is looked up, so importing this package imports neither torch
nor any method.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from liftkit.methods.base import IMPLEMENTED, Method, register
from liftkit.methods.options import OPTIONS, MethodOptions


class _Registry(Mapping[str, Method]):
    """Method name -> `Method`; names come from the options, implementations load on first use."""

    def __getitem__(self, name: str) -> Method:
        if name not in IMPLEMENTED:
            options = OPTIONS[name]  # KeyError for an unknown name, as a dict would
            importlib.import_module(f"{__name__}.{options.module or options.name}")
        return IMPLEMENTED[name]

    def __iter__(self) -> Iterator[str]:
        return iter(OPTIONS)

    def __len__(self) -> int:
        return len(OPTIONS)


METHODS: Mapping[str, Method] = _Registry()

__all__ = ["METHODS", "OPTIONS", "Method", "MethodOptions", "register"]
