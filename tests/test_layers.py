"""Exact behaviour of the marker-aware layers (hand-computed numpy references, sampling statistics)."""

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest

from marker_excite.errors import UserInputError
from marker_excite.layers import (
    ATTENTION,
    AttentionModule,
    HeMISAbstraction,
    MarkerExcite,
    MarkerSampling,
    SqueezeExcite,
)
from marker_excite.models.zoo import build_model, model_config

DATA = Path(__file__).parent / "data"


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- Marker Excite ----------------------------------------------------------------------------------


def test_marker_excite_matches_hand_computation():
    rng = np.random.default_rng(1)
    k, f = 3, 4
    layer = MarkerExcite()
    feats = rng.normal(size=(2, 5, 6, f)).astype("float32")
    avail = np.array([[1, 0, 1], [0, 1, 0]], "float32")
    layer([feats, avail])  # build
    assert layer.hidden.units == 2**k - 1  # one hidden node per marker subset
    w1, b1 = rng.normal(size=(k, 7)), rng.normal(size=7)
    w2, b2 = rng.normal(size=(7, f)), rng.normal(size=f)
    layer.hidden.set_weights([w1, b1])
    layer.gate.set_weights([w2, b2])
    out = keras.ops.convert_to_numpy(layer([feats, avail]))
    att = _sigmoid(np.maximum(avail @ w1 + b1, 0) @ w2 + b2)  # [B, F]
    np.testing.assert_allclose(out, feats * att[:, None, None, :], rtol=1e-5, atol=1e-6)
    assert layer.count_params() == k * 7 + 7 + 7 * f + f


def test_marker_excite_hidden_units_and_config():
    layer = MarkerExcite(hidden_units=5, seed=3, name="me")
    out = layer([np.ones((1, 2, 2, 3), "float32"), np.ones((1, 4), "float32")])
    assert out.shape == (1, 2, 2, 3)
    assert layer.hidden.units == 5
    clone = MarkerExcite.from_config(layer.get_config())
    assert (clone.hidden_units, clone.seed, clone.name) == (5, 3, "me")
    with pytest.raises(UserInputError, match="hidden_units"):
        MarkerExcite(hidden_units=0)


# -- Squeeze-Excite ---------------------------------------------------------------------------------


def test_squeeze_excite_matches_hand_computation():
    rng = np.random.default_rng(2)
    f = 6
    feats = rng.normal(size=(2, 4, 5, f)).astype("float32")
    layer = SqueezeExcite(ratio=0.5)
    layer(feats)
    assert layer.squeeze.units == 3 and not layer.squeeze.use_bias and not layer.excite.use_bias
    w1, w2 = rng.normal(size=(f, 3)), rng.normal(size=(3, f))
    layer.squeeze.set_weights([w1])
    layer.excite.set_weights([w2])
    out = keras.ops.convert_to_numpy(layer(feats))
    att = _sigmoid(np.maximum(feats.mean(axis=(1, 2)) @ w1, 0) @ w2)
    np.testing.assert_allclose(out, feats * att[:, None, None, :], rtol=1e-5, atol=1e-6)
    assert layer.count_params() == 2 * f * 3
    with pytest.raises(UserInputError, match="ratio"):
        SqueezeExcite(ratio=0.0)


# -- HeMIS abstraction -------------------------------------------------------------------------------


@pytest.mark.parametrize("present", [(2,), (0, 3), (0, 1, 2, 3)])
def test_hemis_abstraction_moments_over_available_markers(present):
    rng = np.random.default_rng(3)
    k, f = 4, 3
    feats = rng.normal(size=(1, k, 5, 6, f)).astype("float32")
    avail = np.zeros((1, k), "float32")
    avail[0, list(present)] = 1
    out = keras.ops.convert_to_numpy(HeMISAbstraction()([feats, avail]))
    sel = feats[0, list(present)]
    assert out.shape == (1, 5, 6, 2 * f)
    np.testing.assert_allclose(out[0, ..., :f], sel.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0, ..., f:], sel.var(axis=0), rtol=1e-4, atol=1e-6)
    if len(present) == 1:
        assert np.all(out[0, ..., f:] == 0)


def test_hemis_abstraction_without_markers_is_zero_not_nan():
    feats = np.random.normal(size=(2, 3, 4, 4, 2)).astype("float32")
    avail = np.array([[0, 0, 0], [1, 1, 0]], "float32")
    out = keras.ops.convert_to_numpy(HeMISAbstraction()([feats, avail]))
    assert np.isfinite(out).all()
    assert np.all(out[0] == 0)


# -- Marker Sampling ---------------------------------------------------------------------------------


def _sample(layer, image, avail):
    img, mask = layer([image, avail], training=True)
    return keras.ops.convert_to_numpy(img), keras.ops.convert_to_numpy(mask)


