"""inference/evaluation.py, analysis/results.py and the train / evaluate commands: exact metrics, subset
masking, row counts, results CSV, CLI."""

import dataclasses

import numpy as np
import pytest
from conftest import TINY, make_run, make_tiny_store, tiny_sample

from marker_excite import cli
from marker_excite.analysis import results
from marker_excite.contract.markers import Subset
from marker_excite.data import pipeline
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.inference import evaluation
from marker_excite.models.metrics import confusion_matrix
from marker_excite.models.zoo import build_model, model_config


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = make_tiny_store(tmp_path_factory.mktemp("store") / "tiny.h5", n_samples=6, seed=1)
    rng = np.random.default_rng(5)
    with SampleStore(path, "a") as st:  # a sample stained without collagen
        st.write_sample(tiny_sample("nocol", rng).with_markers(("DAPI", "endomucin", "endoglin", "CXCL12-GFP")))
    return path


def test_rows_from_confusion_exact():
    cm = np.array([[50, 2, 3], [4, 20, 1], [0, 5, 15]])
    rows = evaluation.rows_from_confusion(
        cm, model="MS-ME", fold=2, classes=("sinusoids", "arteries"), subset="m_14", n_markers=2
    )
    assert len(rows) == 2 * len(evaluation.METRICS)
    got = {(r["class"], r["metric"]): r["value"] for r in rows}
    # sinusoids: TP 20, FP 2 + 5, FN 4 + 1; arteries: TP 15, FP 3 + 1, FN 0 + 5
    assert got["sinusoids", "f1"] == pytest.approx(40 / 52) and got["arteries", "f1"] == pytest.approx(30 / 39)
    assert got["sinusoids", "precision"] == pytest.approx(20 / 27) and got["sinusoids", "recall"] == pytest.approx(
        20 / 25
    )
    assert (got["arteries", "tp"], got["arteries", "fp"], got["arteries", "fn"]) == (15, 4, 5)
    assert all(r["fold"] == 2 and r["subset"] == "m_14" and r["n_markers"] == 2 and r["model"] == "MS-ME" for r in rows)


def test_parse_subsets_and_labels():
    paper = ("DAPI", "endomucin", "endoglin", "collagen", "CXCL12-GFP")
    assert [s.indices for s in evaluation.parse_subsets("m_125,m_4", paper)] == [(0, 1, 4), (3,)]
    assert [s.indices for s in evaluation.parse_subsets("DAPI+collagen; endomucin", paper)] == [(0, 3), (1,)]
    ub = ("DAPI", "collagen")  # a UB model: subsets named in the paper's notation
    assert evaluation.label_panel(ub).names == paper
    assert [s.indices for s in evaluation.parse_subsets("m_14,m_4", ub)] == [(0, 1), (1,)]
    with pytest.raises(UserInputError, match="endomucin"):
        evaluation.parse_subsets("m_2", ub)
    with pytest.raises(UserInputError, match="unknown marker"):
        evaluation.parse_subsets("DAPI+nope", paper)
    assert evaluation.label_panel(("a", "b")).names == ("a", "b")


def _numpy_f1(model, mcfg, store, samples, subset):
    """Reference: the pipeline's own subset selection, model.predict, numpy confusion."""
    ds = pipeline.make_dataset(
        store,
        samples,
        panel=mcfg.panel,
        classes=mcfg.classes,
        input_size=mcfg.input_size,
        output_size=mcfg.output_size,
        batch_size=5,
        shuffle=False,
        subset=subset,
    )
    cm = 0
    for x, y in ds:
        cm = cm + confusion_matrix(y.numpy(), np.argmax(model.predict_on_batch(x), -1), mcfg.n_outputs)
    return cm


