"""Helpers shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from collections.abc import Sequence


def emit(result: Any, out: str | Path | None) -> None:
    """Print ``result`` as JSON (the last thing on stdout, read by run_all.py) and, with ``out``, write
    it there atomically."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        from marker_excite.atomic import write_text

        write_text(out, text + "\n")


def training_arrays(model_cfg, store_path: Path, samples: Sequence[str]):
    """The training patches of ``samples`` in memory, in pipeline order: ``(x, y, class_weights)`` with
    ``x = {"image", "availability"}`` numpy arrays, for bare ``model.fit`` baselines."""
    import numpy as np

    from marker_excite.data import pipeline
    from marker_excite.models.losses import log_class_weights

    ds = pipeline.make_dataset(
        store_path, list(samples), panel=model_cfg.panel, classes=model_cfg.classes,
        input_size=model_cfg.input_size, output_size=model_cfg.output_size, batch_size=64, shuffle=False,
    )  # fmt: skip
    parts = [(x["image"].numpy(), x["availability"].numpy(), y.numpy()) for x, y in ds]
    x = {"image": np.concatenate([p[0] for p in parts]), "availability": np.concatenate([p[1] for p in parts])}
    y = np.concatenate([p[2] for p in parts])
    weights = log_class_weights(pipeline.class_pixel_counts(store_path, list(samples), model_cfg.classes))
    return x, y, weights
