"""CZI / ND2 / LIF through bioio (the 'formats' extra): a CZI written here with pylibCZIrw is read slice by
slice with its channel names and voxel size, scenes are chosen by name or index, a missing extra is one
clear error."""

import sys

import numpy as np
import pytest

from marker_excite.data.io import VolumeError, open_volume


def _write_czi(path, data, names, spacing, scenes=1):
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for scene in range(scenes):
            for c in range(data.shape[0]):
                for z in range(data.shape[1]):
                    czi.write(data=data[c, z] + scene, plane={"C": c, "Z": z, "T": 0}, scene=scene)
        czi.write_metadata(document_name="test", channel_names=dict(enumerate(names)),
                           scale_x=spacing[2] * 1e-6, scale_y=spacing[1] * 1e-6, scale_z=spacing[0] * 1e-6)  # fmt: skip
    return path


@pytest.fixture
def czi(tmp_path):
    pytest.importorskip("bioio_czi")
    data = np.random.default_rng(0).integers(0, 4000, size=(2, 3, 20, 24)).astype(np.uint16)
    return _write_czi(tmp_path / "stack.czi", data, ("DAPI", "endomucin"), (2.0, 0.5, 0.5)), data


def test_czi_is_read_slice_by_slice_with_its_metadata(czi):
    path, data = czi
    with open_volume(path) as vol:
        assert vol.shape_czyx == (2, 3, 20, 24) and vol.dtype == np.uint16
        assert vol.markers == ("DAPI", "endomucin") and vol.markers_source == "file"
        assert vol.spacing == pytest.approx((2.0, 0.5, 0.5)) and vol.spacing_source == "file"
        for z in range(3):
            np.testing.assert_array_equal(vol.read_slice(z), data[:, z].astype(np.float32))
    with open_volume(path, markers="-,CD31", spacing=(1, 1, 1)) as vol:
        assert vol.markers == ("CD31",) and vol.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(vol.read_slice(2), data[1:, 2].astype(np.float32))


def test_czi_scenes(czi):
    path, data = czi
    for scene in ("0", "Image:0"):
        with open_volume(f"{path}:{scene}") as vol:
            np.testing.assert_array_equal(vol.read_slice(1), data[:, 1].astype(np.float32))
    with pytest.raises(VolumeError, match=r"has no scene '7'; it has Image:0"):
        open_volume(f"{path}:7")


def test_a_file_of_several_scenes_needs_one_named():
    from pathlib import Path

    from marker_excite.data.bioio_io import _choose_scene

    class Image:  # pylibCZIrw cannot write a multi-scene file that bioio reads as such: the choice on a stand-in
        scenes = ("Series001", "Series002")
        chosen = None

        def set_scene(self, scene):
            Image.chosen = scene

    with pytest.raises(VolumeError, match=r"a.lif holds 2 scenes \(Series001, Series002\); name one as a.lif:SCENE"):
        _choose_scene(Path("a.lif"), Image(), None)
    _choose_scene(Path("a.lif"), Image(), "Series002")
    assert Image.chosen == "Series002"
    _choose_scene(Path("a.lif"), Image(), "0")
    assert Image.chosen == 0


def test_missing_formats_extra_is_one_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "stack.nd2"
    path.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "bioio_nd2", None)  # as if not installed
    with pytest.raises(VolumeError, match=r"reading Nikon ND2 files needs the optional 'formats' extra: "
                                          r"pip install \"marker_excite\[formats\]\" \(bioio and bioio-nd2\)"):  # fmt: skip
        open_volume(path)
