"""bioimageio.py: model packages (format 0.5) of both flavours validate without FAIR warnings (but
authors where none were given), their weights reproduce the test output with plain TensorFlow, and
bioimageio.core's own test passes on both (skipped where bioimageio.core is not installed)."""

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import MARKERS, make_run

from marker_excite.data.writers import write_volume
from marker_excite.errors import UserInputError
from marker_excite.sharing.bioimageio import EPS, export_bioimageio, pack, standardise_tile

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """A run trained at 1 µm, a 0.45 µm sample stack with an extra channel, and both packages (the
    general one through the CLI)."""
    from marker_excite.cli import main

    base = tmp_path_factory.mktemp("bioimageio")
    run_dir, _, _ = make_run(base / "run", spacing=(1.0, 1.0, 1.0))
    stack = np.random.default_rng(0).normal(3.0, 1.0, size=(3, 2, 80, 90)).astype(np.float32)
    write_volume(base / "sample.ome.tif", stack, spacing=(2.0, 0.45, 0.45), channel_names=("collagen", "extra", "DAPI"))
    general = base / "general.zip"
    assert main(["export", str(run_dir), str(general), "--format", "bioimageio", "--sample", str(base / "sample.ome.tif"),
                 "--author", "A. Tester"]) == 0  # fmt: skip
    fixed = export_bioimageio(
        run_dir, base / "fixed.zip", fixed_markers=["dapi", "collagen"], sample=base / "sample.ome.tif"
    )
    return {"run": run_dir, "sample": base / "sample.ome.tif", "general": general, "fixed": fixed}


def _rdf(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("rdf.yaml"))


def test_package_contents_and_declared_geometry(packages):
    general, fixed = _rdf(packages["general"]), _rdf(packages["fixed"])
    with zipfile.ZipFile(packages["general"]) as zf:
        assert sorted(zf.namelist()) == sorted([
            "rdf.yaml", "README.md", "cover.png", "model_card.json", "tf_saved_model_bundle.zip",
            "test_input_image.npy", "test_output_probabilities.npy",
            "sample_input_image.tif", "sample_output_probabilities.tif",
        ])  # fmt: skip
        readme = zf.read("README.md").decode()
    (image,) = general["inputs"]  # ONE input: bioimage.io runners pass inputs positionally
    assert image["axes"][-1]["channel_names"] == [*MARKERS, *(f"availability {m}" for m in MARKERS)]
    assert image["axes"][1] == {"type": "space", "id": "y", "size": 28, "unit": "micrometer", "scale": 1.0}
    assert "preprocessing" not in image  # the model z-scores the markers itself (planes must stay 0 / 1)
    assert image["sample_tensor"] == {"source": "sample_input_image.tif"}
    out = general["outputs"][0]
    assert out["axes"][2]["size"] == {"tensor_id": "image", "axis_id": "x", "offset": -16}  # 28 -> 12, centred
    assert out["axes"][-1]["channel_names"] == ["background", "sinusoids"]
    assert general["cite"][0]["url"] == "https://arxiv.org/abs/2008.12380" and general["authors"] == [
        {"name": "A. Tester"}
    ]
    assert general["config"]["marker_excite"]["training"]["best_val_mean_f1"] == 0.7
    assert general["config"]["marker_excite"]["training"]["markers_seen"] == list(MARKERS)
    assert (
        "\n# Validation\n" in readme and "raw; a missing marker: all-zero channel), then one constant plane" in readme
    )
    assert [t["id"] for t in fixed["inputs"]] == ["image"]
    assert fixed["inputs"][0]["axes"][-1]["channel_names"] == ["DAPI", "collagen"]
    assert fixed["inputs"][0]["preprocessing"] == [
        {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"], "eps": EPS}}
    ]
    assert fixed["config"]["marker_excite"]["fixed_markers"] == ["DAPI", "collagen"] and "authors" not in fixed


@pytest.mark.parametrize("flavour", ["general", "fixed"])
def test_packages_validate_with_bioimageio_spec(packages, flavour):
    spec = pytest.importorskip("bioimageio.spec")
    descr = spec.load_description(packages[flavour], perform_io_checks=True)
    assert type(descr).__name__ == "ModelDescr", descr.validation_summary.format()
    assert descr.validation_summary.status in ("valid-format", "passed")
    warned = [(w.loc, w.msg) for d in descr.validation_summary.details for w in d.warnings]
    if flavour == "fixed":  # exported without --author
        assert warned == [(("authors",), "Needs to be filled for FAIR compliance")], warned
    else:  # no FAIR warning, no missing '# Validation'; only a hint to give GitHub user names
        assert [loc for loc, msg in warned if "github_user" not in msg] == [], warned


def _unpack(path, tmp_path):
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path)
    with zipfile.ZipFile(tmp_path / "tf_saved_model_bundle.zip") as zf:
        zf.extractall(tmp_path / "weights")
    return {p.stem: np.load(p) for p in tmp_path.glob("*.npy")}


