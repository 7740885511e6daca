"""quantify.py / tissue.py: exact fractions on hand-made volumes, threshold tissue mask, store workflow, CSV + plot."""

import csv

import numpy as np
import pytest
from conftest import make_run

from marker_excite.data.io import open_volume
from marker_excite.data.sample import Sample
from marker_excite.data.store import SampleStore
from marker_excite.data.writers import write_volume
from marker_excite.errors import UserInputError
from marker_excite.inference import predict_volume
from marker_excite.predictor import load_predictor
from marker_excite.quantify import FractionCounter, fraction_boxplot, quantify_files, quantify_store, write_csv
from marker_excite.tissue import otsu_threshold, tissue_mask


def _tissue_image():
    """40 x 40: a bright 20 x 20 square with a dark 4 x 4 hole, plus a bright 2 x 2 speck."""
    img = np.zeros((40, 40), np.float32)
    img[10:30, 10:30] = 10.0
    img[18:22, 18:22] = 0.0
    img[2:4, 35:37] = 10.0
    expected = np.zeros((40, 40), bool)
    expected[10:30, 10:30] = True
    return img, expected


def test_threshold_tissue_mask_fills_holes_and_removes_specks():
    img, expected = _tissue_image()
    np.testing.assert_array_equal(tissue_mask(img, sigma=0, min_size=10), expected)
    smoothed = tissue_mask(img, sigma=1.0, min_size=10)
    assert (smoothed & expected).sum() / (smoothed | expected).sum() > 0.9 and not smoothed[:5, 33:].any()
    stack = tissue_mask(np.stack([img, img]), sigma=0, min_size=10)
    assert stack.shape == (2, 40, 40) and (stack == expected).all()


def test_otsu_threshold_splits_two_modes():
    values = np.concatenate([np.full(100, 1.0), np.full(50, 9.0)])
    counts, edges = np.histogram(values, bins=8, range=(0, 10))
    t = otsu_threshold(counts, edges)
    assert 1.0 < t < 9.0
    assert otsu_threshold(np.array([0, 5, 0]), np.array([0.0, 1.0, 2.0, 3.0])) == 2.0  # one occupied bin: nothing above


def test_fraction_counter_exact():
    labels = np.array([[0, 1, 1, 2], [2, 2, 0, 1]])
    tissue = np.array([[1, 1, 0, 1], [1, 1, 1, 0]], bool)
    counter = FractionCounter(("sinusoids", "arteries"))
    counter.update(labels, tissue)
    counter.update(labels, np.zeros_like(tissue))
    rows = counter.rows("s1", "diaphysis")
    assert [(r["class"], r["tissue_voxels"], r["class_voxels"]) for r in rows] == [
        ("sinusoids", 6, 1),
        ("arteries", 6, 3),
    ]
    assert rows[0]["fraction"] == 1 / 6 and rows[1]["fraction"] == 0.5
    with pytest.raises(UserInputError, match="label value 3"):
        counter.update(np.full((2, 4), 3), tissue)
    assert np.isnan(FractionCounter(("a",)).rows("s", None)[0]["fraction"])


def test_quantify_files_exact(tmp_path):
    img, tissue = _tissue_image()
    labels = np.zeros((2, 40, 40), np.uint8)
    labels[:, 10:15, 10:30] = 1  # 100 per slice inside tissue
    labels[0, 0:5, 0:5] = 1  # outside tissue: not counted
    labels[1, 25:30, 10:14] = 2  # 20 inside tissue
    image = np.stack([np.stack([img, img]), np.ones((2, 40, 40), np.float32)])  # DAPI, collagen
    write_volume(tmp_path / "a.ome.tif", image, channel_names=("DAPI", "collagen"))
    write_volume(tmp_path / "a_labels.tif", labels)
    rows = quantify_files([tmp_path / "a_labels.tif"], [tmp_path / "a.ome.tif"], ("sinusoids", "arteries"),
                          regions=["metaphysis"], sigma=0, min_size=10)  # fmt: skip
    t = 2 * int(tissue.sum())
    assert rows == [
        {
            "sample": "a_labels",
            "region": "metaphysis",
            "class": "sinusoids",
            "tissue_voxels": t,
            "class_voxels": 200,
            "fraction": 200 / t,
        },
        {
            "sample": "a_labels",
            "region": "metaphysis",
            "class": "arteries",
            "tissue_voxels": t,
            "class_voxels": 20,
            "fraction": 20 / t,
        },
    ]
    with pytest.raises(UserInputError, match="no DAPI channel"):
        quantify_files([tmp_path / "a_labels.tif"], [tmp_path / "a.ome.tif"], ("s",), channel_names="x,y")


