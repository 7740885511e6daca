"""The softmax forward pass of a Keras model on batches of input tiles (shared by training's
validation, evaluation and inference, so that all three compute exactly the same probabilities)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from marker_excite.model_spec import AVAILABILITY, IMAGE, tensor_shapes

#: ``fn(image [N, H, W, K] float32, availability [N, K] float32) -> probabilities [N, h, w, 1 + C]``
#: (the tensor signature of :mod:`marker_excite.model_spec`).
ForwardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def keras_forward(model, input_size: int, n_markers: int) -> ForwardFn:
    """A compiled softmax forward pass of a Keras model (any batch size, no retracing)."""
    import keras
    import tensorflow as tf

    shapes = tensor_shapes(input_size, n_markers)

    @tf.function(
        input_signature=[tf.TensorSpec(shapes[name], tf.float32) for name in (IMAGE, AVAILABILITY)],
        reduce_retracing=True,
    )
    def forward(image, availability):
        return keras.ops.softmax(model([image, availability], training=False), axis=-1)

    return lambda image, availability: forward(image, availability).numpy()
