"""Marker-aware Keras layers: MarkerSampling, MarkerExcite, SqueezeExcite, HeMISAbstraction.

All layers use ``keras.ops`` only and are registered for serialisation, so a saved ``.keras`` model
reloads without ``custom_objects``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

SAMPLING_MODES = ("zero", "dropout", "variable_ratio")


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerSampling(keras.layers.Layer):
    """Randomly removes available markers of each sample during training (Marker Sampling, MS).

    Inputs ``(image [B, H, W, K], availability [B, K])``; outputs the sampled pair. At training time
    every AVAILABLE marker of EVERY sample is kept independently with probability ``1 - rate``; if all
    of a sample's markers would be dropped, one of its available markers, chosen uniformly, is kept, so
    the network never sees an empty input. Dropped markers become zero images and 0 in the availability
    vector; missing markers are never resurrected.

    Modes:
        ``zero`` (MS): kept markers unchanged; identity at inference.
        ``dropout`` (MS-DO): kept markers scaled by ``1 / (1 - rate)`` at training; identity at inference.
        ``variable_ratio`` (MS-VR): kept markers scaled by ``1 / p`` with ``p`` = kept markers / K, at
        training AND inference (at inference ``p`` comes from the given availability).
    """

    def __init__(self, mode: str = "zero", rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if mode not in SAMPLING_MODES:
            raise ValueError(f"MarkerSampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"MarkerSampling rate must be in [0, 1), got {rate}")
        self.mode = mode
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _sample_mask(self, availability):
        keep = ops.cast(keras.random.uniform(ops.shape(availability), seed=self.seed_generator) >= self.rate, availability.dtype)
        keep = keep * availability
        # fallback: one available marker chosen uniformly (random scores, masked argmax)
        scores = keras.random.uniform(ops.shape(availability), seed=self.seed_generator) + 1.0
        scores = scores * availability
        fallback = ops.one_hot(ops.argmax(scores, axis=-1), ops.shape(availability)[-1], dtype=availability.dtype)
        fallback = fallback * availability
        empty = ops.cast(ops.sum(keep, axis=-1, keepdims=True) < 0.5, availability.dtype)
        return keep + empty * fallback

    def _ratio_scale(self, availability):
        k = ops.cast(ops.shape(availability)[-1], availability.dtype)
        p = ops.sum(availability, axis=-1, keepdims=True) / k
        return 1.0 / ops.maximum(p, 1.0 / k)

    def call(self, inputs, training=None):
        image, availability = inputs
        availability = ops.cast(availability, image.dtype)
        if training:
            mask = self._sample_mask(availability)
        else:
            mask = availability
        scale = ops.ones_like(mask[:, :1])
        if self.mode == "dropout" and training:
            scale = scale / (1.0 - self.rate)
        elif self.mode == "variable_ratio":
            scale = self._ratio_scale(mask)
        weights = mask * scale
        return image * _broadcast_channels(weights, len(image.shape)), mask

    def compute_output_shape(self, input_shape):
        return input_shape[0], input_shape[1]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(mode=self.mode, rate=self.rate, seed=self.seed)
        return cfg


def _broadcast_channels(weights, ndim: int):
    """Reshape [B, F] weights to [B, 1, ..., 1, F] for a tensor with ``ndim`` dims."""
    for _ in range(ndim - 2):
        weights = ops.expand_dims(weights, 1)
    return weights


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerExcite(keras.layers.Layer):
    """Marker Excite (ME): channel attention computed from the marker-availability vector.

    Inputs ``(features [B, ..., F], availability [B, K])``. The weights
    ``w = sigmoid(Dense_F(relu(Dense_H(v))))`` (biases in both layers, ``H = 2^K - 1`` by default)
    multiply the features, broadcast over space.
    """

    def __init__(self, hidden_units: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = hidden_units

    def build(self, input_shape):
        feat_shape, avail_shape = input_shape
        k = int(avail_shape[-1])
        f = int(feat_shape[-1])
        hidden = self.hidden_units or (2**k - 1)
        self.hidden = keras.layers.Dense(hidden, activation="relu", use_bias=True, name="hidden")
        self.gate = keras.layers.Dense(f, activation="sigmoid", use_bias=True, name="gate")
        self.hidden.build((None, k))
        self.gate.build((None, hidden))

    def attention(self, availability):
        """The per-channel weights [B, F] for an availability batch."""
        return self.gate(self.hidden(ops.cast(availability, self.compute_dtype)))

    def call(self, inputs):
        features, availability = inputs
        return features * _broadcast_channels(self.attention(availability), len(features.shape))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(hidden_units=self.hidden_units)
        return cfg


@keras.saving.register_keras_serializable(package="marker_excite")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation: global spatial mean -> Dense(F*ratio, relu) -> Dense(F, sigmoid), no biases."""

    def __init__(self, ratio: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"SqueezeExcite ratio must be in (0, 1], got {ratio}")
        self.ratio = float(ratio)

    def build(self, input_shape):
        f = int(input_shape[-1])
        hidden = max(1, int(math.ceil(f * self.ratio)))
        self.squeeze = keras.layers.Dense(hidden, activation="relu", use_bias=False, name="squeeze")
        self.excite = keras.layers.Dense(f, activation="sigmoid", use_bias=False, name="excite")
        self.squeeze.build((None, f))
        self.excite.build((None, hidden))

    def call(self, features):
        axes = tuple(range(1, len(features.shape) - 1))
        pooled = ops.mean(features, axis=axes)
        return features * _broadcast_channels(self.excite(self.squeeze(pooled)), len(features.shape))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(ratio=self.ratio)
        return cfg


@keras.saving.register_keras_serializable(package="marker_excite")
class HeMISAbstraction(keras.layers.Layer):
    """HeMIS abstraction: mean and variance of per-marker features over the AVAILABLE markers only.

    Inputs ``(features [B, K, ..., F], availability [B, K])``; output ``[B, ..., 2F]`` =
    concat(mean, variance). One available marker gives variance 0; no available marker gives zeros
    (never NaN).
    """

    def call(self, inputs):
        features, availability = inputs
        ndim = len(features.shape)
        w = ops.cast(availability, features.dtype)
        for _ in range(ndim - 2):
            w = ops.expand_dims(w, -1)
        count = ops.maximum(ops.sum(w, axis=1), 1.0)
        mean = ops.sum(features * w, axis=1) / count
        var = ops.sum(w * ops.square(features - ops.expand_dims(mean, 1)), axis=1) / count
        return ops.concatenate([mean, var], axis=-1)

    def compute_output_shape(self, input_shape):
        feat = input_shape[0]
        return (feat[0],) + tuple(feat[2:-1]) + (None if feat[-1] is None else 2 * feat[-1],)
