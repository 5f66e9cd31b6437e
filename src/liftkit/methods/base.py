"""The interface every method implements, and the registry each method module adds itself to.

A leaf module (it imports only the options), so that method modules can import it without
importing the package's lookup (`liftkit.methods.METHODS`), which imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from liftkit.methods.options import MethodOptions

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


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
    # folds the trained method into the base model's own weights, returning the plain architecture
    # (fast prediction, the hf export); None when the method adds modules that architecture has no
    # place for (prefixes, prompts, bottleneck adapters), which then ship as ONNX
    merge: Callable[[nn.Module], nn.Module] | None = None


IMPLEMENTED: dict[str, Method] = {}  # method name -> implementation, filled as method modules are imported


def register(method: Method) -> Method:
    """Called by each method module for each method it implements."""
    IMPLEMENTED[method.options.name] = method
    return method
