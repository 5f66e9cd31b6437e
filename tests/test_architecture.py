"""The shape of the code: no import circle, short functions, a config that needs no torch.

These hold the layout docs/architecture.md describes; each fails with the offending module or
function named.
"""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "liftkit"
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> set[str]:
    """Every liftkit module `module` imports, at the top or inside a function (not under
    `if TYPE_CHECKING:`, which never runs). `from liftkit.x import y` names `liftkit.x.y` when
    that is a module, else `liftkit.x`."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in MODULES and name != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return out


def test_no_module_imports_a_module_that_imports_it_back():
    graph = {module: _imports(module) for module in MODULES}
    assert graph["liftkit.pipeline"] >= {
        "liftkit.train",
        "liftkit.record",
        "liftkit.run_dir",
    }  # the parser sees imports
    assert _cycles(graph) == []


def test_the_checker_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_is_longer_than_a_screen():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert long == []


def test_fit_is_a_short_loop():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    fit = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "fit")
    assert fit.end_lineno - fit.lineno + 1 < 50


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "peft", "accelerate"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def test_config_and_record_need_no_torch(tmp_path):
    """Reading, checking and writing every method's config, and reading a run record, import no
    deep-learning library: `lift run` with a typo fails fast, and tools can read results anywhere."""
    script = (
        BLOCK_TORCH
        + """
import dataclasses, json
from liftkit.config import load_config
from liftkit.methods import METHODS
from liftkit.errors import LiftError
from liftkit.record import RunRecord
for name in METHODS:
    cfg = load_config(None, {"method.name": name})
    assert load_config(None, {"method.name": name, **{f"method.{k}": v for k, v in dataclasses.asdict(cfg.method).items()}}) == cfg
try:
    load_config(None, {"train.epochs": 0})
except LiftError as exc:
    assert "train.epochs=0" in str(exc)
doc = json.loads(open(sys.argv[1]).read())
assert RunRecord.from_dict(doc).to_dict() == doc
assert not any(m.split(".")[0] in ("torch", "transformers", "peft") for m in sys.modules)
print("ok", len(METHODS))
"""
    )
    record = {
        "run": {
            "dataset": "d",
            "model": "m",
            "method": "lora",
            "seed": 0,
            "learning_rate": 0.002,
            "date": "x",
            "device": "cpu",
            "torch": "t",
            "liftkit": "0.1.0",
            "transformers": "5",
            "peft": "0.21",
        },
        "data": {
            "source": "s",
            "labels": ["a", "b"],
            "rows": {"train": 2, "validation": 1, "test": 1},
            "notes": [],
            "warnings": [],
            "label_counts": {"train": [1, 1], "validation": [1, 0], "test": [0, 1]},
            "task": "single_label",
            "task_reason": "auto: every label is a single value",
        },
        "parameters": {"trainable_params": 1, "total_params": 2, "trainable_percent": 50.0},
        "majority": {
            "accuracy": 0.5,
            "macro_f1": 0.3,
            "macro_precision": 0.25,
            "macro_recall": 0.5,
            "weighted_f1": 0.3,
            "loss": 0.7,
            "per_class": {"a": {"precision": 0.5, "recall": 1.0, "f1": 0.67, "support": 1}},
            "confusion_matrix": [[1, 0], [1, 0]],
        },
        "base": None,
        "finetuned": {
            "accuracy": 1.0,
            "macro_f1": 1.0,
            "macro_precision": 1.0,
            "macro_recall": 1.0,
            "weighted_f1": 1.0,
            "loss": 0.1,
            "runtime_s": 1.0,
            "samples_per_s": 2.0,
            "steps_per_s": 1.0,
            "peak_memory_mb": 10.0,
            "ece": 0.05,
            "per_class": {},
            "confusion_matrix": [[1, 0], [0, 1]],
        },
        "train": {
            "epochs_run": 1,
            "best_epoch": 1,
            "stopped_early": False,
            "resumed_from_epoch": 0,
            "runtime_s": 1.0,
            "samples_per_s": 2.0,
            "optimizer_steps": 1,
            "processes": 1,
            "steps_per_s": 1.0,
            "peak_memory_mb": 10.0,
            "frozen_layers": 0,
            "frozen_cached": False,
            "history": [
                {
                    "epoch": 1,
                    "train_loss": 0.5,
                    "val_accuracy": 1.0,
                    "val_macro_f1": 1.0,
                    "val_macro_precision": 1.0,
                    "val_macro_recall": 1.0,
                    "val_weighted_f1": 1.0,
                    "val_loss": 0.2,
                    "val_runtime_s": 0.1,
                    "val_samples_per_s": 10.0,
                    "val_steps_per_s": 10.0,
                    "val_peak_memory_mb": 10.0,
                    "val_ece": 0.1,
                }
            ],
        },
        "mistakes": [{"text": "t", "label": "a", "predicted": "b", "probability": 0.9}],
    }
    path = tmp_path / "metrics.json"
    path.write_text(__import__("json").dumps(record))
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "8"]


DECISIONS = {
    "softmax",
    "log_softmax",
    "sigmoid",
    "logsigmoid",
    "argmax",
}  # what turns logits into probabilities or a choice


def test_logits_become_probabilities_and_decisions_only_in_the_tasks():
    """What logits mean is the task's (liftkit.tasks): softmax or a sigmoid per label, argmax or
    thresholds. A call elsewhere would quietly treat a multi-label model as single-label (the
    training loss a task names in liftkit.losses is the one other place)."""
    allowed = {m for m in MODULES if m.startswith("liftkit.tasks")} | {"liftkit.losses"}
    found = []
    for module, path in MODULES.items():
        if module in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            func = node.func if isinstance(node, ast.Call) else None
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DECISIONS:
                found.append(f"{module}:{node.lineno} calls {name}")
    assert not found, "; ".join(found)


def test_the_code_is_formatted_and_linted():
    """ruff at 119 columns, as peft and setfit use: `ruff format` owns the layout (so a function's
    length is its real length, not what wide lines hide), `ruff check` the imports and errors.
    Fix with `ruff format . && ruff check --fix .`."""
    root = SRC.parent
    for args in (["format", "--check"], ["check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "src", "tests", "bench"], cwd=root, capture_output=True, text=True
        )
        assert done.returncode == 0, f"ruff {' '.join(args)}: " + (done.stdout + done.stderr)[-3000:]
