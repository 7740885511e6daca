"""Zeiss CZI, Nikon ND2 and Leica LIF stacks through ``bioio`` readers (the optional ``formats`` extra).

``pip install "marker_excite[formats]"`` installs ``bioio`` with the ``bioio-czi``, ``bioio-nd2`` and
``bioio-lif`` plugins. A file is read one Z slice at a time (``get_image_dask_data("CYX", T=0, Z=z)``
reads only the planes of that slice), with the channel names and the voxel size (µm) of its metadata.
A file with several scenes / series (usual for LIF) needs the scene: ``file.lif:NAME`` or
``file.lif:INDEX``; time series and RGB (samples) images are refused with one clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marker_excite.data.volume import VolumeError, VolumeReader

#: suffix -> (bioio plugin module, what it reads)
BIOIO_FORMATS: dict[str, tuple[str, str]] = {
    ".czi": ("bioio_czi", "Zeiss CZI"),
    ".nd2": ("bioio_nd2", "Nikon ND2"),
    ".lif": ("bioio_lif", "Leica LIF"),
}
BIOIO_SUFFIXES: tuple[str, ...] = tuple(BIOIO_FORMATS)


def is_bioio(path: Path) -> bool:
    """A file this module reads (by suffix)."""
    return path.name.lower().endswith(BIOIO_SUFFIXES)


def _reader_class(path: Path):
    import importlib

    module, what = BIOIO_FORMATS[path.suffix.lower()]
    try:
        importlib.import_module("bioio")
        return importlib.import_module(module).Reader
    except ImportError:
        raise VolumeError(
            f"{path}: reading {what} files needs the optional 'formats' extra: pip install \"marker_excite[formats]\" "
            f"(bioio and {module.replace('_', '-')})"
        ) from None


def _choose_scene(path: Path, image, scene: str | None) -> None:
    scenes = [str(s) for s in image.scenes]
    if scene is None:
        if len(scenes) > 1:
            raise VolumeError(
                f"{path} holds {len(scenes)} scenes ({', '.join(scenes[:6])}{', ...' if len(scenes) > 6 else ''}); "
                f"name one as {path.name}:SCENE (its name or its index from 0)"
            )
        return
    if scene in scenes:
        image.set_scene(scene)
    elif scene.isdigit() and int(scene) < len(scenes):
        image.set_scene(int(scene))
    else:
        raise VolumeError(f"{path} has no scene {scene!r}; it has {', '.join(scenes)}")


class BioioVolume(VolumeReader):
    """One scene of a CZI / ND2 / LIF file, read one slice at a time through bioio."""

    def __init__(self, path, markers=None, spacing=None, dataset: str | None = None) -> None:
        """``dataset``: the scene (name or index; ``file.lif:scene`` in a path)."""
        scene = dataset
        self.path = Path(path)
        reader = _reader_class(self.path)
        from bioio import BioImage

        try:
            self._image = BioImage(self.path, reader=reader)
            _choose_scene(self.path, self._image, scene)
            dims = self._image.dims
        except VolumeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the readers raise many types for corrupt files
            raise VolumeError(
                f"{self.path}: not a readable {BIOIO_FORMATS[self.path.suffix.lower()][1]} file: {exc}"
            ) from None
        size = dict(zip(dims.order, dims.shape))
        if size.get("T", 1) > 1:
            raise VolumeError(f"{self.path}: time series ({size['T']} time points) are not supported")
        if size.get("S", 1) > 1:
            raise VolumeError(
                f"{self.path}: RGB images ({size['S']} samples per pixel) are not supported; save the channels separately"
            )
        self.shape_czyx = (size.get("C", 1), size.get("Z", 1), size["Y"], size["X"])
        self.dtype = np.dtype(self._image.dtype)
        self.mode = self.path.suffix.lower().lstrip(".")
        sizes = self._image.physical_pixel_sizes
        file_spacing = None
        if sizes.Y and sizes.X:
            file_spacing = (float(sizes.Z) if sizes.Z else 1.0, float(sizes.Y), float(sizes.X))
        self._set_metadata([str(n) for n in self._image.channel_names or []], file_spacing, markers, spacing)
        self._check_data()

    def _read(self, z: int) -> np.ndarray:
        return np.asarray(self._image.get_image_dask_data("CYX", T=0, Z=z).compute())
