"""Helpers shared by the test modules (tiny networks, tiny stores, ready-made run directories).

Test modules import them from here (``from conftest import make_run``), never from each other.
"""

import json

import numpy as np

from marker_excite.contract.markers import PAPER_MARKERS
from marker_excite.data.sample import Sample
from marker_excite.data.store import SampleStore
from marker_excite.experiments.spec import Preset
from marker_excite.models.zoo import build_model, model_config
from marker_excite.runs import directory as rd
from marker_excite.runs.checkpoint import save_weights
from marker_excite.runs.log import write_log

#: a tiny UNet: depth 2, 4 filters, 36 -> 20 px tiles
TINY = dict(preset="small", depth=2, base_filters=4, input_size=36)
#: a tiny experiment preset: 1 epoch (batch 4) of a depth-2, 4-filter network (44 -> 28 px tiles), fold 0 of 2,
#: sinusoids (``compare`` sets its own folds and classes)
TINY_EXPERIMENT = Preset(
    "tiny",
    zoo_preset="small",
    train_preset="small",
    phantom="small",
    epochs=1,
    batch_size=4,
    n_folds=2,
    folds=(0,),
    classes=("sinusoids",),
    model_overrides=dict(depth=2, base_filters=4, input_size=44),
)


def tiny_sample(name: str, rng: np.random.Generator, shape=(2, 40, 40)) -> Sample:
    """Five markers; 'sinusoids' are random rectangles, bright in endomucin, endoglin and collagen, noise elsewhere."""
    z, y, x = shape
    label = np.zeros(shape, dtype=np.uint8)
    for k in range(z):
        for _ in range(8):
            y0, x0 = rng.integers(0, y - 10), rng.integers(0, x - 10)
            label[k, y0 : y0 + rng.integers(4, 11), x0 : x0 + rng.integers(4, 11)] = 1
    image = rng.normal(0.0, 0.5, size=(5, *shape)).astype(np.float32)
    image[1] += 3.0 * label
    image[2] += 2.0 * label
    image[3] += 1.0 * label
    return Sample(name, image, PAPER_MARKERS, labels={"sinusoids": label})


def make_tiny_store(path, n_samples: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    with SampleStore(path, "w") as store:
        for i in range(n_samples):
            store.write_sample(tiny_sample(f"s{i}", rng))
    return path


MARKERS = ("DAPI", "endomucin", "collagen")
#: the network of :func:`make_run`: depth 2, 4 filters, 28 -> 12 px tiles, margin 8
RUN_TINY = dict(preset="small", depth=2, base_filters=4, input_size=28)


def make_run(path, *, name="MS-ME", markers=MARKERS, classes=("sinusoids",), spacing=None, seed=1, markers_seen=None):
    """A run directory in training.py's layout with random (seeded) weights; no training needed."""
    cfg = model_config(name, markers=markers, classes=classes, seed=seed, **RUN_TINY)
    model = build_model(cfg)
    rng = np.random.default_rng(seed)
    for v in model.trainable_weights:
        v.assign(rng.normal(0.0, 0.5, size=v.shape).astype("float32"))
    path.mkdir(parents=True)
    data = {
        "store": str(path / "absent.h5"),
        "fold": {"train": ["a", "b"], "val": ["c"], "test": ["d"]},
        "marker_panels": {},
        "loss_classes": ["background", *classes],
        "train_pixel_counts": [10, 5],
        "class_weights": [1.0, 2.0],
    }
    if spacing is not None:
        data["spacing"] = list(spacing)
    if markers_seen is not None:
        data["markers_seen"] = list(markers_seen)
    (path / rd.MODEL_CONFIG).write_text(json.dumps(cfg.to_dict()))
    (path / rd.TRAIN_CONFIG).write_text(json.dumps({"epochs": 3, "classes": list(classes), "n_folds": 3}))
    (path / rd.DATA_CONFIG).write_text(json.dumps(data))
    write_log(path / rd.LOG, [
        {"epoch": 1, "loss": 0.9, "val_loss": 0.8, "val_f1_sinusoids": 0.5, "val_mean_f1": 0.5},
        {"epoch": 2, "loss": 0.7, "val_loss": 0.6, "val_f1_sinusoids": 0.7, "val_mean_f1": 0.7},
    ])  # fmt: skip
    save_weights(model, path / rd.BEST_WEIGHTS)
    return path, model, cfg
