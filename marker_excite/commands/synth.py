"""``marker-excite synth``: write the synthetic bone-marrow phantom to a sample store."""

from __future__ import annotations

import argparse

from marker_excite.data.phantom.anatomy import REGIONS
from marker_excite.data.synthetic import PRESETS, write_dataset
from marker_excite.errors import UserInputError

HELP = "generate the synthetic bone-marrow phantom (5 markers, sinusoids + arteries) into a sample store"


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be Z,Y,X integers, got {text!r}") from None
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"shape must be Z,Y,X (3 integers), got {text!r}")
    return shape  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``marker-excite synth``."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="small: 8 samples of 6x256x256 voxels (CPU, seconds); paper: 8 samples mirroring the "
                             "paper's table, 230 annotated 388-px patches (default: small)")  # fmt: skip
    parser.add_argument("--out", required=True, help="output sample store (.h5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--samples", type=int, default=None, help="number of samples (default: the preset's 8)")
    parser.add_argument("--shape", type=_shape, default=None, metavar="Z,Y,X", help="one volume shape for all samples")
    parser.add_argument("--region", choices=REGIONS, default=None, help="one region for all samples")
    parser.add_argument("--workers", type=int, default=1,
                        help="generate the samples in N processes side by side (the output is the same for any N; "
                             "the paper preset on 2 cores: see docs/phantom.md) (default: 1)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset; returns 0 (input problems raise :class:`UserInputError`)."""
    if args.seed < 0:
        raise UserInputError(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        raise UserInputError(f"--workers must be >= 1, got {args.workers}")
    write_dataset(
        args.out,
        args.preset,
        seed=args.seed,
        samples=args.samples,
        shape=args.shape,
        region=args.region,
        overwrite=args.overwrite,
        progress=not args.quiet,
        workers=args.workers,
    )
    return 0
