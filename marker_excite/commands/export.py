"""``marker-excite export``: a run directory as a plain TensorFlow SavedModel + model_card.json, or as a
bioimage.io model package (``--format bioimageio``)."""

from __future__ import annotations

import argparse
import sys

from marker_excite.commands.options import add_allow_unseen_option, add_weights_option, check_outputs
from marker_excite.config import split_list
from marker_excite.contract.model_spec import CARD_NAME, SERVING_SIGNATURE
from marker_excite.errors import UserInputError
from marker_excite.runs.run import load_run
from marker_excite.sharing.bioimageio import export_bioimageio
from marker_excite.sharing.savedmodel import export_run

HELP = "export a run as a TensorFlow SavedModel (+ model_card.json) or a bioimage.io model package"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (from `train`)")
    parser.add_argument("output", help="directory to create for the SavedModel, or OUT.zip for --format bioimageio")
    parser.add_argument("--format", default="savedmodel", choices=("savedmodel", "bioimageio"),
                        help="savedmodel (default) or a bioimage.io model package (.zip, model format 0.5)")  # fmt: skip
    parser.add_argument(
        "--fixed-markers", help="bioimageio: single-input model for exactly these markers, e.g. DAPI,collagen"
    )
    parser.add_argument(
        "--sample", help="bioimageio: stack to cut the test tile from (default: a test sample of the run's store)"
    )
    parser.add_argument("--author", action="append", default=[], help="bioimageio: author name (repeatable)")
    add_weights_option(parser)
    add_allow_unseen_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")


def run(args: argparse.Namespace) -> int:
    if args.format == "savedmodel" and (args.fixed_markers or args.sample or args.author or args.allow_unseen):
        raise UserInputError("--fixed-markers, --sample, --author and --allow-unseen only apply to --format bioimageio")
    check_outputs({"output": args.output}, data=[args.sample], models=[args.run])
    trained = load_run(args.run, weights=args.weights)
    if args.format == "savedmodel":
        path = export_run(trained, args.output, overwrite=args.overwrite)
        print(f"exported {args.run} -> {path} (signature {SERVING_SIGNATURE}; see {path / CARD_NAME})")
        return 0
    fixed = list(split_list(args.fixed_markers, what="--fixed-markers")) if args.fixed_markers else None
    path = export_bioimageio(
        trained, args.output, fixed_markers=fixed, sample=args.sample, authors=args.author,
        allow_unseen=args.allow_unseen, overwrite=args.overwrite,
    )  # fmt: skip
    flavour = f"input {', '.join(fixed)}" if fixed else "input: the markers, then their availability planes"
    print(f"exported {args.run} -> {path} (bioimage.io model package, {flavour})")
    if not args.author:
        print("note: no --author given: the package names no authors (bioimage.io asks for them)", file=sys.stderr)
    return 0
