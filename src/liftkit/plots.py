"""The report's figures: plain functions from a run's stored figures to a matplotlib `Figure`.

Each function draws one picture from what a run folder holds (metrics.json's record, history.jsonl,
predictions.safetensors), so `lift report` redraws without retraining. Figures are built on the Agg
canvas directly (no pyplot: no global state, no display needed). Sizes grow with the number of
classes so that 20 labels (tweet_eval_emoji) stay readable; every axis is labelled and every title
says what is shown and on which split.
"""

from __future__ import annotations

import functools
import io
import math
import unicodedata
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib import font_manager, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.ticker import LogFormatter

from liftkit.evaluate import calibration
from liftkit.record import RunRecord
from liftkit.tasks import task_named

BASE_COLOR, TUNED_COLOR, TRAIN_COLOR, TEST_COLOR = "#9aa5b1", "#1f6feb", "#1f6feb", "#e8710a"
SERIES = ["#1f6feb", "#e8710a", "#2da44e", "#cf222e", "#8250df", "#bf8700", "#1b7c83", "#6e7781"]


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (Agg), drawn with the settings it was built with (tick labels are
    made at draw time)."""
    buffer = io.BytesIO()
    with _settings():
        FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


@functools.cache
def _fonts() -> tuple[str, ...]:
    """Font families to draw with: DejaVu Sans, then any monochrome emoji font the system has
    (Symbola, Noto Emoji), so emoji labels draw; registered by file, since matplotlib's font cache
    does not see fonts installed after it was built."""
    for path in font_manager.findSystemFonts():
        name = path.rsplit("/", 1)[-1].lower()
        if "symbola" in name or name.startswith("notoemoji"):
            font_manager.fontManager.addfont(path)
    have = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(name for name in ("DejaVu Sans", "Symbola", "Noto Emoji") if name in have)


@functools.cache
def _has_glyph(char: str) -> bool:
    for family in _fonts():
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        if FT2Font(path).get_char_index(ord(char)):
            return True
    return False


def display_name(label: str) -> str:
    """A label as the plots can draw it: itself, or where no installed font has one of its
    characters (an emoji without an emoji font), the characters' Unicode names."""
    if all(_has_glyph(c) for c in label if unicodedata.category(c) not in ("Mn", "Cf")):
        return label
    return " ".join(
        unicodedata.name(c, f"U+{ord(c):04X}").lower() for c in label if unicodedata.category(c) not in ("Mn", "Cf")
    )


