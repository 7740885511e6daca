"""Loss weights, weighted cross-entropy and confusion-matrix F1 against hand-computed values."""

import math

import keras
import numpy as np
import pytest

from marker_excite.errors import UserInputError
from marker_excite.models.losses import WeightedCrossEntropy, log_class_weights
from marker_excite.models.metrics import PerClassF1, confusion_matrix, f1_from_confusion, precision_recall, tp_fp_fn


def test_log_class_weights_hand_values():
    w = log_class_weights([900, 90, 10])
    n = 1000
    expected = [math.log(math.e + n / (3 * 900)), math.log(math.e + n / (3 * 90)), math.log(math.e + n / (3 * 10))]
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert w.dtype == np.float32 and np.all(w >= 1.0) and w[2] > w[1] > w[0]


def test_log_class_weights_absent_class_and_errors():
    w = log_class_weights([80, 0, 20])
    assert w[1] == w[2]  # absent class gets the rarest present class's weight
    for bad in ([10], [[1, 2]], [5, -1], [0, 0], [1, np.nan]):
        with pytest.raises(UserInputError, match="class pixel counts"):
            log_class_weights(bad)


def test_weighted_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 3, 4)).astype("int32")
    weights = np.array([1.0, 2.5, 4.0], "float32")
    loss = float(WeightedCrossEntropy(weights)(labels, logits))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    assert loss == pytest.approx(float(np.mean(weights[labels] * ce)), rel=1e-5)
    unweighted = float(WeightedCrossEntropy([1, 1, 1])(labels, logits))
    assert unweighted == pytest.approx(float(ce.mean()), rel=1e-5)


def test_weighted_cross_entropy_config_round_trip():
    loss = WeightedCrossEntropy([1.0, 3.0])
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, WeightedCrossEntropy) and clone.class_weights == [1.0, 3.0]
    with pytest.raises(UserInputError, match="class weights"):
        WeightedCrossEntropy([1.0])


def test_confusion_matrix_and_f1_hand_values():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0])
    cm = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    tp, fp, fn = tp_fp_fn(cm)
    np.testing.assert_array_equal(tp, [2, 1, 2])
    np.testing.assert_array_equal(fp, [1, 1, 1])
    np.testing.assert_array_equal(fn, [1, 1, 1])
    np.testing.assert_allclose(f1_from_confusion(cm), [4 / 6, 2 / 4, 4 / 6])
    precision, recall = precision_recall(cm)
    np.testing.assert_allclose(precision, [2 / 3, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [2 / 3, 1 / 2, 2 / 3])


def test_f1_absent_class_conventions():
    # class 2 absent and never predicted -> 1.0; class 1 absent but predicted -> 0.0
    cm = confusion_matrix([0, 0, 0], [0, 1, 0], 3)
    np.testing.assert_allclose(f1_from_confusion(cm), [0.8, 0.0, 1.0])
    with pytest.raises(UserInputError, match="labels in"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(UserInputError, match="differ in size"):
        confusion_matrix([0, 1], [0], 3)


def test_per_class_f1_metric_accumulates_over_batches():
    rng = np.random.default_rng(1)
    metric = PerClassF1(3)
    all_true, all_pred = [], []
    for _ in range(4):
        y_true = rng.integers(0, 3, size=(2, 5, 5))
        logits = rng.normal(size=(2, 5, 5, 3)).astype("float32")
        metric.update_state(y_true, logits)
        all_true.append(y_true)
        all_pred.append(logits.argmax(-1))
    cm = confusion_matrix(np.concatenate(all_true), np.concatenate(all_pred), 3)
    np.testing.assert_array_equal(metric.confusion(), cm)
    f1 = f1_from_confusion(cm)
    np.testing.assert_allclose(metric.per_class(), f1)
    assert float(metric.result()) == pytest.approx(f1[1:].mean(), rel=1e-6)
    metric.reset_state()
    assert metric.confusion().sum() == 0 and float(metric.result()) == 1.0


def test_per_class_f1_sample_weight_masks_pixels_and_config():
    metric = PerClassF1(2, name="f1")
    y_true = np.array([[1, 1, 0, 0]])
    logits = np.array([[[0, 1], [1, 0], [1, 0], [0, 1]]], "float32")  # pred 1, 0, 0, 1
    metric.update_state(y_true, logits, sample_weight=np.array([[1, 0, 1, 1]]))
    np.testing.assert_array_equal(metric.confusion(), [[1, 1], [0, 1]])
    assert float(metric.result()) == pytest.approx(2 / 3)
    clone = PerClassF1.from_config(metric.get_config())
    assert clone.n_classes == 2 and clone.name == "f1"
    with pytest.raises(UserInputError, match="n_classes"):
        PerClassF1(1)
