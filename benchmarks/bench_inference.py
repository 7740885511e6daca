"""Inference benchmark (prints JSON).

1. Throughput: ``predict_slices`` on a stack (standardisation pass, tiling, stitching included) vs the
   raw forward pass on the same tiles with the same batch size, in the same process, at the ``small``
   model size (MS-ME, depth 3, 16 filters, 124 -> 84 px). Goal: ratio >= 0.9.
2. Peak resident memory of ``predict_file`` (labels OME-TIFF + float32 probabilities HDF5) on an
   uncompressed TIFF larger than 4 GiB, generated in a temporary folder and deleted afterwards, in a
   child process with a tiny network and a large batch. Goal: < 2 GiB.

    python benchmarks/bench_inference.py [--size-gib 4.2] [--skip-memory] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from common import emit  # noqa: E402  (benchmarks/common.py)


def _predictor(name: str, markers: tuple[str, ...], **sizes):
    """A Predictor of a freshly built (seeded) zoo model; no run directory needed."""
    from marker_excite.inference.forward import keras_forward
    from marker_excite.contract.model_spec import ModelSpec
    from marker_excite.inference.predictor import Predictor
    from marker_excite.models.zoo import build_model, model_config

    cfg = model_config(name, markers=markers, **sizes)
    model = build_model(cfg)
    spec = ModelSpec.from_config(cfg)
    return Predictor(spec=spec, source=Path("."), fn=keras_forward(model, cfg.input_size, len(cfg.markers)))


class ArrayVolume:
    """An in-memory VolumeReader stand-in."""

    def __init__(self, image: np.ndarray, markers: tuple[str, ...]) -> None:
        self.image, self.markers, self.spacing = image, markers, (1.0, 1.0, 1.0)
        self.shape_czyx = image.shape

    def read_slice(self, z: int) -> np.ndarray:
        return self.image[:, z]


def throughput(n_slices: int = 2, tiles_per_side: int = 12, batch_size: int = 16, preset: str = "small") -> dict:
    from marker_excite.data.tiling import TileLayout
    from marker_excite.inference.whole_stack import predict_slices
    from marker_excite.contract.markers import PAPER_MARKERS

    pred = _predictor("MS-ME", PAPER_MARKERS, preset=preset)
    size = pred.spec.output_size * tiles_per_side  # no overlapping tiles: same output pixels both ways
    image = np.random.default_rng(0).normal(size=(5, n_slices, size, size)).astype(np.float32)
    layout = TileLayout((size, size), pred.spec.input_size, pred.spec.output_size)
    avail = np.ones((batch_size, 5), np.float32)
    pred.probabilities(
        np.zeros((batch_size, pred.spec.input_size, pred.spec.input_size, 5), np.float32), avail
    )  # warm up
    tiles = np.stack([t.transpose(1, 2, 0) for z in range(n_slices) for t in layout.tiles(image[:, z])])

    start = time.perf_counter()
    for i in range(0, len(tiles), batch_size):
        pred.probabilities(tiles[i : i + batch_size], avail[: len(tiles[i : i + batch_size])])
    raw_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in predict_slices(pred, ArrayVolume(image, PAPER_MARKERS), batch_size=batch_size, progress=False):
        pass
    predict_s = time.perf_counter() - start
    mpix = n_slices * size * size / 1e6
    return {
        "model": f"MS-ME {preset} ({pred.spec.input_size} -> {pred.spec.output_size} px)",
        "stack_czyx": [5, n_slices, size, size],
        "tiles": len(tiles),
        "batch_size": batch_size,
        "raw_forward_s": round(raw_s, 3),
        "predict_s": round(predict_s, 3),
        "raw_forward_mpix_per_s": round(mpix / raw_s, 3),
        "predict_mpix_per_s": round(mpix / predict_s, 3),
        "ratio_predict_to_raw": round(raw_s / predict_s, 3),
        "goal_ratio": 0.9,
    }


def _peak_rss_mib() -> float:
    """Peak resident memory of this process image (VmHWM; ``ru_maxrss`` would include the parent's
    peak, which Linux carries across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(stack: str, out_dir: str) -> None:
    """Run in a child process: predict the big stack, print peak RSS (MiB) as JSON."""
    from marker_excite.inference.whole_stack import predict_file

    markers = tuple(f"m{i}" for i in range(16))
    pred = _predictor("MS", markers, preset="small", depth=2, base_filters=2, input_size=260)
    pred.probabilities(np.zeros((1, 260, 260, 16), np.float32), np.ones((1, 16), np.float32))
    baseline = _peak_rss_mib()
    start = time.perf_counter()
    predict_file(pred, stack, labels=Path(out_dir) / "labels.ome.tif", probabilities=Path(out_dir) / "probs.h5",
                 batch_size=32, progress=False)  # fmt: skip
    print(json.dumps({"baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(_peak_rss_mib(), 1),
                      "predict_s": round(time.perf_counter() - start, 1)}))  # fmt: skip


def memory(size_gib: float) -> dict:
    import tifffile

    channels, side = 16, 1024
    n_slices = int(np.ceil(size_gib * 1024**3 / (channels * side * side * 4)))
    tmp = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    try:
        stack = tmp / "big.ome.tif"
        meta = {"axes": "ZCYX", "Channel": {"Name": [f"m{i}" for i in range(16)]}}
        mm = tifffile.memmap(stack, shape=(n_slices, channels, side, side), dtype=np.float32, ome=True, metadata=meta)
        ramp = np.linspace(0, 1, side, dtype=np.float32)
        for z in range(n_slices):
            mm[z] = ramp[None, None, :] * (z + 1) + np.arange(channels, dtype=np.float32)[:, None, None]
            if z % 8 == 7:
                mm.flush()
        mm.flush()
        del mm
        file_gib = stack.stat().st_size / 1024**3
        result = subprocess.run([sys.executable, __file__, "--memory-child", str(stack), str(tmp)],
                                check=True, capture_output=True, text=True)  # fmt: skip
        child = json.loads(result.stdout.strip().splitlines()[-1])
        return {
            "stack_czyx": [channels, n_slices, side, side],
            "stack_file_gib": round(file_gib, 3),
            "model": "MS tiny (depth 2, 2 filters, 260 -> 244 px), batch 32",
            **child,
            "goal_peak_rss_mib": 2048,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=4.2, help="size of the generated stack (GiB, default 4.2)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory part")
    parser.add_argument("--skip-throughput", action="store_true", help="skip the throughput part")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--memory-child", nargs=2, metavar=("STACK", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    results = {}
    if not args.skip_throughput:
        results["throughput"] = throughput()
        # the paper's network: the forward pass dominates, as it does in real use
        results["throughput_paper_model"] = throughput(n_slices=1, tiles_per_side=2, batch_size=2, preset="paper")
    if not args.skip_memory:
        results["memory"] = memory(args.size_gib)
    emit(results, args.out)


if __name__ == "__main__":
    main()