def test_weights_reproduce_test_outputs_with_plain_tensorflow(packages, tmp_path):
    """Package weights (+ the declared preprocessing for the fixed flavour) give the test output; the
    fixed flavour equals the general model fed the same channels with zero channels and availability 0
    for the others; the test tile is the sample's (0.45 µm) slice resampled to the model's 1 µm."""
    import tensorflow as tf

    g = _unpack(packages["general"], tmp_path / "g")
    f = _unpack(packages["fixed"], tmp_path / "f")
    general = tf.saved_model.load(str(tmp_path / "g" / "weights"))
    fixed = tf.saved_model.load(str(tmp_path / "f" / "weights"))
    packed = g["test_input_image"]
    assert packed.shape == (1, 28, 28, 6) and not packed[..., 1].any()  # no endomucin in the sample
    np.testing.assert_array_equal(packed[..., 3:], np.broadcast_to([1, 0, 1], (1, 28, 28, 3)))  # availability planes
    np.testing.assert_array_equal(pack(packed[..., :3], np.array([[1, 0, 1]], np.float32)), packed)
    got = general.serve(packed)["probabilities"].numpy()
    np.testing.assert_allclose(got, g["test_output_probabilities"], atol=1e-5)
    got = fixed.serve(standardise_tile(f["test_input_image"]))["probabilities"].numpy()
    np.testing.assert_allclose(got, f["test_output_probabilities"], atol=1e-5)
    # the same raw channels in both flavours (DAPI, collagen), so the same probabilities
    np.testing.assert_array_equal(f["test_input_image"], packed[..., [0, 2]])
    np.testing.assert_allclose(f["test_output_probabilities"], g["test_output_probabilities"], atol=1e-5)
    with zipfile.ZipFile(packages["general"]) as zf:
        zf.extractall(tmp_path / "g", ["sample_input_image.tif"])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "g" / "sample_input_image.tif"), packed[0])


@pytest.mark.parametrize("flavour", ["general", "fixed"])
def test_bioimageio_core_test_passes(packages, flavour, tmp_path, monkeypatch):
    """bioimageio.core runs the package (preprocessing, model, comparison with the test output); its
    TensorFlow backend calls the model with the inputs as positional arguments, which is why both
    flavours have one input."""
    core = pytest.importorskip("bioimageio.core")
    monkeypatch.chdir(tmp_path)  # core unzips the weights into the working directory
    summary = core.test_model(packages[flavour])
    assert summary.status == "passed", summary.format()


def test_bad_requests_write_nothing(packages, tmp_path):
    run = packages["run"]
    with pytest.raises(UserInputError, match="must end in .zip"):
        export_bioimageio(run, tmp_path / "model", sample=packages["sample"])
    with pytest.raises(UserInputError, match="CD31"):
        export_bioimageio(run, tmp_path / "a.zip", fixed_markers=["DAPI", "CD31"], sample=packages["sample"])
    with pytest.raises(UserInputError, match="lacks the fixed marker.*endomucin"):
        export_bioimageio(run, tmp_path / "b.zip", fixed_markers=["DAPI", "endomucin"], sample=packages["sample"])
    with pytest.raises(UserInputError, match="give --sample"):
        export_bioimageio(run, tmp_path / "c.zip")
    with pytest.raises(UserInputError, match="already exists"):
        export_bioimageio(run, packages["general"], sample=packages["sample"])
    assert list(tmp_path.iterdir()) == []


def test_cli_errors_are_one_line(packages, tmp_path, capsys):
    from marker_excite.cli import main

    run, sample = str(packages["run"]), str(packages["sample"])
    for argv, phrase in [
        (["export", run, str(tmp_path / "m"), "--fixed-markers", "DAPI"], "only apply to --format bioimageio"),
        (
            [
                "export",
                run,
                str(tmp_path / "m.zip"),
                "--format",
                "bioimageio",
                "--sample",
                sample,
                "--fixed-markers",
                "CD31",
            ],
            "CD31",
        ),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("marker-excite export: error: ") and phrase in err, err
    assert list(tmp_path.iterdir()) == []


KILLED_EXPORT = """
import os, signal, sys
from marker_excite.sharing import bioimageio
bioimageio._cover = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed once the SavedModel is written
bioimageio.export_bioimageio(sys.argv[1], sys.argv[2], sample=sys.argv[3])
"""


@pytest.mark.slow
def test_export_killed_mid_way_leaves_a_temporary_that_the_next_export_removes(packages, tmp_path):
    out = tmp_path / "model.zip"
    argv = [sys.executable, "-c", KILLED_EXPORT, str(packages["run"]), str(out), str(packages["sample"])]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run(argv, env=env, capture_output=True).returncode == -signal.SIGKILL
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".model.zip.") and (leftover / "saved_model" / "saved_model.pb").is_file()
    export_bioimageio(packages["run"], out, sample=packages["sample"])
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]
