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
from marker_excite.inference.predictor import load_predictor
from marker_excite.inference.quantify import (
    EMPTY_TISSUE,
    FractionCounter,
    TissueSource,
    fraction_boxplot,
    quantify_files,
    quantify_store,
    write_csv,
)
from marker_excite.inference.tissue import otsu_threshold, tissue_mask
from marker_excite.inference.whole_stack import predict_volume


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
                          regions=["metaphysis"], tissue=TissueSource(sigma=0, min_size=10))  # fmt: skip
    t = 2 * int(tissue.sum())
    assert rows == [
        {
            "sample": "a_labels",
            "region": "metaphysis",
            "class": "sinusoids",
            "tissue_voxels": t,
            "class_voxels": 200,
            "fraction": 200 / t,
            "tissue_mask": "Otsu threshold on DAPI",
            "note": "",
        },
        {
            "sample": "a_labels",
            "region": "metaphysis",
            "class": "arteries",
            "tissue_voxels": t,
            "class_voxels": 20,
            "fraction": 20 / t,
            "tissue_mask": "Otsu threshold on DAPI",
            "note": "",
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
    rows = quantify_store(tmp_path / "s.h5", pred, tissue=TissueSource(sigma=0, min_size=10), progress=False)
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
    with_model = quantify_store(
        tmp_path / "s.h5", pred, tissue=TissueSource(model=tissue_dir), samples=["s1"], progress=False
    )
    with open_volume(f"{tmp_path / 's.h5'}:s1") as vol:
        t_labels = predict_volume(load_predictor(tissue_dir), vol, markers="DAPI", progress=False).argmax(axis=0)
    assert with_model[0]["tissue_voxels"] == int((t_labels == 1).sum())
    assert with_model[0]["tissue_mask"] == "tissue model tissue_run"

    csv_path = write_csv(rows, tmp_path / "out" / "fractions.csv")
    with open(csv_path) as fh:
        read = list(csv.DictReader(fh))
    assert (
        list(read[0])
        == ["sample", "region", "class", "tissue_voxels", "class_voxels", "fraction", "tissue_mask", "note"]
        and len(read) == 3
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
                   "class_voxels": "100", "fraction": "0.25", "tissue_mask": "Otsu threshold on DAPI",
                   "note": ""}  # fmt: skip
    assert (tmp_path / "f.png").is_file()
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err


def test_empty_tissue_mask_is_a_flagged_row_in_csv_warning_and_plot(tmp_path, capsys):
    """A stack whose tissue mask is empty: fraction nan WITH a note saying why, a warning, a mark on the plot."""
    from marker_excite.cli import main

    img, _ = _tissue_image()
    write_volume(tmp_path / "a.ome.tif", img[None, None], channel_names=("DAPI",))
    write_volume(tmp_path / "b.ome.tif", np.zeros((1, 1, 40, 40), np.float32), channel_names=("DAPI",))  # no tissue
    labels = np.zeros((1, 40, 40), np.uint8)
    labels[0, 10:20, 10:20] = 1
    write_volume(tmp_path / "a_labels.ome.tif", labels)
    write_volume(tmp_path / "b_labels.ome.tif", labels)
    argv = ["quantify", "--labels", str(tmp_path / "a_labels.ome.tif"), str(tmp_path / "b_labels.ome.tif"),
            "--images", str(tmp_path / "a.ome.tif"), str(tmp_path / "b.ome.tif"), "--classes", "sinusoids",
            "--sigma", "0", "--min-size", "10", "-o", str(tmp_path / "f.csv"), "--plot", str(tmp_path / "f.png")]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"warning: {EMPTY_TISSUE} for sample(s) b_labels" in err
    assert out.strip().endswith("tissue mask: Otsu threshold on DAPI")
    with open(tmp_path / "f.csv") as fh:
        rows = {r["sample"]: r for r in csv.DictReader(fh)}
    assert rows["a_labels"]["fraction"] == "0.25" and rows["a_labels"]["note"] == ""
    assert rows["b_labels"]["fraction"] == "nan" and rows["b_labels"]["note"] == EMPTY_TISSUE
    assert rows["b_labels"]["tissue_voxels"] == "0"


def test_quantification_plot_marks_empty_tissue_and_pairs_truth(tmp_path, monkeypatch):
    from marker_excite.inference import quantify

    drawn = []
    monkeypatch.setattr(quantify, "save_figure", lambda fig, path: drawn.append(fig) or path)
    rows = [
        dict(sample=s, region="diaphysis", tissue_voxels=t, class_voxels=v, fraction=v / t if t else float("nan"),
             tissue_mask="Otsu threshold on collagen", note="" if t else EMPTY_TISSUE, **{"class": "sinusoids"})
        for s, v, t in (("s1", 10, 100), ("s2", 0, 0), ("s3", 30, 100))
    ]  # fmt: skip
    fraction_boxplot(rows, tmp_path / "q.png", truth={("s1", "sinusoids"): 0.12, ("s3", "sinusoids"): 0.25})
    (fig,) = drawn
    ax = fig.axes[0]
    lines = [(line.get_marker(), list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()]
    # s1 at x 0.75, s2 (empty tissue) at 1.0 on the axis, s3 at 1.25; each truth joined to its prediction
    assert ("None", [0.75, 0.75], [0.1, 0.12]) in lines and ("x", [0.75], [0.12]) in lines
    assert ("^", [1.0], [0]) in lines
    assert ("None", [1.25, 1.25], [0.3, 0.25]) in lines and ("o", [1.25], [0.3]) in lines
    assert fig._suptitle.get_text() == "tissue mask: Otsu threshold on collagen"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "predicted",
        "true fraction (same sample)",
        "empty tissue mask (no fraction)",
    ]


def _store_with_tissue_label(path, annotated_everywhere=True):
    """Two samples, markers DAPI (dark: the threshold finds no tissue) + collagen (bright square), label 'tissue'."""
    img, tissue = _tissue_image()
    with SampleStore(path, "w") as store:
        for name in ("s1", "s2"):
            image = np.stack([np.zeros((2, 40, 40), np.float32), np.stack([img, img])])
            label = np.stack([tissue, tissue]).astype(np.uint8)
            annotated = np.array([True, annotated_everywhere])
            if not annotated_everywhere:
                label[1] = 0
            store.write_sample(Sample(name, image, ("DAPI", "collagen"), labels={"tissue": label},
                                      annotated=annotated, region="diaphysis"))  # fmt: skip
    return tissue


def test_tissue_mask_from_another_marker_a_mask_file_or_a_store_label(tmp_path, capsys):
    from marker_excite.cli import main

    run_dir, _, _ = make_run(tmp_path / "run", markers=("DAPI", "collagen"))
    store = tmp_path / "s.h5"
    tissue = _store_with_tissue_label(store)
    pred = load_predictor(run_dir)
    with open_volume(f"{store}:s2") as vol:
        predicted = predict_volume(pred, vol, progress=False).argmax(axis=0) == 1
    expected = int(predicted[:, tissue].sum())
    by_marker = quantify_store(
        store, pred, tissue=TissueSource(marker="collagen", sigma=0, min_size=10), progress=False
    )
    by_label = quantify_store(store, pred, tissue=TissueSource(label="tissue"), progress=False)
    write_volume(tmp_path / "m1.tif", np.stack([tissue, tissue])[None].astype(np.uint8))
    write_volume(tmp_path / "m2.tif", np.stack([tissue, tissue])[None].astype(np.uint8) * 255)
    by_file = quantify_store(store, pred, tissue=TissueSource(masks=(tmp_path / "m1.tif", tmp_path / "m2.tif")),
                             progress=False)  # fmt: skip
    for rows, described in ((by_marker, "Otsu threshold on collagen"), (by_label, "store label 'tissue'"),
                            (by_file, "mask files")):  # fmt: skip
        assert [(r["sample"], r["tissue_voxels"], r["tissue_mask"]) for r in rows] == [
            ("s1", 2 * int(tissue.sum()), described),
            ("s2", 2 * int(tissue.sum()), described),
        ]
        assert rows[1]["class_voxels"] == expected
    # the DAPI default finds no tissue in the dark DAPI: flagged rows, not an error
    assert [r["note"] for r in quantify_store(store, pred, progress=False)] == [EMPTY_TISSUE, EMPTY_TISSUE]
    # the CLI: --tissue-marker, old --dapi as a deprecated alias, --tissue-mask without --images
    common = ["quantify", "--store", str(store), "--model", str(run_dir), "--sigma", "0", "--min-size", "10", "--quiet"]
    assert main([*common, "--tissue-marker", "collagen", "-o", str(tmp_path / "a.csv")]) == 0
    assert main([*common, "--dapi", "collagen", "-o", str(tmp_path / "b.csv")]) == 0
    assert "--dapi is deprecated here; use --tissue-marker" in capsys.readouterr().err
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert "Otsu threshold on collagen" in (tmp_path / "a.csv").read_text()
    labels_argv = ["quantify", "--labels", str(tmp_path / "m1.tif"), "--classes", "sinusoids", "--quiet",
                   "--tissue-mask", str(tmp_path / "m2.tif"), "-o", str(tmp_path / "c.csv")]  # fmt: skip
    assert main(labels_argv) == 0
    with open(tmp_path / "c.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["tissue_voxels"], row["class_voxels"], row["fraction"], row["tissue_mask"]) == (
        str(2 * int(tissue.sum())), str(2 * int(tissue.sum())), "1", "mask files")  # fmt: skip


def test_bad_tissue_sources_are_one_clear_error(tmp_path, capsys):
    from marker_excite.cli import main

    run_dir, _, _ = make_run(tmp_path / "run", markers=("DAPI", "collagen"))
    store = tmp_path / "s.h5"
    tissue = _store_with_tissue_label(store, annotated_everywhere=False)
    write_volume(tmp_path / "m.tif", tissue[None, None].astype(np.uint8))  # one slice, the samples have two
    base = ["quantify", "--store", str(store), "--model", str(run_dir), "-o", str(tmp_path / "x.csv"), "--quiet"]
    cases = [
        (["--tissue-marker", "CD31"], "has no CD31 channel for the threshold tissue mask (channels: DAPI, collagen)"),
        (["--tissue-label", "tissue", "--tissue-mask", str(tmp_path / "m.tif")], "give one tissue mask source"),
        (["--tissue-mask", str(tmp_path / "m.tif")], "1 tissue mask file(s) for 2 samples; give one per sample"),
        (["--samples", "s1", "--tissue-mask", str(tmp_path / "m.tif")], "the image needs one channel of (2, 40, 40)"),
        (["--tissue-label", "vessels"], "sample 's1' has no label 'vessels' for the tissue mask (labels: tissue)"),
        (["--tissue-label", "tissue"], "sample 's1': slice 1 is not annotated and has no 'tissue' label"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x.csv").exists()


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
        quantify_files(*files, tissue=TissueSource(model=tissue_dir), channel_names="DAPl,-")
    (row,) = quantify_files(*files, tissue=TissueSource(model=tissue_dir), channel_names="DAPI,-")
    assert row["sample"] == "a_labels" and row["class_voxels"] == 0
