"""``marker-excite quantify``: volume fraction of each class within the tissue, per sample and region."""

from __future__ import annotations

import argparse

from marker_excite.atomic import check_output_path
from marker_excite.commands.options import add_allow_unseen_option, add_option, add_weights_option
from marker_excite.errors import UserInputError
from marker_excite.predictor import load_predictor
from marker_excite.quantify import fraction_boxplot, quantify_files, quantify_store, store_truth, write_csv

HELP = "volume fractions of the segmented classes within the tissue mask, per sample and region (CSV + box plot)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("input: a store segmented with a model, OR predicted label volumes")
    source.add_argument(
        "--store", help="sample store (.h5); its samples are segmented with --model, regions from the store"
    )
    source.add_argument("--model", help="run directory or exported model that segments the store")
    add_weights_option(source)
    source.add_argument("--samples", help="store samples to quantify, comma-separated (default: all)")
    add_option(
        source, "--use", old="--markers", help="segment with only these markers of the model's panel (names or m_125)"
    )
    source.add_argument("--labels", nargs="+", help="label volumes written by `predict --labels`")
    source.add_argument("--images", nargs="+", help="the image stack of each label volume (for the tissue mask)")
    source.add_argument("--classes", help="class names of label values 1, 2, ... (default: the --model's classes)")
    source.add_argument("--regions", help="region of each label volume, comma-separated")
    source.add_argument(
        "--channel-names",
        help="name of each channel of the --images in order, comma-separated; '-' skips a channel "
        "(with --tissue-run each name must be a marker of the tissue model)",
    )
    tissue = parser.add_argument_group("tissue mask: a tissue model, else an Otsu threshold on smoothed DAPI")
    tissue.add_argument("--tissue-run", help="run directory or exported model of a DAPI-only tissue model")
    tissue.add_argument("--dapi", default="DAPI", help="channel name used by the threshold fallback (default DAPI)")
    tissue.add_argument(
        "--sigma", type=float, default=2.0, help="threshold fallback: Gaussian sigma in pixels (default 2)"
    )
    tissue.add_argument(
        "--min-size", type=int, default=64, help="threshold fallback: smallest object kept, pixels (default 64)"
    )
    add_allow_unseen_option(parser)
    parser.add_argument("-o", "--output", required=True, help="CSV file to write")
    parser.add_argument("--plot", help="box plot to write (.png/.pdf/.svg)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",")]


def _training_samples(model) -> list[str]:
    """The samples a model was trained on, from its model card (none known: empty)."""
    if model is None:
        return []
    samples = (model.card.get("training") or {}).get("samples") or {}
    return list(samples.get("train") or [])


def run(args: argparse.Namespace) -> int:
    if bool(args.store) == bool(args.labels):
        raise UserInputError("give either --store (with --model) or --labels (with --images)")
    check_output_path(args.output, overwrite=args.overwrite)
    if args.plot:
        check_output_path(args.plot, overwrite=args.overwrite)
    common = dict(dapi=args.dapi, sigma=args.sigma, min_size=args.min_size, batch_size=args.batch_size,
                  allow_unseen=args.allow_unseen)  # fmt: skip
    tissue = load_predictor(args.tissue_run) if args.tissue_run else None
    model = load_predictor(args.model, weights=args.weights) if args.model else None
    if args.store:
        if model is None:
            raise UserInputError("--store needs --model (the run or exported model that segments it)")
        rows = quantify_store(args.store, model, tissue_model=tissue, samples=_split(args.samples),
                              markers=args.use, progress=not args.quiet, **common)  # fmt: skip
    else:
        if not args.images:
            raise UserInputError("--labels needs --images (one image stack per label volume, for the tissue mask)")
        if args.classes:
            classes = _split(args.classes)
        elif model is not None:
            classes = list(model.spec.classes)
        else:
            raise UserInputError("give --classes (names of label values 1, 2, ...) or --model")
        rows = quantify_files(args.labels, args.images, classes, regions=_split(args.regions), tissue_model=tissue,
                              channel_names=args.channel_names, **common)  # fmt: skip
    write_csv(rows, args.output, overwrite=args.overwrite)
    if args.plot:
        classes_found = list(dict.fromkeys(r["class"] for r in rows))
        truth = store_truth(args.store, [r["sample"] for r in rows], classes_found) if args.store else {}
        fraction_boxplot(rows, args.plot, truth=truth, training=_training_samples(model), overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {args.output}" + (f" and {args.plot}" if args.plot else ""))
    return 0
