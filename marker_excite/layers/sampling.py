"""Marker Sampling (MS, MS-DO, MS-VR): random removal of available markers during training."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from marker_excite.errors import UserInputError
from marker_excite.layers.common import broadcast_channels

#: Modes of :class:`MarkerSampling`: MS, MS-DO and MS-VR of the paper.
SAMPLING_MODES: tuple[str, ...] = ("zero", "dropout", "variable_ratio")


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerSampling(keras.layers.Layer):
    """Marker Sampling (MS): randomly removes available markers of each sample during training.

    Inputs ``(image [B, H, W, K], availability [B, K])``; returns the sampled pair
    ``(image, availability)``. At training time every AVAILABLE marker of EVERY sample is kept
    independently with probability ``1 - rate``, and a draw that keeps nothing is rejected and drawn
    again, so the network never sees an empty input. With the paper's ``rate = 0.5`` this makes every
    non-empty subset of a sample's available markers exactly equally likely (``1 / (2^a - 1)`` for
    ``a`` available markers: "all marker combinations could be sampled with the same probability");
    other rates give the same Bernoulli-with-rejection distribution. The rejection is exact and
    graph-compatible: the number of kept markers is drawn from the binomial distribution conditioned
    on ``>= 1``, then that many of the available markers are chosen uniformly.
    Dropped markers become zero images and 0 in the availability vector; a missing marker is never
    resurrected. A sample without any available marker stays empty.

    Modes:
        ``"zero"`` (MS): kept markers unchanged; identity at inference.
        ``"dropout"`` (MS-DO): kept markers scaled by ``1 / (1 - rate)`` at training only.
        ``"variable_ratio"`` (MS-VR): markers scaled by ``1 / p``, ``p`` = present markers / K, at
        training (after sampling) AND at inference (``p`` from the given availability).

    At inference, unavailable channels are also zeroed (``image * availability``), which is the
    identity for inputs that follow the package's contract (missing markers are zero channels).

    Under mixed precision the mask and its scales are computed in float32 (the returned availability is
    float32) and only the image keeps the layer's compute dtype.
    """

    def __init__(self, mode: str = "zero", rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if mode not in SAMPLING_MODES:
            raise UserInputError(f"MarkerSampling mode must be one of {', '.join(SAMPLING_MODES)}; got {mode!r}")
        if not 0.0 <= float(rate) < 1.0:
            raise UserInputError(f"MarkerSampling rate must be in [0, 1); got {rate}")
        self.mode = mode
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def sample_mask(self, availability):
        """A training-time keep mask ``[B, K]`` (0/1) drawn independently for every sample (see class doc)."""
        if self.rate == 0.0:
            return availability
        k = int(availability.shape[-1])
        n_available = ops.cast(ops.round(ops.sum(availability, axis=-1)), "int32")
        logits = ops.take(ops.convert_to_tensor(self._count_logits(k, self.rate)), n_available, axis=0)
        n_keep = ops.cast(keras.random.categorical(logits, 1, seed=self.seed_generator), "int32")  # [B, 1]
        # a uniformly random order of the available markers (unavailable ones last), then keep the first n
        scores = ops.where(
            availability > 0.5, keras.random.uniform(ops.shape(availability), seed=self.seed_generator), -1.0
        )
        rank = ops.argsort(ops.argsort(-scores, axis=-1), axis=-1)
        return ops.cast(rank < n_keep, availability.dtype) * availability

    @staticmethod
    def _count_logits(k: int, rate: float):
        """Log-probabilities ``[K + 1, K + 1]`` of keeping ``n`` of ``a`` available markers (row ``a``):
        binomial(a, 1 - rate) conditioned on ``n >= 1`` (row 0: keep none)."""
        table = np.full((k + 1, k + 1), -1e9, dtype="float32")
        table[0, 0] = 0.0
        for a in range(1, k + 1):
            for n in range(1, a + 1):
                table[a, n] = math.log(math.comb(a, n)) + n * math.log1p(-rate) + (a - n) * math.log(rate)
        return table

    @staticmethod
    def ratio_scale(mask):
        """MS-VR scale ``1 / p`` per sample, ``p`` = present markers / K (``[B, 1]``; 1 for empty rows)."""
        k = ops.cast(ops.shape(mask)[-1], mask.dtype)
        p = ops.sum(mask, axis=-1, keepdims=True) / k
        return ops.where(p > 0.0, 1.0 / ops.maximum(p, 1.0 / k), ops.ones_like(p))

    def call(self, inputs, training=None):
        image, availability = inputs
        availability = ops.cast(availability, "float32")
        mask = self.sample_mask(availability) if training else availability
        weights = mask
        if self.mode == "dropout" and training:
            weights = mask / (1.0 - self.rate)
        elif self.mode == "variable_ratio":
            weights = mask * self.ratio_scale(mask)
        return image * broadcast_channels(ops.cast(weights, image.dtype), len(image.shape)), mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0]), tuple(input_shape[1])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(mode=self.mode, rate=self.rate, seed=self.seed)
        return cfg
