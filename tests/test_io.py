"""Volume readers/writers (TIFF, OME-TIFF, ImageJ, HDF5, Imaris .ims), errors, resampling."""

import os

import h5py
import numpy as np
import pytest
import tifffile

from marker_excite.data.io import VolumeError, open_volume
from marker_excite.data.resample import resample_slice, resample_to_shape, restore_slice, target_shape
from marker_excite.data.sample import Sample
from marker_excite.data.sample_files import open_sample_files, read_sample_files
from marker_excite.data.store import SampleStore
from marker_excite.data.writers import VolumeWriter, write_volume
from marker_excite.errors import UserInputError


def _bytes_attr(text: str) -> np.ndarray:
    """Imaris stores text attributes as arrays of single bytes."""
    return np.array([c.encode() for c in text], dtype="S1")


def write_ims(path, data: np.ndarray, names, spacing, pad=(2, 3, 5)) -> None:
    """A minimal Imaris-like file: padded chunk-sized Data per channel, names and extents as byte arrays."""
    c, z, y, x = data.shape
    with h5py.File(path, "w") as f:
        f.attrs["ImarisVersion"] = _bytes_attr("5.5.0")
        tp = f.create_group("DataSet/ResolutionLevel 0/TimePoint 0")
        for i in range(c):
            padded = np.zeros((z + pad[0], y + pad[1], x + pad[2]), data.dtype)
            padded[:z, :y, :x] = data[i]
            padded[z:, :, :] = 999  # padding garbage must be cropped away
            tp.create_dataset(f"Channel {i}/Data", data=padded)
            f.create_group(f"DataSetInfo/Channel {i}").attrs["Name"] = _bytes_attr(names[i])
        # a lower resolution level that must be ignored
        f.create_dataset("DataSet/ResolutionLevel 1/TimePoint 0/Channel 0/Data", data=np.zeros((1, 1, 1), data.dtype))
        info = f.create_group("DataSetInfo/Image")
        for key, value in {"X": x, "Y": y, "Z": z}.items():
            info.attrs[key] = _bytes_attr(str(value))
        sz, sy, sx = spacing
        for i, (n, s) in enumerate([(x, sx), (y, sy), (z, sz)]):
            info.attrs[f"ExtMin{i}"] = _bytes_attr("-10.0")
            info.attrs[f"ExtMax{i}"] = _bytes_attr(str(-10.0 + n * s))


@pytest.fixture
def vol():
    return np.random.default_rng(0).normal(size=(2, 3, 20, 30)).astype(np.float32)


def test_ome_tiff_round_trip_names_spacing_contiguous(tmp_path, vol):
    p = write_volume(tmp_path / "a.ome.tif", vol, (2.0, 0.5, 0.25), ["DAPI", "endomucin"])
    with open_volume(p) as r:
        assert r.mode == "contiguous" and r.shape_czyx == (2, 3, 20, 30)
        assert r.markers == ("DAPI", "endomucin") and r.markers_source == "file"
        assert r.spacing == (2.0, 0.5, 0.25) and r.spacing_source == "file"
        for z in range(3):
            np.testing.assert_array_equal(r.read_slice(z), vol[:, z])
    with open_volume(p, markers="a,b", spacing=(1, 1, 1)) as r:  # caller overrides
        assert r.markers == ("a", "b") and r.spacing == (1.0, 1.0, 1.0)
    with pytest.raises(VolumeError, match=r"3 marker name\(s\).*file has 2 channel"):
        open_volume(p, markers="a,b,c")
    with pytest.raises(UserInputError, match="already exists"):
        write_volume(p, vol)
    write_volume(p, vol[:1], overwrite=True)
    assert open_volume(p).shape_czyx == (1, 3, 20, 30)


