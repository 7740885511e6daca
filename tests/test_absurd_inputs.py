"""Absurd inputs are refused with one line, exit 2, and nothing written."""

import lzma
import re
import subprocess
import sys
import zlib

import h5py
import numpy as np
import pytest
import tifffile
from conftest import MARKERS, make_run

from marker_excite.cli import main
from marker_excite.data.io import VolumeError, open_volume
from marker_excite.data.store import SampleStore
from marker_excite.data.writers import write_volume
from marker_excite.errors import UserInputError


@pytest.fixture
def stack(tmp_path):
    image = np.random.default_rng(0).integers(0, 4000, (1, 2, 20, 30)).astype(np.uint16)
    write_volume(tmp_path / "img.ome.tif", image, (2.0, 0.5, 0.5), ["DAPI"])
    return tmp_path


def one_line_error(capsys, argv, command):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"marker-excite {command}: error: "), err
    return err[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target-spacing", "1e6"], "changes the slice size by a factor 5e-07"),
        (["--target-spacing", "1e-3"], "changes the slice size by a factor 500"),
        (["--spacing", "2,1e-3,1e-3"], "resampling 0.001 µm pixels to 1 µm"),
        (["--spacing", "2,1e5,1e5"], "factor 100000"),
        (["--annotated", "2-0"], "empty range '2-0'"),
        (["--name", "."], r"sample name '\.' must be"),
        (["--label", "a/b={d}/img.ome.tif"], "label class name 'a/b' must be"),
    ],
)
def test_import_refuses_absurd_inputs(stack, capsys, extra, message):
    d = stack
    argv = ["import", "--store", str(d / "s.h5"), "--name", "s1", "--image", str(d / "img.ome.tif"), "--quiet"]
    msg = one_line_error(capsys, argv + [e.format(d=d) for e in extra], "import")
    assert re.search(message, msg), msg
    assert sorted(p.name for p in d.iterdir()) == ["img.ome.tif"]


def _one_sample_store(store):
    """A store with one 1 x 20 x 30 sample ``s1`` of ones."""
    with SampleStore(store, "w") as st:
        w = st.create_sample("s1", markers=MARKERS, shape_zyx=(1, 20, 30))
        w.write_slice(0, np.ones((len(MARKERS), 20, 30), np.float32))
        w.finalize()
    return store


def test_predict_output_equal_to_its_input_store_is_refused_even_with_overwrite(stack, tmp_path, capsys):
    run_dir, _, _ = make_run(tmp_path / "run")
    store = _one_sample_store(tmp_path / "store.h5")
    before = store.read_bytes()
    for out in (store, tmp_path / "store.h5.samples" / "x.h5"):
        argv = ["predict", str(run_dir), f"{store}:s1", "--labels", str(out), "--overwrite", "--quiet"]
        assert "would replace the input" in one_line_error(capsys, argv, "predict")
    assert store.read_bytes() == before
    with SampleStore(store) as st:
        assert st.names() == ["s1"]


def _complex(d):
    with h5py.File(d / "bad.h5", "w") as f:
        f["img"] = np.full((2, 20, 30), 1 + 2j, np.complex64)


def _beyond_float32(d):  # the second slice holds 2^24 + 1: refused mid-stream, the store is not created
    image = np.zeros((1, 2, 20, 30), np.uint32)
    image[0, 1, 5, 7] = 2**24 + 1
    write_volume(d / "bad.ome.tif", image, (2.0, 1.0, 1.0), ["DAPI"])


def _negative_beyond_float32(d):
    with h5py.File(d / "bad.h5", "w") as f:
        f["img"] = np.full((2, 20, 30), -(2**24) - 3, np.int64)


def _zero_size(d):
    with h5py.File(d / "bad.h5", "w") as f:
        f["img"] = np.zeros((3, 0, 30), np.uint16)


# Declared shapes are kept moderate (a regression would stream them, not exhaust memory); the check
# does not depend on the size: a (10**5)**3 declaration in a 1.4 KiB file is refused the same way.
def _huge_never_written(d):
    with h5py.File(d / "bad.h5", "w") as f:
        f.create_dataset("img", shape=(10, 2000, 3000), dtype=np.uint16, chunks=(1, 64, 64))


def _huge_contiguous(d):
    with h5py.File(d / "bad.h5", "w") as f:
        f.create_dataset("img", shape=(5, 2000, 3000), dtype=np.uint16)


def _partly_written(d):  # compressed: its size says nothing, its chunk count does
    with h5py.File(d / "bad.h5", "w") as f:
        f.create_dataset("img", shape=(4, 20, 30), dtype=np.uint16, chunks=(1, 20, 30), compression="gzip")[0] = 7


def _huge_slice_every_chunk_stored(d):
    """A 1.6 MB gzip file declaring one 40000 x 40000 slice: every chunk is stored (zeros compress
    to almost nothing), so the stored-data check passes; reading it would need 6 GiB as float32."""
    chunk = (1, 4000, 4000)
    zeros = zlib.compress(bytes(int(np.prod(chunk))), 9)
    with h5py.File(d / "bad.h5", "w") as f:
        ds = f.create_dataset("img", shape=(1, 40000, 40000), dtype=np.uint8, chunks=chunk, compression="gzip")
        for y in range(0, 40000, chunk[1]):
            for x in range(0, 40000, chunk[2]):
                ds.id.write_direct_chunk((0, y, x), zeros)


