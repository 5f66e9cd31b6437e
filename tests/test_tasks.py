"""Tasks: what their metrics, decisions, thresholds and reference rows are, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from liftkit.errors import LiftError
from liftkit.tasks import TASKS, task_named
from liftkit.tasks.multi_label import MULTI_LABEL

# 4 rows, 3 labels; row 3 carries no label at all
Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32)
P = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1], [0.8, 0.3, 0.2], [0.1, 0.1, 0.3]])


def _logits(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_every_task_is_registered_under_its_name_and_problem_type():
    assert set(TASKS) == {"single_label", "multi_label", "regression"}
    assert task_named(None).name == "single_label"  # runs written before tasks existed
    assert MULTI_LABEL.problem_type == "multi_label_classification"
    with pytest.raises(LiftError, match="unknown to this liftkit"):
        task_named("ranking")


def test_multi_label_metrics_match_hand_computed_values():
    m = MULTI_LABEL.metrics(_logits(P), Y, ["a", "b", "c"], None)  # thresholds 0.5
    # decided: [1,0,1], [0,1,0], [1,0,0], [0,0,0] -> one miss (row 2, label b)
    s = m.scores
    assert s.accuracy == 0.75  # subset accuracy: rows 0, 1, 3 exactly right
    assert s.hamming_loss == pytest.approx(1 / 12)
    assert s.micro_f1 == pytest.approx(2 * 4 / (2 * 4 + 0 + 1))  # tp 4, fp 0, fn 1
    assert s.macro_f1 == pytest.approx((1.0 + 2 / 3 + 1.0) / 3)  # b: p 1, r 1/2
    assert s.samples_f1 == pytest.approx((1 + 1 + 2 / 3 + 1) / 4)  # the empty row answered empty counts as right
    assert m.per_class["b"].support == 2 and m.per_class["b"].recall == 0.5 and m.per_class["b"].threshold == 0.5
    assert m.confusion_matrix == []  # no confusion matrix where it means nothing
    bce = -np.mean(Y * np.log(P) + (1 - Y) * np.log(1 - P))
    assert s.loss == pytest.approx(bce, rel=1e-6)
    assert s.macro_roc_auc == pytest.approx(1.0)  # every label's positives outrank its negatives
    assert 0 < s.label_ranking_ap <= 1


def test_multi_label_decisions_use_each_labels_own_threshold():
    decided = MULTI_LABEL.decide(P, [0.95, 0.25, 0.25])
    assert decided.tolist() == [[False, False, True], [False, True, False], [False, True, False], [False, False, True]]
    answers = MULTI_LABEL.answer(P[:2], ["a", "b", "c"], [0.95, 0.25, 0.25])
    assert answers[0]["labels"] == ["c"] and answers[1]["labels"] == ["b"]
    assert answers[0]["probabilities"] == pytest.approx({"a": 0.9, "b": 0.2, "c": 0.6})


def test_tuned_thresholds_maximise_each_labels_f1_on_the_split_given():
    probs = np.array([[0.9, 0.3], [0.35, 0.2], [0.3, 0.6], [0.1, 0.1], [0.32, 0.4]])
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 1]], dtype=np.float32)
    chosen = MULTI_LABEL.thresholds("tuned", ["a", "b"], lambda: (probs, y), 1)
    # a: any threshold in (0.32, 0.35] catches both positives and no negative; the one nearest 0.5 is 0.35
    # b: (0.3, 0.4] catches both; nearest 0.5: 0.4
    assert chosen == [0.35, 0.4]
    # a label with fewer validation positives than the floor keeps 0.5
    assert MULTI_LABEL.thresholds("tuned", ["a", "b"], lambda: (probs, y), 3) == [0.5, 0.5]
    assert MULTI_LABEL.thresholds(0.3, ["a", "b"], lambda: pytest.fail("no tuning asked"), 1) == [0.3, 0.3]
    assert MULTI_LABEL.thresholds({"b": 0.7}, ["a", "b"], lambda: pytest.fail("no tuning asked"), 1) == [0.5, 0.7]
    with pytest.raises(LiftError, match="'z'"):
        MULTI_LABEL.thresholds({"z": 0.7}, ["a", "b"], lambda: (probs, y), 1)


def test_single_label_needs_no_threshold_and_never_looks_at_validation():
    assert (
        TASKS["single_label"].thresholds(
            "tuned", ["a", "b"], lambda: pytest.fail("argmax needs no validation pass"), 5
        )
        is None
    )


def test_the_multi_label_reference_predicts_the_most_frequent_training_set():
    train = np.array([[0, 1, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    m = MULTI_LABEL.reference(train, Y, ["a", "b", "c"])
    # every test row gets {b}: right on row 1 only
    assert m.scores.accuracy == 0.25
    assert m.per_class["b"].precision == 0.5 and m.per_class["a"].recall == 0.0
    assert m.scores.macro_roc_auc == pytest.approx(0.5)  # constant probabilities rank nothing
    assert m.timing is None


def test_multi_label_mistakes_are_the_wrong_sets_surest_first():
    names = ["a", "b", "c"]
    found = MULTI_LABEL.mistakes(P, Y, ["r0", "r1", "r2", "r3"], names, None, 5)
    # row 2 missed b (p 0.3, so 0.7 sure of "no"); nothing else is wrong at 0.5
    assert [(m.text, m.label, m.predicted, m.probability) for m in found] == [("r2", "a, b", "a", 0.7)]
    none = MULTI_LABEL.mistakes(np.array([[0.9, 0.1, 0.1]]), np.zeros((1, 3)), ["x"], names, None, 5)
    assert none[0].label == "(none)" and none[0].predicted == "a"


def test_pooled_reliability_counts_every_decision():
    confidence, correct = MULTI_LABEL.reliability(P, Y)
    assert len(confidence) == P.size and confidence.min() >= 0.5
    assert correct.sum() == P.size - 1  # the one wrong decision: row 2, label b


def test_export_agreement_counts_decisions_at_the_thresholds():
    moved = P.copy()
    moved[0, 2] = 0.45  # crosses 0.5: one of 12 decisions changes
    assert MULTI_LABEL.agreement(P, moved, None) == pytest.approx(11 / 12)
    assert MULTI_LABEL.agreement(P, moved, [0.5, 0.5, 0.4]) == 1.0  # below the moved value at its own threshold
