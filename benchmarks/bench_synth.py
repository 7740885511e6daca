"""Time and memory of the phantom generator on one large sample (default 32 x 1024 x 1024, 5 markers)
and on the whole small preset; prints JSON.

Wall time depends on what else runs on the machine (``load_average_1min`` is recorded); the process CPU
time (``sample_cpu_seconds``, includes the 2 FFT threads) is the steadier number.

    python benchmarks/bench_synth.py [--shape 32,1024,1024] [--skip-preset]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from marker_excite.data.synthetic import generate_sample, write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32,1024,1024")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-preset", action="store_true", help="do not time the small preset")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    result: dict[str, object] = {"python": platform.python_version(), "numpy": np.__version__, "shape_zyx": shape}
    result["load_average_1min"] = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    sample = generate_sample("bench", shape, seed=args.seed)
    result["sample_seconds"] = round(time.perf_counter() - t0, 2)
    result["sample_cpu_seconds"] = round(time.process_time() - c0, 2)
    result["sample_voxels"] = int(np.prod(shape))
    result["sample_fractions"] = {k: sample.attrs[f"fraction_{k}"] for k in ("sinusoids", "arteries")}
    del sample
    if not args.skip_preset:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            path = write_dataset(Path(tmp) / "small.h5", "small", seed=args.seed, progress=False)
            result["small_preset_seconds"] = round(time.perf_counter() - t0, 2)
            result["small_preset_mb"] = round(path.stat().st_size / 2**20, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
