"""Marker Excite (ME): channel attention computed from the marker-availability vector."""

from __future__ import annotations

import keras
from keras import ops

from marker_excite.errors import UserInputError
from marker_excite.layers.common import GATE_DTYPE, broadcast_channels, seeded_glorot


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerExcite(keras.layers.Layer):
    """Marker Excite (ME): channel attention computed from the marker-availability vector.

    Inputs ``(features [B, ..., F], availability [B, K])``; output
    ``features * sigmoid(Dense_F(relu(Dense_H(availability))))`` broadcast over space, with biases in
    both dense layers and ``H = hidden_units`` (default ``2^K - 1``, the number of marker subsets).
    The gate is computed in float32 under any dtype policy (mixed precision: only the product with the
    features is in the compute dtype).
    """

    def __init__(self, hidden_units: int | None = None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if hidden_units is not None and int(hidden_units) < 1:
            raise UserInputError(f"MarkerExcite hidden_units must be >= 1; got {hidden_units}")
        self.hidden_units = None if hidden_units is None else int(hidden_units)
        self.seed = seed

    def build(self, input_shape):
        feat_shape, avail_shape = input_shape
        k, f = int(avail_shape[-1]), int(feat_shape[-1])
        hidden = self.hidden_units or (2**k - 1)
        self.hidden = keras.layers.Dense(
            hidden,
            activation="relu",
            use_bias=True,
            kernel_initializer=seeded_glorot(self.seed, 0),
            name="hidden",
            dtype=GATE_DTYPE,
        )
        self.gate = keras.layers.Dense(
            f,
            activation="sigmoid",
            use_bias=True,
            kernel_initializer=seeded_glorot(self.seed, 1),
            name="gate",
            dtype=GATE_DTYPE,
        )
        self.hidden.build((None, k))
        self.gate.build((None, hidden))

    def attention(self, availability):
        """The per-channel weights ``[B, F]`` (float32) for an availability batch ``[B, K]``."""
        return self.gate(self.hidden(ops.cast(availability, GATE_DTYPE)))

    def call(self, inputs):
        features, availability = inputs
        weights = ops.cast(self.attention(availability), features.dtype)
        return features * broadcast_channels(weights, len(features.shape))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(hidden_units=self.hidden_units, seed=self.seed)
        return cfg
