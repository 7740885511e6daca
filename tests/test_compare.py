"""`marker-excite compare` on a user's own store: job list, split, Otsu baseline, report (one tiny run)."""

import json

import numpy as np
import pytest
from conftest import TINY_EXPERIMENT

from marker_excite import experiments as E
from marker_excite.analysis.results import read_results
from marker_excite.cli import main
from marker_excite.data.sample import Sample
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.experiments import workers as W
from marker_excite.experiments.compare import compare_experiment, otsu_confusion

SAMPLES = ("f0", "f1", "f2", "f3", "f4")


def _store(path, samples=SAMPLES, shape=(1, 48, 48)):
    """Cells: a bright cytoplasm channel on the cells, a nuclear channel on their centre only."""
    rng = np.random.default_rng(0)
    with SampleStore(path, "w") as store:
        for name in samples:
            cells = np.zeros(shape, bool)
            for _ in range(4):
                z, y, x = 0, *rng.integers(6, shape[1] - 6, 2)
                cells[z, y - 5 : y + 5, x - 5 : x + 5] = True
            nuclei = np.zeros(shape, bool)
            nuclei[:, 2:-2, 2:-2] = cells[:, 2:-2, 2:-2] & np.roll(cells, 3, axis=1)[:, 2:-2, 2:-2]
            image = np.stack([cells * 3.0 + rng.normal(0, 0.3, shape), nuclei * 2.0 + rng.normal(0, 0.3, shape)])
            store.write_sample(
                Sample(
                    name, image.astype(np.float32), ("cytoplasm", "nuclear"), labels={"cells": cells.astype(np.uint8)}
                )
            )
    return path


def test_job_list_split_and_names(tmp_path):
    store = _store(tmp_path / "s.h5")
    exp = compare_experiment(
        TINY_EXPERIMENT, store, markers=["cytoplasm", "nuclear"], classes=["cells"], val=["f1"], test=["f2"]
    )
    assert [j.job_id for j in exp.jobs] == [
        "MS__all__cells__f0",
        "UB__cytoplasm__cells__f0",
        "UB__nuclear__cells__f0",
        "UB__cytoplasm+nuclear__cells__f0",
        "MZ__all__cells__f0",
        "MS-ME__all__cells__f0",
    ]
    ms = exp.jobs[0]
    assert ms.markers == ("cytoplasm", "nuclear") and exp.jobs[2].markers == ("nuclear",)
    cfg = ms.train_config(exp.preset)
    assert (cfg.train_samples, cfg.val_samples, cfg.test_samples) == (("f0", "f3", "f4"), ("f1",), ("f2",))
    folds = compare_experiment(TINY_EXPERIMENT, store, markers=["cytoplasm", "nuclear"], classes=["cells"], n_folds=2)
    assert len(folds.jobs) == 12 and {j.fold for j in folds.jobs} == {0, 1}
    assert folds.jobs[0].train_config(folds.preset).n_folds == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(markers=["cytoplasm", "nucleus"], n_folds=2), "unknown marker 'nucleus'.*did you mean"),
        (dict(markers=["cytoplasm"], classes=["cell"], n_folds=2), "class 'cell' is labelled in no sample"),
        (dict(markers=["cytoplasm"]), "give either --folds K"),
        (dict(markers=["cytoplasm"], n_folds=2, val=["f1"], test=["f2"]), "give either --folds K"),
        (dict(markers=["cytoplasm"], val=["f1"], test=["f9"]), "test sample.*f9 are not in the store"),
        (dict(markers=["cytoplasm"], n_folds=9), "too few"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, kwargs, message):
    store = _store(tmp_path / "s.h5")
    kwargs = {"classes": ["cells"], **kwargs}
    with pytest.raises(UserInputError, match=message):
        compare_experiment(TINY_EXPERIMENT, store, **kwargs)


def test_otsu_confusion_counts_every_annotated_voxel(tmp_path):
    store = _store(tmp_path / "s.h5", samples=("f0",))
    with SampleStore(store) as s:
        cm = otsu_confusion(s, "f0", "cells", ("cytoplasm",))
        assert cm.sum() == 48 * 48
        truth = s.read_slice("f0", 0)[1]["cells"]
        assert cm[1].sum() == truth.sum()  # every cell voxel counted once
        assert cm[1, 1] / cm[1].sum() > 0.95  # the bright cytoplasm channel finds the cells
        assert otsu_confusion(s, "f0", "cells", ("DAPI",)) is None
    # heavy-tailed intensities (a few saturated specks): on raw values Otsu would keep only the specks
    rng = np.random.default_rng(1)
    cells = np.zeros((1, 48, 48), bool)
    cells[0, 10:30, 10:30] = True
    image = (100 + 50 * cells + rng.normal(0, 5, cells.shape))[None].astype(np.float32)
    image[0, 0, 40:44, 40:44] = 60000
    with SampleStore(tmp_path / "spiky.h5", "w") as s:
        s.write_sample(Sample("spiky", image, ("cytoplasm",), labels={"cells": cells.astype(np.uint8)}))
    with SampleStore(tmp_path / "spiky.h5") as s:
        cm = otsu_confusion(s, "spiky", "cells", ("cytoplasm",))
    assert cm[1, 1] / cm[1].sum() > 0.95 and cm[0, 1] < 100


def test_compare_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(E.PRESETS, "tiny", TINY_EXPERIMENT)
    store = _store(tmp_path / "s.h5")
    out = tmp_path / "out"
    argv = ["compare", "--store", str(store), "--markers", "cytoplasm,nuclear", "--classes", "cells"]
    argv += ["--val", "f1", "--test", "f2,f3", "--preset", "tiny", "--out", str(out), "--quiet"]
    assert main([*argv, "--list"]) == 0
    assert len(capsys.readouterr().out.split()) == 6
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "ran 6, skipped 0" in printed and "report:" in printed
    rows = read_results(out / "compare" / "results.csv")
    f1 = {(r["model"], r["subset"]) for r in rows if r["metric"] == "f1"}
    subsets = {"cytoplasm", "nuclear", "cytoplasm+nuclear"}
    assert f1 == {(m, s) for m in ("MS", "MS-ME", "MZ", "UB") for s in subsets}
    assert all(r["fold"] == 0 and r["class"] == "cells" for r in rows)
    otsu = read_results(out / "compare" / "otsu.csv")
    assert {r["subset"] for r in otsu if r["metric"] == "f1"} == subsets
    # Otsu's TP + FN = every cell voxel of the two test samples, for every subset
    with SampleStore(store) as s:
        cells = sum(int(s.read_slice(n, 0)[1]["cells"].sum()) for n in ("f2", "f3"))
    for subset in subsets:
        tp, fn = (next(r["value"] for r in otsu if r["subset"] == subset and r["metric"] == m) for m in ("tp", "fn"))
        assert tp + fn == cells
    # per test sample: each job's and Otsu's scores on f2 and f3 alone, which add up to the pooled counts
    per_sample = read_results(out / "compare" / "per_sample.csv")
    assert {r["sample"] for r in per_sample} == {"f2", "f3"}
    pooled = {(r["model"], r["subset"], r["metric"]): r["value"] for r in rows + otsu}
    for model in ("MS", "MS-ME", "MZ", "UB", "Otsu"):
        for subset in subsets:
            for metric in ("tp", "fp", "fn"):
                parts = [
                    r["value"] for r in per_sample if (r["model"], r["subset"], r["metric"]) == (model, subset, metric)
                ]
                assert len(parts) == 2 and sum(parts) == pooled[model, subset, metric]
    assert (out / "runs" / "UB__nuclear__cells__f0" / "evaluation_per_sample.csv").is_file()
    stats = json.loads((out / "compare" / "stats.json").read_text())
    assert stats["completed"] == stats["jobs"] == 6 and stats["missing"] == []
    ranking = stats["analyses"]["which_stains"]["ranking"]["cells"]
    assert {r["subset"] for r in ranking} == subsets
    tests = [t for name in ("ms_vs_ub", "ms-me_vs_ub", "ms_vs_otsu") for t in stats["analyses"][name]["tests"]]
    assert {(t["model"], t["reference"], t["n"]) for t in tests} == {
        ("MS", "UB", 3),
        ("MS-ME", "UB", 3),
        ("MS", "Otsu", 3),
    }
    report = (out / "compare" / "report.md").read_text()
    assert "## Which stains do I need? (cells)" in report and "## One network or one per subset? (cells)" in report
    assert "Jobs finished: 6 of 6" in report and "2 training, 1 validation, 2 test samples" in report
    ub_f1 = {r["subset"]: r["value"] for r in rows if r["model"] == "UB" and r["metric"] == "f1"}
    best = max(ub_f1, key=ub_f1.get)
    assert f"Best: **{best}** (F1 {ub_f1[best]:.3f})" in report
    for subset in subsets:
        assert f"| {subset} |" in report
    assert "m_1" not in report and "m_12" not in report
    assert (out / "compare" / "figures" / "which_stains.png").is_file()
    # resumable: a second run trains nothing and writes the same results
    assert main(argv) == 0
    assert "ran 0, skipped 6" in capsys.readouterr().out
    assert read_results(out / "compare" / "results.csv") == rows
    # a partial run (only MS finished): a partial report that says so, nothing made up
    for job in ("UB__cytoplasm__cells__f0", "UB__nuclear__cells__f0", "UB__cytoplasm+nuclear__cells__f0"):
        (out / "runs" / job / "evaluation.csv").unlink()
    for job in ("MZ__all__cells__f0", "MS-ME__all__cells__f0"):
        (out / "runs" / job / "evaluation.csv").unlink()
    assert main([*argv, "--aggregate-only"]) == 0
    report = (out / "compare" / "report.md").read_text()
    assert "Jobs finished: 1 of 6" in report and "No UB results yet." in report
    assert "ms_vs_ub: not computed (no results for UB)" in report and "- MS − Otsu: mean" in report
    assert "| cytoplasm | – | " in report and "MS − Otsu" in report and "which_stains.png" not in report


def test_workers_start_the_compare_command_again(tmp_path, monkeypatch):
    """--workers N: N processes `python -m marker_excite compare ... --shard k/N --workers 1` (the runner of
    the experiment scripts), each on its own cores; the parent aggregates once they are done."""
    from marker_excite.experiments import cli as experiments_cli

    started = {}

    def fake_run_workers(script, argv, groups, out_dir, name):
        started.update(script=script, argv=list(argv), groups=groups, name=name)
        return 3  # a failing worker: its status is the command's

    monkeypatch.setattr(experiments_cli, "run_workers", fake_run_workers)
    monkeypatch.setattr(experiments_cli, "available_cpus", lambda: [0, 1])
    store = _store(tmp_path / "s.h5")
    argv = ["compare", "--store", str(store), "--markers", "cytoplasm,nuclear", "--classes", "cells"]
    argv += ["--folds", "2", "--out", str(tmp_path / "out"), "--workers", "2"]
    assert main(argv) == 3
    assert started == {"script": ["-m", "marker_excite"], "argv": argv, "groups": [(0,), (1,)], "name": "compare"}
    assert W.worker_argv(started["argv"], 2, 2)[-4:] == ["--shard", "2/2", "--workers", "1"]


def test_launcher_slurm_submits_the_compare_command(tmp_path, capsys):
    """compare inherits the experiment options: --launcher slurm --dry-run prints an array job whose tasks
    run `python -m marker_excite compare ... --shard k/n` and an aggregation job (--aggregate-only)."""
    store = _store(tmp_path / "s.h5")
    argv = ["compare", "--store", str(store), "--markers", "cytoplasm,nuclear", "--classes", "cells", "--folds", "2"]
    argv += ["--out", str(tmp_path / "out"), "--launcher", "slurm", "--slurm-tasks", "3", "--dry-run"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "#SBATCH --array=1-3" in printed
    assert f"-m marker_excite compare --store {store}" in printed and '--shard "${SLURM_ARRAY_TASK_ID}/3"' in printed
    assert "--launcher" not in printed.split("#SBATCH --array")[1] and " --aggregate-only" in printed
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
