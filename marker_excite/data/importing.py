"""Import of microscopy files (+ label files) as one sample of a sample store (``marker-excite import``).

The image is streamed slice by slice: read, checked (NaN/Inf), resampled in-plane to the target pixel
size (z kept), and written with its labels to the store, which computes channel statistics and class
counts. Marker names are checked against a panel (default: the paper's five markers) and stored with
the panel's spelling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from marker_excite.contract.markers import PAPER_MARKERS, MarkerPanel
from marker_excite.data.resample import resample_notice, resample_to_shape, target_shape
from marker_excite.data.sample import TISSUE
from marker_excite.data.sample_files import open_sample_files
from marker_excite.data.store import SampleInfo, SampleStore
from marker_excite.data.volume import check_spacing
from marker_excite.errors import UserInputError, did_you_mean
from marker_excite.progress import Progress


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
    spacing = check_spacing(spacing) if spacing is not None else None
    if target_spacing is not None and not target_spacing > 0:
        raise UserInputError(f"target spacing must be a positive number of µm, got {target_spacing}")
    with open_sample_files(
        image,
        markers=markers,
        labels=label_files,
        label_maps=label_maps,
        annotated=annotated,
        spacing=spacing,
        axes=axes,
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
            out_yx, stored_spacing = (ny, nx), (sz, sy, sx)
        else:
            out_yx = target_shape((ny, nx), (sy, sx), (target_spacing, target_spacing))
            stored_spacing = (sz, ny * sy / out_yx[0], nx * sx / out_yx[1])
            if resample_notice((ny, nx), out_yx):
                Progress(None, enabled=progress).write(resample_notice((ny, nx), out_yx))
        if files.classes and not files.annotated.any():
            raise UserInputError("the label files are empty on every slice: give --annotated (e.g. all)")
        with SampleStore(store, "a") as st:
            writer = st.create_sample(
                name, markers=names, shape_zyx=(nz, *out_yx), spacing=stored_spacing, classes=files.classes,
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
