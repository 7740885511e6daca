"""The model zoo: configs, geometry, every model built tiny, saved and reloaded, paper sizes, learning."""

import json

import keras
import numpy as np
import pytest

from marker_excite.config import ConfigError
from marker_excite.models.config import ABLATION_NAMES, BASE_NAMES, ZOO_NAMES, ModelConfig
from marker_excite.models.geometry import GeometryError
from marker_excite.models.hemis import build_hemis
from marker_excite.models.losses import WeightedCrossEntropy
from marker_excite.models.metrics import PerClassF1
from marker_excite.models.unet import build_unet
from marker_excite.models.zoo import build_model, model_config
from marker_excite.presets import PRESETS

MARKERS = ("m1", "m2", "m3")
TINY = dict(preset="small", markers=MARKERS, classes=("a", "b"), depth=2, base_filters=4, input_size=44)


def _tiny(name, **kw):
    return model_config(name, **{**TINY, **kw})


def _inputs(cfg, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    k = len(cfg.markers)
    avail = np.zeros((batch, k), "float32")
    for i in range(batch):  # arbitrary non-empty subsets
        avail[i, rng.choice(k, size=rng.integers(1, k + 1), replace=False)] = 1
    image = rng.normal(size=(batch, cfg.input_size, cfg.input_size, k)).astype("float32") * avail[:, None, None, :]
    return image, avail


def test_zoo_names():
    assert ZOO_NAMES[: len(BASE_NAMES)] == BASE_NAMES
    assert len(ABLATION_NAMES) == 15 and {"MS-ME-I", "MS-ME-E", "MS-ME-B", "MS-ME-D", "MS-ME-IEBD"} <= set(ZOO_NAMES)
    assert model_config("MS-ME").attention_positions == model_config("MS-ME-EBD").attention_positions == ("E", "B", "D")
    assert model_config("ms-me-eb").name == "MS-ME-EB"
    assert PRESETS["small"].network == dict(depth=3, base_filters=16, input_size=124)


@pytest.mark.parametrize("name", BASE_NAMES + ("MS-ME-I", "MS-ME-IEBD"))
def test_every_model_builds_runs_and_reloads(name, tmp_path):
    cfg = _tiny(name)
    model = build_model(cfg)
    assert [t.name for t in model.inputs] == ["image", "availability"]
    image, avail = _inputs(cfg)
    out = keras.ops.convert_to_numpy(model([image, avail]))
    assert out.shape == (3, cfg.output_size, cfg.output_size, 3) == (3, 28, 28, 3)
    assert np.isfinite(out).all()
    train_out = model({"image": image, "availability": avail}, training=True)
    assert train_out.shape == out.shape
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: the layers are registered
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded([image, avail])), out, rtol=1e-5, atol=1e-6)


def test_config_json_round_trip(tmp_path):
    cfg = model_config("MS-ME-IB", preset="small", classes=("sinusoids", "arteries"), seed=3)
    text = cfg.to_json(tmp_path / "model_config.json")
    assert json.loads(text)["attention_positions"] == ["I", "B"]
    again = ModelConfig.from_json(tmp_path / "model_config.json")
    assert again == cfg
    assert (again.output_size, again.margin, again.n_outputs) == (84, 20, 3)
    assert again.panel.names == cfg.markers


def test_same_seed_same_weights_different_seed_different():
    def weights(seed):
        return np.concatenate([w.ravel() for w in build_model(_tiny("MS-ME", seed=seed)).get_weights()])

    np.testing.assert_array_equal(weights(1), weights(1))
    assert not np.allclose(weights(1), weights(2))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="MS-XX"), "unknown model 'MS-XX'; choose one of UB, MZ, MS"),
        (dict(name="MS-ME-BE"), "unknown model"),
        (dict(input_size=45), r"input_size.*nearest valid sizes: 44, 46"),
        (dict(sampling_rate=1.0), r"sampling_rate must be in \(0, 1\)"),
        (dict(sampling_rate=0.0), "sampling_rate"),
        (dict(attention_positions=("E", "X")), "unknown position.*'X'"),
        (dict(markers=()), "empty marker list"),
        (dict(markers=("a", "A")), "appears twice"),
        (dict(classes=()), "empty class list"),
        (dict(classes=("background", "a")), "background"),
        (dict(sampling="bernoulli"), "sampling must be null or one of zero, dropout, variable_ratio"),
        (dict(attention="xx"), "attention must be"),
        (dict(attention=None), "attention_positions given but attention is null"),
        (dict(backbone="hemis"), "HeMIS models take no attention"),
        (dict(depth=0), "depth must be an integer >= 1"),
    ],
)
def test_config_validation_messages(kwargs, match):
    base = _tiny("MS-ME").to_dict()
    base.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_dict(base)


def test_model_config_rejects_unknown_preset_and_field():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose one of paper, small"):
        model_config("MS", preset="huge")
    with pytest.raises(ConfigError, match="unknown model config field.*widht"):
        model_config("MS", widht=3)


def test_builders_raise_geometry_error_for_invalid_size():
    bad = ModelConfig(name="MS", input_size=570)  # not validated
    with pytest.raises(GeometryError, match="nearest valid sizes: 556, 572"):
        build_unet(bad)
    with pytest.raises(GeometryError):
        build_hemis(bad)