def _drawing(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build a figure with our fonts (emoji ones included) and with mathtext off, without touching
    matplotlib's global settings: a `$` in a label, a model or a dataset name is text, not TeX."""

    @functools.wraps(draw)
    def wrapped(*args: Any, **kwargs: Any) -> Figure:
        with _settings():
            return draw(*args, **kwargs)

    return wrapped


def _settings() -> Any:
    return rc_context({"font.family": list(_fonts()), "text.parse_math": False})


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _tick_style(names: list[str]) -> tuple[float, float]:
    """(font size, rotation) for class names on an axis: short names (emoji, codes) large and
    upright; longer ones smaller and turned where there are many."""
    if max(map(len, names)) <= 3:
        return 12, 0
    return (9, 30) if len(names) <= 6 else (9 if len(names) <= 12 else 8, 90)


def smooth(values: Sequence[float], weight: float = 0.8) -> np.ndarray:
    """TensorBoard's debiased exponential moving average: the trend under noisy per-step losses."""
    out, last = [], 0.0
    for n, value in enumerate(values, start=1):
        last = weight * last + (1 - weight) * value
        out.append(last / (1 - weight**n))
    return np.asarray(out)


@_drawing
def learning_curves(
    steps: list[dict[str, Any]], epochs: list[dict[str, Any]], best_epoch: int, title: str, task: str = "single_label"
) -> Figure:
    """Left: training loss per logged step (raw points, smoothed line) and validation loss per
    epoch, at the step each epoch ended; right: the task's two headline validation scores per
    epoch (accuracy and macro-F1; micro- and macro-F1 for multi-label). The kept (best) epoch is
    marked on both."""
    from liftkit.report import metric_label

    kind = task_named(task)
    headline = [(key, metric_label(key, task)) for key in kind.scores[:2]]
    figure = _figure(12, 4.2)
    loss_ax, score_ax = figure.subplots(1, 2)
    if steps:
        x = [s["step"] for s in steps]
        y = [s["loss"] for s in steps]
        loss_ax.scatter(x, y, s=9, color=TRAIN_COLOR, alpha=0.3, label="training loss (per logged step)")
        loss_ax.plot(x, smooth(y), color=TRAIN_COLOR, lw=2, label="training loss, smoothed")
    if epochs:
        ends = [e["step"] for e in epochs]
        loss_ax.plot(
            ends, [e["val_loss"] for e in epochs], "o-", color=TEST_COLOR, lw=2, label="validation loss (per epoch)"
        )
        numbers = [e["epoch"] for e in epochs]
        for (key, name), marker, color in zip(headline, "os", (SERIES[0], SERIES[2])):
            score_ax.plot(numbers, [e.get(f"val_{key}") for e in epochs], f"{marker}-", color=color, lw=2, label=name)
        kept = next((e for e in epochs if e["epoch"] == best_epoch), None)
        if kept is not None:
            loss_ax.axvline(kept["step"], color="#57606a", ls="--", lw=1, label=f"kept weights (epoch {best_epoch})")
            score_ax.axvline(best_epoch, color="#57606a", ls="--", lw=1, label=f"kept weights (epoch {best_epoch})")
        score_ax.set_xticks(numbers)
    loss_ax.set(
        xlabel="optimizer step",
        ylabel=f"{kind.loss_name} loss",
        title="Loss: training (per step) and validation (per epoch)",
    )
    score_ax.set(xlabel="epoch", ylabel="score", title=f"Validation {headline[0][1]} and {headline[1][1]} per epoch")
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8, loc="best")
    figure.suptitle(title, fontsize=12)
    return figure


@_drawing
def confusion_matrices(record: RunRecord) -> Figure:
    """Row-normalised confusion matrices on test, base beside fine-tuned: row i shows where the
    texts of true class i went (each row sums to 1)."""
    names = [display_name(n) for n in record.data.labels]
    panels = [("base model (untrained head)", record.base), (f"fine-tuned ({record.run.method})", record.finetuned)]
    panels = [(label, split) for label, split in panels if split is not None and split.confusion_matrix]
    n = len(names)
    side = min(6.0, max(4.2, 0.36 * n + 2.2))  # two panels fit a page's width: 20 classes stay legible unscaled
    figure = _figure(side * len(panels) + 0.8, side + 0.3)
    size, rotation = _tick_style(names)
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    image = None
    for ax, (label, split) in zip(axes, panels):
        counts = np.asarray(split.confusion_matrix, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = counts / counts.sum(axis=1, keepdims=True)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), names, rotation=rotation, ha="right" if rotation == 30 else "center", fontsize=size)
        ax.set_yticks(range(n), names, fontsize=size)
        ax.set(xlabel="predicted label", ylabel="true label", title=f"{label}\naccuracy {split.scores.accuracy:.3f}")
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    if not math.isnan(share[i, j]):
                        ax.text(
                            j,
                            i,
                            f"{share[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=8,
                            color="white" if share[i, j] > 0.55 else "#24292f",
                        )
    if image is not None:
        figure.colorbar(image, ax=list(axes), shrink=0.7, label="share of the true class's test rows")
    figure.suptitle("Confusion matrices on the test split, row-normalised", fontsize=12)
    return figure


