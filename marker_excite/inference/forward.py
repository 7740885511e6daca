"""The softmax forward pass of a Keras model on batches of input tiles (shared by training's
validation, evaluation and inference, so that all three compute exactly the same probabilities)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from marker_excite.contract.model_spec import AVAILABILITY, IMAGE, tensor_shapes

#: ``fn(image [N, H, W, K] float32, availability [N, K] float32) -> probabilities [N, h, w, 1 + C]``
#: (the tensor signature of :mod:`marker_excite.contract.model_spec`).
ForwardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


#: attribute of a Keras model holding its traced forward passes {(input_size, n_markers): forward}, so
#: that validation, evaluation and prediction of one model share one traced function and it dies with
#: the model (a cache keyed by the model would keep it alive: the function refers to the model)
_TRACED = "_marker_excite_forward"


def keras_forward(model, input_size: int, n_markers: int) -> ForwardFn:
    """A compiled softmax forward pass of a Keras model (any batch size, no retracing; traced once per
    model and tile geometry)."""
    per_model = model.__dict__.get(_TRACED)
    if per_model is None:
        per_model = {}
        object.__setattr__(model, _TRACED, per_model)  # bypass Keras' attribute tracking
    key = (int(input_size), int(n_markers))
    if key not in per_model:
        per_model[key] = _trace(model, *key)
    return per_model[key]


def _trace(model, input_size: int, n_markers: int) -> ForwardFn:
    import keras

    if keras.backend.backend() != "tensorflow":
        return _compiled_predict(model)
    import tensorflow as tf

    shapes = tensor_shapes(input_size, n_markers)

    @tf.function(
        input_signature=[tf.TensorSpec(shapes[name], tf.float32) for name in (IMAGE, AVAILABILITY)],
        reduce_retracing=True,
    )
    def forward(image, availability):
        return keras.ops.softmax(model([image, availability], training=False), axis=-1)

    return lambda image, availability: forward(image, availability).numpy()


def _compiled_predict(model) -> ForwardFn:
    """The forward pass on any Keras backend (e.g. JAX on a GPU machine without TensorFlow): Keras'
    compiled ``predict_on_batch`` (traced once per batch size), then the softmax in float32 NumPy."""

    def forward(image: np.ndarray, availability: np.ndarray) -> np.ndarray:
        logits = np.asarray(model.predict_on_batch([image, availability]), dtype=np.float32)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    return forward
