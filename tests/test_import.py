"""`marker-excite import` on generated files: resampling, labels, validation errors, store safety."""

import numpy as np
import pytest
import tifffile

from marker_excite.cli import main
from marker_excite.data.importing import import_sample
from marker_excite.data.store import SampleStore
from marker_excite.data.writers import write_volume


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, (2, 3, 40, 60)).astype(np.uint16)  # 0.5 µm pixels
    write_volume(tmp_path / "img.ome.tif", image, (2.0, 0.5, 0.5), ["dapi", "Endomucin"])
    tifffile.imwrite(tmp_path / "plain.tif", image[0])
    sin = np.zeros((3, 40, 60), np.uint8)
    sin[1, 10:20, 10:30] = 255
    art = np.zeros((3, 40, 60), np.uint8)
    art[1, 0:4, 0:8] = 1
    art[2, 30:40, 50:60] = 1
    tifffile.imwrite(tmp_path / "sin.tif", sin)
    tifffile.imwrite(tmp_path / "art.tif", art)
    tifffile.imwrite(tmp_path / "small.tif", sin[:, :20])
    tifffile.imwrite(tmp_path / "map.tif", (sin > 0) * np.uint8(1) + (art > 0) * np.uint8(2))  # as predict writes
    nan = image.astype(np.float32)
    nan[1, 2, 3, 4] = np.nan
    write_volume(tmp_path / "nan.ome.tif", nan, (2.0, 0.5, 0.5), ["DAPI", "endomucin"])
    return tmp_path, image


