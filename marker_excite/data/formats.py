"""The volume file formats: one :class:`Format` entry per format (suffixes, reader class, writer class).

:func:`~marker_excite.data.io.open_volume` and :class:`~marker_excite.data.writers.VolumeWriter`
choose the format here and nowhere else. A new format is one module with a
:class:`~marker_excite.data.volume.VolumeReader` and/or :class:`~marker_excite.data.volume.FormatWriter`
subclass, plus one entry in :data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from marker_excite.data.bioio_io import BIOIO_SUFFIXES, BioioVolume
from marker_excite.data.hdf5_io import HDF5_MAGIC, HDF5_SUFFIXES, IMS_SUFFIXES, H5Volume, H5Writer, ImsVolume, is_ims
from marker_excite.data.store import is_store, open_sample_volume
from marker_excite.data.tiff_io import TIFF_MAGIC, TIFF_SUFFIXES, TiffVolume, TiffWriter
from marker_excite.data.volume import FormatWriter, VolumeError, VolumeReader
from marker_excite.data.zarr_io import ZARR_SUFFIXES, ZarrVolume, ZarrWriter, is_zarr


@dataclass(frozen=True)
class Format:
    """One volume format.

    Attributes:
        name: short name (``tiff``, ``hdf5``, ``ims``, ``store``, ``zarr``, ``bioio``).
        title: the name users know, in messages (``TIFF/OME-TIFF``).
        suffixes: lower-case name endings that select the format (none: found by ``inside`` only).
        reader: the :class:`VolumeReader` class (or a function returning one), called as
            ``reader(path, markers=, spacing=, **options)``.
        writer: the :class:`FormatWriter` class, or None for a read-only format.
        reader_options: which of :func:`~marker_excite.data.io.open_volume`'s ``axes`` / ``dataset`` the
            reader takes (the others do not apply to the format and are not passed).
        magic: first bytes that identify a file of the format whose name has no known suffix.
        folder: the format is a folder, recognised by ``is_folder``.
        inside: the name of the format whose files hold this one (Imaris files and sample stores are HDF5
            files); such a file opens as this format when ``recognise`` says so, unless a dataset is
            named and the format does not ``name_inside``.
        recognise: content check used with ``is_folder`` / ``inside``.
        inner_paths: ``file.h5:inner/path`` names an object inside a file of the format.
        name_inside: an inner path names an object of THIS format (``store.h5:sample``), not a dataset of
            the container.
        output_hint: how an output name selects the format, for messages (``.h5 (HDF5)``).
    """

    name: str
    title: str
    suffixes: tuple[str, ...]
    reader: Callable[..., VolumeReader]
    writer: type[FormatWriter] | None = None
    reader_options: tuple[str, ...] = ()
    magic: tuple[bytes, ...] = ()
    folder: bool = False
    inside: str | None = None
    recognise: Callable[[Path], bool] | None = None
    inner_paths: bool = False
    name_inside: bool = False
    output_hint: str = ""

    def has_suffix(self, path: Path) -> bool:
        """Whether the name of ``path`` ends in one of the format's suffixes (case-insensitive)."""
        return path.name.lower().endswith(self.suffixes)

    def open(
        self, path: Path, markers: Sequence[str] | str | None, spacing: Sequence[float] | None, **options: str | None
    ) -> VolumeReader:
        """The reader of ``path``, given the options it takes (``axes``, ``dataset``) and no others."""
        return self.reader(path, markers=markers, spacing=spacing, **{k: options[k] for k in self.reader_options})


#: Every format, in the order of the messages that list them.
FORMATS: tuple[Format, ...] = (
    Format(
        "tiff",
        "TIFF/OME-TIFF",
        TIFF_SUFFIXES,
        TiffVolume,
        TiffWriter,
        reader_options=("axes",),
        magic=TIFF_MAGIC,
        output_hint=".ome.tif/.tif (OME-TIFF)",
    ),
    Format(
        "hdf5",
        "HDF5",
        HDF5_SUFFIXES,
        H5Volume,
        H5Writer,
        reader_options=("dataset", "axes"),
        magic=HDF5_MAGIC,
        inner_paths=True,
        output_hint=".h5 (HDF5)",
    ),
    Format("ims", "Imaris", IMS_SUFFIXES, ImsVolume, inside="hdf5", recognise=is_ims, inner_paths=True),
    # a marker_excite sample store (an HDF5 file); `store.h5:sample` names a sample
    Format(
        "store",
        "sample store",
        (),
        open_sample_volume,
        reader_options=("dataset",),
        inside="hdf5",
        recognise=is_store,
        name_inside=True,
    ),
    Format(
        "zarr",
        "OME-Zarr",
        ZARR_SUFFIXES,
        ZarrVolume,
        ZarrWriter,
        folder=True,
        recognise=is_zarr,
        output_hint=".ome.zarr (OME-Zarr)",
    ),
    # CZI / ND2 / LIF through bioio plugins (the optional `formats` extra); `file.lif:scene` names a scene
    Format("bioio", "CZI/ND2/LIF", BIOIO_SUFFIXES, BioioVolume, reader_options=("dataset",), inner_paths=True),
)


def inner_path_suffixes() -> tuple[str, ...]:
    """Suffixes of the formats whose paths may name an inner object (``file.h5:inner/path``)."""
    return tuple(s for f in FORMATS if f.inner_paths for s in f.suffixes)


def reading_format(path: Path, *, dataset: str | None = None) -> Format:
    """The format to read the existing ``path`` with: a recognised folder, else by suffix, else by the
    file's first bytes; a file of a container format (HDF5) opens as the format inside it (Imaris, a
    sample store) when that one recognises it, unless ``dataset`` names a dataset to read with the
    container's reader (a store's ``dataset`` names one of its samples).

    Raises :class:`VolumeError` for a folder of no format and for a file of unknown format.
    """
    if path.is_dir():
        for fmt in FORMATS:
            if fmt.folder and fmt.recognise is not None and fmt.recognise(path):
                return fmt
        raise VolumeError(f"input {path} is a folder, expected a file")
    fmt = next((f for f in FORMATS if not f.folder and f.has_suffix(path)), None)
    if fmt is None:
        with open(path, "rb") as fh:
            head = fh.read(8)
        fmt = next((f for f in FORMATS if any(head.startswith(m) for m in f.magic)), None)
    if fmt is None:
        supported = ", ".join(f"{f.title} ({', '.join(f.suffixes)})" for f in FORMATS if f.suffixes and not f.folder)
        raise VolumeError(f"{path}: unknown file format; supported: {supported}")
    for inner in FORMATS:  # a named dataset is read by the container's reader
        if inner.inside == fmt.name and (dataset is None or inner.name_inside):
            if inner.recognise is not None and inner.recognise(path):
                return inner
    return fmt


def writing_format(path: Path) -> Format:
    """The format an output name selects (by suffix, or ``IMAGE.zarr/labels/NAME``: OME-Zarr);
    :class:`VolumeError` listing the choices otherwise."""
    writable = [f for f in FORMATS if f.writer is not None]
    fmt = next((f for f in writable if f.has_suffix(path)), None)
    if fmt is None and Path(path).parent.name == "labels" and Path(path).parent.parent.name.endswith(ZARR_SUFFIXES):
        fmt = next(f for f in writable if f.writer is ZarrWriter)  # an NGFF label image: IMAGE.zarr/labels/NAME
    if fmt is None:
        hints = [f.output_hint for f in writable]
        raise VolumeError(
            f"{path}: output must end in {', '.join(hints[:-1])} or {hints[-1]}, or be IMAGE.ome.zarr/labels/NAME"
        )
    return fmt
