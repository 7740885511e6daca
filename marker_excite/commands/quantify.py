"""``marker-excite quantify``: volume fraction of each class within the tissue, per sample and region."""

from __future__ import annotations

import argparse
import sys

from marker_excite.atomic import check_output_path
from marker_excite.commands.options import add_allow_unseen_option, add_option, add_weights_option, check_outputs
from marker_excite.config import split_list
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.inference.quantify import (
    EMPTY_TISSUE,
    TissueSource,
    empty_tissue_samples,
    fraction_boxplot,
    quantify_files,
    quantify_store,
    store_truth,
    write_csv,
)

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
    source.add_argument(
        "--images", nargs="+", help="the image stack of each label volume (for a threshold or tissue-model mask)"
    )
    source.add_argument("--classes", help="class names of label values 1, 2, ... (default: the --model's classes)")
    source.add_argument("--regions", help="region of each label volume, comma-separated")
    source.add_argument(
        "--channel-names",
        help="name of each channel of the --images in order, comma-separated; '-' skips a channel "
        "(with --tissue-model each name must be a marker of the tissue model)",
    )
    tissue = parser.add_argument_group(
        "tissue mask (one of): an Otsu threshold on a marker (default DAPI), a tissue model, mask files, a store label"
    )
    add_option(tissue, "--tissue-marker", old="--dapi", default="DAPI",
               help="threshold mask: the marker (channel name) to threshold (default DAPI)")  # fmt: skip
    add_option(tissue, "--tissue-model", old="--tissue-run",
               help="run directory or exported model that segments the tissue (class 'tissue', else its foreground)")  # fmt: skip
    tissue.add_argument(
        "--tissue-mask", nargs="+", help="mask volume per sample / label volume, in order (non-zero = tissue)"
    )
    tissue.add_argument(
        "--tissue-label", help="with --store: each sample's own label of this class (e.g. the phantom's 'tissue')"
    )
    tissue.add_argument("--sigma", type=float, default=2.0, help="threshold mask: Gaussian sigma in pixels (default 2)")
    tissue.add_argument(
        "--min-size", type=int, default=64, help="threshold mask: smallest object kept, pixels (default 64)"
    )
    add_allow_unseen_option(parser)
    parser.add_argument("-o", "--output", required=True, help="CSV file to write")
    parser.add_argument("--plot", help="box plot to write (.png/.pdf/.svg)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _split(text: str | None, option: str) -> list[str] | None:
    """A comma-separated option value (None when not given)."""
    return None if text is None else list(split_list(text, what=option))


def _training_samples(model) -> list[str]:
    """The samples a model was trained on, from its provenance (none known: empty)."""
    if model is None or model.spec.provenance is None:
        return []
    return list(model.spec.provenance.train_samples)


def run(args: argparse.Namespace) -> int:
    if bool(args.store) == bool(args.labels):
        raise UserInputError("give either --store (with --model) or --labels (with --images)")
    check_outputs(
        {"--output": args.output, "--plot": args.plot},
        data=[args.store, *(args.labels or ()), *(args.images or ()), *(args.tissue_mask or ())],
        models=[args.model, args.tissue_model],
    )
    check_output_path(args.output, overwrite=args.overwrite)
    if args.plot:
        check_output_path(args.plot, overwrite=args.overwrite)
    tissue = TissueSource(
        marker=args.tissue_marker,
        model=load_predictor(args.tissue_model) if args.tissue_model else None,
        masks=tuple(args.tissue_mask or ()),
        label=args.tissue_label,
        sigma=args.sigma,
        min_size=args.min_size,
    )
    model = load_predictor(args.model, weights=args.weights) if args.model else None
    if args.store:
        if model is None:
            raise UserInputError("--store needs --model (the run or exported model that segments it)")
        rows = quantify_store(args.store, model, tissue=tissue, samples=_split(args.samples, "--samples"), markers=args.use,
                              batch_size=args.batch_size, progress=not args.quiet,
                              allow_unseen=args.allow_unseen)  # fmt: skip
    else:
        if args.tissue_label:
            raise UserInputError("--tissue-label reads the labels of a store: give --store, or --tissue-mask files")
        if not args.images and not args.tissue_mask:
            raise UserInputError(
                "--labels needs --images (one image stack per label volume, for the tissue mask) or --tissue-mask"
            )
        if args.classes:
            classes = _split(args.classes, "--classes")
        elif model is not None:
            classes = list(model.spec.classes)
        else:
            raise UserInputError("give --classes (names of label values 1, 2, ...) or --model")
        rows = quantify_files(args.labels, args.images, classes, regions=_split(args.regions, "--regions"), tissue=tissue,
                              channel_names=args.channel_names, batch_size=args.batch_size,
                              allow_unseen=args.allow_unseen)  # fmt: skip
    write_csv(rows, args.output, overwrite=args.overwrite)
    if args.plot:
        classes_found = list(dict.fromkeys(r["class"] for r in rows))
        truth = store_truth(args.store, [r["sample"] for r in rows], classes_found) if args.store else {}
        fraction_boxplot(rows, args.plot, truth=truth, training=_training_samples(model), overwrite=args.overwrite)
    empty = empty_tissue_samples(rows)
    if empty:
        print(f"marker-excite quantify: warning: {EMPTY_TISSUE} for sample(s) {', '.join(empty)} "
              "(fraction nan, column 'note' says why)", file=sys.stderr)  # fmt: skip
    if not args.quiet:
        print(
            f"wrote {args.output}" + (f" and {args.plot}" if args.plot else "") + f"; tissue mask: {tissue.description}"
        )
    return 0
