"""The README's main job end to end (one epoch): every step runs and leaves its outputs."""

import csv

from marker_excite import demo


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    demo.main(["--out", str(out), "--epochs", "1"])
    text = capsys.readouterr().out
    run_dir = out / "runs" / "ms-me_sinusoids_fold0"
    for path in [
        out / "phantom.h5",
        run_dir / "weights.best.weights.h5",
        run_dir / "evaluation.csv",
        run_dir / "evaluation.png",
        run_dir / "curves.png",
        out / "quantification.csv",
        out / "quantification.png",
        out / "quantification_true_tissue.csv",
        out / "quantification_true_tissue.png",
        out / "exported_model" / "saved_model.pb",
        out / "exported_model" / "model_card.json",
        *out.glob("s*_preview.png"),
    ]:
        assert path.is_file() and path.stat().st_size > 0, path
    with (run_dir / "evaluation.csv").open() as fh:
        f1 = [r for r in csv.DictReader(fh) if r["metric"] == "f1"]
    assert len({r["subset"] for r in f1}) == 31
    assert "markers  subsets  mean F1" in text and "phantom truth" in text
    assert "A = store label 'tissue' (the phantom's true tissue" in text and "B = Otsu threshold on DAPI" in text
    assert "% as many voxels as the true tissue" in text
    assert len(list(out.glob("s*_labels.ome.tif"))) == 1 and len(list(out.glob("s*_preview.png"))) == 1
    assert text.rstrip().splitlines()[-4:] == demo.next_steps(out).splitlines()
    # a second run resumes: the finished training and evaluation are kept, not redone
    mtime = (run_dir / "evaluation.csv").stat().st_mtime
    demo.main(["--out", str(out), "--epochs", "1"])
    assert (run_dir / "evaluation.csv").stat().st_mtime == mtime


def test_quantification_summary_shows_both_tissue_masks_and_why_they_differ(tmp_path):
    """Exact means per region inside the true tissue and inside the threshold mask, the mask sizes, flagged rows."""
    from marker_excite.data.store import SampleStore
    from marker_excite.data.synthetic import write_dataset
    from marker_excite.inference.quantify import EMPTY_TISSUE, write_csv

    store = write_dataset(tmp_path / "p.h5", "small", samples=2, shape=(3, 40, 40), progress=False)
    with SampleStore(store, "r") as st:
        truth = {n: st.info(n).attrs["fraction_sinusoids"] for n in st.names()}
    regions = {"s1": "diaphysis", "s2": "metaphysis"}
    row = dict(region="", **{"class": "sinusoids"}, note="")
    true_rows = [dict(row, sample="s1", region=regions["s1"], tissue_voxels=1000, class_voxels=120, fraction=0.12,
                      tissue_mask="store label 'tissue'"),
                 dict(row, sample="s2", region=regions["s2"], tissue_voxels=1000, class_voxels=100, fraction=0.10,
                      tissue_mask="store label 'tissue'")]  # fmt: skip
    threshold_rows = [dict(r, tissue_voxels=600, class_voxels=48, fraction=0.08, tissue_mask="Otsu threshold on DAPI")
                      for r in true_rows[:1]]  # fmt: skip
    threshold_rows.append(dict(true_rows[1], tissue_voxels=0, class_voxels=0, fraction=float("nan"),
                               tissue_mask="Otsu threshold on DAPI", note=EMPTY_TISSUE))  # fmt: skip
    write_csv(true_rows, tmp_path / "true.csv")
    write_csv(threshold_rows, tmp_path / "threshold.csv")
    text = demo._quantification_summary(tmp_path / "threshold.csv", tmp_path / "true.csv", store)
    lines = text.splitlines()
    assert lines[1] == "  A = store label 'tissue' (the phantom's true tissue, what a good tissue model gives)"
    assert lines[2] == "  B = Otsu threshold on DAPI (quantify's default without --tissue-model / --tissue-mask)"
    assert lines[3:6] == [
        "region       samples  predicted in A  predicted in B  phantom truth",
        f"diaphysis          1           12.0%            8.0%  {100 * truth['s1']:12.1f}%",
        f"metaphysis         1           10.0%               -  {100 * truth['s2']:12.1f}%",
    ]
    assert lines[-2].startswith("mask B holds 30% as many voxels as the true tissue")
    assert lines[-1] == "empty tissue mask (no fraction) for: s2"