@_drawing
def per_class(record: RunRecord, by_support: bool = False) -> Figure:
    """Precision, recall and F1 of every class on test, base beside fine-tuned, with each class's
    support; in label order, or (`by_support`, many labels of very different sizes) largest first."""
    names = record.data.labels
    if by_support:
        names = sorted(names, key=lambda n: -record.finetuned.per_class[n].support)
    rows = [f"{display_name(n)} (n={record.finetuned.per_class[n].support})" for n in names]
    figure = _figure(13, max(3.2, 0.32 * len(names) + 1.6))
    axes = figure.subplots(1, 3, sharey=True)
    y = np.arange(len(names))
    height = 0.4
    for ax, metric in zip(axes, ("precision", "recall", "f1")):
        if record.base is not None and record.base.per_class:
            ax.barh(
                y - height / 2,
                [getattr(record.base.per_class[n], metric) for n in names],
                height,
                color=BASE_COLOR,
                label="base (untrained head)",
            )
        ax.barh(
            y + height / 2,
            [getattr(record.finetuned.per_class[n], metric) for n in names],
            height,
            color=TUNED_COLOR,
            label=f"fine-tuned ({record.run.method})",
        )
        ax.set(
            xlim=(0, 1),
            xlabel=metric if metric != "f1" else "F1",
            title=f"{'F1' if metric == 'f1' else metric.capitalize()} per class",
        )
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, rows, fontsize=10 if max(map(len, names)) <= 3 else 9)
    axes[0].set_ylabel("class (test support)")
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=9)
    figure.suptitle(
        "Per-class scores on the test split" + (": base vs fine-tuned" if record.base else ""), fontsize=12
    )
    return figure


@_drawing
def reliability(predictions: dict[str, np.ndarray], record: RunRecord) -> Figure:
    """Reliability diagrams on test, base beside fine-tuned: in each confidence bin, how often the
    model was right against how sure it said it was; below, how many rows fell in each bin."""
    panels = [
        (name, label, split)
        for name, label, split in (
            ("base", "base model (untrained head)", record.base),
            ("finetuned", f"fine-tuned ({record.run.method})", record.finetuned),
        )
        if name in predictions and split is not None
    ]
    figure = _figure(5.2 * len(panels) + 0.4, 5.4)
    grid = figure.add_gridspec(2, len(panels), height_ratios=[3, 1])
    for column, (name, label, split) in enumerate(panels):
        result = calibration(predictions[name], predictions["labels"], task_named(record.data.task))
        ece = split.ece if split.ece is not None else result.ece  # metrics.json's figure, as the page's text
        top, bottom = figure.add_subplot(grid[0, column]), figure.add_subplot(grid[1, column])
        left, width = result.edges[:-1], np.diff(result.edges)
        filled = result.counts > 0
        top.bar(
            left[filled],
            result.accuracy[filled],
            width[filled],
            align="edge",
            color=TUNED_COLOR if name == "finetuned" else BASE_COLOR,
            edgecolor="white",
            label="accuracy in the bin",
        )
        top.plot(
            result.confidence[filled],
            result.confidence[filled],
            "_",
            color="#cf222e",
            ms=14,
            mew=2,
            label="mean confidence in the bin",
        )
        top.plot([0, 1], [0, 1], "--", color="#57606a", lw=1, label="perfectly calibrated")
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"{label}\nECE {ece:.3f}")
        top.tick_params(labelbottom=False)  # the strip below carries the confidence axis
        top.legend(fontsize=8, loc="upper left")
        top.grid(alpha=0.3)
        bottom.bar(
            left, result.counts / max(result.counts.sum(), 1), width, align="edge", color="#57606a", edgecolor="white"
        )
        # single-label: the top class's probability; multi-label: each (row, label) decision's p or 1 - p
        bottom.set(
            xlim=(0, 1), xlabel=f"confidence ({task_named(record.data.task).confidence_name})", ylabel="share of rows"
        )
        bottom.grid(alpha=0.3)
    figure.suptitle("Calibration on the test split (reliability diagram, 15 bins)", fontsize=12)
    return figure


def _grid(count: int, columns: int = 7) -> tuple[int, int]:
    return math.ceil(count / min(columns, count)), min(columns, count)


