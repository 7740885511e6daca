"""``--workers``: training throughput of one process on all cores vs one process per core side by side.

The same ``cpu``-preset training step (124 px tiles, batch 8, five markers) is timed
1. in ONE process with TensorFlow's default threads (all cores), and
2. in N processes at once (N = the cores available), each pinned to one core with one TensorFlow
   thread exactly as ``--workers N`` starts them (``MARKER_EXCITE_CPUS`` / ``MARKER_EXCITE_THREADS``,
   :func:`marker_excite.experiments.workers.limit_threads`).
``throughput_ratio`` = (steps per second of all N processes together) / (steps per second of the one
process): above 1, ``--workers`` gets more training done per hour. Random inputs; tracing excluded.

    python benchmarks/bench_workers.py [--model MS] [--steps 60] [--out result.json]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import emit  # noqa: E402  (benchmarks/common.py)


def steps_per_second(model_name: str, steps: int, warmup: int = 5) -> float:
    """Training steps per second of the model (``cpu`` zoo preset, batch 8) on random inputs."""
    import keras
    import numpy as np

    from marker_excite.models.losses import WeightedCrossEntropy
    from marker_excite.models.zoo import build_model, model_config

    cfg = model_config(model_name, preset="cpu")
    rng = np.random.default_rng(0)
    batch = 8
    x = {
        "image": rng.normal(size=(batch, cfg.input_size, cfg.input_size, len(cfg.markers))).astype("float32"),
        "availability": np.ones((batch, len(cfg.markers)), "float32"),
    }
    y = rng.integers(0, cfg.n_outputs, size=(batch, cfg.output_size, cfg.output_size)).astype("int32")
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=WeightedCrossEntropy([1.0] * cfg.n_outputs))
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps / (time.perf_counter() - start)


def child(model_name: str, steps: int) -> None:
    """A worker: pinned like ``--workers`` pins it, then timed; prints its result as JSON."""
    from marker_excite.experiments.workers import limit_threads

    threads = limit_threads()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(json.dumps({"steps_per_s": steps_per_second(model_name, steps), "threads": threads, "cpus": cpus}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MS")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.child:
        child(args.model, args.steps)
        return 0

    from marker_excite.experiments.workers import CPUS_ENV, THREADS_ENV, available_cpus, cpu_groups

    alone = steps_per_second(args.model, args.steps)
    groups = cpu_groups(len(available_cpus()), available_cpus())
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", "--model", args.model, "--steps", str(args.steps)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, CPUS_ENV: ",".join(map(str, g)), THREADS_ENV: str(len(g))},
        )
        for g in groups
    ]
    workers = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    together = sum(w["steps_per_s"] for w in workers)
    emit(
        {
            "benchmark": "workers_throughput",
            "model": args.model,
            "preset": "cpu",
            "batch_size": 8,
            "steps": args.steps,
            "one_process_steps_per_s": round(alone, 2),
            "workers": len(workers),
            "worker_steps_per_s": [round(w["steps_per_s"], 2) for w in workers],
            "worker_cpus": [w["cpus"] for w in workers],
            "workers_steps_per_s_total": round(together, 2),
            "throughput_ratio": round(together / alone, 3),
            "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
