"""training/trainer.py, training/setup.py, runs/: learning happens, run directory contents, resume equivalence, errors."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, make_tiny_store

from marker_excite.commands.info import describe
from marker_excite.errors import UserInputError
from marker_excite.models.zoo import model_config
from marker_excite.runs import directory as rd
from marker_excite.runs.log import read_log
from marker_excite.runs.run import TrainConfig, load_run, train_config
from marker_excite.training.trainer import dry_run, train

REPO = Path(__file__).resolve().parents[1]


def tiny_configs(name="MS-ME", **train_overrides):
    mcfg = model_config(name, **TINY)
    values = dict(epochs=2, batch_size=4, n_folds=3, learning_rate=0.01)
    values.update(train_overrides)
    return mcfg, train_config("small", **values)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_tiny_store(tmp_path_factory.mktemp("store") / "tiny.h5")


def _weights(model):
    return [np.asarray(v.numpy()) for v in model.weights]


def test_train_learns_and_writes_run_dir(store, tmp_path):
    mcfg, tcfg = tiny_configs(epochs=6)
    run = train(tmp_path / "run", mcfg, tcfg, store, progress=False)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == sorted(
        [
            rd.MODEL_CONFIG,
            rd.TRAIN_CONFIG,
            rd.DATA_CONFIG,
            rd.VERSIONS,
            rd.BEST_WEIGHTS,
            rd.LAST_WEIGHTS,
            rd.CHECKPOINT,
            rd.LOG,
            rd.TENSORBOARD,
            rd.CURVES,
            rd.LOCK,
        ]
    )
    assert [r["epoch"] for r in run.history] == list(range(1, 7))
    assert set(run.history[0]) == {"epoch", "loss", "val_loss", "val_f1_sinusoids", "val_mean_f1", "time", "train_time"}
    losses = [r["loss"] for r in run.history]
    assert losses[-1] < 0.7 * losses[0]  # learning happens
    assert max(r["val_mean_f1"] for r in run.history) > 0.7  # rectangles cover ~30 % of pixels: chance F1 ~ 0.45
    best = max(run.history, key=lambda r: r["val_mean_f1"])
    assert run.best_epoch == best["epoch"]
    data = json.loads((tmp_path / "run" / rd.DATA_CONFIG).read_text())
    assert sorted(data["fold"]["train"] + data["fold"]["val"] + data["fold"]["test"]) == [f"s{i}" for i in range(6)]
    assert len(data["class_weights"]) == 2 and min(data["class_weights"]) >= 1.0
    versions = json.loads((tmp_path / "run" / rd.VERSIONS).read_text())
    assert {"python", "tensorflow", "keras", "numpy", "marker_excite", "platform", "devices"} <= set(versions)
    assert (tmp_path / "run" / rd.CURVES).stat().st_size > 2000
    assert any((tmp_path / "run" / rd.TENSORBOARD).rglob("events.out.tfevents*"))
    _check_scalar_events(tmp_path / "run" / rd.TENSORBOARD, run.history)
    # load_run gives the BEST weights; the returned run's model too
    again = load_run(tmp_path / "run")
    for a, b in zip(_weights(again.model), _weights(run.model)):
        np.testing.assert_array_equal(a, b)
    assert again.fold.test == run.fold.test and again.model_config == mcfg and again.train_config == tcfg
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == [rd.LOCK]  # no temp files
    assert (tmp_path / "run" / rd.LOCK).read_text() == ""  # released


def _check_scalar_events(folder, history):
    """Without the tensorboard package, train_callbacks.ScalarSummaries writes every log.csv value at step = epoch."""
    import importlib.util

    import tensorflow as tf

    if importlib.util.find_spec("tensorboard") is not None:
        return  # keras.callbacks.TensorBoard writes them (its own tags and steps)
    events = {(v.tag, e.step): float(tf.make_ndarray(v.tensor))
              for f in folder.rglob("events.out.tfevents*") for e in tf.compat.v1.train.summary_iterator(str(f))
              for v in e.summary.value}  # fmt: skip
    expected = {(k, r["epoch"]): float(r[k]) for r in history for k in r if k != "epoch"}
    assert sorted(events) == sorted(expected)
    np.testing.assert_allclose([events[k] for k in expected], list(expected.values()), rtol=1e-5)


def test_resume_gives_identical_weights(store, tmp_path):
    mcfg, tcfg = tiny_configs("MS-ME", epochs=2)
    full = train(tmp_path / "full", mcfg, tcfg, store, progress=False)
    train(tmp_path / "split", mcfg, tcfg.replace(epochs=1), store, progress=False)
    # the interrupted run's config said 1 epoch; continue it as the 2-epoch run it would have been
    cfg = json.loads((tmp_path / "split" / rd.TRAIN_CONFIG).read_text())
    cfg["epochs"] = 2
    (tmp_path / "split" / rd.TRAIN_CONFIG).write_text(json.dumps(cfg))
    resumed = train(tmp_path / "split", mcfg, tcfg, store, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    last_full = load_run(tmp_path / "full", weights="last").model
    last_resumed = load_run(tmp_path / "split", weights="last").model
    for a, b in zip(_weights(last_full), _weights(last_resumed)):
        np.testing.assert_array_equal(a, b)
    assert resumed.history[1]["loss"] == full.history[1]["loss"]


def test_resume_with_other_config_names_fields(store, tmp_path):
    mcfg, tcfg = tiny_configs("MS", epochs=1)
    train(tmp_path / "run", mcfg, tcfg, store, progress=False)
    with pytest.raises(UserInputError) as err:
        train(
            tmp_path / "run",
            mcfg.replace(base_filters=8),
            tcfg.replace(learning_rate=0.5),
            store,
            resume=True,
            progress=False,
        )
    msg = str(err.value)
    assert "\n" not in msg and "model_config.base_filters" in msg and "train_config.learning_rate" in msg
    assert "train_config.seed" not in msg
    with pytest.raises(UserInputError, match="not empty"):
        train(tmp_path / "run", mcfg, tcfg, store, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserInputError, match="not a run directory"):
        train(other, mcfg, tcfg, store, overwrite=True, progress=False)
    assert (other / "notes.txt").exists()


def test_explicit_split_plan_and_dry_run(store, tmp_path, capsys):
    mcfg, tcfg = tiny_configs(epochs=1)
    explicit = tcfg.replace(train_samples=("s0", "s1"), val_samples=("s2",), test_samples=())
    plan = dry_run(mcfg, explicit, store, n_steps=1)
    # 2 annotated slices x 4 output tiles (40 px slices, 20 px tiles) per sample; batch 4
    assert plan.train_patches == {"s0": 8, "s1": 8} and plan.val_patches == {"s2": 8} and plan.steps_per_epoch == 4
    assert plan.seconds_per_step > 0
    lines = plan.lines()
    assert lines[0] == "split: train s0, s1 | validation s2 | test none"
    assert lines[1] == "training patches per sample: s0 8, s1 8 (total 16, 4 steps of 4)"
    assert lines[3].startswith("estimated time per epoch: ~") and "4 steps x" in lines[3]
    assert not (tmp_path / "run").exists()
    run = train(tmp_path / "run", mcfg, explicit, store)
    assert (run.fold.train, run.fold.val, run.fold.test) == (("s0", "s1"), ("s2",), ())
    err = capsys.readouterr().err
    assert "split: train s0, s1 | validation s2 | test none" in err and "estimated time per epoch: ~" in err
    assert load_run(tmp_path / "run").train_config.test_samples == ()
    spec = load_run(tmp_path / "run").spec
    assert "training     explicit split of named samples; 1 of 1 epoch(s)" in describe(spec)  # not "fold 0 of 4"
    folds = dataclasses.replace(spec, provenance=dataclasses.replace(spec.provenance, split="folds"))
    assert f"training     fold 0 of {tcfg.n_folds}; 1 of 1 epoch(s)" in describe(folds)
    # only --train-samples: the fold's own split, training restricted
    fold = load_run(tmp_path / "run").fold
    with pytest.raises(UserInputError, match=r"training sample\(s\) ss1 are not in the store \(did you mean 's1'\?\)"):
        dry_run(mcfg, tcfg.replace(train_samples=("s0", "ss1"), val_samples=("s2",)), store)
    with pytest.raises(UserInputError, match="s2 are both training and validation"):
        dry_run(mcfg, tcfg.replace(train_samples=("s0", "s2"), val_samples=("s2",)), store)
    with pytest.raises(UserInputError, match="val_samples needs train_samples"):
        tcfg.replace(val_samples=("s2",))
    default = dry_run(mcfg, tcfg, store, n_steps=1).fold
    restricted = dry_run(mcfg, tcfg.replace(train_samples=default.train[:1]), store, n_steps=1).fold
    assert restricted.train == default.train[:1] and (restricted.val, restricted.test) == (default.val, default.test)
    with pytest.raises(
        UserInputError, match=rf"training sample\(s\) {default.test[0]} are not training samples of fold 0"
    ):
        dry_run(mcfg, tcfg.replace(train_samples=default.test[:1]), store)
    assert fold.test == ()


def test_resume_extends_finished_run_and_init_from(store, tmp_path):
    mcfg, tcfg = tiny_configs(epochs=1)
    first = train(tmp_path / "a", mcfg, tcfg, store, progress=False)
    # a run made before --seed also set the model's seed (model seed 0, training seed 0 here) resumes with
    # another model seed: weights and Marker Sampling state come from the checkpoint
    longer = train(
        tmp_path / "a", mcfg.replace(seed=mcfg.seed + 4), tcfg.replace(epochs=2), store, resume=True, progress=False
    )
    assert [r["epoch"] for r in longer.history] == [1, 2] and longer.history[0] == first.history[0]
    assert json.loads((tmp_path / "a" / rd.TRAIN_CONFIG).read_text())["epochs"] == 2
    with pytest.raises(UserInputError, match="train_config.epochs"):
        train(tmp_path / "a", mcfg, tcfg, store, resume=True, progress=False)  # fewer epochs: not a resume
    # --init-from: the other run's best weights are the starting point (a vanishing learning rate keeps them)
    source = load_run(tmp_path / "a")
    b = train(  # another seed: the weights still come from the source
        tmp_path / "b",
        mcfg.replace(seed=mcfg.seed + 9),
        tcfg.replace(learning_rate=1e-12),
        store,
        progress=False,
        init_from=tmp_path / "a",
    )
    for x, y in zip(_weights(source.model), _weights(b.model)):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert json.loads((tmp_path / "b" / rd.DATA_CONFIG).read_text())["init_from"] == str((tmp_path / "a").resolve())
    with pytest.raises(
        UserInputError, match=r"cannot initialise from .*a: its model differs in model_config.base_filters"
    ):
        train(tmp_path / "c", mcfg.replace(base_filters=8), tcfg, store, progress=False, init_from=tmp_path / "a")
    with pytest.raises(UserInputError, match="not a run directory"):
        train(tmp_path / "d", mcfg, tcfg, store, progress=False, init_from=tmp_path / "nowhere")


def test_config_validation_and_presets(tmp_path, store):
    assert train_config("paper").epochs == 200 and train_config("paper").batch_size == 2
    assert TrainConfig.from_json(train_config("small").to_json()) == train_config("small")
    with pytest.raises(UserInputError, match="fold"):
        train_config("small", fold=5, n_folds=4)
    with pytest.raises(UserInputError, match="preset"):
        train_config("huge")
    mcfg, tcfg = tiny_configs()
    with pytest.raises(UserInputError, match="classes differ"):
        train(tmp_path / "r", mcfg, tcfg.replace(classes=("arteries",)), store, progress=False)
    with pytest.raises(UserInputError, match="does not exist"):
        train(tmp_path / "r", mcfg, tcfg, tmp_path / "missing.h5", progress=False)
    with pytest.raises(UserInputError, match="not in the store"):
        train(tmp_path / "r2", mcfg, tcfg.replace(marker_panels={"nope": ("DAPI",)}), store, progress=False)


def test_load_run_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_run(tmp_path / "nothing")
    with pytest.raises(UserInputError, match="not a run directory"):
        load_run(tmp_path)
    (tmp_path / rd.MODEL_CONFIG).write_text("{not json")
    with pytest.raises(UserInputError, match="corrupt"):
        load_run(tmp_path)
    mcfg, tcfg = tiny_configs()
    mcfg.to_json(tmp_path / rd.MODEL_CONFIG)
    tcfg.to_json(tmp_path / rd.TRAIN_CONFIG)
    with pytest.raises(UserInputError, match="data_config.json is missing"):
        load_run(tmp_path)
    (tmp_path / rd.DATA_CONFIG).write_text(json.dumps({"store": "x.h5", "fold": {"train": [], "val": [], "test": []}}))
    with pytest.raises(UserInputError, match="weights.best.weights.h5 is missing"):
        load_run(tmp_path)
    (tmp_path / rd.BEST_WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(UserInputError, match="cannot load weights"):
        load_run(tmp_path)


def test_run_records_the_markers_its_training_samples_had(store, tmp_path):
    """No training sample keeps collagen: the run (data_config, Run, model card) says it never saw it."""
    from marker_excite.runs.run import load_run as read_run

    panels = {f"s{i}": ("DAPI", "endomucin", "endoglin", "CXCL12-GFP") for i in range(6)}
    mcfg, tcfg = tiny_configs("MS", epochs=1, marker_panels=panels)
    train(tmp_path / "run", mcfg, tcfg, store, progress=False)
    data = json.loads((tmp_path / "run" / rd.DATA_CONFIG).read_text())
    assert data["markers_seen"] == ["DAPI", "endomucin", "endoglin", "CXCL12-GFP"]
    run = read_run(tmp_path / "run")
    assert run.markers_seen == ("DAPI", "endomucin", "endoglin", "CXCL12-GFP")
    assert run.spec.markers_seen == ("DAPI", "endomucin", "endoglin", "CXCL12-GFP")
    assert run.spec.card()["training"]["markers_seen"] == ["DAPI", "endomucin", "endoglin", "CXCL12-GFP"]


def test_runs_written_before_a_field_existed_still_resume(store, tmp_path):
    """A stored config without a field (added to the code later) compares as that field's default: the
    run resumes when the new setting is the default, and the field is named when it is not."""
    mcfg, tcfg = tiny_configs(epochs=1)
    train(tmp_path / "a", mcfg, tcfg, store, progress=False)
    assert TrainConfig.with_defaults({"epochs": 3}) == {**TrainConfig().to_dict(), "epochs": 3}
    path = tmp_path / "a" / rd.TRAIN_CONFIG
    stored = json.loads(path.read_text())
    assert stored["deterministic"] is True and TrainConfig().deterministic is True
    del stored["deterministic"]  # as if written before the field existed; its default is what is given
    path.write_text(json.dumps(stored))
    resumed = train(tmp_path / "a", mcfg, tcfg.replace(epochs=2), store, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    stored = json.loads(path.read_text())
    del stored["learning_rate"]  # its default, 0.001, is not this run's 0.01: a real difference
    path.write_text(json.dumps(stored))
    with pytest.raises(UserInputError, match=r"differ from the stored run in train_config.learning_rate \("):
        train(tmp_path / "a", mcfg, tcfg.replace(epochs=3), store, resume=True, progress=False)


def test_other_keras_backend_path_trains_the_same_weights(store, tmp_path, monkeypatch):
    """On a Keras backend other than TensorFlow (JAX on a GPU machine without TensorFlow), ``train`` feeds
    NumPy batches from a generator, builds the model outside any tf.distribute scope, writes no TensorBoard
    logs and validates with Keras' ``predict_on_batch``. Run here with TensorFlow's kernels under another
    backend name, that path gives the weights, log and best epoch of the tf.data path."""
    import keras

    mcfg, tcfg = tiny_configs("MS-ME", epochs=3)
    reference = train(tmp_path / "tf", mcfg, tcfg, store, progress=False)
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    other = train(tmp_path / "other", mcfg, tcfg, store, progress=False)
    assert not (tmp_path / "other" / rd.TENSORBOARD).exists() and (tmp_path / "tf" / rd.TENSORBOARD).exists()
    versions = json.loads((tmp_path / "other" / rd.VERSIONS).read_text())
    assert versions["keras_backend"] == "numpy" and "tensorflow" not in versions
    assert other.best_epoch == reference.best_epoch
    for a, b in zip(other.history, reference.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val_mean_f1"] == pytest.approx(b["val_mean_f1"], abs=1e-6)
    for a, b in zip(
        _weights(load_run(tmp_path / "other", weights="last").model),
        _weights(load_run(tmp_path / "tf", weights="last").model),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_best_epoch_on_all_subsets_scores_every_subset(store, tmp_path):
    """select_on=all_subsets: val_mean_f1 (what picks the best epoch) is the mean validation F1 over the
    31 subsets, exactly what evaluate gives on the validation samples with that epoch's weights."""
    from marker_excite.inference.evaluation import evaluate_run

    mcfg, tcfg = tiny_configs("MS", epochs=1, select_on="all_subsets")
    run = train(tmp_path / "run", mcfg, tcfg, store, progress=False)
    row = run.history[-1]
    assert row["val_all_markers_mean_f1"] == row["val_f1_sinusoids"]
    rows = evaluate_run(load_run(tmp_path / "run", weights="last"), store, samples=run.fold.val, progress=False)
    f1 = [r["value"] for r in rows if r["metric"] == "f1"]
    assert len(f1) == 31
    assert row["val_mean_f1"] == row["val_subsets_mean_f1"] == pytest.approx(np.mean(f1), abs=1e-6)  # log.csv: 6 digits
    with pytest.raises(UserInputError, match="select_on must be one of all_markers, all_subsets"):
        tiny_configs(select_on="some")


