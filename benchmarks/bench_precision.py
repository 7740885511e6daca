"""Mixed precision and shared devices: training-step time per model in fp32 vs bf16, trainings per hour
when N trainings share the device side by side, and the estimate for the whole paper protocol.

1. ``step_seconds``: the median step time (``bench_keras_backend.step_seconds``: random tiles, after
   ``--warmup`` compiling steps) of each ``--models`` network at ``--size`` (zoo preset: ``paper`` =
   572 px, batch 2; ``cpu`` = 124 px, batch 8) in each ``--precisions``.
2. ``sharing``: N processes (each of ``--processes``) train ``--share-model`` in ``--share-precision``
   at once, each on its own share of the CPU cores and, on a GPU with JAX, of the GPU memory, exactly as
   ``--workers N`` starts them (:mod:`marker_excite.experiments.workers`); they start timing together
   after their warm-up. ``steps_per_second`` is the sum over the N processes; ``trainings_per_hour`` =
   that x 3600 / ``--steps-per-training``.
3. ``paper_protocol``: ``--trainings`` trainings of ``--steps-per-training`` steps (the paper's protocol:
   ~1,460 trainings of ~14,000 steps) at the best sharing measured, in device-hours. Bare training
   steps: validation, evaluation and data loading come on top (a training job of the cpu protocol spent
   ~7 % of its time validating, benchmarks/reference/README.md).

    python benchmarks/bench_precision.py [--size cpu] [--processes 1,2] [--out result.json]
    KERAS_BACKEND=jax python benchmarks/bench_precision.py --processes 1,4,8,12   # a GPU: paper size

Prints one JSON object (benchmarks/reference/: the CPU reference, and the GPU one once measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench_keras_backend import step_seconds  # noqa: E402  (benchmarks/bench_keras_backend.py)
from common import emit  # noqa: E402  (benchmarks/common.py)

#: Batch size of each size preset (the paper's 2 at paper size, the cpu protocol's 8 at cpu size).
BATCH = {"paper": 2, "cpu": 8}
#: The paper's protocol: 1,460 trainings (Figs. 1-4, Table 1, 4 folds) of ~14,000 steps (batch 2, 200 epochs).
PAPER_TRAININGS = 1460
PAPER_STEPS_PER_TRAINING = 14_000
#: How long a sharing process waits for the others to finish their warm-up before it gives up.
BARRIER_TIMEOUT_S = 1800.0


def child(args: argparse.Namespace) -> None:
    """One sharing process: its share of the device (``--workers`` environment), warm-up, wait until every
    process is warm (``--barrier`` folder), then time ``--steps`` steps; prints its steps per second."""
    from marker_excite.experiments.workers import limit_threads

    limit_threads()
    barrier = Path(args.barrier)
    warm = step_seconds(args.share_model, args.size, BATCH[args.size], 1, args.warmup, args.share_precision)
    (barrier / f"ready{os.getpid()}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(barrier.glob("ready*"))) < args.n and time.monotonic() < deadline:
        time.sleep(0.05)
    seconds = step_seconds(args.share_model, args.size, BATCH[args.size], args.steps, 1, args.share_precision)
    print(json.dumps({"steps_per_second": 1.0 / seconds, "warm_step_seconds": warm}))


def shared_steps_per_second(args: argparse.Namespace, n: int) -> dict[str, object]:
    """Steps per second of ``n`` processes training side by side (summed), as ``--workers n`` runs them."""
    from marker_excite.experiments.workers import (
        CPUS_ENV,
        JAX_MEMORY_ENV,
        JAX_MEMORY_SHARED,
        THREADS_ENV,
        available_cpus,
        cpu_groups,
    )

    groups = cpu_groups(n, available_cpus())
    with tempfile.TemporaryDirectory() as barrier:
        argv = [sys.executable, __file__, "--child", "--n", str(n), "--barrier", barrier, "--size", args.size,
                "--share-model", args.share_model, "--share-precision", args.share_precision,
                "--steps", str(args.steps), "--warmup", str(args.warmup)]  # fmt: skip
        procs = [
            subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                text=True,
                env={
                    JAX_MEMORY_ENV: f"{JAX_MEMORY_SHARED / n:.3f}",
                    **os.environ,
                    CPUS_ENV: ",".join(map(str, g)),
                    THREADS_ENV: str(len(g)),
                },
            )
            for g in groups
        ]
        outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a sharing process failed (exit {[p.returncode for p in procs]})")
    rates = [json.loads(out.strip().splitlines()[-1])["steps_per_second"] for out in outputs]
    total = sum(rates)
    return {
        "steps_per_second": round(total, 3),
        "per_process_steps_per_second": [round(r, 3) for r in rates],
        "trainings_per_hour": round(total * 3600 / args.steps_per_training, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", choices=sorted(BATCH), help="zoo preset (default: paper where a GPU is visible, else cpu)"
    )
    parser.add_argument("--models", default="MZ,MS,MS-ME,HeMIS", help="models timed per precision")
    parser.add_argument("--precisions", default="fp32,bf16", help="precisions timed (fp32, bf16, fp16)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed (compiling) steps first (default: 3)")
    parser.add_argument("--processes", default="1,2", help="numbers of processes sharing the device (default: 1,2)")
    parser.add_argument("--share-model", default="MS-ME", help="model trained by the sharing processes")
    parser.add_argument("--share-precision", default="bf16", help="their precision (default: bf16)")
    parser.add_argument("--trainings", type=int, default=PAPER_TRAININGS)
    parser.add_argument("--steps-per-training", type=int, default=PAPER_STEPS_PER_TRAINING)
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    import keras

    from marker_excite.runs.environment import visible_devices

    devices = visible_devices()
    args.size = args.size or ("paper" if any(d.startswith("GPU:") for d in devices) else "cpu")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    batch = BATCH[args.size]
    times = {
        m: {p: round(step_seconds(m, args.size, batch, args.steps, args.warmup, p), 4) for p in precisions}
        for m in models
    }
    result: dict[str, object] = {
        "benchmark": "precision",
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "devices": devices,
        "size": args.size,
        "batch_size": batch,
        "steps": args.steps,
        "step_seconds": times,
    }
    if "fp32" in precisions:
        result["speedup_over_fp32"] = {
            m: {p: round(t["fp32"] / t[p], 3) for p in precisions if p != "fp32"} for m, t in times.items()
        }
    sharing = {n: shared_steps_per_second(args, n) for n in (int(v) for v in args.processes.split(","))}
    result["sharing"] = {"model": args.share_model, "precision": args.share_precision, "processes": sharing}
    best = max(sharing, key=lambda n: sharing[n]["trainings_per_hour"])
    per_hour = sharing[best]["trainings_per_hour"]
    result["paper_protocol"] = {
        "trainings": args.trainings,
        "steps_per_training": args.steps_per_training,
        "processes": best,
        "trainings_per_hour": per_hour,
        "device_hours": round(args.trainings / per_hour, 1),
    }
    result["load_average_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
