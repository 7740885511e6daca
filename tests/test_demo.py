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
        out / "exported_model" / "saved_model.pb",
        out / "exported_model" / "model_card.json",
        *out.glob("s*_preview.png"),
    ]:
        assert path.is_file() and path.stat().st_size > 0, path
    with (run_dir / "evaluation.csv").open() as fh:
        f1 = [r for r in csv.DictReader(fh) if r["metric"] == "f1"]
    assert len({r["subset"] for r in f1}) == 31
    assert "markers  subsets  mean F1" in text and "phantom truth" in text
    assert len(list(out.glob("s*_labels.ome.tif"))) == 1 and len(list(out.glob("s*_preview.png"))) == 1
    assert text.rstrip().splitlines()[-4:] == demo.next_steps(out).splitlines()
    # a second run resumes: the finished training and evaluation are kept, not redone
    mtime = (run_dir / "evaluation.csv").stat().st_mtime
    demo.main(["--out", str(out), "--epochs", "1"])
    assert (run_dir / "evaluation.csv").stat().st_mtime == mtime
