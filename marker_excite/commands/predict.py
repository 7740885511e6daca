"""``marker-excite predict``: segment a whole 2D/3D stack with a trained run or an exported model."""

from __future__ import annotations

import argparse

from marker_excite.commands.options import add_option
from marker_excite.data.io import check_spacing
from marker_excite.errors import UserInputError
from marker_excite.inference import predict_file

HELP = "segment a whole stack (TIFF/OME-TIFF/HDF5/.ims) with a run directory or an exported model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory (from `train`) or exported model directory (from `export`)")
    parser.add_argument("input", help="stack file or OME-Zarr folder; HDF5 datasets as file.h5:path, store samples as store.h5:sample")
    parser.add_argument("--labels", help="label volume to write (.ome.tif/.tif, .h5 or .ome.zarr): 0 background, c = c-th class")
    parser.add_argument("--probabilities", help="probability volume to write (.ome.tif/.tif, .h5 or .ome.zarr), channels background + classes")
    parser.add_argument("--prob-dtype", default="float32", choices=("float32", "uint8", "uint16"),
                        help="probability storage: float32, or round(p*255) / round(p*65535) (default float32)")
    add_option(parser, "--use", old="--markers",
               help="feed only these markers of the model's panel (names like DAPI,collagen or m_125; default: all the stack has)")
    parser.add_argument("--channel-names",
                        help="name of each channel of the stack in order, comma-separated; '-' skips a channel (overrides the file's names)")
    parser.add_argument("--spacing", help="voxel size z,y,x in µm (overrides the file's)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    if not args.labels and not args.probabilities:
        raise UserInputError("give --labels and/or --probabilities (the output volumes)")
    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {args.batch_size}")
    written = predict_file(
        args.model,
        args.input,
        labels=args.labels,
        probabilities=args.probabilities,
        markers=args.use,
        channel_names=args.channel_names,
        spacing=None if args.spacing is None else check_spacing(args.spacing, where="--spacing"),
        batch_size=args.batch_size,
        probability_dtype=args.prob_dtype,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if not args.quiet:
        for kind, path in written.items():
            print(f"wrote {kind}: {path}")
    return 0
