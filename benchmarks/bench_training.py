"""Training throughput of ``marker_excite.training.trainer.train`` vs a bare ``model.fit`` on the same tensors.

Both train the same model (default MS-ME at the ``small`` preset, batch 8) on the training patches of
fold 0 of the small synthetic phantom. ``train`` reads patches through the tf.data pipeline (HDF5
store, standardisation, augmentation, a new order every epoch) and logs, checkpoints and validates
after each epoch; the bare loop fits in-memory numpy arrays of the same patches. The first epoch
(graph tracing) is excluded from both and the median epoch is used. Goal: ``ratio_train_phase >= 0.9``.

    python benchmarks/bench_training.py [--store phantom.h5] [--epochs 4] [--model MS-ME] [--out result.json]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import emit, training_arrays  # noqa: E402  (benchmarks/common.py)


def bare_fit(model_cfg, train_cfg, store_path: Path, fold, epochs: int) -> dict:
    import keras

    from marker_excite.models.losses import WeightedCrossEntropy
    from marker_excite.models.zoo import build_model

    x, y, weights = training_arrays(model_cfg, store_path, fold.train)
    keras.utils.set_random_seed(train_cfg.seed)
    model = build_model(model_cfg)
    model.compile(optimizer=keras.optimizers.Adam(train_cfg.learning_rate), loss=WeightedCrossEntropy(weights))
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=train_cfg.batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
    n = int(y.shape[0])
    return {"patches": n, "epoch_seconds": times, "patches_per_s": n / _steady(times)}


def _steady(epoch_seconds: list[float]) -> float:
    """Median epoch time without the first epoch (graph tracing); robust to a busy shared machine."""
    import statistics

    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="sample store (default: a fresh small phantom in a temp dir)")
    parser.add_argument("--model", default="MS-ME")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--nondeterministic", action="store_true", help="train with deterministic=False")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from marker_excite.data.synthetic import write_dataset
    from marker_excite.models.zoo import model_config
    from marker_excite.runs.run import train_config
    from marker_excite.training.trainer import train

    tmp = Path(tempfile.mkdtemp(prefix="bench_training_"))
    store = Path(args.store) if args.store else write_dataset(tmp / "phantom.h5", "small", progress=False)
    mcfg = model_config(args.model, preset="small")
    tcfg = train_config("small", epochs=args.epochs, deterministic=not args.nondeterministic)

    run = train(tmp / "run", mcfg, tcfg, store, progress=False)
    from marker_excite.data.pipeline import patch_index

    n_train = len(patch_index(store, list(run.fold.train), mcfg.output_size))
    train_phase = n_train / _steady([float(r["train_time"]) for r in run.history])
    end_to_end = n_train / _steady([float(r["time"]) for r in run.history])
    bare = bare_fit(mcfg, tcfg, store, run.fold, args.epochs)
    result = {
        "benchmark": "training_throughput",
        "model": args.model,
        "preset": "small",
        "input_size": mcfg.input_size,
        "output_size": mcfg.output_size,
        "batch_size": tcfg.batch_size,
        "epochs": args.epochs,
        "deterministic": tcfg.deterministic,
        "train_patches_per_epoch": n_train,
        "train_patches_per_s_train_phase": round(train_phase, 2),
        "train_patches_per_s_end_to_end": round(end_to_end, 2),
        "bare_fit_patches_per_s": round(bare["patches_per_s"], 2),
        "ratio_train_phase": round(train_phase / bare["patches_per_s"], 3),
        "ratio_end_to_end": round(end_to_end / bare["patches_per_s"], 3),
        "goal_ratio": 0.9,
        "train_epoch_seconds": [round(float(r["train_time"]), 3) for r in run.history],
        "bare_epoch_seconds": [round(t, 3) for t in bare["epoch_seconds"]],
        "devices": [d.name for d in tf.config.list_physical_devices()],
        "cpu_count": os.cpu_count(),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
