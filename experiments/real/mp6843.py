"""MP6843 (real fluorescence images, two stains, whole-cell masks): `marker-excite compare` on real data.

    python experiments/real/mp6843.py [--workers 1] [--preset cpu] [--aggregate-only] [...compare options]

1. Builds a sample store from ``../shared/realdata/mp6843/mp6843_compact_bin2.npz`` (read its README;
   the images must never be committed) into ``data/mp6843.h5`` (git-ignored): each of the 100 fields is
   a 2D sample (a z = 1 volume) named by its field stem, with the markers ``cytoplasm`` (channel w1,
   actin-like) and ``nuclear`` (w2, Hoechst-like) and one class ``cells`` = the merged whole-cell labels
   > 0. The pixel size is not recorded with the data: we ASSUME 1 µm x 1 µm per (2x2-binned) pixel and
   1 µm in z; every field gets the same, so it changes no result here.
2. Splits the fields once, FIXED: the 100 sorted stems permuted with numpy's default_rng(0); the first 70
   train, the next 10 validate, the last 20 test (written to ``<out>/split.json``).
3. Runs ``marker-excite compare`` (default: cpu preset) on the panel cytoplasm, nuclear and class cells
   into ``experiments/results/real-mp6843/`` (runs in ``runs/``, tables and report in ``compare/``);
   other options (``--workers``, ``--shard``, ``--aggregate-only``, ``--epochs``) pass through.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from marker_excite.atomic import write_json
from marker_excite.cli import main as cli_main
from marker_excite.data.sample import Sample
from marker_excite.data.store import SampleStore

ROOT = Path(__file__).resolve().parents[2]
NPZ = ROOT.parent / "shared" / "realdata" / "mp6843" / "mp6843_compact_bin2.npz"
STORE = ROOT / "data" / "mp6843.h5"
OUT = ROOT / "experiments" / "results" / "real-mp6843"
MARKERS = ("cytoplasm", "nuclear")  # channel w1 (actin-like cytoplasm stain), w2 (Hoechst-like nuclear stain)
CLASS = "cells"
#: Assumed voxel size (z, y, x) in µm: not recorded with this copy of the data.
SPACING = (1.0, 1.0, 1.0)
SPLIT_SEED = 0
N_TRAIN, N_VAL, N_TEST = 70, 10, 20


def build_store(npz: Path, store: Path) -> list[str]:
    """Write every field of ``npz`` as a 2D sample (z = 1) into a new store; returns the sample names."""
    data = np.load(npz)
    images, labels = data["images"], data["cell_labels_merged"]
    stems = [str(s) for s in data["stems"]]
    store.parent.mkdir(parents=True, exist_ok=True)
    with SampleStore(store, "w") as s:  # the store appears only once every field is written
        for stem, image, label in zip(stems, images, labels):
            s.write_sample(
                Sample(
                    stem,
                    image[:, None],  # (C, Z=1, Y, X), uint16 as recorded
                    MARKERS,
                    spacing=SPACING,
                    labels={CLASS: (label > 0)[None].astype(np.uint8)},
                    attrs={"source": "MP6843 (Cell Image Library), 2x2 binned"},
                )
            )
    return stems


def fixed_split(stems: list[str]) -> dict[str, list[str]]:
    """The 70/10/20 split of the sorted stems by a permutation seeded with :data:`SPLIT_SEED`."""
    order = [sorted(stems)[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(stems))]
    assert len(order) == N_TRAIN + N_VAL + N_TEST, len(order)
    return {
        "train": sorted(order[:N_TRAIN]),
        "val": sorted(order[N_TRAIN : N_TRAIN + N_VAL]),
        "test": sorted(order[N_TRAIN + N_VAL :]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=NPZ, help=f"the MP6843 arrays (default: {NPZ})")
    parser.add_argument("--store", type=Path, default=STORE, help=f"store to build / use (default: {STORE})")
    parser.add_argument("--out", type=Path, default=OUT, help=f"compare's output folder (default: {OUT})")
    parser.add_argument("--preset", default="cpu", help="compare's preset (default: cpu)")
    args, rest = parser.parse_known_args(argv)
    if args.store.is_file():
        with SampleStore(args.store, "r") as s:
            stems = s.names()
    else:
        if not args.npz.is_file():
            print(
                f"mp6843: error: {args.npz} does not exist (see ../shared/realdata/mp6843/README.md)", file=sys.stderr
            )
            return 2
        print(f"mp6843: building {args.store} from {args.npz}", file=sys.stderr)
        stems = build_store(args.npz, args.store)
    split = fixed_split(stems)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "split.json", {"seed": SPLIT_SEED, "spacing_zyx_assumed_um": SPACING, **split})
    return cli_main(
        ["compare", "--store", str(args.store), "--markers", ",".join(MARKERS), "--classes", CLASS,
         "--val", ",".join(split["val"]), "--test", ",".join(split["test"]), "--preset", args.preset,
         "--out", str(args.out), *rest]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
