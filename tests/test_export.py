"""export.py: SavedModel round trip in a process without marker_excite, model card, predict on an export, example script."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MARKERS, make_run

from marker_excite.commands.info import describe
from marker_excite.contract.model_spec import CARD_NAME, ModelSpec, unseen_markers
from marker_excite.data.io import open_volume
from marker_excite.data.writers import write_volume
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.inference.whole_stack import predict_volume
from marker_excite.runs.run import load_run
from marker_excite.sharing.savedmodel import export_run

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "run_exported_model.py"

#: run in a fresh interpreter: plain tf.saved_model.load, then the standalone example script
CHILD = """
import runpy, sys, numpy as np, tensorflow as tf
model_dir, inputs, outputs, example, *example_args = sys.argv[1:]
loaded = tf.saved_model.load(model_dir)
data = np.load(inputs)
out = loaded.signatures["serving_default"](image=tf.constant(data["image"]), availability=tf.constant(data["availability"]))
np.save(outputs, out["probabilities"].numpy())
sys.argv = [example, model_dir, *example_args]
runpy.run_path(example, run_name="__main__")
assert not [m for m in sys.modules if m.startswith("marker_excite")], "marker_excite was imported"
"""


#: run the example script once per argument list in ONE fresh interpreter; print how each run ended
SCRIPT_RUNS = """
import json, runpy, sys
example, runs = sys.argv[1], json.loads(sys.argv[2])
for argv in runs:
    sys.argv = [example, *argv]
    try:
        runpy.run_path(example, run_name="__main__")
        print("exit 0")
    except SystemExit as exc:
        print(f"exit: {exc.code}")
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    run_dir, model, cfg = make_run(base / "run", name="MS-ME", spacing=(1.0, 1.0, 1.0))
    return export_run(run_dir, base / "exported"), model, cfg, run_dir


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TF_CPP_MIN_LOG_LEVEL": "3"}


def test_saved_model_and_example_script_without_package(exported, tmp_path):
    """One child process without marker_excite: the SavedModel equals the Keras model (1e-5), and the
    example script (tensorflow + numpy + tifffile only) gives what ``predict`` gives (1e-4) on a stack
    of 0.45 µm pixels (the model's are 1 µm: resampled there and back) with a channel the model does
    not know (skipped with a notice), and writes calibrated OME-TIFF."""
    import tifffile

    from marker_excite.inference.whole_stack import predict_file

    path, model, cfg, run_dir = exported
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 28, 28, 3)).astype(np.float32)
    availability = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 0]], np.float32)
    np.savez(tmp_path / "in.npz", image=image, availability=availability)
    stack = rng.normal(3.0, 1.0, size=(3, 2, 41, 53)).astype(np.float32)  # CZYX: collagen, extra, DAPI
    write_volume(tmp_path / "in.ome.tif", stack, spacing=(2.0, 0.45, 0.45), channel_names=("collagen", "extra", "DAPI"))
    example_args = [
        str(tmp_path / "in.ome.tif"),
        str(tmp_path / "labels.ome.tif"),
        "--probabilities",
        str(tmp_path / "p.ome.tif"),
    ]
    child = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "in.npz"), str(tmp_path / "out.npy"),
                            str(EXAMPLE), *example_args], check=True, cwd=tmp_path, env=_env(), capture_output=True, text=True)  # fmt: skip
    assert "notice: channel 1 'extra' is not a marker of the model (DAPI, endomucin, collagen); skipped" in child.stderr

    logits = np.asarray(model([image, availability], training=False))
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = np.load(tmp_path / "out.npy")
    assert got.shape == (3, 12, 12, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    predict_file(path, tmp_path / "in.ome.tif", markers="collagen,DAPI", labels=tmp_path / "ref_labels.ome.tif",
                 probabilities=tmp_path / "ref.ome.tif", progress=False)  # fmt: skip
    with open_volume(tmp_path / "ref.ome.tif") as ref, open_volume(tmp_path / "p.ome.tif") as out:
        assert out.markers == ("background", "sinusoids") and out.spacing == (2.0, 0.45, 0.45)
        expected = ref.read_volume()
        assert expected.shape == (2, 2, 41, 53) and np.abs(expected - 0.5).max() > 0.1  # not a constant map
        assert np.abs(out.read_volume() - expected).max() <= 1e-4
    with open_volume(tmp_path / "labels.ome.tif") as labels, open_volume(tmp_path / "ref_labels.ome.tif") as ref_labels:
        assert labels.markers == ("labels",) and labels.spacing == (2.0, 0.45, 0.45) and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels.read_volume(), ref_labels.read_volume())
    with tifffile.TiffFile(tmp_path / "labels.ome.tif") as tif:
        assert tif.pages.first.tags["XResolution"].value == (20, 9)  # 1 / 0.45 pixels per µm