def test_marker_sampling_statistics_per_sample():
    k, n, rate = 5, 4000, 0.5
    rng = np.random.default_rng(4)
    avail = (rng.random((n, k)) < 0.6).astype("float32")
    avail[:10] = 0  # samples without any marker stay empty
    avail[10:1010] = 1  # a block of full panels for the pattern check below
    image = np.ones((n, 2, 2, k), "float32") * np.arange(1, k + 1, dtype="float32")
    img, mask = _sample(MarkerSampling("zero", rate, seed=7), image, avail)
    # never resurrects a missing marker, dropped markers are zero images
    assert np.all(mask <= avail)
    np.testing.assert_array_equal(img, image * mask[:, None, None, :])
    # never empty when something was available; empty inputs stay empty
    has = avail.sum(1) > 0
    assert np.all(mask[has].sum(1) >= 1) and np.all(mask[~has] == 0)
    # keep rate among available markers: Bernoulli(1 - r) conditioned on >= 1 kept: (1 - r) / (1 - r^m)
    m = avail.sum(1)
    for count in range(1, k + 1):
        rows = m == count
        kept = mask[rows].sum() / (rows.sum() * count)
        expected = (1 - rate) / (1 - rate**count)
        sigma = np.sqrt(expected * (1 - expected) / (rows.sum() * count))
        assert abs(kept - expected) < 3 * sigma + 1e-9, (count, kept, expected)
    # per-sample independence: identical full-panel rows get different masks, every non-empty subset occurs
    full = mask[10:1010]
    patterns = {tuple(r) for r in full.astype(int)}
    assert len(patterns) == 2**k - 1
    same_as_first = np.all(full == full[0], axis=1).mean()
    assert same_as_first < 0.2
    # pairs of samples are uncorrelated: P(both keep marker 0) ~ P(keep)^2
    a, b = full[0::2, 0], full[1::2, 0]
    p = full[:, 0].mean()
    assert abs((a * b).mean() - p * p) < 0.08


def test_marker_sampling_every_nonempty_subset_equally_likely():
    """The paper's r_drop = 0.5: 100,000 draws per panel of 1..5 available markers out of 5; every
    non-empty subset of the available markers within 10 % (relative) of 1 / (2^a - 1); never an
    unavailable marker; never empty."""
    from itertools import combinations

    n, k = 100_000, 5
    layer = MarkerSampling("zero", 0.5, seed=3)
    for a in range(1, k + 1):
        avail = np.zeros((n, k), "float32")
        avail[:, k - a :] = 1.0  # the last a markers are available
        _, mask = _sample(layer, np.ones((n, 1, 1, k), "float32"), avail)
        assert np.all(mask <= avail) and np.all(mask.sum(1) >= 1)
        codes, counts = np.unique(mask.astype(int) @ (2 ** np.arange(k)), return_counts=True)
        subsets = {sum(2**i for i in c) for r in range(1, a + 1) for c in combinations(range(k - a, k), r)}
        assert set(codes.tolist()) == subsets
        freq = counts / n
        assert np.all(np.abs(freq * (2**a - 1) - 1.0) < 0.10), (a, freq)


def test_marker_sampling_rejection_at_other_rates():
    """rate 0.8, two available markers: P(both) = 0.04 / 0.36, P(each single) = 0.16 / 0.36."""
    avail = np.tile(np.array([[1, 0, 1, 0]], "float32"), (40_000, 1))
    _, mask = _sample(MarkerSampling("zero", 0.8, seed=5), np.ones((40_000, 1, 1, 4), "float32"), avail)
    both = np.mean(mask.sum(1) == 2)
    assert abs(both - 0.04 / 0.36) < 0.01 and abs(np.mean(mask[:, 0] * (1 - mask[:, 2])) - 0.16 / 0.36) < 0.01


def test_marker_sampling_single_marker_always_kept_and_symmetric():
    avail = np.tile(np.array([[1, 0, 1, 0]], "float32"), (3000, 1))
    _, mask = _sample(MarkerSampling("zero", 0.9, seed=1), np.ones((3000, 1, 1, 4), "float32"), avail)
    assert np.all(mask.sum(1) >= 1) and np.all(mask[:, [1, 3]] == 0)
    only = mask[mask.sum(1) == 1]  # mostly fallback draws at rate 0.9: both markers equally likely
    frac = only[:, 0].mean()
    assert abs(frac - 0.5) < 3 * np.sqrt(0.25 / len(only))
    single = np.array([[0, 1, 0, 0]], "float32").repeat(50, 0)
    _, mask = _sample(MarkerSampling("zero", 0.9, seed=2), np.ones((50, 1, 1, 4), "float32"), single)
    np.testing.assert_array_equal(mask, single)


def test_marker_sampling_seeded_layers_repeat():
    avail = np.ones((64, 5), "float32")
    image = np.ones((64, 1, 1, 5), "float32")
    m1 = _sample(MarkerSampling(seed=11), image, avail)[1]
    m2 = _sample(MarkerSampling(seed=11), image, avail)[1]
    np.testing.assert_array_equal(m1, m2)


