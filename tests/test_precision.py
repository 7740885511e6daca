"""Mixed precision (``--precision``): every model trains under bf16 with float32 outputs and loss, fp16
gets loss scaling, a run records its precision, and fp32 stays the default."""

import json

import keras
import numpy as np
import pytest
from conftest import TINY, make_tiny_store

from marker_excite.config import ConfigError
from marker_excite.errors import UserInputError
from marker_excite.models.config import BASE_NAMES
from marker_excite.models.losses import WeightedCrossEntropy
from marker_excite.models.precision import dtype_policy, optimizer_for
from marker_excite.models.zoo import build_model, model_config
from marker_excite.runs import directory as rd
from marker_excite.runs.run import TrainConfig, load_run, train_config
from marker_excite.training.trainer import train

MARKERS = ("m1", "m2", "m3")


def _batch(cfg, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    k = len(cfg.markers)
    avail = np.ones((batch, k), "float32")
    avail[0, 0] = 0.0
    image = rng.normal(size=(batch, cfg.input_size, cfg.input_size, k)).astype("float32") * avail[:, None, None, :]
    labels = rng.integers(0, cfg.n_outputs, size=(batch, cfg.output_size, cfg.output_size)).astype("int32")
    return image, avail, labels


@pytest.mark.parametrize("name", BASE_NAMES + ("MS-ME-I", "MS-ME-IEBD"))
def test_every_model_trains_a_step_in_bf16_with_float32_outputs(name):
    cfg = model_config(name, preset="small", markers=MARKERS, classes=("a", "b"), depth=2, base_filters=4,
                       input_size=44)  # fmt: skip
    with dtype_policy("bf16"):
        model = build_model(cfg)
    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs[0].compute_dtype == "bfloat16" and convs[-1].name == "logits"
    assert convs[-1].compute_dtype == "float32"
    assert {v.dtype for v in model.variables if "seed_generator" not in v.path} == {"float32"}
    image, avail, labels = _batch(cfg)
    for training in (False, True):
        out = model([image, avail], training=training)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        assert np.isfinite(keras.ops.convert_to_numpy(out)).all()
    loss_fn = WeightedCrossEntropy([1.0, 2.0, 3.0])
    assert keras.backend.standardize_dtype(loss_fn(labels, out).dtype) == "float32"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss_fn)
    kernels = [layer.kernel for layer in convs]
    before = [np.array(v) for v in kernels]
    assert np.isfinite(model.train_on_batch([image, avail], labels, return_dict=True)["loss"])
    # every convolution got a gradient through the bfloat16 path (an ME/SE gate may have a dead ReLU)
    assert all(not np.array_equal(b, np.array(v)) for b, v in zip(before, kernels))


def test_marker_layers_keep_masks_and_gates_in_float32():
    from marker_excite.layers import HeMISAbstraction, MarkerExcite, MarkerSampling

    with dtype_policy("bf16"):
        sampling, excite, hemis = MarkerSampling("variable_ratio"), MarkerExcite(seed=1), HeMISAbstraction()
    image = np.ones((2, 4, 4, 3), "float32")
    avail = np.array([[1, 1, 1], [1, 0, 0]], "float32")
    sampled, mask = sampling([image, avail])
    assert keras.backend.standardize_dtype(mask.dtype) == "float32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), avail)
    # MS-VR scale 1 / p = 3 for one marker of three: exact in bfloat16 too
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(sampled)[1, 0, 0], [3.0, 0.0, 0.0])
    features = np.random.default_rng(0).normal(size=(2, 4, 4, 5)).astype("float32")
    excite([features, avail])
    gate = excite.attention(avail)
    assert keras.backend.standardize_dtype(gate.dtype) == "float32"
    assert excite.hidden.compute_dtype == excite.gate.compute_dtype == "float32"
    stacked = np.stack([features, features + 1.0, features - 1.0], axis=1)  # [B, K, 4, 4, F]
    moments = keras.ops.convert_to_numpy(hemis([stacked, avail])).astype("float32")
    # marker means: features; variance of {x, x+1, x-1} = 2/3 for the first sample, 0 for the second
    np.testing.assert_allclose(moments[0, ..., 5:], 2.0 / 3.0, rtol=1e-2)
    np.testing.assert_array_equal(moments[1, ..., 5:], 0.0)


def test_fp16_scales_the_loss_and_fp32_bf16_do_not():
    adam = keras.optimizers.Adam(1e-3)
    assert optimizer_for(adam, "fp32") is adam and optimizer_for(adam, "bf16") is adam
    scaled = optimizer_for(keras.optimizers.Adam(1e-3), "fp16")
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    cfg = model_config("MS-ME", preset="small", markers=MARKERS, classes=("a",), depth=2, base_filters=4, input_size=44)
    with dtype_policy("fp16"):
        model = build_model(cfg)
    model.compile(optimizer=scaled, loss=WeightedCrossEntropy([1.0, 2.0]))
    image, avail, labels = _batch(cfg)
    loss = model.train_on_batch([image, avail], labels, return_dict=True)["loss"]
    assert np.isfinite(loss) and model.optimizer is scaled


def test_precision_is_validated_and_defaults_to_fp32():
    assert TrainConfig().precision == "fp32" and train_config("paper").precision == "fp32"
    assert TrainConfig.from_dict({"epochs": 3}).precision == "fp32"  # a run made before the option
    with pytest.raises(ConfigError, match=r"train_config.precision must be one of fp32, bf16, fp16, got 'fp8'"):
        train_config("small", precision="fp8")


def test_bf16_training_learns_and_records_its_precision(tmp_path, capsys):
    store = make_tiny_store(tmp_path / "tiny.h5")
    mcfg = model_config("MS-ME", **TINY)
    tcfg = train_config("small", epochs=6, batch_size=4, n_folds=3, learning_rate=0.01, precision="bf16")
    run = train(tmp_path / "run", mcfg, tcfg, store, progress=False)
    losses = [r["loss"] for r in run.history]
    assert losses[-1] < 0.7 * losses[0]  # learning happens in bfloat16
    # and follows the float32 run of the same seed (same data order, initial weights, Marker Sampling draws)
    reference = train(tmp_path / "fp32", mcfg, tcfg.replace(precision="fp32"), store, progress=False)
    for bf16, fp32 in zip(run.history, reference.history):
        assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.1)
    best_bf16 = max(r["val_mean_f1"] for r in run.history)
    assert best_bf16 >= max(r["val_mean_f1"] for r in reference.history) - 0.05
    assert json.loads((tmp_path / "run" / rd.TRAIN_CONFIG).read_text())["precision"] == "bf16"
    again = load_run(tmp_path / "run")  # inference builds the float32 network; the weights are float32
    assert again.train_config.precision == "bf16" and again.model.compute_dtype == "float32"
    assert again.spec.provenance.precision == "bf16"
    assert again.spec.card()["training"]["precision"] == "bf16"
    from marker_excite.cli import main

    assert main(["info", str(tmp_path / "run")]) == 0
    assert "; precision bf16" in capsys.readouterr().out
    with pytest.raises(UserInputError, match=r"train_config.precision"):  # another precision does not resume it
        train(tmp_path / "run", mcfg, tcfg.replace(precision="fp32", epochs=7), store, resume=True, progress=False)
