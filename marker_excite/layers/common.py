"""Helpers shared by the marker-aware layers (``keras.ops`` only)."""

from __future__ import annotations

import keras
from keras import ops

#: The dtype of the attention gates (ME, SE) and the HeMIS moments under every dtype policy: small
#: tensors whose precision matters more than their cost (mixed precision computes only the big
#: convolutions in bfloat16 / float16).
GATE_DTYPE = "float32"


def broadcast_channels(weights, ndim: int):
    """Reshape per-channel weights ``[B, F]`` to ``[B, 1, ..., 1, F]`` for a tensor with ``ndim`` dims."""
    for _ in range(ndim - 2):
        weights = ops.expand_dims(weights, 1)
    return weights


def seeded_glorot(seed: int | None, offset: int) -> keras.initializers.Initializer:
    """Glorot-uniform initializer with a derived seed (unseeded when ``seed`` is None)."""
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)