def _corrupt_deflate(d):  # valid TIFF structure, garbled compressed strip of the second page
    image = np.random.default_rng(1).integers(0, 4000, (2, 20, 30)).astype(np.uint16)
    tifffile.imwrite(d / "bad.tif", image, compression="zlib")
    with tifffile.TiffFile(d / "bad.tif") as tif:
        offset, count = tif.pages[1].dataoffsets[0], tif.pages[1].databytecounts[0]
    data = bytearray((d / "bad.tif").read_bytes())
    data[offset + 2 : offset + count - 4] = bytes(b ^ 0x5A for b in data[offset + 2 : offset + count - 4])
    (d / "bad.tif").write_bytes(bytes(data))


@pytest.mark.parametrize(
    "make, message",
    [
        (_complex, r"bad.h5: complex image data \(complex64\) is not supported \(the imaginary part would be lost\)"),
        (_beyond_float32, r"bad.ome.tif: integer voxel value 16777217 in marker DAPI at slice 1 is beyond 2\^24"),
        (_negative_beyond_float32, r"bad.h5: integer voxel value -16777219 in marker DAPI at slice 0 is beyond 2\^24"),
        (_zero_size, r"bad.h5: image has zero size \(channels 1, Z 3, Y 0, X 30\)"),
        (_huge_never_written, r"bad.h5:/img declares shape \(10, 2000, 3000\) \(114.4 MiB\) but holds no data"),
        (_huge_contiguous, r"bad.h5:/img declares shape \(5, 2000, 3000\) \(57.2 MiB\) but holds no data"),
        (_partly_written, r"bad.h5:/img declares shape \(4, 20, 30\) .* only 1 of its 4 chunks hold data"),
        (
            _huge_slice_every_chunk_stored,
            r"bad.h5: declares 1 channel\(s\) x 1 slice\(s\) of 40000 x 40000 px; one slice would need 5.96 GiB "
            r"as float32, more than the limit of 4 GiB per slice \(set MARKER_EXCITE_MAX_SLICE_GIB to raise it",
        ),
        (
            _corrupt_deflate,
            r"bad.tif: cannot read slice 1 .*: corrupt compressed data \((ADOBE_DEFLATE|DEFLATE|ZLIB) data cannot be decoded",
        ),
    ],
)
def test_import_refuses_bad_image_data(tmp_path, capsys, make, message):
    make(tmp_path)
    (image,) = tmp_path.iterdir()
    argv = ["import", "--store", str(tmp_path / "s.h5"), "--name", "s1", "--image", str(image), "--channel-names", "DAPI",
            "--target-spacing", "none", "--spacing", "1,1,1", "--quiet"]  # fmt: skip
    msg = one_line_error(capsys, argv, "import")
    assert re.search(message, msg), msg
    assert list(tmp_path.iterdir()) == [image]


def test_huge_declared_slice_is_refused_before_any_allocation(tmp_path):
    """Under a 3 GiB address-space limit the crafted file used to end in a MemoryError traceback
    (import allocated the 40000 x 40000 slice); now import and predict stop at the declared shape."""
    _huge_slice_every_chunk_stored(tmp_path)
    assert (tmp_path / "bad.h5").stat().st_size < 2e6
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))\n"
        "from marker_excite.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["import", "--store", str(tmp_path / "s.h5"), "--name", "s1", "--image", str(tmp_path / "bad.h5"),
            "--channel-names", "DAPI", "--spacing", "1,1,1", "--target-spacing", "none", "--quiet"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr[-2000:]
    assert "one slice would need 5.96 GiB as float32, more than the limit of 4 GiB per slice" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


def test_slice_size_limit_follows_the_environment(tmp_path, monkeypatch):
    image = tmp_path / "img.h5"
    write_volume(image, np.zeros((2, 3, 512, 256), np.uint8), (1, 1, 1), ["DAPI", "collagen"])  # 1 MiB per slice
    monkeypatch.setenv("MARKER_EXCITE_MAX_SLICE_GIB", str(1 / 1024))
    with open_volume(image) as volume:
        assert volume.shape_czyx == (2, 3, 512, 256)
    monkeypatch.setenv("MARKER_EXCITE_MAX_SLICE_GIB", str(0.99 / 1024))
    with pytest.raises(VolumeError, match=r"one slice would need 0.000977 GiB as float32, more than the limit"):
        open_volume(image)
    monkeypatch.setenv("MARKER_EXCITE_MAX_SLICE_GIB", "lots")
    with pytest.raises(
        UserInputError, match=r"MARKER_EXCITE_MAX_SLICE_GIB must be a positive number of GiB, got 'lots'"
    ):
        open_volume(image)

    from marker_excite.data.tiff_io import _is_decode_error

    for decompress in (zlib.decompress, lzma.decompress):
        with pytest.raises(Exception) as info:
            decompress(b"not compressed data")
        assert _is_decode_error(info.value)
    assert not _is_decode_error(RuntimeError("other")) and not _is_decode_error(ImportError("no codec"))


@pytest.mark.parametrize("version, message", [(3, "schema version 3; this marker_excite reads up to 2"),
                                              ("1.1", "an invalid schema version '1.1'")])  # fmt: skip
def test_predict_refuses_a_store_of_a_newer_or_invalid_schema_version(tmp_path, capsys, version, message):
    run_dir, _, _ = make_run(tmp_path / "run")
    store = _one_sample_store(tmp_path / "store.h5")
    with h5py.File(store, "a") as f:
        f.attrs["version"] = version
    out = tmp_path / "out"
    for input_path in (f"{store}:s1", str(store)):
        argv = ["predict", str(run_dir), input_path, "--labels", str(out / "labels.ome.tif"), "--quiet"]
        msg = one_line_error(capsys, argv, "predict")
        assert f"store {store} has {message}" in msg, msg
    assert not out.exists() or not list(out.iterdir())
