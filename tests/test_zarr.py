"""data/zarr_io.py: OME-Zarr (NGFF 0.4 / 0.5) read for import / predict, streamed atomic write for predict."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

from marker_excite.data.io import VolumeError, open_volume  # noqa: E402
from marker_excite.data.writers import VolumeWriter, write_volume  # noqa: E402
from marker_excite.errors import UserInputError  # noqa: E402


@pytest.fixture
def vol():
    return np.random.default_rng(0).normal(size=(2, 3, 20, 30)).astype(np.float32)


def _ngff05(path, data_tczyx, scale, units, labels):
    """An NGFF 0.5 image (zarr v3) written with the ome-zarr library, as other tools write them."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("s0", data=data_tczyx, chunks=(1, 1, 2, *data_tczyx.shape[-2:]))
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    axes += [{"name": a, "type": "space", "unit": u} for a, u in zip("zyx", units)]
    datasets = [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, *scale]}]}]
    write_multiscales_metadata(
        group, datasets, fmt=FormatV05(), axes=axes, metadata={"omero": {"channels": [{"label": n} for n in labels]}}
    )


def test_write_ngff04_and_read_back(tmp_path, vol):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    p = write_volume(tmp_path / "a.ome.zarr", vol, (2.0, 0.45, 0.5), ["DAPI", "endomucin"])
    attrs = json.loads((p / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert ms["datasets"] == [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 0.45, 0.5]}]}
    ]
    assert zarr.open_array(str(p / "0"), mode="r").chunks == (1, 1, 20, 30)  # one slice per chunk
    node = next(iter(Reader(parse_url(str(p)))()))  # the field's reader sees names and scale
    assert node.metadata["channel_names"] == ["DAPI", "endomucin"]
    with open_volume(p) as r:
        assert (r.markers, r.markers_source, r.spacing, r.spacing_source) == (
            ("DAPI", "endomucin"),
            "file",
            (2.0, 0.45, 0.5),
            "file",
        )
        assert r.shape_czyx == (2, 3, 20, 30)
        for z in range(3):
            np.testing.assert_array_equal(r.read_slice(z), vol[:, z])
    with open_volume(p, markers="a,b", spacing=(1, 1, 1)) as r:  # caller overrides
        assert r.markers == ("a", "b") and r.spacing == (1.0, 1.0, 1.0)


def test_read_ngff05_with_time_axis_and_units(tmp_path, vol):
    _ngff05(tmp_path / "b.ome.zarr", vol[None], scale=(3.0, 450.0, 0.5), units=("micrometer", "nanometer", "micrometer"),
            labels=["DAPI", "collagen"])  # fmt: skip
    with open_volume(tmp_path / "b.ome.zarr") as r:
        assert r.markers == ("DAPI", "collagen") and r.spacing == (3.0, 0.45, 0.5)
        np.testing.assert_array_equal(r.read_volume(), vol)
    _ngff05(tmp_path / "t.ome.zarr", np.stack([vol, vol]), (1, 1, 1), ("micrometer",) * 3, ["a", "b"])
    with pytest.raises(VolumeError, match="time series"):
        open_volume(tmp_path / "t.ome.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(VolumeError, match="no OME-Zarr multiscale image"):
        open_volume(tmp_path / "empty.zarr")


def test_zarr_writer_is_atomic(tmp_path, vol):
    out = tmp_path / "w.ome.zarr"
    with pytest.raises(RuntimeError):
        with VolumeWriter(out, (2, 3, 4, 4)) as w:
            w.write_slice(0, np.zeros((2, 4, 4)))
            raise RuntimeError("boom")
    with pytest.raises(VolumeError, match="never written"):
        with VolumeWriter(out, (2, 3, 4, 4)) as w:
            w.write_slice(0, np.zeros((2, 4, 4)))
    assert os.listdir(tmp_path) == []  # no output, no temporary folder
    with VolumeWriter(out, (3, 4, 4), np.uint8) as w:
        for z in (2, 0, 1):
            w.write_slice(z, np.full((4, 4), z, np.uint8))
        assert not out.exists()
    with pytest.raises(UserInputError, match="already exists"):
        write_volume(out, vol)
    write_volume(out, vol, overwrite=True)
    with open_volume(out) as r:
        assert r.shape_czyx == (2, 3, 20, 30) and r.dtype == np.float32
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "keep.txt").write_text("x")
    with pytest.raises(VolumeError, match="not a zarr folder"):
        write_volume(tmp_path / "x.zarr", vol, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["w.ome.zarr", "x.zarr"]


def test_predict_and_import_with_ome_zarr(tmp_path):
    """predict reads OME-Zarr and writes OME-Zarr outputs with the input's calibration, identical to
    predicting the same stack from OME-TIFF; import reads OME-Zarr image and label folders."""
    from conftest import MARKERS, make_run

    from marker_excite.data.sample_files import read_sample_files
    from marker_excite.inference.predictor import load_predictor
    from marker_excite.inference.whole_stack import predict_file

    run_dir, _, _ = make_run(tmp_path / "run", spacing=(1.0, 1.0, 1.0))
    image = np.random.default_rng(1).normal(size=(3, 2, 30, 26)).astype(np.float32)
    write_volume(tmp_path / "s.ome.zarr", image, (2.0, 0.7, 0.7), MARKERS)
    write_volume(tmp_path / "s.ome.tif", image, (2.0, 0.7, 0.7), MARKERS)
    model = load_predictor(run_dir)
    predict_file(
        model,
        tmp_path / "s.ome.zarr",
        labels=tmp_path / "l.ome.zarr",
        probabilities=tmp_path / "p.ome.zarr",
        progress=False,
    )
    predict_file(
        model,
        tmp_path / "s.ome.tif",
        labels=tmp_path / "l.ome.tif",
        probabilities=tmp_path / "p.ome.tif",
        progress=False,
    )
    for name in ("l", "p"):
        with open_volume(tmp_path / f"{name}.ome.zarr") as z, open_volume(tmp_path / f"{name}.ome.tif") as t:
            assert z.spacing == (2.0, 0.7, 0.7) and z.markers == t.markers and z.dtype == t.dtype
            np.testing.assert_array_equal(z.read_volume(), t.read_volume())
    labels = (image[0] > 1.0).astype(np.uint8)
    write_volume(tmp_path / "lab.ome.zarr", labels, (2.0, 0.7, 0.7), ["sinusoids"])
    sample = read_sample_files("z", tmp_path / "s.ome.zarr", labels={"sinusoids": tmp_path / "lab.ome.zarr"})
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.labels["sinusoids"], labels)
    assert sample.spacing == (2.0, 0.7, 0.7) and sample.markers == MARKERS


