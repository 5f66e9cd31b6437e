import numpy as np
import pytest

from liftkit.evaluate import classification_metrics, majority_metrics


def test_metrics_match_hand_computed_values():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    m = classification_metrics(logits, labels, 2)
    assert m["accuracy"] == 0.75
    # class 0: P=2/3 R=1 F1=0.8; class 1: P=1 R=0.5 F1=2/3
    assert m["macro_precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["macro_recall"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["weighted_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    right, wrong = np.log(1 + np.exp(-2.0)), np.log(1 + np.exp(2.0))
    assert m["loss"] == pytest.approx((3 * right + wrong) / 4)


def test_absent_classes_count_as_zero_in_macro_averages():
    m = classification_metrics(np.array([[1.0, 0, 0]] * 2), np.array([0, 0]), 3)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == pytest.approx(1 / 3)


def test_majority_predicts_the_most_frequent_training_class():
    m = majority_metrics(np.array([2, 2, 1]), np.array([2, 1, 2, 2]), 3)
    assert m["accuracy"] == 0.75