@_drawing
def precision_recall(predictions: dict[str, np.ndarray], record: RunRecord) -> Figure:
    """Multi-label: each label's precision-recall curve on test (the fine-tuned model), its
    decision threshold marked; labels by test support, largest first."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    names, y, probs = record.data.labels, predictions["labels"] > 0.5, predictions["finetuned"]
    order = sorted(range(len(names)), key=lambda j: -int(y[:, j].sum()))
    rows, columns = _grid(len(names))
    figure = _figure(2.3 * columns, 2.2 * rows + 0.6)
    axes = np.atleast_1d(figure.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    for ax, j in zip(axes, order):
        ax.grid(alpha=0.3)
        ax.set(xlim=(0, 1), ylim=(0, 1.02))
        scores = record.finetuned.per_class[names[j]]
        ax.set_title(f"{display_name(names[j])} (n={scores.support})", fontsize=9)
        if not y[:, j].any():
            ax.text(0.5, 0.5, "no positive\ntest row", ha="center", va="center", fontsize=8, color="#57606a")
            continue
        precision, recall, _ = precision_recall_curve(y[:, j], probs[:, j])
        ax.plot(recall, precision, color=TUNED_COLOR, lw=1.2)
        ax.plot(scores.recall, scores.precision, "o", color="#cf222e", ms=5)
        ax.text(
            0.97,
            0.95,
            f"AP {average_precision_score(y[:, j], probs[:, j]):.2f}\nt={scores.threshold:.2f}",
            fontsize=7.5,
            transform=ax.transAxes,
            color="#24292f",
            ha="right",
            va="top",
            bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.supxlabel("recall")
    figure.supylabel("precision")
    figure.suptitle(
        "Precision-recall per label on the test split (red dot: the label's decision threshold t)", fontsize=12
    )
    return figure


def _co_occurrence(present: np.ndarray) -> np.ndarray:
    """share[i, j]: of the rows carrying label i, the share that also carry label j."""
    present = present.astype(np.float64)
    together = present.T @ present
    with np.errstate(invalid="ignore", divide="ignore"):
        share = together / np.diag(together)[:, None]
    np.fill_diagonal(share, np.nan)
    return share


@_drawing
def co_occurrence(predictions: dict[str, np.ndarray], record: RunRecord) -> Figure:
    """Multi-label: which labels come together, in the test split's true label sets beside the
    fine-tuned model's predicted ones (at its thresholds)."""
    task = task_named(record.data.task)
    names = [display_name(n) for n in record.data.labels]
    thresholds = [record.finetuned.per_class[n].threshold for n in record.data.labels]
    panels = [
        ("true label sets", predictions["labels"] > 0.5),
        (f"predicted label sets (fine-tuned, {record.run.method})", task.decide(predictions["finetuned"], thresholds)),
    ]
    n = len(names)
    side = min(7.5, max(4.2, 0.24 * n + 2.2))
    figure = _figure(2 * side + 0.8, side + 0.4)
    size, rotation = _tick_style(names)
    axes = figure.subplots(1, 2)
    image = None
    for ax, (title, present) in zip(axes, panels):
        image = ax.imshow(_co_occurrence(present), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), names, rotation=rotation, ha="right" if rotation == 30 else "center", fontsize=size)
        ax.set_yticks(range(n), names, fontsize=size)
        ax.set(
            xlabel="also carries label",
            ylabel="rows carrying label",
            title=f"{title}\n{int(present.any(axis=1).sum()):,} of {len(present):,} rows with a label",
        )
    figure.colorbar(image, ax=list(axes), shrink=0.7, label="share of the row label's rows")
    figure.suptitle("Label co-occurrence on the test split: true vs predicted", fontsize=12)
    return figure