#: a child without TensorFlow: stream a 240 MiB stack slice by slice into OME-Zarr, then read it
#: back slice by slice; prints the peak RSS growth over the imports in MiB
MEMORY_CHILD = """
import resource, sys, numpy as np
from marker_excite.data.io import open_volume
from marker_excite.data.writers import VolumeWriter
import zarr, ome_zarr.reader, dask.array
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
c, nz, y, x = 2, 60, 512, 1024
ramp = np.add.outer(np.arange(y), np.arange(x)).astype(np.float32)
with VolumeWriter(sys.argv[1], (c, nz, y, x), np.float32, (1, 1, 1), ("a", "b")) as w:
    for z in range(nz):
        w.write_slice(z, np.stack([ramp + z, ramp - z]))
total = 0.0
with open_volume(sys.argv[1]) as vol:
    assert vol.shape_czyx == (c, nz, y, x)
    for z in range(nz):
        total += float(vol.read_slice(z)[0, 0, 0])
assert total == sum(range(nz))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_memory_stays_bounded_on_a_large_stack(tmp_path):
    """240 MiB of voxels (60 slices of 4 MiB); peak RSS grows by well under that: the writer holds
    one slice, the reader the chunks of one slice."""
    env = {k: v for k, v in os.environ.items()} | {"PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(tmp_path / "big.ome.zarr")], check=True,
                         capture_output=True, text=True, env=env)  # fmt: skip
    growth_mib = float(out.stdout.strip().splitlines()[-1])
    assert growth_mib < 80, f"peak RSS grew by {growth_mib:.0f} MiB for a 240 MiB stack"


def test_predict_labels_inside_an_ome_zarr_image_are_an_ngff_labels_group(tmp_path, capsys):
    """--labels IMAGE.ome.zarr/labels/NAME writes an NGFF 0.4 label image of IMAGE (image-label metadata,
    listed in labels/.zattrs) that ome-zarr reads as labels; a plain .ome.zarr path stays a plain image."""
    from conftest import MARKERS, make_run
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    from marker_excite.cli import main

    run_dir, _, _ = make_run(tmp_path / "run", spacing=(1.0, 1.0, 1.0))
    image = np.random.default_rng(1).normal(size=(3, 2, 30, 26)).astype(np.float32)
    img = tmp_path / "s.ome.zarr"
    write_volume(img, image, (2.0, 0.7, 0.7), MARKERS)
    plain = ["predict", str(run_dir), str(img), "--labels", str(tmp_path / "plain.ome.zarr"), "--quiet"]
    assert main(plain) == 0
    for name in ("sinusoids", "again"):
        assert main(["predict", str(run_dir), str(img), "--labels", str(img / "labels" / name), "--quiet"]) == 0
    assert main(["predict", str(run_dir), str(img), "--labels", str(img / "labels" / "again"), "--quiet",
                 "--overwrite"]) == 0  # fmt: skip
    assert json.loads((img / "labels" / ".zattrs").read_text()) == {"labels": ["sinusoids", "again"]}
    attrs = json.loads((img / "labels" / "sinusoids" / ".zattrs").read_text())
    assert attrs["image-label"] == {"version": "0.4", "source": {"image": "../../"}}
    assert attrs["multiscales"][0]["version"] == "0.4" and "omero" not in attrs
    assert "image-label" not in json.loads((tmp_path / "plain.ome.zarr" / ".zattrs").read_text())
    nodes = list(Reader(parse_url(str(img / "labels" / "sinusoids")))())
    assert any(Label.matches(n.zarr) for n in nodes)
    with open_volume(img / "labels" / "sinusoids") as lab, open_volume(tmp_path / "plain.ome.zarr") as ref:
        assert lab.spacing == (2.0, 0.7, 0.7) and lab.dtype == np.uint8
        np.testing.assert_array_equal(lab.read_volume(), ref.read_volume())
    with open_volume(img) as again:  # the image itself still reads as the image
        np.testing.assert_array_equal(again.read_volume(), image)
    # an NGFF 0.5 image: one clear error, nothing written
    _ngff05(tmp_path / "v5.ome.zarr", image[None], (2.0, 0.7, 0.7), ("micrometer",) * 3, MARKERS)
    capsys.readouterr()
    v5_labels = tmp_path / "v5.ome.zarr" / "labels" / "sinusoids"
    assert main(["predict", str(run_dir), str(tmp_path / "v5.ome.zarr"), "--labels", str(v5_labels)]) == 2
    assert "labels inside the NGFF 0.5 image" in capsys.readouterr().err and not v5_labels.exists()


def _small_zarr(path, fill_value=0):
    """A 1-channel, 3-slice NGFF 0.4 image (zarr v2, one chunk per slice) whose slice 1 is all zeros."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = group.create_array("0", shape=(1, 3, 8, 8), chunks=(1, 1, 8, 8), dtype="uint16", fill_value=fill_value)
    array[0, 0], array[0, 2] = 5, 7  # slice 1 never written: zarr stores no chunk for it
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 0.5, 0.5]}]}]
    write_multiscales_metadata(group, datasets, fmt=FormatV04(), axes=axes, name="image")
    return path