def test_ome_tiff_calibrated_for_imagej_and_baseline_readers(tmp_path, vol):
    """Beside the OME-XML: X/YResolution in pixels per µm and ImageJ hyperstack metadata (axes, unit,
    z spacing) in a second ImageDescription, which is what ImageJ reads without Bio-Formats."""
    from fractions import Fraction

    from marker_excite.data.tiff_io import add_imagej_description

    p = write_volume(tmp_path / "a.ome.tif", vol, (2.0, 0.45, 0.25), ["DAPI", "endomucin"])
    with tifffile.TiffFile(p) as tif:
        page = tif.pages.first
        assert tif.is_ome and page.description.startswith("<?xml")  # OME-XML stays the first description
        assert Fraction(*page.tags["XResolution"].value) == 4 and Fraction(*page.tags["YResolution"].value) == Fraction(
            20, 9
        )
        assert page.tags["ResolutionUnit"].value == 1  # no TIFF unit: ImageJ's convention, unit in its description
        ij = tif.imagej_metadata
        assert (ij["images"], ij["channels"], ij["slices"], ij["hyperstack"]) == (6, 2, 3, True)
        assert ij["unit"] == "micron" and ij["spacing"] == 2.0
        assert page.description1.startswith("ImageJ=") and tif.series[0].axes == "ZCYX"
        np.testing.assert_array_equal(tif.asarray(), vol.transpose(1, 0, 2, 3))
    with open_volume(p) as r:  # our reader still takes names and spacing from the OME-XML
        assert r.markers == ("DAPI", "endomucin") and r.spacing == (2.0, 0.45, 0.25) and r.mode == "contiguous"
    # BigTIFF (volumes over 4 GiB) and big-endian files get the same second description
    for kwargs in ({"bigtiff": True}, {"byteorder": ">"}):
        q = tmp_path / f"b{len(os.listdir(tmp_path))}.ome.tif"
        tifffile.imwrite(q, vol[:, 0], ome=True, metadata={"axes": "CYX"}, **kwargs)
        add_imagej_description(q, "ImageJ=1.11a\nimages=2\n")
        with tifffile.TiffFile(q) as tif:
            assert tif.is_ome and tif.imagej_metadata["images"] == 2
            np.testing.assert_array_equal(tif.asarray(), vol[:, 0])


def test_plain_and_compressed_tiff_page_wise(tmp_path, vol):
    zcyx = np.ascontiguousarray(vol.transpose(1, 0, 2, 3))
    tifffile.imwrite(tmp_path / "c.tif", zcyx, compression="zlib", metadata={"axes": "ZCYX"})
    with open_volume(tmp_path / "c.tif", markers=["DAPI", "collagen"]) as r:
        assert r.mode == "pages" and r.shape_czyx == (2, 3, 20, 30) and r.spacing_source == "default"
        np.testing.assert_array_equal(r.read_slice(1), vol[:, 1])
    # plain multi-page TIFF: pages are slices of one channel, or the channels of a 2D image
    tifffile.imwrite(tmp_path / "z.tif", vol[0], metadata=None)
    with open_volume(tmp_path / "z.tif") as r:
        assert r.shape_czyx == (1, 3, 20, 30) and r.markers == ("C0",) and r.markers_source == "default"
    with open_volume(tmp_path / "z.tif", markers="DAPI,endomucin,collagen") as r:
        assert r.shape_czyx == (3, 1, 20, 30)
    tifffile.imwrite(tmp_path / "p.tif", zcyx.reshape(6, 20, 30), metadata=None)
    with pytest.raises(VolumeError, match="cannot tell channels from slices"):
        open_volume(tmp_path / "p.tif", markers="a,b,c,d")
    with open_volume(tmp_path / "p.tif", markers="a,b", axes="ZCYX") as r:  # 6 pages need explicit axes
        assert r.shape_czyx == (2, 3, 20, 30)
        np.testing.assert_array_equal(r.read_slice(1), vol[:, 1])
    tifffile.imwrite(tmp_path / "pc.tif", zcyx.reshape(6, 20, 30), metadata=None, compression="zlib")
    with open_volume(tmp_path / "pc.tif", markers="a,b", axes="ZCYX") as r:
        np.testing.assert_array_equal(r.read_slice(2), vol[:, 2])
    tifffile.imwrite(tmp_path / "be.tif", vol[0], byteorder=">")
    with open_volume(tmp_path / "be.tif") as r:
        assert r.mode == "contiguous"
        np.testing.assert_array_equal(r.read_slice(1)[0], vol[0, 1])
    rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with open_volume(tmp_path / "rgb.tif", markers="DAPI,endomucin,collagen") as r:
        assert r.mode == "memmap" and r.shape_czyx == (3, 1, 20, 30)
        np.testing.assert_array_equal(r.read_slice(0), rgb.transpose(2, 0, 1)[:, None][:, 0])
    tifffile.imwrite(tmp_path / "p4.tif", zcyx, metadata=None)
    with open_volume(tmp_path / "p4.tif", markers="a,b", axes="ZCYX") as r:
        np.testing.assert_array_equal(r.read_slice(2), vol[:, 2])


