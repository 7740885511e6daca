"""Weighted cross-entropy with the paper's logarithmic class weights."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


def log_class_weights(counts, eps: float = math.e) -> np.ndarray:
    """Class weights ``W_c = ln(eps + N / (C * n_c))`` from pixel counts ``[1 + C]`` (background first).

    ``N`` is the total number of labelled pixels and ``C`` the number of entries (background included).
    With ``eps = e`` every weight is >= 1. A class with no pixel gets the weight of the rarest present class.
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size < 2:
        raise ValueError(f"class counts must be a vector [background, class1, ...], got shape {n.shape}")
    if (n < 0).any() or n.sum() <= 0:
        raise ValueError(f"class counts must be non-negative with a positive total, got {n.tolist()}")
    present = n > 0
    ratio = np.zeros_like(n)
    ratio[present] = n.sum() / (n.size * n[present])
    if not present.all():
        ratio[~present] = ratio[present].max()
    return np.log(eps + ratio).astype(np.float32)


@keras.saving.register_keras_serializable(package="marker_excite")
class WeightedCrossEntropy(keras.losses.Loss):
    """Mean over pixels of ``W[label] * CE(softmax(logits), label)``; labels are integer maps [B, h, w]."""

    def __init__(self, class_weights, name: str = "weighted_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in np.asarray(class_weights).ravel()]

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        ce = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        weights = ops.take(ops.convert_to_tensor(self.class_weights, dtype=ce.dtype), labels)
        return ce * weights

    def get_config(self):
        cfg = super().get_config()
        cfg.update(class_weights=self.class_weights)
        return cfg