def test_model_card_contents(exported):
    path = exported[0]
    card = json.loads((path / CARD_NAME).read_text())
    assert card["markers"] == list(MARKERS) and card["classes"] == ["sinusoids"]
    assert card["outputs"] == ["background", "sinusoids"]
    assert card["tile"] == {"input_size": 28, "output_size": 12, "margin": 8}
    assert card["normalisation"]["method"] == "per-sample per-channel z-score"
    assert card["training"]["best_epoch"] == 2 and card["training"]["best_val_mean_f1"] == 0.7
    assert card["training"]["samples"] == {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    assert card["software"]["exported_with"]["tensorflow"]
    assert card["spacing_zyx_um"] == [1.0, 1.0, 1.0]
    assert card["unseen_markers"].startswith("a marker outside training.markers_seen was an all-zero channel")


#: The keys of the model card and of its training summary, in the order every card has been written in.
CARD_KEYS = ["format", "version", "model", "markers", "classes", "outputs", "tile", "spacing_zyx_um", "normalisation",
             "unseen_markers", "signature", "model_config", "software", "training"]  # fmt: skip
TRAINING_KEYS = ["run", "model", "store", "split", "fold", "n_folds", "samples", "marker_panels", "markers_seen",
                 "epochs", "epochs_planned", "best_epoch", "weights", "weights_epoch", "best_val_mean_f1",
                 "best_val_f1", "batch_size", "learning_rate", "seed", "precision"]  # fmt: skip


def test_model_card_is_the_spec_serialised(exported):
    """The card is only the serialised ModelSpec: keys in the fixed order, read back and written again it is
    the same text, and the spec read from it is the run's (provenance included) plus the exporting software."""
    path, _, cfg, run_dir = exported
    text = (path / CARD_NAME).read_text()
    card = json.loads(text)
    assert list(card) == CARD_KEYS and list(card["training"]) == TRAINING_KEYS
    assert list(card["software"]) == ["exported_with", "trained_with"]
    spec = ModelSpec.from_card(card)
    assert json.dumps(spec.card(), indent=2) + "\n" == text
    assert load_predictor(path).spec == spec and spec.name == "MS-ME" and spec.model_config == cfg.to_dict()
    p = spec.provenance
    assert (p.train_samples, p.markers_seen, p.best_epoch, p.weights) == (("a", "b"), MARKERS, 2, "best")
    assert p.exported_with["tensorflow"] and p.trained_with is None  # make_run writes no versions.json
    not_exported = dataclasses.replace(spec, provenance=dataclasses.replace(p, exported_with=None))
    assert load_predictor(run_dir).spec == not_exported == load_run(run_dir).spec


def test_a_card_written_before_a_field_was_recorded_still_loads(exported, tmp_path):
    """Older cards lack ``unseen_markers`` and the training summary's split, markers_seen, weights,
    weights_epoch and precision: they load with the defaults, and no marker is refused as unseen."""
    old = tmp_path / "old"
    shutil.copytree(exported[0], old)
    card = json.loads((old / CARD_NAME).read_text())
    del card["unseen_markers"]
    for key in ("split", "markers_seen", "weights", "weights_epoch", "precision"):
        del card["training"][key]
    (old / CARD_NAME).write_text(json.dumps(card))
    spec = load_predictor(old).spec
    assert spec.markers_seen is None and unseen_markers(spec, MARKERS) == []
    assert (spec.provenance.split, spec.provenance.weights, spec.provenance.precision) == ("folds", "best", "fp32")
    described = describe(spec)
    assert "training     fold 0 of 3; 2 of 3 epoch(s); best epoch 2 (val mean F1 0.7000); precision fp32" in described


def test_predict_on_exported_equals_run(exported, tmp_path):
    path, _, _, run_dir = exported
    image = np.random.default_rng(1).normal(size=(3, 2, 19, 26)).astype(np.float32)
    write_volume(tmp_path / "s.ome.tif", image, channel_names=MARKERS)
    with open_volume(tmp_path / "s.ome.tif") as vol:
        from_export = predict_volume(load_predictor(path), vol, markers="DAPI,collagen", progress=False)
        from_run = predict_volume(load_predictor(run_dir), vol, markers="DAPI,collagen", progress=False)
    np.testing.assert_allclose(from_export, from_run, atol=1e-5)


def test_export_refuses_existing_output(exported, tmp_path):
    path, _, _, run_dir = exported
    with pytest.raises(UserInputError, match="already exists"):
        export_run(run_dir, path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("x")
    with pytest.raises(UserInputError, match="not an exported model"):
        export_run(run_dir, tmp_path / "folder", overwrite=True)


def test_cli_export_info_and_predict_on_export(exported, tmp_path, capsys):
    from marker_excite.cli import main

    _, _, _, run_dir = exported
    assert main(["export", str(run_dir), str(tmp_path / "model")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "model"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tile"]["margin"] == 8
    assert main(["info", str(tmp_path / "model")]) == 0
    assert "classes      0=background, 1=sinusoids" in capsys.readouterr().out
    image = np.random.default_rng(4).normal(size=(3, 1, 14, 14)).astype(np.float32)
    write_volume(tmp_path / "s.h5", image, channel_names=MARKERS)
    assert (
        main(
            ["predict", str(tmp_path / "model"), str(tmp_path / "s.h5"), "--labels", str(tmp_path / "l.h5"), "--quiet"]
        )
        == 0
    )
    with open_volume(tmp_path / "s.h5") as vol, open_volume(tmp_path / "l.h5") as lab:
        expected = predict_volume(load_predictor(run_dir), vol, progress=False).argmax(axis=0)
        np.testing.assert_array_equal(lab.read_volume()[0], expected)


def test_weights_last_in_predict_and_export(tmp_path, capsys):
    """--weights last: a run's final-epoch weights for predict / export; the card says which; an exported
    model refuses it (it holds the weights it was exported with)."""
    from marker_excite.cli import main
    from marker_excite.models.zoo import build_model
    from marker_excite.runs.checkpoint import save_weights
    from marker_excite.runs.directory import LAST_WEIGHTS

    run_dir, model, cfg = make_run(tmp_path / "run", name="MS-ME")
    last = build_model(cfg)  # other weights than make_run's best ones
    save_weights(last, run_dir / LAST_WEIGHTS)
    image = np.random.default_rng(3).normal(size=(2, cfg.input_size, cfg.input_size, len(MARKERS))).astype(np.float32)
    availability = np.ones((2, len(MARKERS)), np.float32)
    best_p = load_predictor(run_dir).probabilities(image, availability)
    last_p = load_predictor(run_dir, weights="last").probabilities(image, availability)
    logits = np.asarray(last([image, availability], training=False))
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(last_p, softmax, atol=1e-5)
    assert np.abs(best_p - last_p).max() > 1e-3
    assert main(["export", str(run_dir), str(tmp_path / "exp"), "--weights", "last"]) == 0
    card = json.loads((tmp_path / "exp" / "model_card.json").read_text())
    assert card["training"]["weights"] == "last" and card["training"]["weights_epoch"] == 2  # make_run logs 2 epochs
    np.testing.assert_allclose(load_predictor(tmp_path / "exp").probabilities(image, availability), last_p, atol=1e-5)
    with pytest.raises(UserInputError, match="is an exported model: it holds the weights it was exported with"):
        load_predictor(tmp_path / "exp", weights="last")


def test_example_script_reads_samples_last_refuses_unknown_names_and_unseen_markers_quietly(exported, tmp_path):
    """The example script reads a samples-last (YXS) TIFF as ``predict`` does and gives its
    probabilities; '-' skips a channel; a mistyped --channels name is an error with the closest marker;
    a marker outside the card's markers_seen is refused unless --allow-unseen; TensorFlow's start-up
    lines are not printed (no TF_CPP_MIN_LOG_LEVEL in the environment)."""
    import shutil

    import tifffile

    from marker_excite.inference.whole_stack import predict_file

    path = exported[0]
    unseen = tmp_path / "unseen"  # the same model, as if no training sample had had collagen
    shutil.copytree(path, unseen)
    card = json.loads((unseen / CARD_NAME).read_text())
    card["training"]["markers_seen"] = ["DAPI", "endomucin"]
    (unseen / CARD_NAME).write_text(json.dumps(card))
    rgb = (np.random.default_rng(5).random((37, 45, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")  # axes YXS, as many cameras save
    stack, out = str(tmp_path / "rgb.tif"), str(tmp_path / "out")
    runs = [
        [str(path), stack, f"{out}_l.ome.tif", "--channels", "DAPI,-,collagen", "--pixel-size", "1",
         "--probabilities", f"{out}_p.ome.tif"],
        [str(path), stack, f"{out}_typo.ome.tif", "--channels", "DAPI,-,colagen"],
        [str(unseen), stack, f"{out}_unseen.ome.tif", "--channels", "DAPI,-,collagen"],
        [str(unseen), stack, f"{out}_allowed.ome.tif", "--channels", "DAPI,-,collagen", "--pixel-size", "1",
         "--allow-unseen"],
    ]  # fmt: skip
    env = {k: v for k, v in _env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    child = subprocess.run([sys.executable, "-c", SCRIPT_RUNS, str(EXAMPLE), json.dumps(runs)], cwd=tmp_path,
                           env=env, capture_output=True, text=True, check=True)  # fmt: skip
    ends = [line for line in child.stdout.splitlines() if line.startswith("exit")]
    assert ends == [
        "exit 0",
        "exit: channel name 'colagen' (did you mean 'collagen'?) is not a marker of the model "
        "(DAPI, endomucin, collagen); name the channel '-' to skip it",
        "exit: the model never saw collagen in training (its training samples had DAPI, endomucin); "
        "name its channel '-' to leave it out, or give --allow-unseen to feed it anyway",
        "exit 0",
    ], child.stdout
    assert child.stderr == "", child.stderr
    assert sorted(p.name for p in tmp_path.glob("out_*")) == ["out_allowed.ome.tif", "out_l.ome.tif", "out_p.ome.tif"]
    predict_file(path, stack, channel_names="DAPI,-,collagen", spacing=(1.0, 1.0, 1.0),
                 probabilities=tmp_path / "ref.ome.tif", progress=False)  # fmt: skip
    with open_volume(tmp_path / "ref.ome.tif") as ref, open_volume(f"{out}_p.ome.tif") as got:
        expected = ref.read_volume()
        assert expected.shape == (2, 1, 37, 45) and np.abs(expected - 0.5).max() > 0.1
        assert np.abs(got.read_volume() - expected).max() <= 1e-4