def test_imagej_spacing(tmp_path, vol):
    tifffile.imwrite(
        tmp_path / "ij.tif", vol.transpose(1, 0, 2, 3), imagej=True, resolution=(2.0, 4.0),
        metadata={"spacing": 3.0, "unit": "um", "axes": "ZCYX"},
    )  # fmt: skip
    with open_volume(tmp_path / "ij.tif", markers=["DAPI", "endoglin"]) as r:
        assert r.spacing == (3.0, 0.25, 0.5)
        np.testing.assert_array_equal(r.read_slice(0), vol[:, 0])


def test_hdf5_plain_dataset_and_store(tmp_path, vol):
    p = write_volume(tmp_path / "v.h5", vol, (2, 1, 1), ["DAPI", "collagen"])
    with open_volume(p) as r:
        assert r.markers == ("DAPI", "collagen") and r.spacing == (2.0, 1.0, 1.0)
        np.testing.assert_array_equal(r.read_slice(2), vol[:, 2])
    with h5py.File(tmp_path / "multi.h5", "w") as f:
        f["raw/zyx"] = vol[0]
        f["raw/other"] = vol[1]
        f["raw/zyx"].attrs["element_size_um"] = [3.0, 0.5, 0.5]
    with pytest.raises(VolumeError, match="name the dataset"):
        open_volume(tmp_path / "multi.h5")
    with open_volume(f"{tmp_path}/multi.h5:raw/zyx", markers="DAPI") as r:
        assert r.shape_czyx == (1, 3, 20, 30) and r.spacing == (3.0, 0.5, 0.5)
        np.testing.assert_array_equal(r.read_slice(1)[0], vol[0, 1])
    s = Sample("s1", vol, ("DAPI", "endomucin"), (2, 1, 1))
    with SampleStore(tmp_path / "store.h5", "w") as st:
        st.write_sample(s)
    with open_volume(tmp_path / "store.h5") as r:
        assert r.markers == ("DAPI", "endomucin")
        np.testing.assert_array_equal(r.read_slice(0), vol[:, 0])


def test_imaris_reader_crops_padding_and_reads_names(tmp_path, vol):
    data = (vol * 100 + 1000).astype(np.uint16)
    write_ims(tmp_path / "x.ims", data, ["DAPI", "CXCL12-GFP"], (2.0, 0.5, 0.25))
    with open_volume(tmp_path / "x.ims") as r:
        assert r.shape_czyx == (2, 3, 20, 30)
        assert r.markers == ("DAPI", "CXCL12-GFP")
        np.testing.assert_allclose(r.spacing, (2.0, 0.5, 0.25))
        np.testing.assert_array_equal(r.read_volume(), data.astype(np.float32))