def test_marker_sampling_zero_mode_is_identity_at_inference():
    image = np.random.normal(size=(3, 4, 4, 3)).astype("float32")
    avail = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 0]], "float32")
    image *= avail[:, None, None, :]  # contract: missing markers are zero channels
    img, mask = MarkerSampling("zero")([image, avail])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(img), image)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), avail)


def test_marker_sampling_dropout_scales_only_at_training():
    rate = 0.25
    image = np.ones((500, 2, 2, 4), "float32")
    avail = np.ones((500, 4), "float32")
    layer = MarkerSampling("dropout", rate, seed=3)
    img, mask = _sample(layer, image, avail)
    np.testing.assert_allclose(img, np.broadcast_to(mask[:, None, None, :] / (1 - rate), img.shape), rtol=1e-6)
    inf = keras.ops.convert_to_numpy(layer([image, avail])[0])
    np.testing.assert_array_equal(inf, image)


def test_marker_sampling_variable_ratio_scales_at_training_and_inference():
    k = 4
    image = np.ones((300, 2, 2, k), "float32")
    avail = np.ones((300, k), "float32")
    avail[:100, 3] = 0
    layer = MarkerSampling("variable_ratio", 0.5, seed=5)
    img, mask = _sample(layer, image, avail)
    p = mask.sum(1) / k
    np.testing.assert_allclose(
        img, np.broadcast_to(mask[:, None, None, :] / p[:, None, None, None], img.shape), rtol=1e-6
    )
    inf = keras.ops.convert_to_numpy(layer([image * avail[:, None, None, :], avail])[0])
    expected = avail / (avail.sum(1, keepdims=True) / k)  # 3 of 4 markers -> x 4/3
    np.testing.assert_allclose(inf, np.broadcast_to(expected[:, None, None, :], inf.shape), rtol=1e-6)
    assert np.isclose(inf[0, 0, 0, 0], 4 / 3) and np.isclose(inf[200, 0, 0, 0], 1.0)


@pytest.mark.parametrize(
    "kwargs,match", [(dict(mode="bernoulli"), "mode"), (dict(rate=1.0), "rate"), (dict(rate=-0.1), "rate")]
)
def test_marker_sampling_rejects_bad_arguments(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        MarkerSampling(**kwargs)


def test_layer_configs_round_trip():
    for layer in (MarkerSampling("variable_ratio", 0.3, seed=4), MarkerExcite(8, seed=1), SqueezeExcite(0.25, seed=2)):
        cfg = layer.get_config()
        clone = type(layer).from_config(cfg)
        assert clone.get_config() == cfg
    # every subset of a 3-marker panel is kept unchanged at inference by all modes but variable_ratio
    for subset in itertools.product((0.0, 1.0), repeat=3):
        if sum(subset):
            avail = np.array([subset], "float32")
            img = np.ones((1, 1, 1, 3), "float32") * avail[:, None, None, :]
            out = keras.ops.convert_to_numpy(MarkerSampling("dropout")([img, avail])[0])
            np.testing.assert_array_equal(out, img)


# -- attention registry and saved models ------------------------------------------------------------


class _Halve(keras.layers.Layer):
    """A stand-in attention layer for the registry test: features * 0.5."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)

    def call(self, features):
        return features * 0.5


def test_attention_registry_builds_a_new_module_by_name(monkeypatch):
    assert set(ATTENTION) == {"me", "se"}
    assert ATTENTION["me"].layer is MarkerExcite and ATTENTION["se"].layer is SqueezeExcite
    monkeypatch.setitem(ATTENTION, "half", AttentionModule(_Halve, uses_availability=False))
    cfg = model_config(
        "MS-ME",
        preset="small",
        markers=("a", "b"),
        classes=("c",),
        depth=2,
        base_filters=2,
        input_size=28,
        attention="half",
        attention_positions=("I", "B"),
    )
    model = build_model(cfg)
    added = [layer.name for layer in model.layers if isinstance(layer, _Halve)]
    assert added == ["input_half", "bottleneck_half"]


@pytest.mark.parametrize("name", ["MS-ME", "MS-SE", "HeMIS-MS"])
def test_models_saved_before_the_layers_package_reload(name):
    """tests/data/legacy_*.keras were saved by the code with a single layers.py (commit abd218b, see
    tests/data/README.md): the registered names (``marker_excite>MarkerExcite``, ...) still resolve and the
    reloaded model gives the outputs saved with it."""
    saved = np.load(DATA / "legacy_models.npz")
    model = keras.saving.load_model(DATA / f"legacy_{name.lower().replace('-', '_')}.keras")
    out = keras.ops.convert_to_numpy(model([saved["image"], saved["availability"]]))
    np.testing.assert_allclose(out, saved[name], rtol=1e-6, atol=1e-7)
