import numpy as np
import pytest

from liftkit.tasks.single_label import metrics as classification_metrics
from liftkit.tasks.single_label import reference as majority_metrics


def test_metrics_match_hand_computed_values():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    m = classification_metrics(logits, labels, ["neg", "pos"])
    s = m.scores
    assert s.accuracy == 0.75
    # class 0: P=2/3 R=1 F1=0.8; class 1: P=1 R=0.5 F1=2/3
    assert s.macro_precision == pytest.approx((2 / 3 + 1) / 2)
    assert s.macro_recall == pytest.approx(0.75)
    assert s.macro_f1 == pytest.approx((0.8 + 2 / 3) / 2)
    assert s.weighted_f1 == pytest.approx((0.8 + 2 / 3) / 2)
    right, wrong = np.log(1 + np.exp(-2.0)), np.log(1 + np.exp(2.0))
    assert s.loss == pytest.approx((3 * right + wrong) / 4)
    # per class, by label name, and the confusion matrix [true][predicted]
    assert m.per_class["neg"].precision == pytest.approx(2 / 3) and m.per_class["neg"].recall == 1.0
    assert m.per_class["pos"].f1 == pytest.approx(2 / 3) and m.per_class["pos"].support == 2
    assert m.confusion_matrix == [[2, 0], [1, 1]]


def test_absent_classes_count_as_zero_in_macro_averages():
    m = classification_metrics(np.array([[1.0, 0, 0]] * 2), np.array([0, 0]))
    assert m.scores.accuracy == 1.0 and m.scores.macro_f1 == pytest.approx(1 / 3)
    assert list(m.per_class) == ["0", "1", "2"] and m.per_class["2"].support == 0
    assert m.confusion_matrix == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_majority_predicts_the_most_frequent_training_class():
    m = majority_metrics(np.array([2, 2, 1]), np.array([2, 1, 2, 2]), ["a", "b", "c"])
    assert m.scores.accuracy == 0.75
    assert m.confusion_matrix == [[0, 0, 0], [0, 0, 1], [0, 0, 3]]
    assert m.timing is None  # nothing ran: no timing to report


def test_an_evaluation_pass_returns_the_predictions_behind_its_metrics(tiny_models):
    import torch

    from liftkit.batching import Padding, loader, tokenize
    from liftkit.config import DataConfig, ModelConfig
    from liftkit.data import load_splits
    from liftkit.evaluate import evaluate
    from liftkit.modeling import load_classifier, load_tokenizer

    cfg = ModelConfig(name=str(tiny_models["bert"]))
    tok = load_tokenizer(cfg)
    splits = load_splits(DataConfig(dataset="emotion", max_eval_samples=40))
    model = load_classifier(cfg, splits.label_names, tok)
    result = evaluate(
        model,
        loader(tokenize(splits.test, tok, 32), 8, Padding.of(tok), shuffle=False),
        torch.device("cpu"),
        splits.label_names,
    )
    assert result.labels.tolist() == splits.test.labels  # dataset order, not batch order
    assert np.allclose(result.probabilities.sum(-1), 1)
    predictions = result.probabilities.argmax(-1)
    matrix = np.zeros((6, 6), dtype=int)
    np.add.at(matrix, (result.labels, predictions), 1)
    assert result.metrics.confusion_matrix == matrix.tolist()
    assert result.metrics.scores.accuracy == float((predictions == result.labels).mean())
    assert list(result.metrics.per_class) == splits.label_names and result.metrics.timing.samples_per_s > 0


def test_ece_is_zero_for_a_calibrated_model_and_the_gap_for_an_overconfident_one():
    from liftkit.evaluate import calibration

    labels = np.zeros(10, dtype=np.int64)
    says_08 = np.tile([0.8, 0.2], (10, 1))
    labels_8_of_10 = labels.copy()
    labels_8_of_10[:2] = 1  # right on 8 rows of 10, as sure as 0.8: calibrated
    assert calibration(says_08, labels_8_of_10).ece == pytest.approx(0.0)
    says_09 = np.tile([0.9, 0.1], (10, 1))
    labels_6_of_10 = labels.copy()
    labels_6_of_10[:4] = 1  # says 0.9, right 60% of the time
    result = calibration(says_09, labels_6_of_10)
    assert result.ece == pytest.approx(0.3)
    assert result.counts.sum() == 10 and result.counts[13] == 10  # 0.9 falls in bin [0.867, 0.933)
    # two bins, weighted by their rows: 5 rows off by 0.3 and 5 rows off by 0.1 -> 0.2
    mixed = np.vstack([np.tile([0.9, 0.1], (5, 1)), np.tile([0.3, 0.7], (5, 1))])
    truth = np.array([0, 0, 0, 1, 1] + [1, 1, 1, 1, 0])  # 60% right at 0.9; 80% right at 0.7
    assert calibration(mixed, truth).ece == pytest.approx(0.5 * 0.3 + 0.5 * 0.1)


def test_confident_mistakes_are_the_wrong_rows_the_model_was_surest_of():
    from liftkit.tasks.single_label import mistakes as confident_mistakes

    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.05, 0.95]])
    labels = np.array([0, 0, 1, 0])  # rows 1, 2 and 3 are wrong
    found = confident_mistakes(probabilities, labels, ["a", "b", "c", "d"], ["neg", "pos"], k=2)
    assert [(m.text, m.label, m.predicted, m.probability) for m in found] == [
        ("d", "neg", "pos", 0.95),
        ("b", "neg", "pos", 0.7),
    ]


def test_every_split_metrics_carries_its_ece():
    logits = np.log(np.array([[0.9, 0.1], [0.9, 0.1]]))
    metrics = classification_metrics(logits, np.array([0, 1]))
    assert metrics.ece == pytest.approx(0.4)  # says 0.9, right half the time