def test_evaluate_model_all_subsets_matches_reference(store):
    mcfg = model_config("MS-ME", **TINY)
    model = build_model(mcfg)
    with SampleStore(store) as st:
        rows = evaluation.evaluate_model(model, mcfg, st, ["s0", "s1"], fold=0, batch_size=3, progress=False)
        assert len(rows) == 31 * 1 * len(evaluation.METRICS)
        assert len({r["subset"] for r in rows}) == 31 and {r["n_markers"] for r in rows} == {1, 2, 3, 4, 5}
        got = {(r["subset"], r["metric"]): r["value"] for r in rows}
        for subset in [(0, 1, 4), (3,), (0, 1, 2, 3, 4)]:
            label = Subset(subset, mcfg.panel).label
            cm = _numpy_f1(model, mcfg, st, ["s0", "s1"], subset)
            assert (got[label, "tp"], got[label, "fp"], got[label, "fn"]) == (cm[1, 1], cm[0, 1], cm[1, 0])
            assert got[label, "f1"] == pytest.approx(2 * cm[1, 1] / (2 * cm[1, 1] + cm[0, 1] + cm[1, 0]))
        # a sample without collagen counts for subsets without collagen only
        mixed = evaluation.evaluate_model(model, mcfg, st, ["s0", "nocol"], fold=0, subsets="m_4,m_12", progress=False)
        only_s0 = evaluation.evaluate_model(model, mcfg, st, ["s0"], fold=0, subsets="m_4", progress=False)
        both = evaluation.evaluate_model(model, mcfg, st, ["s0", "nocol"], fold=0, subsets="m_12", progress=False)
    m4 = [r for r in mixed if r["subset"] == "m_4"]
    assert m4 == only_s0
    assert [r for r in mixed if r["subset"] == "m_12"] == both


def test_relative_and_csv_round_trip(tmp_path):
    def rows(model, values):
        return [
            dict(model=model, fold=f, **{"class": "sinusoids"}, subset=s, n_markers=len(s) - 2, metric="f1", value=v)
            for (s, f), v in values.items()
        ]

    a = rows("MS-ME", {("m_1", 0): 0.75, ("m_12", 0): 0.9, ("m_1", 1): 0.5})
    b = rows("UB", {("m_1", 0): 0.5, ("m_12", 0): 0.95})
    rel = results.relative(a, b)
    assert [(r["subset"], r["fold"], r["value"], r["reference"]) for r in rel] == [
        ("m_1", 0, 0.25, "UB"),
        ("m_12", 0, pytest.approx(-0.05), "UB"),
    ]
    path = results.write_results(a + rel, tmp_path / "res.csv")
    back = results.read_results(path)
    assert path.read_text().splitlines()[0] == "model,fold,class,subset,n_markers,metric,value,reference"
    assert [r["value"] for r in back] == [r["value"] for r in a + rel]  # floats exactly round-trip
    assert back[0]["fold"] == 0 and back[0]["n_markers"] == 1
    with pytest.raises(UserInputError, match="does not exist"):
        results.read_results(tmp_path / "nope.csv")