def test_missing_chunks_are_refused_unless_filled_on_request(tmp_path, monkeypatch, capsys):
    """A deleted (or omitted) chunk used to read as zeros; now it is an error naming the counts, and
    MARKER_EXCITE_ZARR_MISSING_CHUNKS=fill reads it as the declared fill value with a note."""
    from marker_excite.cli import main

    image = _small_zarr(tmp_path / "img.ome.zarr")
    assert sorted(os.listdir(image / "0")) == [".zarray", ".zattrs", "0.0.0.0", "0.2.0.0"]
    with pytest.raises(VolumeError, match=r"img.ome.zarr: only 2 of the 3 chunk files of its zarr array '0' exist"):
        open_volume(image)
    argv = ["import", "--store", str(tmp_path / "s.h5"), "--name", "s1", "--image", str(image),
            "--channel-names", "DAPI", "--target-spacing", "none", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MARKER_EXCITE_ZARR_MISSING_CHUNKS=fill" in err[0], err
    assert not (tmp_path / "s.h5").exists()
    monkeypatch.setenv("MARKER_EXCITE_ZARR_MISSING_CHUNKS", "fill")
    with open_volume(image) as r:
        assert [int(r.read_slice(z).max()) for z in range(3)] == [5, 0, 7]
    assert "only 2 of the 3 chunk files" in capsys.readouterr().err


def test_own_outputs_store_every_chunk(tmp_path):
    """The writer stores chunks equal to the fill value too, so its outputs pass the chunk check."""
    data = np.zeros((1, 3, 8, 8), np.uint8)
    data[0, 1] = 4
    out = write_volume(tmp_path / "w.ome.zarr", data, (1.0, 1.0, 1.0), ["DAPI"])
    assert sorted(os.listdir(out / "0")) == [".zarray", ".zattrs", "0.0.0.0", "0.1.0.0", "0.2.0.0"]
    with open_volume(out) as r:
        np.testing.assert_array_equal(r.read_volume(), data)


def test_tiny_folder_declaring_a_huge_image_fails_at_once(tmp_path):
    """A few KB declaring 5 x 3 x 1e6 x 1e6 used to stream zeros for minutes."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(tmp_path / "big.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(5, 3, 10**6, 10**6), chunks=(1, 1, 1024, 1024), dtype="uint16", fill_value=0)
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    write_multiscales_metadata(
        group, [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 4}]}],
        fmt=FormatV04(), axes=axes, name="image",
    )  # fmt: skip
    with pytest.raises(VolumeError, match=r"of 1000000 x 1000000 px; one slice would need 1.86e\+04 GiB as float32"):
        open_volume(tmp_path / "big.ome.zarr")


def test_chunk_check_counts_shards_of_zarr_v3(tmp_path):
    group = zarr.open_group(str(tmp_path / "v3.ome.zarr"), mode="w", zarr_format=3)
    array = group.create_array("s0", shape=(4, 10, 10), chunks=(1, 5, 5), shards=(2, 10, 10), dtype="u1", fill_value=0)
    array[:] = 1
    from marker_excite.data.zarr_io import check_chunks

    check_chunks(tmp_path, tmp_path / "v3.ome.zarr" / "s0")  # 2 shard files of 8 chunks each: complete
    (tmp_path / "v3.ome.zarr" / "s0" / "c" / "1" / "0" / "0").unlink()
    with pytest.raises(VolumeError, match=r"only 1 of the 2 chunk files of its zarr array 's0' exist"):
        check_chunks(tmp_path, tmp_path / "v3.ome.zarr" / "s0")
