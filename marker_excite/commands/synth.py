"""``marker-excite synth``: write the synthetic bone-marrow phantom to a sample store."""

from __future__ import annotations

import argparse

from marker_excite.config import split_list
from marker_excite.data.phantom.anatomy import REGIONS
from marker_excite.data.synthetic import write_dataset
from marker_excite.errors import UserInputError
from marker_excite.presets import PRESETS, option_help

HELP = "generate the synthetic bone-marrow phantom (5 markers, sinusoids + arteries) into a sample store"
#: the phantom written when ``--preset`` is not given
DEFAULT_PRESET = "small"


def _shape(text: str) -> tuple[int, int, int]:
    try:  # an empty entry is a UserInputError, a ValueError like a bad number's
        shape = tuple(int(v) for v in split_list(text.replace("x", ","), what="--shape"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be Z,Y,X integers, got {text!r}") from None
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"shape must be Z,Y,X (3 integers), got {text!r}")
    return shape  # type: ignore[return-value]


def preset_help() -> str:
    """``synth --preset``: each preset's samples."""
    texts = {
        name: scale.about_phantom.format(
            samples=len(scale.phantom.shapes_zyx), shape="x".join(map(str, scale.phantom.shapes_zyx[0]))
        )
        for name, scale in PRESETS.items()
    }
    return f"{option_help(texts)} (default: {DEFAULT_PRESET})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``marker-excite synth``."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET, help=preset_help())
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
