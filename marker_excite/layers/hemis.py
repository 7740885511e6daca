"""The layers of HeMIS: per-marker channel selection, stacking of the backends, and the abstraction."""

from __future__ import annotations

import keras
from keras import ops

from marker_excite.layers.common import GATE_DTYPE


@keras.saving.register_keras_serializable(package="marker_excite")
class HeMISAbstraction(keras.layers.Layer):
    """HeMIS abstraction: mean and variance of per-marker features over the AVAILABLE markers only.

    Inputs ``(features [B, K, ..., F], availability [B, K])``; output ``[B, ..., 2F]`` =
    ``concat(mean, variance)`` (population variance). One available marker gives variance 0; a sample
    without available markers gives zeros (never NaN). The moments are computed in float32 under any
    dtype policy and returned in the layer's compute dtype.
    """

    def call(self, inputs):
        features, availability = inputs
        features = ops.cast(features, GATE_DTYPE)
        w = ops.cast(availability, GATE_DTYPE)
        for _ in range(len(features.shape) - 2):
            w = ops.expand_dims(w, -1)
        count = ops.maximum(ops.sum(w, axis=1), 1.0)
        mean = ops.sum(features * w, axis=1) / count
        var = ops.sum(w * ops.square(features - ops.expand_dims(mean, 1)), axis=1) / count
        return ops.cast(ops.concatenate([mean, var], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        feat = tuple(input_shape[0])
        return (feat[0],) + feat[2:-1] + (None if feat[-1] is None else 2 * feat[-1],)


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerChannel(keras.layers.Layer):
    """Selects channel ``index`` of the last axis, keeping a length-1 channel axis."""

    def __init__(self, index: int, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, x):
        return x[..., self.index : self.index + 1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(index=self.index)
        return cfg


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerStack(keras.layers.Layer):
    """Stacks K per-marker tensors ``[B, ..., F]`` into ``[B, K, ..., F]``."""

    def call(self, inputs):
        return ops.stack(list(inputs), axis=1)

    def compute_output_shape(self, input_shape):
        first = tuple(input_shape[0])
        return (first[0], len(input_shape)) + first[1:]
