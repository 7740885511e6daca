"""Where a run was trained: the software versions and the devices the Keras backend sees (``versions.json``)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from marker_excite import __version__


def visible_devices() -> list[str]:
    """The devices the Keras backend sees, as ``"GPU:<name>"`` / ``"CPU:<name>"`` (TensorFlow or JAX)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices()]
    if backend == "jax":
        import jax

        return [f"{d.platform.upper()}:{d}" for d in jax.devices()]
    return []


def versions() -> dict[str, Any]:
    """Versions of Python, Keras and its backend (TensorFlow or JAX), numpy, marker_excite, the platform
    and the visible devices."""
    import keras

    backend = keras.backend.backend()
    info: dict[str, Any] = {"python": platform.python_version()}
    if backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        info["jax"] = jax.__version__
    info.update(keras=keras.__version__, numpy=np.__version__, marker_excite=__version__)
    if backend != "tensorflow":
        info["keras_backend"] = backend
    info.update(platform=platform.platform(), devices=visible_devices())
    return info
