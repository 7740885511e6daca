"""``marker-excite import``: microscopy files (+ label files) -> one sample of a sample store.

Argument parsing and the summary line; the import itself is :func:`marker_excite.data.importing.import_sample`.
"""

from __future__ import annotations

import argparse

from marker_excite.commands.options import add_option
from marker_excite.config import split_list
from marker_excite.contract.markers import PAPER_MARKERS, MarkerPanel
from marker_excite.data.importing import import_sample
from marker_excite.errors import UserInputError

HELP = "Import image stacks (TIFF, OME-TIFF, HDF5, Imaris, OME-Zarr) and label files into a sample store."


def _label_arg(text: str) -> tuple[str, str]:
    cls, sep, path = text.partition("=")
    if not sep or not cls.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected CLASS=FILE, got {text!r}")
    return cls.strip(), path.strip()


def _label_map_arg(text: str) -> tuple[str, dict[str, float]]:
    path, sep, spec = text.rpartition("=")
    values: dict[str, float] = {}
    try:
        items = split_list(spec, what="--label-map") if sep else ()
    except UserInputError:
        items = ()  # refused below with the expected form
    for item in items:
        cls, colon, value = item.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not colon or not cls.strip() or cls.strip() in values or not number > 0:
            values = {}
            break
        values[cls.strip()] = number
    if not path.strip() or not values:
        raise argparse.ArgumentTypeError(
            f"expected FILE=CLASS:VALUE,... with distinct classes and positive values, e.g. "
            f"map.tif=sinusoids:1,arteries:2; got {text!r}"
        )
    return path.strip(), values


def _target_arg(text: str) -> float | None:
    if text.strip().lower() in ("none", "keep"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel size in µm or 'none', got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "example:\n  marker-excite import --store data.h5 --name s1 --image s1.ome.tif \\\n"
        "      --label sinusoids=s1_sin.tif --label arteries=s1_art.tif --annotated 0,3,5-8 --region diaphysis"
    )
    parser.add_argument("--store", required=True, help="sample store (HDF5) to add the sample to; created if missing")
    parser.add_argument("--name", required=True, help="sample name in the store")
    parser.add_argument(
        "--image", required=True, help="image file: .tif/.ome.tif, .h5 (file.h5:dataset), .ims, or an .ome.zarr folder"
    )
    add_option(
        parser,
        "--channel-names",
        old="--markers",
        help="name of each channel of the file in order, comma-separated; '-' skips a channel "
        "(required when the file names none)",
    )
    parser.add_argument(
        "--label", action="append", type=_label_arg, default=[], metavar="CLASS=FILE",
        help="mask file of a class (repeatable), e.g. sinusoids=sin.tif: 0 and one other value (0/1, 0/255), "
        "which is the class",
    )  # fmt: skip
    parser.add_argument(
        "--label-map", action="append", type=_label_map_arg, default=[], metavar="FILE=CLASS:VALUE,...",
        help="label map file holding several classes, one voxel value each (repeatable), e.g. "
        "labels.tif=sinusoids:1,arteries:2 for what predict --labels writes; 0 is background, every other "
        "value needs a class",
    )  # fmt: skip
    parser.add_argument("--tissue", help="tissue mask file (stored as class 'tissue')")
    parser.add_argument(
        "--annotated", help="annotated slices: 'all' or indices like 0,3,5-8 (default: slices with labels)"
    )
    parser.add_argument("--region", help="anatomical region, e.g. diaphysis or metaphysis")
    parser.add_argument("--spacing", help="voxel size z,y,x in µm (overrides the file's)")
    parser.add_argument(
        "--target-spacing", type=_target_arg, default=1.0, metavar="UM",
        help="in-plane pixel size after import in µm (default 1, as in the paper; 'none' keeps the file's)",
    )  # fmt: skip
    parser.add_argument(
        "--panel", default=",".join(PAPER_MARKERS),
        help="allowed marker names, comma-separated (default: the paper's panel); 'any' accepts every name",
    )  # fmt: skip
    parser.add_argument("--axes", help="axes of the image file when not recorded in it, e.g. ZCYX")
    parser.add_argument(
        "--compression", choices=("gzip", "lzf"), help="compress the stored image (default: none, fastest)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a sample of the same name")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    labels: dict[str, str] = {}
    for cls, path in args.label:
        if cls in labels:
            raise UserInputError(f"label class {cls!r} given twice")
        labels[cls] = path
    label_maps: dict[str, dict[str, float]] = {}
    for path, values in args.label_map:
        if path in label_maps:
            raise UserInputError(f"label map {path} given twice: give all its classes in one --label-map")
        label_maps[path] = values
    panel = None if args.panel.strip().lower() == "any" else MarkerPanel(split_list(args.panel, what="--panel"))
    info = import_sample(
        args.store, args.name, args.image, markers=args.channel_names, labels=labels, label_maps=label_maps,
        tissue=args.tissue, annotated=args.annotated, region=args.region, spacing=args.spacing,
        target_spacing=args.target_spacing, panel=panel, axes=args.axes, overwrite=args.overwrite,
        compression=args.compression, progress=not args.quiet,
    )  # fmt: skip
    z, y, x = info.shape_zyx
    counts = info.class_counts
    classes = ", ".join(f"{c} {counts[c]}" for c in info.classes) or "no labels"
    print(
        f"imported {info.name} into {args.store}: markers {', '.join(info.markers)}; {z} x {y} x {x} voxels "
        f"at {info.spacing[0]:g} x {info.spacing[1]:g} x {info.spacing[2]:g} µm; "
        f"{len(info.annotated_slices)} annotated slice(s); class voxels: {classes}"
    )
    return 0
