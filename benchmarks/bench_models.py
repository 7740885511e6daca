"""Model zoo benchmark: parameter counts at paper size and relative training-step times on CPU.

Prints one JSON object:
  params_paper        parameters of every zoo model at the paper size (572 px, depth 5, 32 filters, 5 markers)
  me_overhead_pct     MS-ME parameters over the plain UNet (MZ), in % (paper: +0.64 %; goal < 1 %)
  ms_plus_overhead_pct  MS+ parameters over the UNet, in % (goal >= 20 %)
  step_time           median seconds per training step at a small CPU size, and relative to MZ
  step_time_paper_architecture  the same for the paper's network (5 levels, 32 filters) on smaller tiles

Usage: python benchmarks/bench_models.py [--preset small] [--batch 2] [--steps 20] [--out results.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from common import emit  # noqa: E402  (benchmarks/common.py)
from marker_excite.models.losses import WeightedCrossEntropy  # noqa: E402
from marker_excite.models.config import ZOO_NAMES  # noqa: E402
from marker_excite.models.zoo import build_model, model_config  # noqa: E402

TIMED_MODELS = ("MZ", "MS", "MS-SE", "MS-ME", "HeMIS")


def paper_params() -> dict[str, int]:
    """Parameter count of every zoo model at paper size (UB on the full panel, like MZ)."""
    out = {}
    for name in ZOO_NAMES:
        model = build_model(model_config(name))
        out[name] = int(model.count_params())
        keras.backend.clear_session()
    return out


def step_times(
    names: tuple[str, ...], preset: str, batch: int, steps: int, warmup: int = 3, input_size: int | None = None
) -> dict[str, float]:
    """Median wall time of one optimiser step (train_on_batch) per model.

    The models are built first and timed round-robin (one step of each per round) so that load changes
    on a shared machine hit all of them alike.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    runs = {}
    for name in names:
        cfg = model_config(name, preset=preset, **({"input_size": input_size} if input_size else {}))
        model = build_model(cfg)
        model.compile(optimizer="adam", loss=WeightedCrossEntropy([1.0] * cfg.n_outputs))
        k, s, o = len(cfg.markers), cfg.input_size, cfg.output_size
        image = rng.normal(size=(batch, s, s, k)).astype("float32")
        labels = rng.integers(0, cfg.n_outputs, size=(batch, o, o)).astype("int32")
        runs[name] = (model, [image, np.ones((batch, k), "float32")], labels)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + steps):
        for name, (model, x, y) in runs.items():
            t0 = time.perf_counter()
            model.train_on_batch(x, y)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model size for the timing (default: small)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model (after 3 warm-up steps)")
    parser.add_argument(
        "--paper-tile",
        type=int,
        default=252,
        help="also time the paper architecture (5 levels, 32 filters) on tiles of this size; 0 skips",
    )
    parser.add_argument("--paper-steps", type=int, default=6, help="timed steps per model for the paper architecture")
    parser.add_argument("--out", help="also write the JSON here (atomically)")
    args = parser.parse_args(argv)

    params = paper_params()
    base = params["MZ"]
    times = step_times(TIMED_MODELS, args.preset, args.batch, args.steps)
    result = {
        "params_paper": params,
        "me_overhead_pct": round(100.0 * (params["MS-ME"] / base - 1.0), 3),
        "se_overhead_pct": round(100.0 * (params["MS-SE"] / base - 1.0), 3),
        "ms_plus_overhead_pct": round(100.0 * (params["MS+"] / base - 1.0), 3),
        "hemis_overhead_pct": round(100.0 * (params["HeMIS"] / base - 1.0), 3),
        "step_time": {
            "preset": args.preset,
            "batch": args.batch,
            "steps": args.steps,
            "seconds": {n: round(t, 5) for n, t in times.items()},
            "relative_to_MZ": {n: round(t / times["MZ"], 3) for n, t in times.items()},
        },
    }
    if args.paper_tile:
        paper = step_times(TIMED_MODELS, "paper", args.batch, args.paper_steps, warmup=2, input_size=args.paper_tile)
        result["step_time_paper_architecture"] = {
            "input_size": args.paper_tile,
            "batch": args.batch,
            "steps": args.paper_steps,
            "seconds": {n: round(t, 4) for n, t in paper.items()},
            "relative_to_MZ": {n: round(t / paper["MZ"], 3) for n, t in paper.items()},
        }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
