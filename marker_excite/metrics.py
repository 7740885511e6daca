"""Confusion-matrix based per-class F1 = 2TP / (2TP + FP + FN), accumulated over a whole set."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``cm[t, p]`` = number of pixels with true class t predicted as p (int64)."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in size: {t.size} vs {p.size}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def tp_fp_fn(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives per class."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class F1. A class absent from both truth and prediction scores 1.0 (nothing to find, nothing wrong)."""
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
    """Keras metric: confusion matrix over all batches; result = mean F1 over the foreground classes.

    ``y_true`` integer labels [B, h, w], ``y_pred`` logits or probabilities [B, h, w, n_classes].
    """

    def __init__(self, n_classes: int, name: str = "mean_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)
        self.cm = self.add_variable(shape=(self.n_classes, self.n_classes), initializer="zeros", name="cm", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        p = ops.reshape(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), (-1,))
        idx = t * self.n_classes + p
        counts = ops.bincount(idx, minlength=self.n_classes * self.n_classes)
        counts = ops.reshape(ops.cast(counts[: self.n_classes * self.n_classes], "float32"), (self.n_classes, self.n_classes))
        self.cm.assign(self.cm + counts)

    def _f1(self):
        cm = self.cm
        tp = ops.diagonal(cm)
        fp = ops.sum(cm, axis=0) - tp
        fn = ops.sum(cm, axis=1) - tp
        denom = 2 * tp + fp + fn
        return ops.where(denom > 0, 2 * tp / ops.maximum(denom, 1.0), ops.ones_like(denom))

    def result(self):
        return ops.mean(self._f1()[1:])

    def per_class(self) -> np.ndarray:
        """Per-class F1 (background first) as numpy."""
        return f1_from_confusion(np.asarray(keras.ops.convert_to_numpy(self.cm)).astype(np.int64))

    def reset_state(self):
        self.cm.assign(ops.zeros_like(self.cm))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(n_classes=self.n_classes)
        return cfg
