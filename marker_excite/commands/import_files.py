"""``marker-excite import``: microscopy files (+ label files) -> one sample of a sample store.

The image is streamed slice by slice: read, checked (NaN/Inf), resampled in-plane to the target pixel
size (z kept), and written with its labels to the store, which computes channel statistics and class
counts. Marker names are checked against a panel (default: the paper's five markers) and stored with
the panel's spelling.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from marker_excite.commands.options import add_option
from marker_excite.config import split_list
from marker_excite.contract.markers import PAPER_MARKERS, MarkerPanel
from marker_excite.data.io import check_spacing
from marker_excite.data.resample import resample_notice, resample_to_shape, target_shape
from marker_excite.data.sample import TISSUE
from marker_excite.data.sample_files import open_sample_files
from marker_excite.data.store import SampleInfo, SampleStore
from marker_excite.errors import UserInputError, did_you_mean
from marker_excite.progress import Progress

HELP = "Import image stacks (TIFF, OME-TIFF, HDF5, Imaris, OME-Zarr) and label files into a sample store."


def import_sample(
    store: str | Path,
    name: str,
    image: str | Path,
    *,
    markers: Sequence[str] | str | None = None,
    labels: Mapping[str, str | Path] | None = None,
    label_maps: Mapping[str | Path, Mapping[str, float]] | None = None,
    tissue: str | Path | None = None,
    annotated: str | Sequence[int] | None = None,
    region: str | None = None,
    spacing: Sequence[float] | str | None = None,
    target_spacing: float | None = 1.0,
    panel: MarkerPanel | Sequence[str] | None = PAPER_MARKERS,
    axes: str | None = None,
    overwrite: bool = False,
    compression: str | None = None,
    progress: bool = True,
) -> SampleInfo:
    """Import one sample into ``store`` (created if missing) and return its :class:`SampleInfo`.

    Args:
        store: sample store file (HDF5); other samples in it are left untouched.
        name: sample name (group name in the store).
        image: image file; ``markers`` names its channels when the file does not (or to rename them).
        labels: class -> label file, a mask (same Z, Y, X as the image; 0 and one other value, which is
            the class, e.g. 0/1 or 0/255).
        label_maps: label map file -> {class: voxel value} (e.g. ``{"map.tif": {"sinusoids": 1,
            "arteries": 2}}``, as ``predict --labels`` writes); 0 is background, every other value
            must be given a class. A file serves one class (``labels``) or one map, never two roles.
        tissue: optional tissue-mask file (stored as class ``"tissue"``).
        annotated: ``"all"``, slice indices (``"0,3,5-8"`` / list), or None = slices with any label.
        region: anatomical region, e.g. ``"diaphysis"``.
        spacing: (z, y, x) µm, overriding the file's voxel size (required when the file has none).
        target_spacing: in-plane pixel size in µm after import (None keeps the file's).
        panel: marker vocabulary the names must belong to (None accepts any names).
        axes: the image file's axes when they cannot be inferred, e.g. ``"ZCYX"``.
        overwrite: replace a sample of the same name.
    """
    label_files = dict(labels or {})
    if tissue is not None:
        if TISSUE in label_files:
            raise UserInputError(f"tissue mask given twice (--tissue and --label {TISSUE}=...)")
        label_files[TISSUE] = tissue
    space = check_spacing(spacing) if spacing is not None else None
    if target_spacing is not None and not target_spacing > 0:
        raise UserInputError(f"target spacing must be a positive number of µm, got {target_spacing}")
    with open_sample_files(
        image, markers=markers, labels=label_files, label_maps=label_maps, annotated=annotated, spacing=space, axes=axes
    ) as files:
        vol = files.image
        if vol.markers_source == "default":
            raise UserInputError(f"{vol.path} does not name its {vol.shape_czyx[0]} channel(s): give --channel-names")
        names = _panel_names(vol.markers, panel)
        if vol.spacing_source == "default":
            raise UserInputError(f"{vol.path} has no voxel size: give --spacing z,y,x (µm)")
        nz, ny, nx = vol.shape_zyx
        sz, sy, sx = vol.spacing
        if target_spacing is None:
            out_yx, out_spacing = (ny, nx), (sz, sy, sx)
        else:
            out_yx = target_shape((ny, nx), (sy, sx), (target_spacing, target_spacing))
            out_spacing = (sz, ny * sy / out_yx[0], nx * sx / out_yx[1])
            if resample_notice((ny, nx), out_yx):
                Progress(None, enabled=progress).write(resample_notice((ny, nx), out_yx))
        if files.classes and not files.annotated.any():
            raise UserInputError("the label files are empty on every slice: give --annotated (e.g. all)")
        with SampleStore(store, "a") as st:
            writer = st.create_sample(
                name, markers=names, shape_zyx=(nz, *out_yx), spacing=out_spacing, classes=files.classes,
                region=region, dtype=vol.dtype if out_yx == (ny, nx) else "float32",
                attrs={"source": str(vol.path), "source_spacing": list(vol.spacing), "source_shape_zyx": list(vol.shape_zyx)},
                overwrite=overwrite, compression=compression,
            )  # fmt: skip
            # not on a terminal (logs): the final line, and a half-way line only when that took 30 s
            with (
                writer,
                Progress(nz, f"import {name}", unit="slice", every=50, min_interval=30, enabled=progress) as bar,
            ):
                for z in range(nz):
                    img, labs = files.read_slice(z)
                    img = resample_to_shape(img, out_yx, order=1)
                    labs = {c: resample_to_shape(m, out_yx, order=0) for c, m in labs.items()}
                    writer.write_slice(z, img, labs if files.classes else None, annotated=bool(files.annotated[z]))
                    bar.update()
            return st.info(name)


def _panel_names(names: Sequence[str], panel: MarkerPanel | Sequence[str] | None) -> tuple[str, ...]:
    if panel is None:
        return tuple(names)
    p = panel if isinstance(panel, MarkerPanel) else MarkerPanel(tuple(panel))
    for n in names:
        if n not in p:
            raise UserInputError(
                f"unknown marker {n!r}{did_you_mean(n, p.names)}; the panel has {', '.join(p.names)} "
                "(name the channel '-' to skip it; --panel NAMES changes the panel, --panel any accepts every name)"
            )
    return tuple(p.names[p.index(n)] for n in names)


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
