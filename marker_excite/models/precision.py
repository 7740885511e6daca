"""Mixed precision: the ``--precision`` choices and the Keras dtype policy a network is built and trained in.

``fp32`` (the default) computes everything in float32, exactly as before the option existed. ``bf16`` and
``fp16`` are Keras' mixed policies: variables stay float32, convolutions compute in bfloat16 / float16.
Whatever the policy, the marker-aware layers compute their masks, gates and moments in float32
(:mod:`marker_excite.layers`), the logits layer outputs float32, and the loss and the F1 scores are
float32 / float64. ``fp16`` needs loss scaling (its small gradients underflow): :func:`optimizer_for`
wraps the optimizer in Keras' ``LossScaleOptimizer``; bfloat16 has float32's range and needs none.

Which to use: on a CPU ``fp32`` (bfloat16 is only fast where the CPU has AMX / AVX512-BF16 and the backend
uses it); on an NVIDIA GPU of the Ampere generation or later (A100, H100, H200) ``bf16``; ``fp16`` only on
older GPUs without bfloat16 (measurements: ``benchmarks/bench_precision.py``, docs/training.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: ``--precision`` value -> Keras dtype policy name.
POLICIES: dict[str, str] = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
#: The precision of a run that does not name one (and of every run made before the option existed).
DEFAULT_PRECISION = "fp32"


def policy(precision: str) -> str:
    """The Keras dtype policy name of ``precision`` (``KeyError`` for an unknown one: validate first)."""
    return POLICIES[precision]


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Build the layers made inside this block with ``precision``'s dtype policy (Keras' global policy,
    restored afterwards: models built later, e.g. for inference, are float32 again)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy(precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def optimizer_for(optimizer, precision: str):
    """``optimizer`` for training in ``precision``: wrapped in a dynamic ``LossScaleOptimizer`` for ``fp16``
    (its variables, the loss scale included, are saved in the resume checkpoint); unchanged otherwise."""
    if precision != "fp16":
        return optimizer
    import keras

    return keras.optimizers.LossScaleOptimizer(optimizer)