def run_cli(capsys, *argv):
    code = main(["import", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_import_cli_resamples_and_stores_labels(files, capsys):
    d, image = files
    store = d / "store.h5"
    code, out, err = run_cli(
        capsys, "--store", store, "--name", "s1", "--image", d / "img.ome.tif", "--label", f"sinusoids={d / 'sin.tif'}",
        "--label", f"arteries={d / 'art.tif'}", "--region", "diaphysis", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "imported s1" in out and "2 annotated slice(s)" in out
    with SampleStore(store) as st:
        info = st.info("s1")
        assert info.markers == ("DAPI", "endomucin")  # the panel's spelling
        assert info.shape_zyx == (3, 20, 30) and info.spacing == (2.0, 1.0, 1.0) and info.region == "diaphysis"
        np.testing.assert_array_equal(info.annotated, [False, True, True])
        assert info.class_counts["sinusoids"] == 5 * 10 and info.class_counts["arteries"] == 2 * 4 + 5 * 5
        img, labels = st.read_slice("s1", 1)
        np.testing.assert_allclose(img.mean(axis=(1, 2)), image[:, 1].mean(axis=(1, 2)), rtol=0.01)
        assert labels["sinusoids"][5:10, 5:15].all() and labels["sinusoids"].sum() == 50
    # a second sample with a tissue mask, explicit annotated slices, no resampling, plain TIFF + markers
    code, out, err = run_cli(
        capsys, "--store", store, "--name", "s2", "--image", d / "plain.tif", "--markers", "collagen",
        "--tissue", d / "sin.tif", "--annotated", "0-1", "--spacing", "2,1,1", "--target-spacing", "none", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert err.strip() == "marker-excite import: note: --markers is deprecated here; use --channel-names"
    with SampleStore(store) as st:
        assert st.names() == ["s1", "s2"]
        info = st.info("s2")
        assert info.classes == ("tissue",) and info.shape_zyx == (3, 40, 60) and info.dtype == "uint16"
        np.testing.assert_array_equal(info.annotated, [True, True, False])
        np.testing.assert_array_equal(st.read_slice("s2", 2)[0][0], image[0, 2])
    # '-' skips a channel of the file
    code, out, err = run_cli(
        capsys,
        "--store",
        store,
        "--name",
        "s3",
        "--image",
        d / "img.ome.tif",
        "--channel-names",
        "-,collagen",
        "--quiet",
    )
    assert code == 0 and err == "", err
    with SampleStore(store) as st:
        assert st.info("s3").markers == ("collagen",)
        np.testing.assert_allclose(st.read_slice("s3", 1)[0][0].mean(), image[1, 1].mean(), rtol=0.01)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image", "{d}/img.ome.tif", "--channel-names", "DAPI,nope"], "unknown marker 'nope'; .*--panel any"),
        (["--image", "{d}/img.ome.tif", "--channel-names", "DAPl,collagen"], r"'DAPl' \(did you mean 'DAPI'\?\)"),
        (["--image", "{d}/img.ome.tif", "--channel-names", "DAPI,dapi"], "marker given twice: DAPI"),
        (["--image", "{d}/img.ome.tif", "--channel-names", ""], "empty marker set"),
        (
            ["--image", "{d}/img.ome.tif", "--channel-names", "DAPI"],
            r"1 marker name\(s\) \['DAPI'\] given but the file has 2",
        ),
        (
            ["--image", "{d}/img.ome.tif", "--label", "sinusoids={d}/small.tif"],
            r"shape mismatch: label file .*small.tif",
        ),
        (["--image", "{d}/nan.ome.tif"], "NaN/Inf voxels in marker.s. endomucin at slice 2"),
        (["--image", "{d}/plain.tif"], "does not name its 1 channel"),
        (["--image", "{d}/plain.tif", "--channel-names", "DAPI"], "has no voxel size: give --spacing"),
        (["--image", "{d}/img.ome.tif", "--channel-names", "-,-"], "every channel is skipped"),
        (
            ["--image", "{d}/plain.tif", "--channel-names", "DAPI", "--target-spacing", "none"],
            "has no voxel size: give --spacing",
        ),
        (["--image", "{d}/sin.tif.missing"], "does not exist"),
        (["--image", "{d}/img.ome.tif", "--spacing", "1,0,1"], "spacing must be three positive numbers"),
        (["--image", "{d}/img.ome.tif", "--annotated", "0,9"], "annotated slice 9 is outside 0..2"),
        # one label map given for two classes used to import both as the same mask
        (
            ["--image", "{d}/img.ome.tif", "--label", "sinusoids={d}/map.tif", "--label", "arteries={d}/map.tif"],
            r"label file .*map.tif is given twice \(for 'sinusoids' and 'arteries'\).* use --label-map .*map.tif=",
        ),
        (
            ["--image", "{d}/img.ome.tif", "--label", "sinusoids={d}/map.tif"],
            r"label file .*map.tif for 'sinusoids' is not a mask: it holds the non-zero values 2 and 1 \(by slice 1\)",
        ),
        (
            ["--image", "{d}/img.ome.tif", "--label-map", "{d}/map.tif=sinusoids:1"],
            r"label map .*map.tif has the value 2 at slice 1, which --label-map ...=sinusoids:1 gives no class",
        ),
        (
            [
                "--image",
                "{d}/img.ome.tif",
                "--label-map",
                "{d}/map.tif=sinusoids:1,arteries:2",
                "--tissue",
                "{d}/map.tif",
            ],
            r"label file .*map.tif is given twice \(for 'tissue' and 'sinusoids', 'arteries'\)",
        ),
        (
            [
                "--image",
                "{d}/img.ome.tif",
                "--label-map",
                "{d}/map.tif=sinusoids:1,arteries:2",
                "--label",
                "arteries={d}/art.tif",
            ],
            "label class 'arteries' given twice",
        ),
        (
            ["--image", "{d}/img.ome.tif", "--label-map", "{d}/map.tif=sinusoids:1,arteries:1"],
            r"label map .*map.tif: two classes have the same value",
        ),
    ],
)
def test_import_errors_are_one_line_exit_2(files, capsys, extra, message):
    d, _ = files
    code, out, err = run_cli(capsys, "--store", d / "s.h5", "--name", "x", "--quiet", *[e.format(d=d) for e in extra])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marker-excite import: error: ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert (
        not (d / "s.h5").exists() and not (d / "s.h5.samples").exists()
    )  # a failed import into a new store leaves nothing


def test_label_map_imports_each_class_from_its_value(files, capsys):
    """--label-map FILE=CLASS:VALUE,... stores exactly what one mask file per class stores."""
    d, _ = files
    store = d / "store.h5"
    masks = ["--label", f"sinusoids={d / 'sin.tif'}", "--label", f"arteries={d / 'art.tif'}"]
    assert run_cli(capsys, "--store", store, "--name", "masks", "--image", d / "img.ome.tif", *masks, "--quiet")[0] == 0
    code, out, err = run_cli(
        capsys, "--store", store, "--name", "map", "--image", d / "img.ome.tif",
        "--label-map", f"{d / 'map.tif'}=sinusoids:1,arteries:2", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "class voxels: sinusoids 50, arteries 33" in out
    with SampleStore(store) as st:
        assert st.info("map").classes == ("sinusoids", "arteries")
        np.testing.assert_array_equal(st.info("map").annotated, st.info("masks").annotated)
        for z in range(3):
            expected, got = st.read_slice("masks", z)[1], st.read_slice("map", z)[1]
            for cls in ("sinusoids", "arteries"):
                np.testing.assert_array_equal(got[cls], expected[cls])


def test_label_map_argument_syntax():
    import argparse

    from marker_excite.commands.import_files import _label_map_arg

    assert _label_map_arg("a=b/map.tif=sinusoids:1, arteries:2") == ("a=b/map.tif", {"sinusoids": 1.0, "arteries": 2.0})
    for bad in ("map.tif", "map.tif=sinusoids", "map.tif=sinusoids:0", "map.tif=s:1,s:2", "=s:1", "map.tif=s:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected FILE=CLASS:VALUE"):
            _label_map_arg(bad)


def test_failed_import_keeps_existing_store(files, capsys):
    d, _ = files
    store = d / "store.h5"
    import_sample(store, "s1", d / "img.ome.tif", progress=False)
    code, _, err = run_cli(capsys, "--store", store, "--name", "s1", "--image", d / "img.ome.tif", "--quiet")
    assert code == 2 and "already exists" in err and "(use --overwrite to replace it)" in err
    code, _, err = run_cli(capsys, "--store", store, "--name", "s2", "--image", d / "nan.ome.tif", "--quiet")
    assert code == 2 and "NaN" in err
    corrupt = d / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\xff" * 40)
    code, _, err = run_cli(capsys, "--store", store, "--name", "s3", "--image", corrupt, "--quiet")
    assert code == 2 and "corrupt.tif" in err
    with SampleStore(store) as st:
        assert st.names() == ["s1"] and st.read_sample("s1").image.shape == (2, 3, 20, 30)
    info = import_sample(store, "s1", d / "img.ome.tif", target_spacing=None, overwrite=True, progress=False)
    assert info.shape_zyx == (3, 40, 60)