def test_corrupt_and_truncated_files(tmp_path, vol):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"garbage" * 50)
    with pytest.raises(VolumeError, match="junk.tif: not a readable TIFF"):
        open_volume(junk)
    big = write_volume(tmp_path / "big.ome.tif", vol, channel_names=["a", "b"])
    data = big.read_bytes()
    (tmp_path / "cut.ome.tif").write_bytes(data[: len(data) - 2000])
    with pytest.raises(VolumeError, match="cut.ome.tif.*truncated"):
        open_volume(tmp_path / "cut.ome.tif")
    tifffile.imwrite(tmp_path / "cz.tif", vol[0], compression="zlib", metadata=None)
    data = (tmp_path / "cz.tif").read_bytes()
    first_page_end = tifffile.TiffFile(tmp_path / "cz.tif").pages[0].dataoffsets[0] + 50
    (tmp_path / "czcut.tif").write_bytes(data[:first_page_end])
    with pytest.raises(VolumeError, match="czcut.tif"):
        r = open_volume(tmp_path / "czcut.tif")
        r.read_slice(2)
    h5 = write_volume(tmp_path / "v.h5", vol)
    (tmp_path / "bad.h5").write_bytes(h5.read_bytes()[:300])
    with pytest.raises(VolumeError, match="bad.h5.*corrupt or truncated"):
        open_volume(tmp_path / "bad.h5")
    (tmp_path / "what.xyz").write_bytes(b"abcdefgh")
    with pytest.raises(VolumeError, match="unknown file format"):
        open_volume(tmp_path / "what.xyz")
    with pytest.raises(VolumeError, match="does not exist"):
        open_volume(tmp_path / "missing.tif")


def _set_compression_code(path, code: int) -> None:
    """Overwrite the Compression tag of every page in place (an unknown or unsupported codec)."""
    with tifffile.TiffFile(path) as tif:
        offsets = [page.tags["Compression"].valueoffset for page in tif.pages]
    data = bytearray(path.read_bytes())
    for o in offsets:
        data[o : o + 2] = int(code).to_bytes(2, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("codec", "name"), [("lzw", "LZW"), ("zlib", "ADOBE_DEFLATE"), ("zstd", "ZSTD"), ("packbits", "PACKBITS")]
)
def test_compressed_tiff_image_and_labels(tmp_path, codec, name):
    """Fiji / MATLAB write LZW (and Deflate, Zstd, PackBits): image and label files read exactly."""
    img = (np.arange(3 * 2 * 20 * 30) % 251).astype(np.uint16).reshape(3, 2, 20, 30)  # ZCYX
    tifffile.imwrite(tmp_path / "img.tif", img, imagej=True, compression=codec, metadata={"axes": "ZCYX"})
    lab = np.zeros((3, 20, 30), np.uint8)
    lab[1, 2:5, 3:9] = 255
    tifffile.imwrite(tmp_path / "lab.tif", lab, compression=codec)
    with open_volume(tmp_path / "img.tif", markers="DAPI,endomucin") as r:
        assert r.mode == "pages" and r.compression == name
        np.testing.assert_array_equal(r.read_volume(), img.transpose(1, 0, 2, 3).astype(np.float32))
    s = read_sample_files(
        "s", tmp_path / "img.tif", markers="DAPI,endomucin", labels={"sinusoids": tmp_path / "lab.tif"}
    )
    np.testing.assert_array_equal(s.labels["sinusoids"], (lab != 0).astype(np.uint8))
    np.testing.assert_array_equal(s.annotated, [False, True, False])


