"""The synthetic bone-marrow phantom: determinism, structure, class fractions, marker roles, presets, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marker_excite.contract.markers import PAPER_MARKERS
from marker_excite.data.informativeness import markdown_table, phantom_informativeness
from marker_excite.data.phantom.anatomy import SINUSOID_FRACTION
from marker_excite.data.phantom.fields import random_field, tube_score
from marker_excite.data.synthetic import annotated_slices, generate_sample, preset_specs
from marker_excite.errors import UserInputError

SHAPE = (6, 128, 128)


@pytest.fixture(scope="module")
def dia():
    return generate_sample("d", SHAPE, region="diaphysis", seed=3)


@pytest.fixture(scope="module")
def meta():
    return generate_sample("m", SHAPE, region="metaphysis", seed=3)


def _fraction(sample, cls):
    return sample.labels[cls].sum() / sample.labels["tissue"].sum()


def test_sample_layout(dia):
    assert dia.image.dtype == np.uint16
    assert dia.image.shape == (5,) + SHAPE
    assert dia.markers == PAPER_MARKERS
    assert dia.spacing == (2.0, 1.0, 1.0)
    assert set(dia.labels) == {"sinusoids", "arteries", "tissue"}
    assert all(lab.shape == SHAPE and lab.dtype == np.uint8 for lab in dia.labels.values())
    assert dia.region == "diaphysis"
    assert dia.annotated.tolist() == [False, True, False, False, True, False]
    # every channel carries signal above the camera offset and is not saturated
    for c in range(5):
        assert 100 < np.percentile(dia.image[c], 99) < 65535


def test_labels_consistent(dia, meta):
    for s in (dia, meta):
        tissue = s.labels["tissue"].astype(bool)
        sin, art = s.labels["sinusoids"].astype(bool), s.labels["arteries"].astype(bool)
        assert not (sin & ~tissue).any() and not (art & ~tissue).any()
        assert not (sin & art).any()
        assert 0.5 < tissue.mean() < 0.99  # bone and out-of-tissue background take the rest


@pytest.mark.parametrize("region", ["diaphysis", "metaphysis"])
def test_class_fractions_per_region(region):
    for seed in (0, 1):
        s = generate_sample("x", SHAPE, region=region, seed=seed)
        lo, hi = SINUSOID_FRACTION[region]
        assert lo - 0.003 <= _fraction(s, "sinusoids") <= hi + 0.003
        assert 0.001 <= _fraction(s, "arteries") <= 0.015
        assert s.attrs["n_arteries"] >= 1


def test_explicit_targets_are_met():
    s = generate_sample("x", (4, 256, 256), seed=5, sinusoid_fraction=0.1, artery_fraction=0.006)
    assert _fraction(s, "sinusoids") == pytest.approx(0.1, abs=0.003)
    assert _fraction(s, "arteries") == pytest.approx(0.006, rel=0.25)


def test_deterministic(dia):
    again = generate_sample("d", SHAPE, region="diaphysis", seed=3)
    np.testing.assert_array_equal(again.image, dia.image)
    for cls in dia.labels:
        np.testing.assert_array_equal(again.labels[cls], dia.labels[cls])
    assert again.attrs == dia.attrs


def test_seeds_differ_with_similar_statistics(dia):
    other = generate_sample("d", SHAPE, region="diaphysis", seed=4)
    assert not np.array_equal(other.image, dia.image)
    assert not np.array_equal(other.labels["sinusoids"], dia.labels["sinusoids"])
    for s in (dia, other):
        assert 0.09 - 0.003 <= _fraction(s, "sinusoids") <= 0.12 + 0.003
    # DAPI fills the tissue in both: median tissue intensity well above the out-of-tissue background
    for s in (dia, other):
        tissue = s.labels["tissue"].astype(bool)
        assert np.median(s.image[0][tissue]) > 1.5 * np.median(s.image[0][~tissue])


def test_marker_roles(dia):
    """Endomucin is bright on sinusoids, collagen on arteries, DAPI absent from sinusoid lumens."""
    img = dia.image.astype(np.float64)
    sin = dia.labels["sinusoids"].astype(bool)
    art = dia.labels["arteries"].astype(bool)
    other = dia.labels["tissue"].astype(bool) & ~sin & ~art
    mean = lambda c, m: img[c][m].mean()  # noqa: E731
    assert mean(1, sin) > 1.3 * mean(1, other)  # endomucin
    assert mean(1, art) < mean(1, sin)
    assert mean(3, art) > 1.5 * mean(3, other)  # collagen
    assert mean(0, sin) < mean(0, other)  # DAPI


def test_informativeness_orderings():
    """The paper's Fig. 1 structure, by construction (docs/phantom.md)."""
    auc = phantom_informativeness((4, 256, 256), seed=0)
    s = {i + 1: auc[("sinusoids", (i,))] for i in range(5)}
    a = {i + 1: auc[("arteries", (i,))] for i in range(5)}
    # sinusoids: m2 or m3 best, then m4, then m1 / m5
    assert max(s[2], s[3]) == max(s.values())
    assert min(s[2], s[3]) > s[4] > max(s[1], s[5])
    # arteries: m4 the best single marker; m2 adds the most to m4
    assert a[4] == max(a.values())
    with_m4 = {k: auc[("arteries", tuple(sorted((3, k - 1))))] for k in (1, 2, 3, 5)}
    assert max(with_m4, key=with_m4.get) == 2
    assert with_m4[2] > a[4]
    # no single marker is perfect
    assert max(max(s.values()), max(a.values())) < 0.99
    table = markdown_table(auc)
    assert table.count("\n") == 2 + 15 - 1 and "| m_24 | endomucin + collagen |" in table