def test_quantify_store_with_run_csv_and_plot(tmp_path):
    run_dir, _, _ = make_run(tmp_path / "run")
    rng = np.random.default_rng(3)
    img, tissue = _tissue_image()
    with SampleStore(tmp_path / "s.h5", "w") as store:
        for name, region in (("s1", "diaphysis"), ("s2", "metaphysis"), ("s3", "diaphysis")):
            image = rng.normal(size=(3, 2, 40, 40)).astype(np.float32)
            image[0] = img
            store.write_sample(Sample(name, image, ("DAPI", "endomucin", "collagen"), region=region))
    pred = load_predictor(run_dir)
    rows = quantify_store(tmp_path / "s.h5", pred, sigma=0, min_size=10, progress=False)
    assert [(r["sample"], r["region"]) for r in rows] == [
        ("s1", "diaphysis"),
        ("s2", "metaphysis"),
        ("s3", "diaphysis"),
    ]
    with open_volume(f"{tmp_path / 's.h5'}:s2") as vol:
        labels = predict_volume(pred, vol, progress=False).argmax(axis=0)
    assert rows[1]["tissue_voxels"] == 2 * tissue.sum()
    assert rows[1]["class_voxels"] == int((labels == 1)[:, tissue].sum())
    # a DAPI-only "tissue model" (no class named tissue: its foreground is the mask)
    tissue_dir, _, _ = make_run(tmp_path / "tissue_run", markers=("DAPI",), classes=("tissue",), seed=4)
    with_model = quantify_store(tmp_path / "s.h5", pred, tissue_model=tissue_dir, samples=["s1"], progress=False)
    with open_volume(f"{tmp_path / 's.h5'}:s1") as vol:
        t_labels = predict_volume(load_predictor(tissue_dir), vol, markers="DAPI", progress=False).argmax(axis=0)
    assert with_model[0]["tissue_voxels"] == int((t_labels == 1).sum())

    csv_path = write_csv(rows, tmp_path / "out" / "fractions.csv")
    with open(csv_path) as fh:
        read = list(csv.DictReader(fh))
    assert (
        list(read[0]) == ["sample", "region", "class", "tissue_voxels", "class_voxels", "fraction"] and len(read) == 3
    )
    png = fraction_boxplot(rows, tmp_path / "out" / "fractions.png")
    assert png.stat().st_size > 1000
    with pytest.raises(UserInputError, match="not in store"):
        quantify_store(tmp_path / "s.h5", pred, samples=["nope"], progress=False)


def test_quantify_cli_on_label_volumes(tmp_path, capsys):
    from marker_excite.cli import main

    img, tissue = _tissue_image()
    write_volume(tmp_path / "a.ome.tif", img[None, None], channel_names=("DAPI",))
    labels = np.zeros((1, 40, 40), np.uint8)
    labels[0, 10:20, 10:20] = 1
    write_volume(tmp_path / "a_labels.ome.tif", labels)
    argv = ["quantify", "--labels", str(tmp_path / "a_labels.ome.tif"), "--images", str(tmp_path / "a.ome.tif"),
            "--classes", "sinusoids", "--regions", "diaphysis", "--sigma", "0", "--min-size", "10",
            "-o", str(tmp_path / "f.csv"), "--plot", str(tmp_path / "f.png"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    with open(tmp_path / "f.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row == {"sample": "a_labels", "region": "diaphysis", "class": "sinusoids", "tissue_voxels": "400",
                   "class_voxels": "100", "fraction": "0.25"}  # fmt: skip
    assert (tmp_path / "f.png").is_file()
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err


def test_channel_names_for_a_tissue_model_must_be_its_markers(tmp_path):
    """quantify --channel-names with a tissue model: a name that is not one of its markers (a typo) is
    an error with the closest marker, not a channel silently left out of the tissue mask."""
    img, _ = _tissue_image()
    write_volume(tmp_path / "a.ome.tif", np.stack([img, img])[:, None], channel_names=("c0", "c1"))
    write_volume(tmp_path / "a_labels.ome.tif", np.zeros((1, 40, 40), np.uint8))
    tissue_dir, _, _ = make_run(tmp_path / "tissue_run", markers=("DAPI",), classes=("tissue",), seed=4)
    files = ([tmp_path / "a_labels.ome.tif"], [tmp_path / "a.ome.tif"], ("s",))
    with pytest.raises(UserInputError, match=r"channel name 'DAPl' \(did you mean 'DAPI'\?\) is not a marker of the "
                       r"model 'tissue_run' \(DAPI\); name the channel '-' to skip it"):  # fmt: skip
        quantify_files(*files, tissue_model=tissue_dir, channel_names="DAPl,-")
    (row,) = quantify_files(*files, tissue_model=tissue_dir, channel_names="DAPI,-")
    assert row["sample"] == "a_labels" and row["class_voxels"] == 0