def test_train_and_evaluate_commands(store, tmp_path, capsys):
    mcfg_path = tmp_path / "model.json"
    model_config("MS", **TINY).to_json(mcfg_path)
    run = tmp_path / "run"
    base = [
        "train",
        "--store",
        str(store),
        "--run",
        str(run),
        "--model-config",
        str(mcfg_path),
        "--preset",
        "small",
        "--n-folds",
        "3",
        "--batch-size",
        "4",
        "--quiet",
    ]
    assert cli.main(base + ["--epochs", "1"]) == 0
    assert cli.main(base + ["--epochs", "1", "--seed", "5", "--resume"]) == 2  # a larger --epochs would extend it
    err = capsys.readouterr().err.strip()
    assert err.startswith("marker-excite train: error: cannot resume") and "train_config.seed" in err
    assert len(err.splitlines()) == 1
    assert cli.main(base + ["--epochs", "1"]) == 2  # existing run dir without --resume / --overwrite
    assert "not empty" in capsys.readouterr().err

    assert cli.main(["evaluate", "--run", str(run), "--subsets", "m_125,m_4", "--quiet"]) == 0
    rows = results.read_results(run / "evaluation.csv")
    assert len(rows) == 2 * 1 * len(evaluation.METRICS) and {r["subset"] for r in rows} == {"m_125", "m_4"}
    assert (run / "evaluation.png").stat().st_size > 2000
    assert cli.main(["evaluate", "--run", str(run), "--subsets", "m_4", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["evaluate", "--run", str(tmp_path / "missing")]) == 2


def test_evaluation_counts_every_voxel_once_and_equals_predict(tmp_path):
    """Slices of 47 x 53 px with 20-px output tiles: the last tile of each row / column overlaps its
    neighbour. evaluate's TP / FP / FN / F1 equal numpy's count on predict's stitched label volume."""
    from pathlib import Path

    from marker_excite.contract.model_spec import ModelSpec
    from marker_excite.data.io import open_volume
    from marker_excite.inference.forward import keras_forward
    from marker_excite.inference.predictor import Predictor
    from marker_excite.inference.whole_stack import labels_from_probabilities, predict_volume
    from marker_excite.models.metrics import confusion_matrix

    rng = np.random.default_rng(11)
    path = tmp_path / "odd.h5"
    with SampleStore(path, "w") as st:
        for name in ("a", "b"):
            st.write_sample(tiny_sample(name, rng, shape=(2, 47, 53)))
    mcfg = model_config("MS-ME", **TINY)
    model = build_model(mcfg)
    predictor = Predictor(
        spec=ModelSpec.from_config(mcfg),
        source=Path("."),
        fn=keras_forward(model, mcfg.input_size, len(mcfg.markers)),
    )
    subsets = {"m_12345": None, "m_24": "endomucin,collagen", "m_1": "DAPI"}
    with SampleStore(path) as st:
        rows = evaluation.evaluate_model(
            model, mcfg, st, ["a", "b"], fold=0, subsets=",".join(subsets), batch_size=3, progress=False
        )
        truth = {n: st.read_sample(n).labels["sinusoids"] for n in ("a", "b")}
    got = {(r["subset"], r["metric"]): r["value"] for r in rows}
    for label, markers in subsets.items():
        cm = 0
        for name in ("a", "b"):
            with open_volume(f"{path}:{name}") as vol:
                pred = labels_from_probabilities(
                    predict_volume(predictor, vol, markers=markers, batch_size=3, progress=False)
                )
            cm = cm + confusion_matrix(truth[name], pred, 2)
        assert cm.sum() == 2 * 2 * 47 * 53  # every voxel once
        assert (got[label, "tp"], got[label, "fp"], got[label, "fn"]) == (cm[1, 1], cm[0, 1], cm[1, 0])
        assert got[label, "f1"] == 2 * cm[1, 1] / (2 * cm[1, 1] + cm[0, 1] + cm[1, 0])
        assert got[label, "tp"] + got[label, "fn"] == int(sum(t.sum() for t in truth.values()))


def test_forward_pass_is_traced_once_per_model():
    """Validation, evaluation and prediction of one model share one traced forward function."""
    from marker_excite.inference.forward import keras_forward

    mcfg = model_config("MS", **TINY)
    model, other = build_model(mcfg), build_model(mcfg)
    fn = keras_forward(model, mcfg.input_size, len(mcfg.markers))
    assert keras_forward(model, mcfg.input_size, len(mcfg.markers)) is fn
    assert keras_forward(other, mcfg.input_size, len(mcfg.markers)) is not fn
    image = np.zeros((2, mcfg.input_size, mcfg.input_size, 5), np.float32)
    assert fn(image, np.ones((2, 5), np.float32)).shape == (2, mcfg.output_size, mcfg.output_size, 2)


def test_traced_forward_pass_dies_with_its_model():
    import gc
    import weakref

    from marker_excite.inference.forward import keras_forward

    mcfg = model_config("MS", **TINY)
    model = build_model(mcfg)
    keras_forward(model, mcfg.input_size, len(mcfg.markers))(
        np.zeros((1, mcfg.input_size, mcfg.input_size, 5), np.float32), np.ones((1, 5), np.float32)
    )
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_forward_on_other_backends_matches_the_traced_one():
    """``forward._compiled_predict`` (Keras' predict_on_batch + a NumPy softmax, used on JAX) gives the
    probabilities of the tf.function forward pass, for full and partial batches."""
    import numpy as np

    from marker_excite.inference.forward import _compiled_predict, keras_forward
    from marker_excite.models.zoo import build_model, model_config

    cfg = model_config("MS-ME", depth=2, base_filters=4, input_size=44)
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    for n in (4, 3):
        image = rng.normal(size=(n, 44, 44, 5)).astype(np.float32)
        availability = (rng.random((n, 5)) < 0.6).astype(np.float32)
        traced = keras_forward(model, 44, 5)(image, availability)
        other = _compiled_predict(model)(image, availability)
        assert other.shape == traced.shape == (n, cfg.output_size, cfg.output_size, 2)
        np.testing.assert_allclose(other.sum(axis=-1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(other, traced, rtol=1e-5, atol=1e-6)


def test_custom_panel_subsets_are_named_by_markers_and_skips_are_one_line(tmp_path, capsys):
    """Issue 21 item 8: a custom panel's subsets carry marker names (not m_1..m_K), and the subsets no
    test sample can serve are summarised in one line, not one line each."""
    rng = np.random.default_rng(3)
    path = tmp_path / "custom.h5"
    with SampleStore(path, "w") as st:
        sample = tiny_sample("c0", rng)
        st.write_sample(dataclasses.replace(sample, markers=("H", "actin", "tub", "golgi", "mito")))
    panel = ("H", "actin", "tub", "golgi", "mito", "ER")  # no sample has ER: 32 of the 63 subsets skipped
    mcfg = model_config("MS", markers=panel, **TINY)
    with SampleStore(path) as st:
        rows = evaluation.evaluate_model(build_model(mcfg), mcfg, st, ["c0"], fold=0, progress=True)
    assert {r["subset"] for r in rows if r["n_markers"] == 1} == {"H", "actin", "tub", "golgi", "mito"}
    assert "actin+tub+mito" in {r["subset"] for r in rows} and len({r["subset"] for r in rows}) == 31
    skipped = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert skipped == [
        "evaluate: 32 subset(s) skipped, no test sample has all their markers: ER, H+ER, actin+ER, tub+ER, "
        "golgi+ER and 27 more"
    ]
    # the names are accepted back as --subsets
    assert [s.indices for s in evaluation.parse_subsets("actin+tub+mito,H", panel)] == [(1, 2, 4), (0,)]


def test_evaluate_skips_subsets_with_markers_never_seen_in_training(store, tmp_path, capsys):
    """Subsets holding a marker that no training sample had are not scored (one note line) unless
    --allow-unseen, so they do not pull the mean down without a word."""
    run, _, _ = make_run(tmp_path / "run", markers_seen=("DAPI", "endomucin"))  # panel DAPI, endomucin, collagen
    base = ["evaluate", "--run", str(run), "--store", str(store), "--samples", "s0"]
    assert cli.main([*base, "--out", str(tmp_path / "seen.csv")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "never seen" in line]  # (also: progress lines)
    assert notes == [
        "evaluate: note: 4 subset(s) with collagen (never seen in training) not scored; give --allow-unseen to score them"
    ]
    assert {r["subset"] for r in results.read_results(tmp_path / "seen.csv")} == {"m_1", "m_2", "m_12"}
    assert cli.main([*base, "--out", str(tmp_path / "all.csv"), "--allow-unseen", "--quiet"]) == 0
    assert len({r["subset"] for r in results.read_results(tmp_path / "all.csv")}) == 7
    assert cli.main([*base, "--out", str(tmp_path / "none.csv"), "--subsets", "m_4", "--quiet"]) == 2
    assert "every subset asked for uses collagen" in capsys.readouterr().err
    assert not (tmp_path / "none.csv").exists()
