"""Training-step time of the zoo's networks under whichever Keras backend is selected (``KERAS_BACKEND``:
tensorflow here, jax or torch on an accelerator), plus a check that the marker layers behave the same
there (they use ``keras.ops`` only).

Times ``model.train_on_batch`` on random tiles (after ``--warmup`` steps that compile) for MZ, MS-ME and
HeMIS at the paper's size (572 px, batch 2) and for MS-ME at the ``cpu`` preset (124 px, batch 8),
and draws 100,000 Marker Sampling masks per panel size to check that every non-empty subset of the
available markers is equally likely (max relative deviation from uniform).

    KERAS_BACKEND=jax python benchmarks/bench_keras_backend.py [--steps 20] [--out result.json]

Prints one JSON object. Only the model code of marker_excite is imported (no TensorFlow needed).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from itertools import combinations

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import emit  # noqa: E402  (benchmarks/common.py)


def step_seconds(name: str, preset: str, batch: int, steps: int, warmup: int, precision: str = "fp32") -> float:
    """Median seconds of one training step of zoo model ``name`` at ``preset`` on random data, trained in
    ``precision`` (``fp32``, ``bf16``, ``fp16``: :mod:`marker_excite.models.precision`)."""
    import keras
    import numpy as np

    from marker_excite.models.losses import WeightedCrossEntropy
    from marker_excite.models.zoo import build_model, model_config
    from marker_excite.models.precision import dtype_policy, optimizer_for

    cfg = model_config(name, preset=preset)
    with dtype_policy(precision):
        model = build_model(cfg)
    optimizer = optimizer_for(keras.optimizers.Adam(1e-3), precision)
    model.compile(optimizer=optimizer, loss=WeightedCrossEntropy([1.0, 2.0]))
    rng = np.random.default_rng(0)
    k, s, o = len(cfg.markers), cfg.input_size, cfg.output_size
    x = {"image": rng.normal(size=(batch, s, s, k)).astype("float32"), "availability": np.ones((batch, k), "float32")}
    y = (rng.random((batch, o, o)) < 0.1).astype("int32")
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        float(np.asarray(loss))  # wait for the device
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def sampling_uniformity(n: int = 100_000, k: int = 5) -> dict[str, float]:
    """Max relative deviation from 1 / (2^a - 1) of the subset frequencies of MarkerSampling(rate 0.5),
    per number ``a`` of available markers; also checks no unavailable marker and no empty draw."""
    import keras
    import numpy as np

    from marker_excite.layers import MarkerSampling

    layer = MarkerSampling("zero", 0.5, seed=3)
    out = {}
    for a in range(1, k + 1):
        avail = np.zeros((n, k), "float32")
        avail[:, k - a :] = 1.0
        _, mask = layer([np.ones((n, 1, 1, k), "float32"), avail], training=True)
        mask = keras.ops.convert_to_numpy(mask)
        if np.any(mask > avail) or np.any(mask.sum(1) < 1):
            raise AssertionError(f"{a} available markers: an unavailable marker or an empty draw")
        codes, counts = np.unique(mask.astype(int) @ (2 ** np.arange(k)), return_counts=True)
        expected = {sum(2**i for i in c) for r in range(1, a + 1) for c in combinations(range(k - a, k), r)}
        if set(codes.tolist()) != expected:
            raise AssertionError(f"{a} available markers: subsets drawn {sorted(codes)} != {sorted(expected)}")
        out[str(a)] = round(float(np.max(np.abs(counts / n * (2**a - 1) - 1.0))), 4)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-paper", action="store_true", help="only the cpu-preset model (slow CPUs)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)

    import keras

    result = {
        "benchmark": "keras_backend",
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "sampling_max_relative_deviation_by_available_markers": sampling_uniformity(),
        "step_seconds": {},
    }
    runs = [("MS-ME", "cpu", 8)]
    if not args.skip_paper:
        runs += [("MZ", "paper", 2), ("MS-ME", "paper", 2), ("HeMIS", "paper", 2)]
    for name, preset, batch in runs:
        key = f"{name}@{preset}(batch {batch})"
        result["step_seconds"][key] = round(step_seconds(name, preset, batch, args.steps, args.warmup), 4)
    paper = result["step_seconds"].get("MS-ME@paper(batch 2)")
    if paper:
        # fold 0 of the paper phantom: 150 training patches = 75 steps of 2 per epoch, 200 epochs
        result["paper_training_hours_estimate_ms_me"] = round(paper * 75 * 200 / 3600, 2)
    cpu = result["step_seconds"]["MS-ME@cpu(batch 8)"]
    result["cpu_protocol_training_minutes_estimate"] = round(cpu * 1500 / 60, 2)
    try:
        import jax

        result["devices"] = [str(d) for d in jax.devices()]
    except ImportError:
        result["devices"] = []
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