def test_compressed_rgb_and_codec_errors(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", compression="lzw")
    with open_volume(tmp_path / "rgb.tif", markers="DAPI,endomucin,collagen") as r:
        assert r.mode == "pages" and r.shape_czyx == (3, 1, 20, 30)
        np.testing.assert_array_equal(r.read_slice(0), rgb.transpose(2, 0, 1).astype(np.float32))
    vol = np.arange(2 * 20 * 30, dtype=np.uint16).reshape(2, 20, 30)
    tifffile.imwrite(tmp_path / "unknown.tif", vol, compression="zlib", metadata=None)
    _set_compression_code(tmp_path / "unknown.tif", 50999)
    with pytest.raises(VolumeError, match=r"unknown.tif: TIFF compression code 50999 is not supported") as err:
        open_volume(tmp_path / "unknown.tif")
    assert "corrupt" not in str(err.value)
    # damaged LZW data: the slice and the codec are named
    tifffile.imwrite(tmp_path / "bad.tif", vol, compression="lzw", metadata=None)
    with tifffile.TiffFile(tmp_path / "bad.tif") as tif:
        start, count = tif.pages[1].dataoffsets[0], tif.pages[1].databytecounts[0]
    data = bytearray((tmp_path / "bad.tif").read_bytes())
    data[start : start + count] = b"\xff" * count
    (tmp_path / "bad.tif").write_bytes(bytes(data))
    with open_volume(tmp_path / "bad.tif") as r:
        np.testing.assert_array_equal(r.read_slice(0)[0], vol[0])
        with pytest.raises(
            VolumeError, match=r"bad.tif: cannot read slice 1 .*corrupt compressed data \(LZW data cannot be decoded"
        ):
            r.read_slice(1)


def test_nan_and_marker_name_errors(tmp_path, vol):
    bad = vol.copy()
    bad[1, 2, 5, 5] = np.inf
    p = write_volume(tmp_path / "nan.ome.tif", bad, channel_names=["DAPI", "endoglin"])
    with open_volume(p) as r:
        r.read_slice(1)
        with pytest.raises(VolumeError, match="NaN/Inf voxels in marker.s. endoglin at slice 2"):
            r.read_slice(2)
    with pytest.raises(VolumeError, match="marker given twice: DAPI"):
        open_volume(p, markers="DAPI,dapi")
    with pytest.raises(VolumeError, match="empty marker set"):
        open_volume(p, markers="")
    with pytest.raises(VolumeError, match="spacing must be"):
        open_volume(p, spacing=(1, 0, 1))


def test_sample_files_label_checks_and_annotated(tmp_path, vol):
    img = write_volume(tmp_path / "img.ome.tif", vol, (2, 1, 1), ["DAPI", "endomucin"])
    lab = np.zeros((3, 20, 30), np.uint8)
    lab[1, 2:5, 3:9] = 255
    tifffile.imwrite(tmp_path / "sin.tif", lab)
    tifffile.imwrite(tmp_path / "wrong.tif", lab[:, :10])
    s = read_sample_files("s", img, labels={"sinusoids": tmp_path / "sin.tif"})
    np.testing.assert_array_equal(s.annotated, [False, True, False])
    assert s.labels["sinusoids"].max() == 1 and s.labels["sinusoids"].sum() == 18
    with open_sample_files(img, labels={"sinusoids": tmp_path / "sin.tif"}, annotated="0,2") as f:
        np.testing.assert_array_equal(f.annotated, [True, False, True])
    with open_sample_files(img, labels={"sinusoids": tmp_path / "sin.tif"}, annotated="all") as f:
        assert f.annotated.all()
    with pytest.raises(VolumeError, match=r"shape mismatch: label file .*wrong.tif.*\(3, 10, 30\).*\(3, 20, 30\)"):
        open_sample_files(img, labels={"sinusoids": tmp_path / "wrong.tif"})
    with pytest.raises(VolumeError, match="annotated slice 7 is outside 0..2"):
        open_sample_files(img, labels={"sinusoids": tmp_path / "sin.tif"}, annotated="0,7")


def test_volume_writer_streaming_atomic(tmp_path, vol):
    out = tmp_path / "w.ome.tif"
    with VolumeWriter(out, (3, 20, 30), np.uint8, (1, 1, 1)) as w:
        for z in (2, 0, 1):
            w.write_slice(z, np.full((20, 30), z, np.uint8))
        assert not out.exists()  # only the temporary file exists until commit
    with open_volume(out) as r:
        assert r.read_slice(2).max() == 2 and r.shape_czyx == (1, 3, 20, 30)
    with pytest.raises(RuntimeError):
        with VolumeWriter(tmp_path / "x.h5", (2, 3, 4, 4)) as w:
            w.write_slice(0, np.zeros((2, 4, 4)))
            raise RuntimeError("boom")
    with pytest.raises(VolumeError, match="never written"):
        with VolumeWriter(tmp_path / "y.h5", (2, 3, 4, 4)) as w:
            w.write_slice(0, np.zeros((2, 4, 4)))
    assert sorted(os.listdir(tmp_path)) == ["w.ome.tif"]
    with pytest.raises(VolumeError, match="must end in"):
        VolumeWriter(tmp_path / "x.png", (1, 2, 2))


def test_resampling_shapes_values_and_inverse():
    img = np.full((2, 40, 60), 7.0, np.float32)
    out = resample_slice(img, (0.5, 0.5), (1.0, 1.0))
    assert out.shape == (2, 20, 30) and out.dtype == np.float32
    np.testing.assert_allclose(out, 7.0, rtol=1e-6)
    assert target_shape((41, 60), (0.5, 2.0), (1.0, 1.0)) == (20, 120)
    ramp = np.tile(np.arange(60, dtype=np.float32), (40, 1))
    half = resample_slice(ramp, (1, 1), (2, 2))  # pixel-edge aligned: new pixel j covers old 2j, 2j+1
    np.testing.assert_allclose(half[5, 1:-1], np.arange(1, 29) * 2 + 0.5, atol=0.05)
    lab = (np.arange(40 * 60).reshape(40, 60) % 3 == 0).astype(np.uint8)
    lab_r = resample_to_shape(lab, target_shape(lab.shape, (1, 1), (0.5, 0.5)), order=0)  # as import does
    assert lab_r.shape == (80, 120) and lab_r.dtype == np.uint8 and set(np.unique(lab_r)) <= {0, 1}
    np.testing.assert_array_equal(restore_slice(lab_r, (40, 60), order=0), lab)
    assert resample_slice(img, (1, 1), (1, 1)) is img


# -- the format registry --------------------------------------------------------------------------------
def test_format_registry_chooses_by_suffix_content_and_container(tmp_path, vol):
    from marker_excite.data.formats import reading_format, writing_format

    tif, h5 = write_volume(tmp_path / "v.tif", vol), write_volume(tmp_path / "v.h5", vol)
    ims = tmp_path / "v.ims"
    write_ims(ims, np.abs(vol * 100).astype(np.uint16), ["a", "b"], (1.0, 1.0, 1.0))
    (tmp_path / "tif.dat").write_bytes(tif.read_bytes())
    (tmp_path / "h5.dat").write_bytes(h5.read_bytes())
    (tmp_path / "ims.h5").write_bytes(ims.read_bytes())
    got = {
        name: reading_format(tmp_path / name).name for name in ("v.tif", "v.h5", "v.ims", "tif.dat", "h5.dat", "ims.h5")
    }
    assert got == {
        "v.tif": "tiff",
        "v.h5": "hdf5",
        "v.ims": "ims",
        "tif.dat": "tiff",
        "h5.dat": "hdf5",
        "ims.h5": "ims",
    }
    assert (
        reading_format(tmp_path / "ims.h5", dataset="DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data").name
        == "hdf5"
    )
    assert type(open_volume(tmp_path / "ims.h5")).__name__ == "ImsVolume"
    assert [writing_format(tmp_path / n).name for n in ("a.ome.tif", "a.TIFF", "a.hdf5", "a.ome.zarr")] == [
        "tiff",
        "tiff",
        "hdf5",
        "zarr",
    ]
    # the messages are the ones of the if-chains the registry replaced
    (tmp_path / "what.xyz").write_bytes(b"abcdefgh")
    with pytest.raises(VolumeError) as err:
        open_volume(tmp_path / "what.xyz")
    assert str(err.value) == (
        f"{tmp_path / 'what.xyz'}: unknown file format; supported: TIFF/OME-TIFF (.tif, .tiff, "
        ".btf, .tf8), HDF5 (.h5, .hdf5, .hdf, .he5), Imaris (.ims), CZI/ND2/LIF (.czi, .nd2, .lif)"
    )
    with pytest.raises(VolumeError) as err:
        VolumeWriter(tmp_path / "x.png", (1, 2, 2))
    assert str(err.value) == (
        f"{tmp_path / 'x.png'}: output must end in .ome.tif/.tif (OME-TIFF), .h5 (HDF5) or .ome.zarr (OME-Zarr), "
        "or be IMAGE.ome.zarr/labels/NAME"
    )
    (tmp_path / "folder").mkdir()
    with pytest.raises(VolumeError, match="is a folder, expected a file"):
        open_volume(tmp_path / "folder")


def test_a_new_format_is_one_module_and_one_registry_entry(tmp_path, vol, monkeypatch):
    """open_volume and VolumeWriter dispatch through formats.FORMATS only (here: a .npy format)."""
    from marker_excite.data import formats
    from marker_excite.data.volume import FormatWriter, VolumeReader

    class NpyVolume(VolumeReader):
        def __init__(self, path, markers=None, spacing=None) -> None:
            self.path = path
            self._array = np.load(path, mmap_mode="r")
            self.shape_czyx, self.dtype = self._array.shape, self._array.dtype
            self._set_metadata(None, None, markers, spacing)

        def _read(self, z):
            return self._array[:, z]

    class NpyWriter(FormatWriter):
        def __init__(self, tmp, shape_czyx, dtype, spacing, channel_names) -> None:
            self._array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape_czyx))

        def write_slice(self, z, data):
            self._array[:, z] = data

        def finish(self):
            self._array.flush()

    npy = formats.Format("npy", "NumPy", (".npy",), NpyVolume, NpyWriter, output_hint=".npy (NumPy)")
    monkeypatch.setattr(formats, "FORMATS", formats.FORMATS + (npy,))
    out = write_volume(tmp_path / "v.npy", vol, channel_names=["DAPI", "endomucin"])
    assert sorted(os.listdir(tmp_path)) == ["v.npy"]  # committed atomically like the others
    with open_volume(out, markers=["DAPI", "endomucin"]) as r:
        assert type(r) is NpyVolume and r.markers == ("DAPI", "endomucin")
        np.testing.assert_array_equal(r.read_volume(), vol)


