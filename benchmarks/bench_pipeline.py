"""Data benchmarks; prints one JSON object.

1. tf.data pipeline throughput (patches/s) at the paper's tile size (572 -> 388, from UNetGeometry)
   with 5 markers, read from a sample store: first (cold) epoch and later (cached) epochs.
   Goal: >= 100 patches/s on a 2-core machine.
2. Peak resident memory while streaming a > 4 GiB uncompressed OME-TIFF through
   VolumeReader.read_slice (written slice by slice with VolumeWriter; measured in fresh child
   processes; the file is deleted afterwards; disk use < 6 GB).

Usage: python benchmarks/bench_pipeline.py [--skip-big] [--big-gib 4.2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_pipeline(tmp: Path, slice_px: int = 1200, batch_size: int = 2, epochs: int = 4) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from marker_excite.data.pipeline import make_dataset, patch_index
    from marker_excite.data.sample import Sample
    from marker_excite.data.store import SampleStore
    from marker_excite.contract.markers import PAPER_MARKERS
    from marker_excite.models.geometry import UNetGeometry

    input_size = 572
    output_size = UNetGeometry().output_size(input_size)
    rng = np.random.default_rng(0)
    path = tmp / "bench_store.h5"
    names = ["s1", "s2"]
    with SampleStore(path, "w") as st:
        for name in names:
            shape = (4, slice_px, slice_px)
            image = rng.integers(0, 4096, (5, *shape), dtype=np.uint16)
            labels = {"sinusoids": (rng.random(shape) < 0.2).astype(np.uint8)}
            st.write_sample(Sample(name, image, PAPER_MARKERS, (2, 1, 1), labels, np.array([1, 1, 1, 0], bool)))
    n_patches = len(patch_index(path, names, output_size))
    results = {}
    for augment in (False, True):
        ds = make_dataset(path, names, panel=PAPER_MARKERS, classes=("sinusoids",), input_size=input_size,
                          output_size=output_size, batch_size=batch_size, shuffle=True, augment=augment)  # fmt: skip
        rates, cpu_rates = [], []
        for _ in range(epochs):
            start, cpu0, seen = time.perf_counter(), time.process_time(), 0
            for _, y in ds:
                seen += int(y.shape[0])
            rates.append(seen / (time.perf_counter() - start))
            cpu_rates.append(seen / (time.process_time() - cpu0))
            assert seen == n_patches
        results["augment" if augment else "plain"] = {
            "cold_epoch_patches_per_s": round(rates[0], 1),
            "cached_epoch_patches_per_s": round(float(np.median(rates[1:])), 1),
            # patches per second of CPU time used by all threads: the rate without competing processes
            "cached_epoch_patches_per_cpu_s": round(float(np.median(cpu_rates[1:])), 1),
        }
    return {
        "input_size": input_size, "output_size": output_size, "markers": 5, "batch_size": batch_size,
        "patches_per_epoch": n_patches, "slice_px": slice_px, **results,
        "goal_patches_per_s": 100, "process_peak_rss_mib": round(_peak_rss_mib(), 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def _child_write(path: str, shape: list[int]) -> None:
    from marker_excite.data.writers import VolumeWriter

    c, z, y, x = shape
    plane = np.arange(y * x, dtype=np.uint16).reshape(y, x)
    start = time.perf_counter()
    with VolumeWriter(path, shape, np.uint16, (2.0, 1.0, 1.0), [f"m{i}" for i in range(c)]) as w:
        for k in range(z):
            w.write_slice(k, np.broadcast_to(plane + k, (c, y, x)))
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib()}))


def _child_read(path: str) -> None:
    from marker_excite.data.io import open_volume

    base = _peak_rss_mib()
    start = time.perf_counter()
    with open_volume(path) as r:
        c, z, y, x = r.shape_czyx
        for k in range(z):
            s = r.read_slice(k)
            assert s.shape == (c, y, x) and s[0, 0, 1] == 1 + k  # really read
        mode = r.mode
    secs = time.perf_counter() - start
    nbytes = c * z * y * x * 2
    print(json.dumps({"seconds": secs, "peak_rss_mib": _peak_rss_mib(), "rss_before_mib": base, "mode": mode,
                      "slice_mib": c * y * x * 4 / 2**20, "read_gib_per_s": nbytes / 2**30 / secs}))  # fmt: skip


def bench_big_tiff(tmp: Path, gib: float) -> dict:
    c, z = 2, 40
    side = int(np.ceil(np.sqrt(gib * 2**30 / (c * z * 2))))
    shape = [c, z, side, side]
    nbytes = c * z * side * side * 2
    path = tmp / "big.ome.tif"
    run = [sys.executable, __file__]
    try:
        w = json.loads(subprocess.run(run + ["--child-write", str(path), json.dumps(shape)], check=True,
                                      capture_output=True, text=True).stdout.strip().splitlines()[-1])  # fmt: skip
        file_gib = path.stat().st_size / 2**30
        r = json.loads(subprocess.run(run + ["--child-read", str(path)], check=True,
                                      capture_output=True, text=True).stdout.strip().splitlines()[-1])  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    return {
        "shape_czyx": shape, "dtype": "uint16", "data_gib": round(nbytes / 2**30, 2), "file_gib": round(file_gib, 2),
        "write_seconds": round(w["seconds"], 1), "write_peak_rss_mib": round(w["peak_rss_mib"], 1),
        "read_mode": r["mode"], "read_seconds": round(r["seconds"], 1), "read_gib_per_s": round(r["read_gib_per_s"], 2),
        "read_peak_rss_mib": round(r["peak_rss_mib"], 1), "read_rss_before_streaming_mib": round(r["rss_before_mib"], 1),
        "one_slice_float32_mib": round(r["slice_mib"], 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-big", action="store_true", help="skip the > 4 GiB streaming test")
    parser.add_argument("--big-gib", type=float, default=4.2, help="size of the streamed stack (GiB)")
    parser.add_argument("--child-write", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-read", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_write:
        _child_write(args.child_write[0], json.loads(args.child_write[1]))
        return
    if args.child_read:
        _child_read(args.child_read)
        return
    with tempfile.TemporaryDirectory(prefix="me_bench_") as d:
        out = {"benchmark": "data_pipeline", "cpu_count": os.cpu_count()}
        if not args.skip_big:
            out["streaming"] = bench_big_tiff(Path(d), args.big_gib)
        out["pipeline"] = bench_pipeline(Path(d))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
