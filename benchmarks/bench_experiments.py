"""Experiment throughput: one ``cpu``-preset job (training + evaluation on all 31 subsets) vs the bare
training compute of the same number of steps, in the same process.

``job_wall_s`` is the wall time of ``experiments.run_job`` for MS-ME, sinusoids, fold 0 of the cpu
phantom: the tf.data pipeline, per-epoch validation, checkpoints, logs, curves and the evaluation.
``train_compute_s`` is ``model.fit`` of a freshly built model of the same config for the same number of
steps and batch size on in-memory arrays of the same training patches (graph tracing included in both).
Goal: ``wall_over_compute <= 1.3``.

    python benchmarks/bench_experiments.py [--model MS-ME] [--out result.json]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import emit, training_arrays  # noqa: E402  (benchmarks/common.py)


def bare_compute(model_cfg, train_cfg, store_path: Path, fold, steps: int) -> float:
    """Seconds of ``model.fit`` for ``steps`` batches of the fold's training patches held in memory."""
    import keras

    from marker_excite.models.losses import WeightedCrossEntropy
    from marker_excite.models.zoo import build_model
    from marker_excite.training.trainer import learning_rate

    x, y, weights = training_arrays(model_cfg, store_path, fold.train)
    keras.utils.set_random_seed(train_cfg.seed)
    model = build_model(model_cfg)
    optimizer = keras.optimizers.Adam(learning_rate(train_cfg, train_cfg.steps_per_epoch or 1))
    model.compile(optimizer=optimizer, loss=WeightedCrossEntropy(weights))
    batch = train_cfg.batch_size
    epoch_steps = len(y) // batch
    epochs, rest = divmod(steps, epoch_steps)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, steps_per_epoch=epoch_steps, shuffle=True, verbose=0)
    if rest:
        model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=rest, shuffle=True, verbose=0)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MS-ME")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from marker_excite import experiments as E
    from marker_excite.runs.run import load_run

    tmp = Path(tempfile.mkdtemp(prefix="bench_experiments_"))
    exp = E.experiment("fig3_attention", "cpu", folds=[0], classes=["sinusoids"], models=[args.model])
    job = exp.jobs[0]
    store = E.ensure_store(exp.preset, tmp, progress=False)
    start = time.perf_counter()
    E.run_job(job, exp.preset, tmp, store, progress=False)
    job_wall = time.perf_counter() - start
    run = load_run(E.job_run_dir(tmp, job))
    cfg = run.train_config
    history = run.history
    fit_s = sum(float(r["train_time"]) for r in history)
    epochs_s = sum(float(r["time"]) for r in history)
    steps = len(history) * cfg.steps_per_epoch if cfg.steps_per_epoch else None
    compute = bare_compute(run.model_config, cfg, store, run.fold, steps)
    result = {
        "benchmark": "experiment_job_throughput",
        "preset": "cpu",
        "model": args.model,
        "job": job.job_id,
        "epochs": len(history),
        "steps": steps,
        "batch_size": cfg.batch_size,
        "job_wall_s": round(job_wall, 1),
        "train_compute_s": round(compute, 1),
        "wall_over_compute": round(job_wall / compute, 3),
        "goal_wall_over_compute": 1.3,
        "fit_in_job_s": round(fit_s, 1),
        "validation_s": round(epochs_s - fit_s, 1),
        "validation_fraction_of_job": round((epochs_s - fit_s) / job_wall, 3),
        "evaluation_and_setup_s": round(job_wall - epochs_s, 1),
        "final_val_mean_f1": round(float(history[-1]["val_mean_f1"]), 4),
        "devices": [d.name for d in tf.config.list_physical_devices()],
        "cpu_count": os.cpu_count(),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