def test_imagej_spacing_is_the_z_step_of_stacks_only(tmp_path, capsys):
    """ImageJ keeps `spacing` (the z step) in 2D images cut from a stack; it used to become their z
    size ("1 x 105 x 138 voxels at 0.0514931 x ..."). Only a stack of several slices uses it."""
    from marker_excite.cli import main

    meta = {"spacing": 0.0514931, "unit": "um"}
    plane = np.arange(105 * 138, dtype=np.uint16).reshape(105, 138)
    tifffile.imwrite(tmp_path / "2d.tif", plane, imagej=True, resolution=(1 / 0.25, 1 / 0.25), metadata=meta)
    stack = np.stack([plane] * 3)
    tifffile.imwrite(tmp_path / "3d.tif", stack, imagej=True, resolution=(4, 4), metadata={**meta, "axes": "ZYX"})
    with tifffile.TiffFile(tmp_path / "2d.tif") as tif:
        assert tif.imagej_metadata["spacing"] == 0.0514931  # what Fiji writes
    with open_volume(tmp_path / "2d.tif") as r:
        assert r.shape_czyx == (1, 1, 105, 138) and r.spacing == (1.0, 0.25, 0.25) and r.spacing_source == "file"
    with open_volume(tmp_path / "3d.tif") as r:
        assert r.shape_czyx == (1, 3, 105, 138) and r.spacing == pytest.approx((0.0514931, 0.25, 0.25))
    argv = ["import", "--store", str(tmp_path / "s.h5"), "--name", "s1", "--image", str(tmp_path / "2d.tif"),
            "--channel-names", "DAPI", "--target-spacing", "none", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "1 x 105 x 138 voxels at 1 x 0.25 x 0.25 µm" in capsys.readouterr().out
