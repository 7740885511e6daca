"""``marker-excite export``: a run directory as a plain TensorFlow SavedModel + model_card.json."""

from __future__ import annotations

import argparse

HELP = "export a run as a TensorFlow SavedModel (+ model_card.json) usable without this package"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (from `train`)")
    parser.add_argument("output", help="directory to create for the SavedModel")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing exported model")


def run(args: argparse.Namespace) -> int:
    from marker_excite.export import export_run

    path = export_run(args.run, args.output, overwrite=args.overwrite)
    print(f"exported {args.run} -> {path} (signature serving_default; see {path / 'model_card.json'})")
    return 0