def test_train_recipe_own_data(tmp_path):
    from marker_excite.cli import build_parser
    from marker_excite.commands.train import build_configs

    def configs(*extra):
        argv = ["train", "--store", str(tmp_path / "s.h5"), "--run", str(tmp_path / "r"), "--recipe", "own-data"]
        return build_configs(build_parser().parse_args([*argv, *extra]))

    mcfg, tcfg = configs("--model", "MS")
    assert (tcfg.preset, tcfg.epochs, tcfg.steps_per_epoch, tcfg.lr_schedule) == ("cpu", 60, 25, "cosine")
    assert (tcfg.augment, tcfg.intensity_augment, tcfg.select_on) == (True, 0.2, "all_subsets")
    assert configs("--model", "UB", "--panel", "DAPI")[1].select_on == "all_markers"  # used on its markers only
    assert configs("--no-augment", "--preset", "small")[1].augment is False  # explicit options win
    assert configs("--preset", "small")[1].preset == "small"


def test_resume_without_checkpoint_after_trained_epochs_is_refused(store, tmp_path, capsys):
    mcfg, tcfg = tiny_configs(epochs=1, steps_per_epoch=2)
    run = tmp_path / "run"
    train(run, mcfg, tcfg, store, progress=False)
    shutil.rmtree(run / rd.CHECKPOINT)
    before = {name: (run / name).read_bytes() for name in (rd.BEST_WEIGHTS, rd.LAST_WEIGHTS, rd.LOG)}
    with pytest.raises(rd.RunDirError, match=r"has trained epochs \(log.csv up to epoch 1, weights.best.weights.h5, "
                       r"weights.last.weights.h5\) but no complete checkpoint/.*use --overwrite"):  # fmt: skip
        train(run, mcfg, tcfg.replace(epochs=2), store, resume=True, progress=False)
    assert {name: (run / name).read_bytes() for name in before} == before
    # interrupted during its first epoch (nothing trained): the resume starts at epoch 1 and says so
    for name in before:
        (run / name).unlink()
    again = train(run, mcfg, tcfg, store, resume=True)
    assert [r["epoch"] for r in again.history] == [1]
    assert "has no checkpoint (interrupted during its first epoch): starting at epoch 1" in capsys.readouterr().err


HOLD_LOCK = """
import sys, time
from marker_excite.runs import directory as rd
with rd.training_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_second_training_of_a_run_directory_is_refused_and_a_killed_holder_leaves_no_lock(store, tmp_path):
    mcfg, tcfg = tiny_configs(epochs=1, steps_per_epoch=2)
    run = tmp_path / "run"
    train(run, mcfg, tcfg, store, progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for kwargs in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(rd.RunDirError, match=rf"run directory {run} is being trained by another process "
                               rf"\(pid {holder.pid} on .*\); wait for it to end"):  # fmt: skip
                train(run, mcfg, tcfg.replace(epochs=2), store, progress=False, **kwargs)
        assert read_log(run / rd.LOG)[-1]["epoch"] == 1 and (run / rd.BEST_WEIGHTS).is_file()  # untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    longer = train(run, mcfg, tcfg.replace(epochs=2), store, resume=True, progress=False)  # the OS released it
    assert [r["epoch"] for r in longer.history] == [1, 2]
    with rd.training_lock(run), pytest.raises(rd.RunDirError, match="being trained by another process"):
        with rd.training_lock(run):  # another holder in the same process is refused too
            pass
