"""``marker-excite predict``: segment a whole 2D/3D stack with a trained run or an exported model."""

from __future__ import annotations

import argparse
from pathlib import Path

from marker_excite.atomic import check_output_path
from marker_excite.commands.options import add_allow_unseen_option, add_option, add_weights_option, check_outputs
from marker_excite.data.io import check_spacing, open_volume
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.inference.preview import parse_slice, write_preview
from marker_excite.inference.whole_stack import predict_file

HELP = "segment a whole stack (TIFF/OME-TIFF/HDF5/.ims/OME-Zarr) with a run directory or an exported model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory (from `train`) or exported model directory (from `export`)")
    parser.add_argument(
        "input", help="stack file or OME-Zarr folder; HDF5 datasets as file.h5:path, store samples as store.h5:sample"
    )
    parser.add_argument(
        "--labels",
        help="label volume to write (.ome.tif/.tif, .h5 or .ome.zarr; IMAGE.ome.zarr/labels/NAME: an NGFF label "
        "image of IMAGE): 0 background, c = c-th class",
    )
    parser.add_argument(
        "--probabilities",
        help="probability volume to write (.ome.tif/.tif, .h5 or .ome.zarr), channels background + classes",
    )
    parser.add_argument(
        "--prob-dtype",
        default="float32",
        choices=("float32", "uint8", "uint16"),
        help="probability storage: float32, or round(p*255) / round(p*65535) (default float32)",
    )
    add_option(
        parser,
        "--use",
        old="--markers",
        help="feed only these markers of the model's panel (names like DAPI,collagen or m_125; default: all the stack has)",
    )
    parser.add_argument(
        "--channel-names",
        help="name of each channel of the stack in order, comma-separated (overrides the file's names): each a marker "
        "of the model, or '-' to skip the channel",
    )
    parser.add_argument("--spacing", help="voxel size z,y,x in µm (overrides the file's)")
    add_allow_unseen_option(parser)
    parser.add_argument(
        "--preview",
        help="picture to write (.png/.pdf/.svg): the input markers as a colour overlay "
        "next to the predicted label contours and probabilities",
    )
    parser.add_argument(
        "--preview-slice",
        metavar="Z",
        help="slice shown by --preview: a number (from 0) or 'mip' (maximum projection; default: the middle slice)",
    )
    add_weights_option(parser)
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _preview_slice(args: argparse.Namespace, spacing) -> int | None:
    """The slice ``--preview`` shows (None: MIP), checked against the stack before anything is predicted."""
    check_output_path(args.preview, overwrite=args.overwrite)
    if any(Path(args.preview).resolve() == Path(p).resolve() for p in (args.labels, args.probabilities) if p):
        raise UserInputError(f"--preview {args.preview} is also an output volume; choose another name")
    with open_volume(args.input, markers=args.channel_names, spacing=spacing) as volume:
        return parse_slice(args.preview_slice, volume.shape_czyx[1])


def run(args: argparse.Namespace) -> int:
    if not args.labels and not args.probabilities:
        raise UserInputError("give --labels and/or --probabilities (the output volumes; --preview draws from them)")
    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.preview_slice is not None and not args.preview:
        raise UserInputError("--preview-slice needs --preview (the picture to write)")
    outputs = {"--labels": args.labels, "--probabilities": args.probabilities, "--preview": args.preview}
    check_outputs(outputs, data=[args.input], models=[args.model])
    spacing = None if args.spacing is None else check_spacing(args.spacing, where="--spacing")
    z = _preview_slice(args, spacing) if args.preview else None
    predictor = load_predictor(args.model, weights=args.weights)
    written = predict_file(
        predictor,
        args.input,
        labels=args.labels,
        probabilities=args.probabilities,
        markers=args.use,
        channel_names=args.channel_names,
        spacing=spacing,
        batch_size=args.batch_size,
        probability_dtype=args.prob_dtype,
        overwrite=args.overwrite,
        progress=not args.quiet,
        allow_unseen=args.allow_unseen,
    )
    if args.preview:
        written["preview"] = write_preview(
            args.preview, args.input, written, predictor.spec, use=args.use, channel_names=args.channel_names,
            spacing=spacing, z=z, probability_dtype=args.prob_dtype,
        )  # fmt: skip
    if not args.quiet:
        for kind, path in written.items():
            print(f"wrote {kind}: {path}")
    return 0