def test_ub_uses_only_its_subset_and_plain_unet_ignores_availability():
    cfg = _tiny("UB", markers=("m1", "m3"))
    model = build_model(cfg)
    assert model.inputs[0].shape[-1] == 2 and model.inputs[1].shape[-1] == 2
    image, _ = _inputs(_tiny("MZ"), batch=1)
    image = image[..., :2]
    a = model([image, np.ones((1, 2), "float32")])
    b = model([image, np.zeros((1, 2), "float32")])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_marker_excite_model_depends_on_availability():
    model = build_model(_tiny("MS-ME-EB"))
    image = np.random.normal(size=(1, 44, 44, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(model([image, np.array([[1, 1, 1]], "float32")]))
    b = keras.ops.convert_to_numpy(model([image, np.array([[1, 1, 0]], "float32")]))
    assert not np.allclose(a, b)
    names = [layer.name for layer in model.layers]
    assert "enc0_me" in names and "bottleneck_me" in names and "dec0_me" not in names and "input_me" not in names


@pytest.mark.parametrize("name", ["HeMIS", "HeMIS-MS"])
def test_hemis_ignores_unavailable_markers(name):
    model = build_model(_tiny(name))
    rng = np.random.default_rng(5)
    image = rng.normal(size=(1, 44, 44, 3)).astype("float32")
    avail = np.array([[1, 0, 1]], "float32")
    other = image.copy()
    other[..., 1] = rng.normal(size=(44, 44))  # content of an unavailable marker must not matter
    a = keras.ops.convert_to_numpy(model([image, avail]))
    b = keras.ops.convert_to_numpy(model([other, avail]))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    c = keras.ops.convert_to_numpy(model([image, np.array([[1, 1, 1]], "float32")]))
    assert not np.allclose(a, c)
    assert sum(layer.name.startswith("backend") and layer.name.endswith("conv1") for layer in model.layers) == 3


def test_paper_size_parameter_counts():
    counts = {n: build_model(model_config(n)).count_params() for n in ("MZ", "MS", "MS-ME", "MS+", "HeMIS")}
    assert counts["MZ"] == counts["MS"] == 7_760_706  # ~7.8 M: widths 32..512, 5 markers, 2 logits
    me_overhead = counts["MS-ME"] / counts["MZ"] - 1
    assert 0.005 < me_overhead < 0.01  # paper: +0.64 %
    assert counts["MS+"] / counts["MZ"] - 1 >= 0.20
    assert abs(counts["HeMIS"] / counts["MZ"] - 1) < 0.02
    cfg = model_config("MS-ME")
    assert (cfg.input_size, cfg.output_size, cfg.margin) == (572, 388, 92)


@pytest.mark.parametrize("preset,kw", [("small", {}), ("small", dict(depth=2, base_filters=4, input_size=44))])
def test_ms_plus_has_twenty_percent_more_parameters(preset, kw):
    plain = build_model(model_config("MS", preset=preset, **kw)).count_params()
    plus = build_model(model_config("MS+", preset=preset, **kw)).count_params()
    assert plus >= 1.2 * plain


def _toy_batch(rng, batch, size=44, out=28):
    """Two markers that each carry the label (bright squares) plus noise: any subset suffices."""
    labels = np.zeros((batch, size, size), "int32")
    for i in range(batch):
        for _ in range(3):
            y, x = rng.integers(0, size - 8, size=2)
            labels[i, y : y + 8, x : x + 8] = 1
    image = np.stack([labels * 2.0 + rng.normal(scale=0.5, size=labels.shape) for _ in range(2)], -1).astype("float32")
    m = (size - out) // 2
    return image, np.ones((batch, 2), "float32"), labels[:, m : m + out, m : m + out]


def test_tiny_ms_me_learns_toy_problem(tmp_path):
    keras.utils.set_random_seed(0)
    cfg = model_config("MS-ME", markers=("a", "b"), classes=("vessel",), depth=2, base_filters=4, input_size=44)
    model = build_model(cfg)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=WeightedCrossEntropy([1.0, 2.0]), metrics=[PerClassF1(2)])
    rng = np.random.default_rng(0)
    image, avail, labels = _toy_batch(rng, 64)
    val_image, _, val_labels = _toy_batch(rng, 16)

    def evaluate():
        scores = []
        for subset in ([1, 0], [0, 1], [1, 1]):
            v = np.tile(np.array([subset], "float32"), (16, 1))
            scores.append(model.evaluate([val_image * v[:, None, None, :], v], val_labels, verbose=0, return_dict=True))
        return scores

    before = evaluate()
    model.fit([image, avail], labels, batch_size=8, epochs=8, verbose=0)
    after = evaluate()
    for b, a in zip(before, after):
        assert a["loss"] < 0.6 * b["loss"]
        assert a["mean_f1"] > 0.8 and a["mean_f1"] > b["mean_f1"] + 0.2
    model.save(tmp_path / "trained.keras")  # compiled with the custom loss and metric
    loaded = keras.saving.load_model(tmp_path / "trained.keras")
    assert isinstance(loaded.loss, WeightedCrossEntropy)
    np.testing.assert_allclose(
        loaded.predict([val_image, np.ones((16, 2), "float32")], verbose=0),
        model.predict([val_image, np.ones((16, 2), "float32")], verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )
