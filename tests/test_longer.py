"""experiments/longer.py: the "Longer training" section from e<epochs>-seed<seed> output folders."""

import numpy as np
import pytest

from marker_excite.analysis.results import write_results
from marker_excite.experiments.longer import arm_rows, longer_lines, pair_row
from marker_excite.runs.directory import LOG
from marker_excite.runs.log import write_log

SUBSETS = ["m_1", "m_2", "m_12"]


def _run(folder, model, f1, val):
    run = folder / "runs" / f"{model}__all__sinusoids__f0"
    run.mkdir(parents=True)
    rows = [dict(model=model, fold=0, subset=s, n_markers=len(s) - 2, metric="f1", value=v, job=run.name, case="",
                 **{"class": "sinusoids"}) for s, v in zip(SUBSETS, f1)]  # fmt: skip
    write_results(rows, run / "evaluation.csv")
    write_log(run / LOG, [{"epoch": e + 1, "loss": 1.0, "val_mean_f1": v} for e, v in enumerate(val)])


def test_arm_rows_and_section(tmp_path):
    # 60 epochs, seed 0: MS-ME behind by 0.1, 0.0, 0.2 on the three subsets
    _run(tmp_path / "e60-seed0", "MS", [0.8, 0.7, 0.9], [0.5, 0.9, 0.8, 0.7])
    _run(tmp_path / "e60-seed0", "MS-ME", [0.7, 0.7, 0.7], [0.6, 0.6, 0.95, 0.6])
    _run(tmp_path / "e600-seed1", "MS", [0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4])
    _run(tmp_path / "e600-seed1", "MS-ME", [0.6, 0.6, 0.6], [0.4, 0.3, 0.2, 0.1])
    _run(tmp_path / "e600-seed2", "MS", [0.5, 0.5, 0.5], [0.5])  # MS-ME not finished: left out
    (tmp_path / "notes").mkdir()  # not an arm folder
    rows = arm_rows(tmp_path)
    assert [(r["epochs"], r["seed"]) for r in rows] == [(60, 0), (600, 1)]
    first = rows[0]
    assert first["n"] == 3
    assert first["ref_mean"] == pytest.approx(0.8) and first["model_mean"] == pytest.approx(0.7)
    assert first["diff"] == pytest.approx(-0.1) and first["median"] == pytest.approx(-0.1)
    assert first["best_epochs"] == (2, 3)
    # drop: peak minus the mean of the last quarter (1 of 4 epochs)
    assert first["drop"] == pytest.approx((0.9 - 0.7, 0.95 - 0.6))
    assert rows[1]["diff"] == pytest.approx(0.1) and rows[1]["best_epochs"] == (4, 1)
    assert pair_row(tmp_path / "e600-seed2") is None

    lines = longer_lines(tmp_path, reference=[rows[1], rows[1]])
    table = [line for line in lines if line.startswith("| 60 ")]
    assert table == ["| 60 | 0 | 0.800 | 0.700 | -0.100 (-0.100, p 0.5, n 3) | 2 / 3 | 0.200 / 0.350 |"]
    summary = [line for line in lines if line.startswith("- ")]
    assert summary[0] == "- 60 epochs: mean F1 MS 0.800, MS-ME 0.700; MS-ME - MS = -0.100 over 1 seeds (1 negative)."
    assert (
        summary[2].startswith("- TensorFlow on the CPU")
        and "+0.100 +- 0.000 (SD) over 2 seeds (0 negative)" in summary[2]
    )
    assert longer_lines(tmp_path / "missing") == []
    assert np.isfinite(first["p"])


def test_report_has_the_longer_section(tmp_path):
    from marker_excite.experiments.reproduction import write_report

    _run(tmp_path / "gpu" / "e600-seed0", "MS", [0.8, 0.7, 0.9], [0.5, 0.9])
    _run(tmp_path / "gpu" / "e600-seed0", "MS-ME", [0.7, 0.7, 0.7], [0.6, 0.95])
    _run(tmp_path / "cpu", "MS", [0.5, 0.5, 0.5], [0.5, 0.6])  # the report's own runs: the TensorFlow reference
    _run(tmp_path / "cpu", "MS-ME", [0.6, 0.5, 0.4], [0.5, 0.6])
    text = write_report(tmp_path / "cpu", longer=tmp_path / "gpu").read_text()
    section = text.split("## Longer training (GPU, Keras' JAX backend)\n")[1].split("\n## ")[0]
    assert "| 600 | 0 | 0.800 | 0.700 | -0.100 (-0.100, p 0.5, n 3) | 2 / 2 | 0.000 / 0.000 |" in section
    assert "- TensorFlow on the CPU, the preset's epochs (this report's seed replicates): mean F1 MS 0.500, " in section
    claim_row = next(line for line in text.splitlines() if line.startswith("| Fig. 3c | MS-ME improves on MS"))
    assert "**trained 600 epochs (GPU): MS-ME - MS = -0.100 over 1 seeds (section Longer training)**" in claim_row
    assert "## Longer training" not in write_report(tmp_path / "cpu").read_text()
