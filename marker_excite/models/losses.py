"""Weighted cross-entropy with the paper's logarithmic class weights."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from marker_excite.errors import UserInputError


def log_class_weights(counts, eps: float = math.e) -> np.ndarray:
    """Class weights ``W_c = ln(eps + N / (C * n_c))`` from pixel counts ``[1 + C]`` (background first).

    ``counts`` are training-set pixel counts with background counted per pixel (a pixel of no class),
    ``N`` is their total and ``C`` the number of entries (background included). With ``eps = e`` every
    weight is >= 1. A class without any pixel gets the weight of the rarest present class (it never
    occurs in the labels, so the value does not enter the loss). Returns float32 ``[1 + C]``.
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size < 2:
        raise UserInputError(f"class pixel counts must be a vector [background, class1, ...], got shape {n.shape}")
    if not np.isfinite(n).all() or (n < 0).any() or n.sum() <= 0:
        raise UserInputError(
            f"class pixel counts must be finite, non-negative, with a positive total; got {n.tolist()}"
        )
    present = n > 0
    ratio = np.zeros_like(n)
    ratio[present] = n.sum() / (n.size * n[present])
    ratio[~present] = ratio[present].max()
    return np.log(eps + ratio).astype(np.float32)


@keras.saving.register_keras_serializable(package="marker_excite")
class WeightedCrossEntropy(keras.losses.Loss):
    """Mean over pixels of ``W[label] * CE(softmax(logits), label)``.

    ``y_true``: integer label maps ``[B, h, w]`` (0 = background); ``y_pred``: logits ``[B, h, w, 1 + C]``.
    """

    def __init__(self, class_weights, name: str = "weighted_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        weights = np.asarray(class_weights, dtype=np.float64).ravel()
        if weights.size < 2 or not np.isfinite(weights).all() or (weights < 0).any():
            raise UserInputError(f"class weights must be >= 2 finite non-negative values, got {weights.tolist()}")
        self.class_weights = [float(w) for w in weights]

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        ce = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        weights = ops.take(ops.convert_to_tensor(self.class_weights, dtype=ce.dtype), labels)
        return ce * weights

    def get_config(self):
        cfg = super().get_config()
        cfg.update(class_weights=self.class_weights)
        return cfg
