"""The report's figures on a real 20-class run (tweet_eval_emoji): labelled, titled, nothing overlapping."""

from __future__ import annotations

import itertools
import warnings

import pytest

from liftkit import plots, run_dir
from liftkit.pages import read_history
from liftkit.pipeline import run


@pytest.fixture(scope="module")
def emoji_run(tiny_models, tmp_path_factory):
    from liftkit.config import load_config

    cfg = load_config(
        None,
        {
            "model.name": str(tiny_models["bert"]),
            "data.dataset": "tweet_eval_emoji",
            "data.max_train_samples": 400,
            "data.max_eval_samples": 200,
            "data.max_length": 32,
            "train.epochs": 2,
            "train.batch_size": 32,
            "train.log_every": 2,
            "output_dir": str(tmp_path_factory.mktemp("emoji") / "run"),
        },
    )
    return run(cfg, log=lambda m: None).run_dir


def _figures(folder):
    record = run_dir.read_record(folder)
    steps, epochs = read_history(folder)
    return {
        "learning_curves": plots.learning_curves(
            steps, epochs, record.train.best_epoch, "tweet_eval_emoji: training and validation"
        ),
        "confusion_matrices": plots.confusion_matrices(record),
        "per_class": plots.per_class(record),
        "calibration": plots.reliability(run_dir.read_predictions(folder), record),
        "label_distribution": plots.label_distribution(record),
    }


def _shrunk(box, pixels=1.0):
    return box.expanded(1, 1).from_extents(box.x0 + pixels, box.y0 + pixels, box.x1 - pixels, box.y1 - pixels)


def test_every_axis_is_labelled_and_every_figure_says_which_split(emoji_run):
    for name, figure in _figures(emoji_run).items():
        assert figure.get_suptitle(), name
        assert any(word in figure.get_suptitle() for word in ("test", "validation", "train")), name
        for ax in figure.axes:
            for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
                shown = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
                if shown and axis.get_visible():
                    assert label, f"{name}: an axis with tick labels but no name"


def test_nothing_overlaps_at_20_classes_and_every_label_draws(emoji_run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = _figures(emoji_run)
        for figure in figures.values():
            plots.png(figure)  # draws every glyph
    assert not [w for w in caught if "Glyph" in str(w.message)]  # no emoji drawn as an empty box
    for name, figure in figures.items():
        renderer = figure.canvas.get_renderer()
        for ax in figure.axes:
            for axis in (ax.xaxis, ax.yaxis):
                boxes = [
                    _shrunk(t.get_window_extent(renderer))
                    for t in axis.get_ticklabels()
                    if t.get_visible() and t.get_text()
                ]
                assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2)), (
                    f"{name}: tick labels overlap"
                )
        panels = [_shrunk(ax.get_tightbbox(renderer), 2) for ax in figure.axes]
        assert not any(a.overlaps(b) for a, b in itertools.combinations(panels, 2)), f"{name}: panels overlap"
        assert len(figure.axes[0].get_yticklabels()) >= 20 or name in (
            "learning_curves",
            "calibration",
            "label_distribution",
        )


def test_emoji_labels_draw_as_themselves_or_by_their_unicode_names():
    assert plots.display_name("joy") == "joy"
    shown = plots.display_name("😍")
    assert shown == "😍" or shown == "smiling face with heart-shaped eyes"


def test_smoothing_follows_the_trend_without_lagging_at_the_start():
    assert plots.smooth([2.0, 2.0, 2.0]).tolist() == pytest.approx([2.0, 2.0, 2.0])  # debiased: no pull towards 0
    values = plots.smooth([1.0, 0.0] * 20)
    assert 0.3 < values[-1] < 0.7