def test_annotated_slices():
    assert annotated_slices(6, 3).tolist() == [False, True, False, False, True, False]
    assert annotated_slices(6, 6).tolist() == [False, False, False, True, False, False]
    assert annotated_slices(1, 3).tolist() == [True]
    with pytest.raises(UserInputError):
        annotated_slices(4, 0)


def test_presets_patch_counts():
    """paper: (annotated slices) x (388-px tiles per slice) = Supplementary Table 1; small: 176 tiles of 84 px."""

    def patches(spec, out):
        n_annot = int(annotated_slices(spec.shape_zyx[0], spec.annotated_every).sum())
        return n_annot * math.ceil(spec.shape_zyx[1] / out) * math.ceil(spec.shape_zyx[2] / out)

    paper = preset_specs("paper")
    assert [patches(s, 388) for s in paper] == [54, 12, 30, 12, 12, 48, 54, 8]
    assert [s.region for s in paper].count("metaphysis") == 2
    small = preset_specs("small")
    assert sum(patches(s, 84) for s in small) == 176
    assert {s.region for s in small} == {"diaphysis", "metaphysis"}
    specs = preset_specs("small", samples=10, shape=(3, 64, 64), region="metaphysis")
    assert [s.name for s in specs] == [f"s{i}" for i in range(1, 11)]
    assert all(s.shape_zyx == (3, 64, 64) and s.region == "metaphysis" for s in specs)
    assert all(SINUSOID_FRACTION["metaphysis"][0] <= s.sinusoid_fraction for s in specs)


def test_bad_input():
    with pytest.raises(UserInputError, match="region"):
        generate_sample("x", SHAPE, region="cortex")
    with pytest.raises(UserInputError, match="shape"):
        generate_sample("x", (4, 16, 128))
    with pytest.raises(UserInputError, match="preset"):
        preset_specs("huge")
    with pytest.raises(UserInputError, match="sinusoid_fraction"):
        generate_sample("x", SHAPE, sinusoid_fraction=0.7)


def test_fields_and_tubes():
    rng = np.random.default_rng(0)
    f = random_field((8, 64, 64), (2.0, 1.0, 1.0), rng, wavelength=20.0)
    assert f.dtype == np.float32 and abs(float(f.mean())) < 0.1 and abs(float(f.std()) - 1) < 0.1
    a, b, c = (np.array([0.0, 3.0, -1.0], np.float32) for _ in range(3))
    np.testing.assert_allclose(tube_score(a, b, c), [0.0, math.sqrt(18), math.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(
        tube_score(np.float32([1]), np.float32([-2]), np.float32([5])), [math.sqrt(5)], rtol=1e-6
    )


def test_synth_command(tmp_path, capsys):
    from marker_excite.cli import main
    from marker_excite.data.store import SampleStore

    out = tmp_path / "phantom.h5"
    argv = ["synth", "--preset", "small", "--out", str(out), "--samples", "2", "--shape", "3,64,64", "--seed", "1"]
    assert main(argv) == 0
    assert "[2/2] s2" in capsys.readouterr().out
    with SampleStore(out) as store:
        assert store.names() == ["s1", "s2"]
        info = store.info("s2")
        assert info.shape_zyx == (3, 64, 64) and info.region == "diaphysis"
        assert tuple(info.markers) == PAPER_MARKERS
        first = store.read_sample("s1")
    spec = preset_specs("small", shape=(3, 64, 64))[0]
    expected = generate_sample(
        "s1", spec.shape_zyx, seed=1000, region=spec.region, annotated_every=spec.annotated_every,
        sinusoid_fraction=spec.sinusoid_fraction, artery_fraction=spec.artery_fraction,
    )  # fmt: skip
    np.testing.assert_array_equal(first.image, expected.image)
    np.testing.assert_array_equal(first.labels["arteries"], expected.labels["arteries"])
    assert main(argv) == 2  # refuses an existing output
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "x.h5"), "--shape", "3,64"])
    assert not (tmp_path / "x.h5").exists()


def test_parallel_synth_writes_the_same_store(tmp_path, capsys):
    """``synth --workers 2`` generates the samples in two processes and streams them into the store in
    order: every array, label and attribute equals the one-worker store's."""
    from marker_excite.cli import main
    from marker_excite.data.store import SampleStore

    argv = ["synth", "--preset", "small", "--samples", "3", "--shape", "3,48,48", "--seed", "2", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "one.h5")]) == 0
    assert main([*argv, "--out", str(tmp_path / "two.h5"), "--workers", "2"]) == 0
    with SampleStore(tmp_path / "one.h5") as one, SampleStore(tmp_path / "two.h5") as two:
        assert one.names() == two.names() == ["s1", "s2", "s3"]
        for name in one.names():
            a, b = one.read_sample(name), two.read_sample(name)
            np.testing.assert_array_equal(a.image, b.image)
            assert a.image.dtype == b.image.dtype == np.uint16
            assert sorted(a.labels) == sorted(b.labels)
            for cls in a.labels:
                np.testing.assert_array_equal(a.labels[cls], b.labels[cls])
            np.testing.assert_array_equal(a.annotated, b.annotated)
            assert a.attrs == b.attrs and a.spacing == b.spacing and a.region == b.region
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "bad.h5"), "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--workers must be >= 1, got 0")
    assert not (tmp_path / "bad.h5").exists()
