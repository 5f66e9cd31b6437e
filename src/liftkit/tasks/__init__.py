"""What a row holds and what a prediction is: the `Task` record, chosen by name as `Method` is.

"One text in, one of K labels out" used to be written into every stage; now each stage asks the
run's task instead. A task says how its targets are stored (a class id per row, or a multi-hot
row), which transformers `problem_type` the head has, which training loss builds it (a function
of `liftkit.losses`, looked up by name so this module needs no torch), how logits become
probabilities (softmax, sigmoid) and probabilities become decisions (argmax, per-label
thresholds), its metrics and reference row, its calibration, its confident mistakes and the
answer `predict` and `lift serve` give. Every softmax and argmax of liftkit lives in a task
module (tests/test_architecture.py holds that).

Adding a task: a module here that builds one `Task` and calls `register`, imported below. The
loop, the callbacks, checkpoints, the run folder and the CLI do not change.

No torch here: `liftkit.predict` (which runs ONNX exports without torch) reads tasks too.
"""

from __future__ import annotations

from liftkit.tasks import multi_label, regression, single_label
from liftkit.tasks.base import (
    PROBLEM_TYPES,
    TASKS,
    Task,
    Thresholds,
    check_best_metric,
    register,
    task_named,
    task_of,
)

__all__ = [
    "TASKS",
    "PROBLEM_TYPES",
    "Task",
    "Thresholds",
    "check_best_metric",
    "register",
    "task_named",
    "task_of",
    "single_label",
    "multi_label",
    "regression",
]