@_drawing
def label_distribution(record: RunRecord) -> Figure:
    """Each label's share of the train and test rows: how skewed the data is, and whether the test
    split looks like the training data."""
    names = [display_name(n) for n in record.data.labels]
    counts = record.data.label_counts
    figure = _figure(max(7.0, 0.45 * len(names) + 2.5), 4.0)
    ax = figure.subplots()
    x = np.arange(len(names))
    for offset, split, color in ((-0.2, "train", TRAIN_COLOR), (0.2, "test", TEST_COLOR)):
        rows = np.asarray(counts.get(split) or [0] * len(names), dtype=float)
        total = record.data.rows.get(split) or rows.sum()  # a multi-label row may count under several labels
        ax.bar(x + offset, 100 * rows / max(total, 1), 0.4, color=color, label=f"{split} ({int(total):,} rows)")
    size, rotation = _tick_style(names)
    ax.set_xticks(x, names, rotation=rotation, ha="right" if rotation == 30 else "center", fontsize=size)
    ax.set(xlabel="label", ylabel="share of the split's rows carrying it (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    figure.suptitle("Label distribution: train vs test split", fontsize=12)
    return figure


class _PlainLog(LogFormatter):
    """Log-axis labels as plain numbers (0.6, 1, 2, 50), minor ticks labelled too where the axis
    spans little (matplotlib's thresholds), instead of 6e-01 or 6x10^-1."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


@_drawing
def tradeoffs(
    points: dict[str, dict[str, tuple[float, float]]], seeds: int, metrics: tuple[tuple[str, str], ...]
) -> Figure:
    """The task's two headline scores (`metrics`: (key, label), e.g. accuracy and macro-F1) of
    each method against its trainable-parameter share (log axis) and its training time; each
    point a mean over seeds with ± one standard deviation as error bars. `points[method][name]` =
    (mean, std) for name in share, time and the metrics' keys."""
    figure = _figure(12, 8.4)
    axes = figure.subplots(2, 2)
    for row, (metric, metric_label) in enumerate((key, f"test {label}") for key, label in metrics):
        for column, (x_key, x_label) in enumerate(
            (("share", "trainable parameters (% of the model, log scale)"), ("time", "training time (s)"))
        ):
            ax = axes[row, column]
            rightmost = max(p[x_key][0] for p in points.values())
            for n, (method, p) in enumerate(points.items()):
                color = SERIES[n % len(SERIES)]
                ax.errorbar(
                    p[x_key][0],
                    p[metric][0],
                    xerr=p[x_key][1] or None,
                    yerr=p[metric][1] or None,
                    fmt="o",
                    ms=7,
                    color=color,
                    capsize=4,
                    label=method,
                )
                name = f"{method} ({p['share'][0]:.2g}%)" if x_key == "share" else f"{method} ({p['time'][0]:.0f} s)"
                left = (
                    len(points) > 1 and p[x_key][0] == rightmost
                )  # the rightmost label reads leftwards: it stays inside the axes
                ax.annotate(
                    name,
                    (p[x_key][0], p[metric][0]),
                    textcoords="offset points",
                    xytext=(-7 if left else 7, 5),
                    ha="right" if left else "left",
                    fontsize=9,
                    color=color,
                )
            if x_key == "share":
                ax.set_xscale("log")
                for set_formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
                    set_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(2, 0.6)))
            against = "trainable share" if x_key == "share" else "training time"
            ax.set(
                xlabel=x_label, ylabel=metric_label, title=f"{metric_label[0].upper()}{metric_label[1:]} vs {against}"
            )
            ax.grid(alpha=0.3, which="both")
            ax.margins(x=0.15, y=0.15)
    axes[0, 0].legend(fontsize=8, loc="best")
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    figure.suptitle(f"What each method buys, on the test split ({spread})", fontsize=12)
    return figure


@_drawing
def overlaid_curves(
    curves: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    metric: tuple[str, str] = ("accuracy", "accuracy"),
) -> Figure:
    """Learning curves of several methods on shared axes: smoothed training loss per step, and
    the task's headline validation score per epoch (`metric`: key and label; accuracy unless the
    task leads with another). `curves[method]` = (step lines, epoch lines) of one run."""
    figure = _figure(12, 4.2)
    loss_ax, score_ax = figure.subplots(1, 2)
    for n, (method, (steps, epochs)) in enumerate(curves.items()):
        color = SERIES[n % len(SERIES)]
        if steps:
            loss_ax.plot(
                [s["step"] for s in steps], smooth([s["loss"] for s in steps]), color=color, lw=2, label=method
            )
        if epochs:
            score_ax.plot(
                [e["epoch"] for e in epochs],
                [e.get(f"val_{metric[0]}") for e in epochs],
                "o-",
                color=color,
                lw=2,
                label=method,
            )
    loss_ax.set(xlabel="optimizer step", ylabel="training loss (smoothed)", title="Training loss per step")
    score_ax.set(xlabel="epoch", ylabel=f"validation {metric[1]}", title=f"Validation {metric[1]} per epoch")
    score_ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    figure.suptitle("Learning curves by method (first seed of each)", fontsize=12)
    return figure


