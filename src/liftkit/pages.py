"""The HTML reports: report.html for a run, compare.html for a comparison.

Each page is one self-contained file (images embedded as data URIs, inline CSS, no script, no
CDN: it opens offline, from a mail attachment too), with the same figures as PNGs in `plots/`
beside it. Everything shown is read back from the folders (`run_dir`'s readers) and drawn by
`liftkit.plots`, so `lift report` redraws a page at any time without retraining. Text from the
data (labels, the mistakes' texts) is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from matplotlib.figure import Figure

from liftkit import plots, run_dir
from liftkit.config import NOT_RESULTS
from liftkit.errors import LiftError, first_line
from liftkit.record import RunRecord
from liftkit.report import comparison_table, metric_label, results_table, summary_lines
from liftkit.tasks import task_named
from liftkit.tracking import flatten

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
main { max-width: 1240px; margin: 28px auto; padding: 0 20px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 10px; }
.sub { color: #5b6475; margin: 0 0 18px; }
section { background: #fff; border: 1px solid #e1e4ea; border-radius: 8px; padding: 16px 18px; margin-top: 18px; overflow-x: auto; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 14px; }
th, td { border-bottom: 1px solid #e6e9ef; padding: 5px 10px; text-align: right; vertical-align: top; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f1f3f6; }
table.wrap-head th { white-space: normal; }
.text { text-align: left; max-width: 620px; overflow-wrap: anywhere; white-space: normal; }
dl { display: grid; grid-template-columns: 230px 1fr; gap: 4px 14px; margin: 0; }
dt { color: #5b6475; }
dd { margin: 0; overflow-wrap: anywhere; }
.note { color: #5b6475; font-size: 14px; }
"""


def _page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{html.escape(title)}</h1>\n"
        f'<p class="sub">{html.escape(subtitle)}</p>\n' + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )


def _section(heading: str, *parts: str) -> str:
    return f"<section>\n<h2>{html.escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def _table(rows: list[list[str]], text_columns: tuple[int, ...] = ()) -> str:
    """Numbers right-aligned; the columns in `text_columns` (texts, label names) left-aligned."""

    def cells(row: list[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=text' if i in text_columns else ''}>{html.escape(c)}</{tag}>" for i, c in enumerate(row)
        )

    head, *body = rows
    return "\n".join(
        ["<table>", f"<tr>{cells(head, 'th')}</tr>", *(f"<tr>{cells(row, 'td')}</tr>" for row in body), "</table>"]
    )


def _facts(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items) + "</dl>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


class _Images:
    """Writes each figure as plots/<name>.png and returns the <img> that embeds the same bytes."""

    def __init__(self, folder: Path):
        self.folder = folder / run_dir.PLOTS

    def __call__(self, name: str, figure: Figure, alt: str) -> str:
        data = plots.png(figure)
        run_dir.write_bytes(self.folder / f"{name}.png", data)
        encoded = base64.b64encode(data).decode("ascii")
        return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'


def read_history(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """history.jsonl split into per-step lines (training loss, lr) and per-epoch lines
    (validation metrics); lines a kill cut short are skipped."""
    steps, epochs = [], []
    path = run_dir.history_path(folder)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("loss") is not None:
            steps.append(row)
        elif row.get("train_loss") is not None:  # an epoch's line: its training loss and validation scores
            epochs.append(row)
    return steps, epochs


def write_run_report(folder: str | Path) -> Path:
    """Draw the run in `folder` (a finished `lift run`) as report.html + plots/*.png; returns the page."""
    folder = Path(folder)
    record = run_dir.read_record(folder)
    manifest = run_dir.read_manifest(folder)
    predictions = run_dir.read_predictions(folder)
    steps, epochs = read_history(folder)
    image = _Images(folder)
    run, title = record.run, f"{record.run.dataset} · {record.run.model} · {record.run.method}"
    sections = [
        _section(
            "Test split: base vs fine-tuned" if record.base else "Test split",
            _table(comparison_table(record)),
            *map(_note, summary_lines(record)),
        ),
        _section(
            "Learning curves",
            image(
                "learning_curves",
                plots.learning_curves(
                    steps, epochs, record.train.best_epoch, f"{title}: training and validation", record.data.task
                ),
                "learning curves",
            ),
        ),
        *[SECTIONS[name](record, predictions, image) for name in task_named(record.data.task).report],
        _section(
            "Run facts", _facts(_run_facts(record, manifest.method_options, dict(_config(folder).get("train") or {})))
        ),
    ]
    page = folder / run_dir.REPORT_HTML
    run_dir.write_text(page, _page(title, f"{folder.name} · run on {run.date} on {run.device}", sections))
    return page


def _confusion(record: RunRecord, predictions: dict[str, Any] | None, image: _Images) -> str:
    return _section(
        "Confusion matrices (test)",
        image("confusion_matrices", plots.confusion_matrices(record), "confusion matrices, base and fine-tuned"),
    )


def _per_class(record: RunRecord, predictions: dict[str, Any] | None, image: _Images) -> str:
    return _section(
        "Per-class scores (test)",
        image("per_class", plots.per_class(record), "per-class precision, recall and F1"),
        _per_class_table(record),
    )


def _per_label(record: RunRecord, predictions: dict[str, Any] | None, image: _Images) -> str:
    return _section(
        "Per-label scores (test), largest labels first",
        _note(
            "Each label decided on its own at its threshold (the table's last column), chosen on the validation split."
        ),
        image("per_class", plots.per_class(record, by_support=True), "per-label precision, recall and F1"),
        _per_class_table(record),
    )


def _needs_predictions(
    title: str, draw: Callable[[dict[str, Any], RunRecord], Any], name: str, alt: str, note: str
) -> Callable[..., str]:
    def section(record: RunRecord, predictions: dict[str, Any] | None, image: _Images) -> str:
        if predictions is None:
            return _section(title, _note("This run predates stored test predictions: rerun it to draw this."))
        return _section(title, _note(note), image(name, draw(predictions, record), alt))

    return section


def _label_distribution(record: RunRecord, predictions: dict[str, Any] | None, image: _Images) -> str:
    if not record.data.label_counts:
        return _section("Label distribution", _note("This run predates stored label counts: rerun it to draw them."))
    return _section(
        "Label distribution",
        image("label_distribution", plots.label_distribution(record), "label distribution, train and test"),
    )


# report.html's task-dependent sections by name: each task lists the ones it shows (Task.report)
SECTIONS: dict[str, Callable[[RunRecord, dict[str, Any] | None, _Images], str]] = {
    "confusion_matrices": _confusion,
    "per_class": _per_class,
    "per_label": _per_label,
    "precision_recall": _needs_predictions(
        "Precision-recall per label (test)",
        plots.precision_recall,
        "precision_recall",
        "precision-recall curve of every label",
        "How much precision each label trades for recall as its threshold moves; the red dot is where its threshold sits. AP: average precision.",
    ),
    "co_occurrence": _needs_predictions(
        "Label co-occurrence (test)",
        plots.co_occurrence,
        "co_occurrence",
        "label co-occurrence, true and predicted",
        "Row i, column j: of the test rows carrying label i, the share that also carry label j; left as annotated, right as predicted.",
    ),
    "scatter": _needs_predictions(
        "Predicted vs true score (test)",
        plots.scatter,
        "scatter",
        "predicted against true score of every test row",
        "Each dot a test row; on the dashed line the prediction equals the true score.",
    ),
    "residuals": _needs_predictions(
        "Errors by true score (test)",
        plots.residuals,
        "residuals",
        "errors of the base and fine-tuned models in bins of the true score",
        "Where on the scale the model is off, and which way: a box above 0 predicts too high.",
    ),
    "calibration": lambda record, predictions, image: _calibration(record, predictions, image),
    "mistakes": lambda record, predictions, image: _mistakes(record),
    "label_distribution": _label_distribution,
}


def _config(folder: Path) -> dict[str, Any]:
    """The run's config.yaml as plain values, for the settings its record does not carry."""
    path = folder / run_dir.CONFIG
    raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    return raw if isinstance(raw, dict) else {}


def _per_class_table(record: RunRecord) -> str:
    thresholds = any(c.threshold is not None for c in record.finetuned.per_class.values())
    rows = [
        [
            "class",
            "support",
            "base precision",
            "base recall",
            "base F1",
            "precision",
            "recall",
            "F1",
            *(["threshold"] if thresholds else []),
        ]
    ]
    for name, tuned in record.finetuned.per_class.items():
        base = record.base.per_class.get(name) if record.base else None
        before = [f"{getattr(base, k):.3f}" for k in ("precision", "recall", "f1")] if base else ["-"] * 3
        cut = [f"{tuned.threshold:.2f}"] if thresholds else []
        rows.append(
            [
                name,
                f"{tuned.support:,}",
                *before,
                f"{tuned.precision:.3f}",
                f"{tuned.recall:.3f}",
                f"{tuned.f1:.3f}",
                *cut,
            ]
        )
    return f"<details><summary>the numbers</summary>{_table(rows)}</details>"


def _calibration(record: RunRecord, predictions: dict[str, Any] | None, image: _Images) -> str:
    if predictions is None:
        return _section(
            "Calibration (test)",
            _note("This run predates stored test predictions: rerun it to draw its reliability diagram."),
        )
    eces = [
        f"{label}: ECE {split.ece:.4f}"
        for label, split in (("base", record.base), ("fine-tuned", record.finetuned))
        if split is not None and split.ece is not None
    ]
    explain = (
        "Each decision counts: a row's top class, or for multi-label every (row, label) decision, sure by p or 1 - p. "
        "Expected calibration error (ECE): the gap between how sure the model says it is and how often it is right, "
        "averaged over 15 confidence bins and weighted by their rows; 0 is perfectly calibrated. "
        + "; ".join(eces)
        + "."
    )
    return _section(
        "Calibration (test)",
        image("calibration", plots.reliability(predictions, record), "reliability diagrams"),
        _note(explain),
    )


def _mistakes(record: RunRecord) -> str:
    scores = any(m.error is not None for m in record.mistakes)  # regression: errors, not wrong labels
    title = "largest errors" if scores else "most confident mistakes"
    if not record.mistakes:
        what = (
            "The fine-tuned model made no mistake on test."
            if record.finetuned.scores.accuracy == 1 or record.finetuned.scores.mse == 0
            else "This run predates stored mistakes: rerun it to list them."
        )
        return _section(f"The {title} (test)", _note(what))
    pairs = any(m.text_pair is not None for m in record.mistakes)
    texts = ["text", "second text"] if pairs else ["text"]
    last = ["true score", "predicted", "error"] if scores else ["true", "predicted", "probability"]
    rows = [["#", *texts, *last]]
    for n, m in enumerate(record.mistakes, start=1):
        shown = [m.text, m.text_pair or ""] if pairs else [m.text]
        how = f"{m.error:+.3f}" if scores else f"{m.probability:.3f}"
        rows.append([str(n), *shown, m.label, m.predicted, how])
    note = (
        "The test rows predicted furthest from their true score: often a pair the annotators scored on a cue the model misses."
        if scores
        else "Wrong predictions the fine-tuned model was surest of: often mislabelled rows, or a cue the model over-trusts."
    )
    return _section(
        f"The {len(record.mistakes)} {title} (test)",
        _note(note),
        _table(rows, text_columns=tuple(range(1, 1 + len(texts) + (0 if scores else 2)))),
    )


def _run_facts(record: RunRecord, options: dict[str, Any], train_cfg: dict[str, Any]) -> list[tuple[str, str]]:
    run, data, params, train = record.run, record.data, record.parameters, record.train
    task = task_named(record.data.task)
    name = train_cfg.get("loss", "cross_entropy")
    name = task.losses[0] if name == "auto" else name  # auto: the task's plain loss
    loss = name + (f" (gamma {train_cfg.get('focal_gamma')})" if name == "focal" else "")
    loss += f" ({task.loss_name})" if name == task.losses[0] else ""
    loss += f", class weights {train_cfg.get('class_weights', 'none')}"
    loss += f", label smoothing {train_cfg['label_smoothing']}" if train_cfg.get("label_smoothing") else ""
    rows = ", ".join(f"{split} {count:,}" for split, count in data.rows.items())
    return [
        ("model", run.model),
        ("method", run.method),
        ("method options", ", ".join(f"{k}={'default' if v is None else v}" for k, v in options.items()) or "-"),
        ("learning rate", f"{run.learning_rate:g}"),
        ("seed", str(run.seed)),
        ("training loss", loss),
        (
            "trainable parameters",
            f"{params.trainable_params:,} of {params.total_params:,} ({params.trainable_percent:.2f}%)",
        ),
        (
            "epochs",
            f"{train.epochs_run} run, weights of epoch {train.best_epoch} kept"
            + (" (stopped early)" if train.stopped_early else ""),
        ),
        (
            "training time",
            f"{train.runtime_s:.1f} s ({train.samples_per_s:.1f} samples/s, {train.steps_per_s:.2f} steps/s, {train.optimizer_steps:,} optimizer steps)",
        ),
        ("peak memory", f"{train.peak_memory_mb:.0f} MB"),
        (
            "test evaluation",
            f"{record.finetuned.timing.runtime_s:.1f} s, {record.finetuned.timing.samples_per_s:.1f} samples/s"
            if record.finetuned.timing
            else "-",
        ),
        ("data", f"{data.source}: {rows} rows, {task.target(data.labels)}"),
        ("task", f"{data.task}" + (f" ({data.task_reason})" if data.task_reason else "")),
        *[("data note", note) for note in data.notes],
        *[("data warning", warning) for warning in data.warnings],
        ("device", run.device),
        ("date", run.date),
        (
            "versions",
            f"liftkit {run.liftkit}, torch {run.torch}, transformers {run.transformers or '?'}, peft {run.peft or '?'}",
        ),
    ]


def _transposed(table: list[list[str]]) -> list[list[str]]:
    """Methods as columns, figures as rows: a page is narrower than a row of fifteen figures."""
    return [list(row) for row in zip(*table)]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def compare_sources(paths: list[Path]) -> tuple[dict[str, list[Path]], dict[str, str], int]:
    """What a comparison page draws: finished run folders by method, failed methods (-> error),
    seeds. `paths` is one comparison folder (comparison.json), or several run folders; runs of
    one method on different models are told apart by their model's name."""
    if len(paths) == 1 and (paths[0] / run_dir.COMPARISON).is_file():
        result = run_dir.read_json(paths[0] / run_dir.COMPARISON)
        seeds = list(result.get("seeds") or [])
        failures = dict(result.get("failures") or {})
        runs = {
            m: [run_dir.member_dir(paths[0], m, s) for s in seeds] for m in result.get("runs", {}) if m not in failures
        }
        runs = {m: [d for d in dirs if (d / run_dir.METRICS).is_file()] for m, dirs in runs.items()}
        return {m: d for m, d in runs.items() if d}, failures, len(seeds)
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    records = {path: run_dir.read_record(path).run for path in unique}
    settings = {path: _settings(path) for path in unique}
    varying = sorted(
        k for k in set().union(*map(set, settings.values())) if len({str(c.get(k)) for c in settings.values()}) > 1
    )
    runs: dict[str, list[Path]] = {}
    for path, info in records.items():
        what = ", ".join(f"{k.rsplit('.', 1)[-1]}={settings[path].get(k)}" for k in varying if k != "method.name")
        label = f"{info.method} ({what})" if what else info.method
        if any(
            records[other].seed == info.seed for other in runs.get(label, [])
        ):  # the same run twice is not two seeds
            label = f"{label} [{path.name}]"
        runs.setdefault(label, []).append(path)
    return runs, {}, max(len(dirs) for dirs in runs.values())


def _settings(folder: Path) -> dict[str, Any]:
    """A run's config as dotted keys, without those that do not change what it finds (seed apart:
    seeds are what a comparison averages over)."""
    return {
        k: v
        for k, v in flatten(_config(folder)).items()
        if k not in NOT_RESULTS and k not in ("train.seed", "data.dataset")
    }


def write_compare_report(paths: list[str | Path], output: str | Path) -> Path:
    """Draw a comparison (one comparison folder, or several run folders of one dataset) as
    compare.html + plots/*.png in `output`; returns the page."""
    runs, failures, seeds = compare_sources([Path(p) for p in paths])
    records = {method: [run_dir.read_record(d) for d in dirs] for method, dirs in runs.items()}
    datasets = sorted({r.run.dataset for rs in records.values() for r in rs})
    if len(datasets) > 1:
        raise LiftError(f"these runs are on different datasets ({', '.join(datasets)}): compare runs of one dataset")
    if not records:
        raise LiftError(
            f"no finished run to compare in {', '.join(map(str, paths))}: pass a comparison folder or run folders"
        )
    output = Path(output)
    image = _Images(output)
    first = next(iter(records.values()))[0]
    headline = tuple((key, metric_label(key, first.data.task)) for key in task_named(first.data.task).scores[:2])
    points = {
        method: {
            "share": _mean_std([r.parameters.trainable_percent for r in rs]),
            "time": _mean_std([r.train.runtime_s for r in rs]),
            **{key: _mean_std([getattr(r.finetuned.scores, key) for r in rs]) for key, _ in headline},
        }
        for method, rs in records.items()
    }
    curves = {method: read_history(dirs[0]) for method, dirs in runs.items()}
    sections = [
        _section(
            "Results (test split)",
            _table(_transposed(results_table([*records, *failures], records, failures))),
            _note("Train/val loss of the kept epoch; mean ± std over seeds where there are several."),
        ),
        _section(
            "Accuracy against cost",
            image(
                "tradeoffs",
                plots.tradeoffs(points, seeds, headline),
                "accuracy and macro-F1 against trainable share and training time",
            ),
        ),
        _section(
            "Learning curves",
            image("learning_curves", plots.overlaid_curves(curves, headline[0]), "learning curves by method"),
        ),
        _section(
            "Runs",
            _facts(
                [(m, ", ".join(str(d) for d in dirs)) for m, dirs in runs.items()]
                + [(m, f"failed: {e}") for m, e in failures.items()]
            ),
        ),
    ]
    page = output / run_dir.COMPARE_HTML
    subtitle = f"{first.run.model} · {len(records)} method(s) · {seeds} seed(s) · {first.run.device}"
    run_dir.write_text(page, _page(f"Comparison: {first.run.dataset}", subtitle, sections))
    return page


def write_report(paths: list[Path], output: str | None = None) -> Path:
    """`lift report`: one run folder -> its report.html; one comparison folder -> its compare.html
    (or in `output`); several run folders -> a compare.html in `output` (default
    comparisons/<dataset>-<time>). Returns the page."""
    for path in paths:
        if not (path / run_dir.METRICS).is_file() and not (path / run_dir.COMPARISON).is_file():
            what = (
                "does not exist"
                if not path.exists()
                else f"holds neither a finished run ({run_dir.METRICS}) nor a comparison ({run_dir.COMPARISON})"
            )
            raise LiftError(f"{str(path)!r} {what}: pass a folder `lift run` or `lift compare` wrote")
    if len(paths) == 1 and (paths[0] / run_dir.METRICS).is_file():
        return write_run_report(paths[0])
    if len(paths) == 1:
        return write_compare_report(paths, output or paths[0])
    if any(not (p / run_dir.METRICS).is_file() for p in paths):
        raise LiftError("pass one comparison folder, or several run folders, not both")
    return write_compare_report(paths, run_dir.new_comparison_dir(output, run_dir.read_record(paths[0]).run.dataset))


def write_tune_report(study: Any, study_dir: Path, final_run: Path | None) -> Path:
    """tune.html beside a study: the trials (values, states, durations), and Optuna's own plots of
    the optimisation history, the pruned trials' curves and the parameters' importances."""
    import optuna

    image = _Images(study_dir)
    trials = study.get_trials(deepcopy=False)
    objective = study.user_attrs.get(
        "objective", "validation macro-F1"
    )  # studies older than the attribute maximised it
    note = f"{objective.capitalize()} of each trial's best epoch; the test split is used once, by the best configuration's run."
    sections = [
        _section(
            "Trials",
            _note(note),
            _table(_trial_rows(trials, objective)).replace("<table>", '<table class="wrap-head">', 1),
        )
    ]
    drawn = optuna.visualization.matplotlib
    for name, title, draw in (
        ("optimization_history", "Optimisation history", drawn.plot_optimization_history),
        (
            "intermediate_values",
            f"{objective.capitalize()} per epoch (pruned trials stop early)",
            drawn.plot_intermediate_values,
        ),
        ("param_importances", "Parameter importances (fANOVA)", drawn.plot_param_importances),
    ):
        sections.append(_section(title, _optuna_figure(image, name, draw, study)))
    if final_run is not None and (final_run / run_dir.METRICS).is_file():
        table = _table(comparison_table(run_dir.read_record(final_run)))
        note = _note(f"Run folder: {final_run} (report.html inside).")
        sections.append(_section("The best configuration, trained once more and tested", table, note))
    page = study_dir / "tune.html"
    best = study.best_trial
    summary = f"{len(trials)} trials; best: trial {best.number}, {objective} {best.value:.4f}"
    run_dir.write_text(page, _page(f"Study {study.study_name}", summary, sections))
    return page


def _trial_rows(trials: list[Any], objective: str) -> list[list[str]]:
    """One row per trial: its number, state, score, duration and the values it tried."""
    names = sorted({name for t in trials for name in t.params})
    rows = [
        [
            "trial",
            "state",
            objective.replace("validation", "val"),
            "duration (s)",
            *[n.split(".", 1)[-1].replace("_", " ") for n in names],
        ]
    ]
    for t in trials:
        ran = t.datetime_complete and t.datetime_start
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if ran else None
        score = "-" if t.value is None else f"{t.value:.4f}"
        rows.append(
            [
                str(t.number),
                t.state.name.lower(),
                score,
                "-" if duration is None else f"{duration:.0f}",
                *[_tune_value(t.params.get(n)) for n in names],
            ]
        )
    return rows


def _tune_value(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _optuna_figure(image: _Images, name: str, draw: Any, study: Any) -> str:
    """One of Optuna's matplotlib plots as an embedded image, or why it cannot be drawn yet."""
    import warnings

    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks these plots experimental
            axes = draw(study)
    except (ValueError, RuntimeError) as exc:  # e.g. importances need two completed trials
        return _note(f"Not drawn: {first_line(exc)}")
    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    figure.set_size_inches(10, 4.5)
    figure.tight_layout()  # Optuna leaves long parameter names cut at the left edge
    try:
        return image(name, figure, name.replace("_", " "))
    finally:
        plt.close(figure)
