"""The training loss: class weights, label smoothing and focal loss, as their formulas say."""

from __future__ import annotations

import math

import pytest
import torch

from liftkit.config import load_config
from liftkit.errors import LiftError
from liftkit.losses import class_weights, focal_loss
from liftkit.losses import single_label_criterion as criterion
from liftkit.pipeline import run

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0], [1.0, 1.0, 1.0]])
LABELS = torch.tensor([0, 1, 2, 0])


def _p(row: int, label: int) -> float:
    z = LOGITS[row]
    return math.exp(z[label]) / sum(math.exp(v) for v in z)


def _train(**settings):
    return load_config(None, {f"train.{k}": v for k, v in settings.items()}).train


def test_balanced_weights_give_every_class_the_same_total_weight():
    labels = [0] * 6 + [1] * 3 + [2] * 1
    weights = class_weights("balanced", ["a", "b", "c"], labels)
    assert weights.tolist() == pytest.approx([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])
    assert [weights[c].item() * labels.count(c) for c in range(3)] == pytest.approx([10 / 3] * 3)
    assert class_weights("balanced", ["a", "b", "c", "d"], labels)[3] == 0  # no training row: nothing to weigh
    assert class_weights({"b": 2.5}, ["a", "b", "c"], labels).tolist() == [1.0, 2.5, 1.0]
    assert class_weights("none", ["a", "b"], labels) is None


def test_weighted_cross_entropy_is_the_weighted_mean_of_the_rows_losses():
    labels = [0, 0, 0, 1, 2, 2]
    loss = criterion(_train(class_weights="balanced"), ["a", "b", "c"], labels)(LOGITS, LABELS)
    w = [6 / 9, 6 / 3, 6 / 6]  # n / (classes * count) for counts 3, 1, 2
    rows = [-math.log(_p(i, int(y))) for i, y in enumerate(LABELS)]
    expected = sum(w[int(y)] * r for y, r in zip(LABELS, rows)) / sum(w[int(y)] for y in LABELS)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    plain = criterion(_train(), ["a", "b", "c"], labels)(LOGITS, LABELS)
    assert plain.item() == pytest.approx(sum(rows) / 4, rel=1e-6)


def test_label_smoothing_spreads_the_target():
    eps = 0.1
    loss = criterion(_train(label_smoothing=eps), ["a", "b", "c"], [0, 1, 2])(LOGITS, LABELS)
    rows = [
        -(1 - eps) * math.log(_p(i, int(y))) - eps / 3 * sum(math.log(_p(i, c)) for c in range(3))
        for i, y in enumerate(LABELS)
    ]
    assert loss.item() == pytest.approx(sum(rows) / 4, rel=1e-6)


def test_focal_loss_down_weights_what_the_model_already_gets_right():
    gamma = 2.0
    loss = criterion(_train(loss="focal", focal_gamma=gamma), ["a", "b", "c"], [0, 1, 2])(LOGITS, LABELS)
    rows = [-((1 - _p(i, int(y))) ** gamma) * math.log(_p(i, int(y))) for i, y in enumerate(LABELS)]
    assert loss.item() == pytest.approx(sum(rows) / 4, rel=1e-6)
    assert focal_loss(LOGITS, LABELS, 0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(LOGITS, LABELS).item()
    )
    w = torch.tensor([1.0, 2.0, 3.0])
    weighted = focal_loss(LOGITS, LABELS, gamma, w)
    assert weighted.item() == pytest.approx(
        sum(w[int(y)].item() * r for y, r in zip(LABELS, rows)) / sum(w[int(y)].item() for y in LABELS), rel=1e-6
    )


def test_focal_loss_has_finite_gradients_where_the_model_is_certain():
    logits = torch.tensor([[40.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)  # row 0: p_y == 1 in float32
    focal_loss(logits, torch.tensor([0, 1]), 0.5).backward()
    assert torch.isfinite(logits.grad).all()


def test_bad_loss_settings_are_refused_in_one_line_each():
    with pytest.raises(LiftError) as caught:
        load_config(None, {"train.loss": "hinge", "train.label_smoothing": 1.5, "train.class_weights": "rare"})
    message = str(caught.value)
    assert "train.loss='hinge': use auto, cross_entropy, focal, huber, mse" in message
    assert "train.label_smoothing=1.5 must lie in [0, 1)" in message
    assert "train.class_weights='rare': use none, balanced or a mapping {label: weight}" in message
    with pytest.raises(LiftError, match="label_smoothing applies to the cross_entropy loss"):
        load_config(None, {"train.loss": "focal", "train.label_smoothing": 0.1})
    with pytest.raises(LiftError, match="not among the labels"):
        class_weights({"joyful": 2.0}, ["joy", "sadness"], [0, 1])


def test_class_weights_change_training_and_come_from_yaml_or_the_command_line(tiny_run_config, tmp_path):
    plain = run(tiny_run_config(**{"train.epochs": 1, "output_dir": str(tmp_path / "plain")}), log=lambda m: None)
    weighted = run(
        tiny_run_config(
            **{"train.epochs": 1, "train.class_weights": {"surprise": 5.0}, "output_dir": str(tmp_path / "w")}
        ),
        log=lambda m: None,
    )
    assert weighted.record.train.history[0].train_loss != pytest.approx(
        plain.record.train.history[0].train_loss, rel=1e-4
    )
    reread = load_config(weighted.run_dir / "config.yaml")  # the resolved config keeps the mapping
    assert reread.train.class_weights == {"surprise": 5.0}


def test_multi_label_loss_is_binary_cross_entropy_per_label_with_balanced_pos_weight():
    import numpy as np

    from liftkit.losses import multi_label_criterion, pos_weights

    targets = np.array([[1, 0], [0, 0], [0, 1], [1, 0]], dtype=np.float32)  # a: 2 of 4 positive, b: 1 of 4
    assert pos_weights("balanced", ["a", "b"], targets).tolist() == [1.0, 3.0]  # negatives / positives
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0], [-1.0, 1.5], [0.0, -2.0]])
    y = torch.from_numpy(targets)

    def bce(z: float, t: float, w: float = 1.0) -> float:
        p = 1 / (1 + math.exp(-z))
        return -(w * t * math.log(p) + (1 - t) * math.log(1 - p))

    plain = sum(bce(logits[i, j].item(), targets[i, j]) for i in range(4) for j in range(2)) / 8
    assert multi_label_criterion(_train(), ["a", "b"], targets)(logits, y).item() == pytest.approx(plain, rel=1e-6)
    weighted = sum(bce(logits[i, j].item(), targets[i, j], [1.0, 3.0][j]) for i in range(4) for j in range(2)) / 8
    assert multi_label_criterion(_train(class_weights="balanced"), ["a", "b"], targets)(
        logits, y
    ).item() == pytest.approx(weighted, rel=1e-6)
    gamma = 2.0

    def focal(z: float, t: float) -> float:
        p = 1 / (1 + math.exp(-z))
        p_t = p if t else 1 - p
        return -((1 - p_t) ** gamma) * math.log(p_t)

    expected = sum(focal(logits[i, j].item(), targets[i, j]) for i in range(4) for j in range(2)) / 8
    focal_loss_value = multi_label_criterion(_train(loss="focal", focal_gamma=gamma), ["a", "b"], targets)(
        logits, y
    ).item()
    assert focal_loss_value == pytest.approx(expected, rel=1e-6)
