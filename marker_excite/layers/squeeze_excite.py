"""Squeeze-and-Excitation (SE): channel attention computed from the features themselves."""

from __future__ import annotations

import math

import keras
from keras import ops

from marker_excite.errors import UserInputError
from marker_excite.layers.common import GATE_DTYPE, broadcast_channels, seeded_glorot


@keras.saving.register_keras_serializable(package="marker_excite")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation: spatial mean -> Dense(ceil(F*ratio), relu) -> Dense(F, sigmoid) -> multiply.

    Both dense layers have no bias (as in the paper's MS-SE). The mean and the gate are computed in
    float32 under any dtype policy (mixed precision: only the product with the features is not).
    """

    def __init__(self, ratio: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < float(ratio) <= 1.0:
            raise UserInputError(f"SqueezeExcite ratio must be in (0, 1]; got {ratio}")
        self.ratio = float(ratio)
        self.seed = seed

    def build(self, input_shape):
        f = int(input_shape[-1])
        hidden = max(1, int(math.ceil(f * self.ratio)))
        self.squeeze = keras.layers.Dense(
            hidden,
            activation="relu",
            use_bias=False,
            kernel_initializer=seeded_glorot(self.seed, 0),
            name="squeeze",
            dtype=GATE_DTYPE,
        )
        self.excite = keras.layers.Dense(
            f,
            activation="sigmoid",
            use_bias=False,
            kernel_initializer=seeded_glorot(self.seed, 1),
            name="excite",
            dtype=GATE_DTYPE,
        )
        self.squeeze.build((None, f))
        self.excite.build((None, hidden))

    def call(self, features):
        pooled = ops.mean(ops.cast(features, GATE_DTYPE), axis=tuple(range(1, len(features.shape) - 1)))
        weights = ops.cast(self.excite(self.squeeze(pooled)), features.dtype)
        return features * broadcast_channels(weights, len(features.shape))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(ratio=self.ratio, seed=self.seed)
        return cfg
