"""The softmax forward pass of a Keras model on batches of input tiles (shared by training's
validation, evaluation and inference, so that all three compute exactly the same probabilities)."""

from __future__ import annotations

from typing import Callable

import numpy as np

#: ``fn(image [N, H, W, K] float32, availability [N, K] float32) -> probabilities [N, h, w, 1 + C]``.
ForwardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def keras_forward(model, input_size: int, n_markers: int) -> ForwardFn:
    """A compiled softmax forward pass of a Keras model (any batch size, no retracing)."""
    import keras
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, input_size, input_size, n_markers], tf.float32),
            tf.TensorSpec([None, n_markers], tf.float32),
        ],
        reduce_retracing=True,
    )
    def forward(image, availability):
        return keras.ops.softmax(model([image, availability], training=False), axis=-1)

    return lambda image, availability: forward(image, availability).numpy()