@_drawing
def scatter(predictions: dict[str, np.ndarray], record: RunRecord) -> Figure:
    """Regression: each test row's predicted score against its true score, with the identity line
    (a perfect model's points all sit on it) and the fine-tuned model's Spearman and R²."""
    y, predicted = np.asarray(predictions["labels"], dtype=float), np.asarray(predictions["finetuned"])[:, 0]
    name = display_name(record.data.labels[0])
    figure = _figure(6.4, 6.0)
    ax = figure.subplots()
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    low, high = low - 0.03 * (high - low), high + 0.03 * (high - low)  # points on the edges stay whole
    ax.plot([low, high], [low, high], color="#57606a", lw=1, ls="--", label="identity: predicted = true")
    ax.scatter(y, predicted, s=9, alpha=0.45, color=TUNED_COLOR, linewidths=0, label=f"test rows ({len(y):,})")
    s = record.finetuned.scores
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", xlim=(low, high), ylim=(low, high), aspect="equal")
    ax.set_title(f"fine-tuned: Spearman {s.spearman:.3f}, R² {s.r2:.3f}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    return figure


@_drawing
def residuals(predictions: dict[str, np.ndarray], record: RunRecord, bins: int = 5) -> Figure:
    """Regression: the error (predicted - true) of the test rows in equal-width bins of the true
    score, as box plots, base model beside fine-tuned: where on the scale the model is off, and
    which way (a box above 0 over-predicts)."""
    y = np.asarray(predictions["labels"], dtype=float)
    edges = np.linspace(y.min(), y.max(), bins + 1)
    which = np.clip(np.digitize(y, edges[1:-1], right=True), 0, bins - 1)
    name = display_name(record.data.labels[0])
    figure = _figure(9.0, 4.8)
    ax = figure.subplots()
    models = [("finetuned", "fine-tuned", TUNED_COLOR)]
    if predictions.get("base") is not None:
        models.insert(0, ("base", "base (untrained head)", BASE_COLOR))
    width = 0.8 / len(models)
    for n, (key, label, color) in enumerate(models):
        error = np.asarray(predictions[key])[:, 0] - y
        groups = [error[which == b] for b in range(bins)]
        places = [b + (n - (len(models) - 1) / 2) * width for b in range(bins)]
        kept = [(g, p) for g, p in zip(groups, places) if len(g)]
        boxes = ax.boxplot(
            [g for g, _ in kept],
            positions=[p for _, p in kept],
            widths=width * 0.9,
            patch_artist=True,
            showfliers=False,
        )
        for box in boxes["boxes"]:
            box.set(facecolor=color, alpha=0.6, edgecolor=color)
        for median in boxes["medians"]:
            median.set(color="#24292f")
        ax.plot([], [], "s", color=color, alpha=0.6, label=label)
    counts = np.bincount(which, minlength=bins)
    ax.set_xticks(
        range(bins), [f"{edges[b]:.2g}-{edges[b + 1]:.2g}\n({counts[b]:,} rows)" for b in range(bins)], fontsize=8.5
    )
    ax.axhline(0, color="#57606a", lw=1, ls="--")
    ax.set(xlabel=f"true {name} (bins)", ylabel="error: predicted - true")
    ax.set_title("Residuals by true score (boxes: quartiles; whiskers: 1.5 IQR; outliers not drawn)", fontsize=11)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=9)
    return figure
