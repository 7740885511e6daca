"""The Marker Excite attention analysis: gates per subset vs initialisation, attention.json, report section."""

import json

import keras
import numpy as np
import pytest
from conftest import RUN_TINY, make_run

from marker_excite.experiments import attention as A
from marker_excite.experiments.reproduction import write_report
from marker_excite.models.zoo import build_model, model_config
from marker_excite.runs.checkpoint import save_weights
from marker_excite.runs.directory import BEST_WEIGHTS


def test_availability_matrix_lists_every_subset_once():
    m = A.availability_matrix(3)
    expected = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
    assert m.dtype == np.float32 and m.tolist() == expected
    assert len({tuple(r) for r in A.availability_matrix(5)}) == 31


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_measure_run_matches_numpy_gates(tmp_path):
    path, model, cfg = make_run(tmp_path / "run", name="MS-ME")
    measured = A.measure_run(path)
    me = [layer for layer in model.layers if layer.name.endswith("_me")]
    assert [m["name"] for m in measured["modules"]] == [layer.name for layer in me] and len(me) == 3
    subsets = A.availability_matrix(len(cfg.markers))
    keras.utils.set_random_seed(0)  # make_run's train_config has no seed: the default, 0
    initial = {layer.name: layer for layer in build_model(cfg).layers if layer.name.endswith("_me")}
    for layer, m in zip(me, measured["modules"]):

        def gates(lyr):
            w1, b1, w2, b2 = (
                np.asarray(v) for v in (lyr.hidden.kernel, lyr.hidden.bias, lyr.gate.kernel, lyr.gate.bias)
            )
            return _sigmoid(np.maximum(subsets @ w1 + b1, 0.0) @ w2 + b2)

        g, g0 = gates(layer), gates(initial[layer.name])
        assert m["channels"] == g.shape[1]
        assert m["gate_mean"] == pytest.approx(g.mean(), abs=1e-6)
        assert m["subset_range"] == pytest.approx(np.mean(g.max(0) - g.min(0)), abs=1e-6)
        assert m["initial_subset_range"] == pytest.approx(np.mean(g0.max(0) - g0.min(0)), abs=1e-6)
        assert m["moved"] == pytest.approx(np.mean(np.abs(g - g0)), abs=1e-6)
    assert measured["me_kernel_change"] > 0.1 and measured["other_kernel_change"] > 0.1  # random weights


def test_untrained_run_has_not_moved_and_analyse_writes_only_me_runs(tmp_path):
    out = tmp_path / "out"
    me_path, _, cfg = make_run(out / "runs" / "MS-ME__all__sinusoids__f0", name="MS-ME")
    keras.utils.set_random_seed(0)
    save_weights(build_model(cfg), me_path / BEST_WEIGHTS)  # the initial weights: nothing learned
    ms_path, _, _ = make_run(out / "runs" / "MS__all__sinusoids__f0", name="MS")
    unfinished, _, _ = make_run(out / "runs" / "MS-ME__all__sinusoids__f1", name="MS-ME")
    for p, model in ((me_path, "MS-ME"), (ms_path, "MS")):
        (p / "evaluation.csv").write_text(
            f"model,fold,class,subset,n_markers,metric,value\n{model},0,sinusoids,m_1,1,f1,0.5\n"
        )
    written = A.analyse([out], progress=False)
    assert written == [me_path / A.ATTENTION_JSON]
    assert not (ms_path / A.ATTENTION_JSON).exists() and not (unfinished / A.ATTENTION_JSON).exists()
    saved = json.loads(written[0].read_text())
    assert (saved["seed"], saved["train_seed"], saved["subsets"]) == (1, 0, 7)  # model seed, data-order seed
    assert saved["me_kernel_change"] == 0.0 and saved["other_kernel_change"] == 0.0
    assert all(m["moved"] == 0.0 and m["subset_range"] == m["initial_subset_range"] for m in saved["modules"])
    assert A.analyse([out], progress=False) == []  # kept, not recomputed
    lines = A.attention_lines([out])
    assert lines[-1].startswith(
        "| MS-ME__all__sinusoids__f0 | 1 | 3 |"
    )  # make_run: model seed 1 and lines[-1].endswith("| 0.000 / 0.000 |")
    text = write_report(out).read_text()
    assert "## Marker Excite: what the attention learned" in text and lines[-1] in text


def test_model_config_of_the_tiny_run_is_what_make_run_uses():
    # guards the helper this file relies on: the tiny MS-ME has ME modules at every level (2 x depth - 1 = 3)
    cfg = model_config("MS-ME", markers=("a", "b"), classes=("sinusoids",), seed=1, **RUN_TINY)
    assert sum(layer.name.endswith("_me") for layer in build_model(cfg).layers) == 3


def test_missing_output_folder_is_one_clear_error(tmp_path, capsys):
    from marker_excite.experiments.cli import exit_status

    status = exit_status("attention_analysis", lambda: A.analyse([tmp_path / "nope"], progress=False))
    assert status == 2
    assert (
        capsys.readouterr().err
        == f"attention_analysis: error: {tmp_path / 'nope'}: not an experiment output folder (no runs/ in it)\n"
    )
