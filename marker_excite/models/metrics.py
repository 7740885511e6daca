"""Confusion-matrix based per-class F1 = 2TP / (2TP + FP + FN), accumulated over a whole set.

Convention: a class that is absent from the ground truth AND never predicted (TP + FP + FN = 0) has
F1 = 1.0 (nothing to find, nothing wrong), so results are never NaN. The paper does not discuss it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from marker_excite.errors import UserInputError


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``cm[t, p]`` = number of pixels of true class t predicted as p (int64 ``[n, n]``).

    ``y_true`` and ``y_pred`` are integer label arrays of the same size with values in ``[0, n_classes)``.
    """
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise UserInputError(f"y_true and y_pred differ in size: {t.size} vs {p.size} pixels")
    for what, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise UserInputError(f"{what} has labels in [{a.min()}, {a.max()}], expected 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def tp_fp_fn(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives per class of a confusion matrix."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 (float64 ``[n]``); 1.0 for a class absent from truth and prediction."""
    tp, fp, fn = tp_fp_fn(cm)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def precision_recall(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall (1.0 where undefined, as for F1)."""
    tp, fp, fn = tp_fp_fn(cm)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 1.0)
    return precision, recall


@keras.saving.register_keras_serializable(package="marker_excite")
class PerClassF1(keras.metrics.Metric):
    """Keras metric: confusion matrix accumulated over all batches; result = mean F1 of the foreground classes.

    ``y_true``: integer labels ``[B, h, w]``; ``y_pred``: logits or probabilities ``[B, h, w, n_classes]``
    (argmax taken). ``sample_weight`` (optional, broadcastable to ``y_true``) is a per-pixel 0/1 mask
    (0 ignores a pixel).
    """

    def __init__(self, n_classes: int, name: str = "mean_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        if int(n_classes) < 2:
            raise UserInputError(f"PerClassF1 needs n_classes >= 2 (background + classes), got {n_classes}")
        self.n_classes = int(n_classes)
        self.cm = self.add_variable(
            shape=(self.n_classes, self.n_classes), initializer="zeros", name="confusion_matrix", dtype="float64"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        n = self.n_classes
        t = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        p = ops.reshape(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), (-1,))
        weights = None
        if sample_weight is not None:
            weights = ops.reshape(ops.cast(ops.broadcast_to(sample_weight, ops.shape(y_true)), "float64"), (-1,))
        counts = ops.bincount(t * n + p, weights=weights, minlength=n * n)
        self.cm.assign_add(ops.reshape(ops.cast(counts[: n * n], "float64"), (n, n)))

    def _f1(self):
        tp = ops.diagonal(self.cm)
        denom = ops.sum(self.cm, axis=0) + ops.sum(self.cm, axis=1)  # = 2TP + FP + FN
        return ops.where(denom > 0, 2.0 * tp / ops.maximum(denom, 1.0), ops.ones_like(denom))

    def result(self):
        return ops.cast(ops.mean(self._f1()[1:]), "float32")

    def per_class(self) -> np.ndarray:
        """Per-class F1 of the accumulated matrix, background first (numpy ``[n_classes]``)."""
        return f1_from_confusion(self.confusion())

    def confusion(self) -> np.ndarray:
        """The accumulated confusion matrix (int64 numpy ``[n_classes, n_classes]``)."""
        return np.rint(ops.convert_to_numpy(self.cm)).astype(np.int64)

    def reset_state(self):
        self.cm.assign(ops.zeros_like(self.cm))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(n_classes=self.n_classes)
        return cfg
