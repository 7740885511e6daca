"""Bad input through ``marker_excite.cli.main``: one-line error naming the problem, exit 2, no partial output."""

import json

import numpy as np
import pytest
from conftest import MARKERS, make_run

from marker_excite.cli import main
from marker_excite.data.io import open_volume
from marker_excite.data.writers import write_volume


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("cli") / "run")[0]


@pytest.fixture
def stack(tmp_path):
    image = np.random.default_rng(0).normal(size=(3, 2, 16, 16)).astype(np.float32)
    path = tmp_path / "in" / "stack.ome.tif"
    path.parent.mkdir()
    write_volume(path, image, channel_names=MARKERS)
    return path


def _fails(capsys, argv, *phrases):
    """Run the CLI, expect exit 2 and ONE stderr line naming the problem."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"marker-excite {argv[0]}: error: "), err
    for phrase in phrases:
        assert phrase in err, err
    return err


def _out_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []


def _predict(run_dir, stack, tmp_path, *extra):
    return ["predict", str(run_dir), str(stack), "--labels", str(tmp_path / "out" / "l.ome.tif"),
            "--probabilities", str(tmp_path / "out" / "p.h5"), "--quiet", *extra]  # fmt: skip


def test_channel_named_by_the_user_must_be_a_model_marker(capsys, run_dir, stack, tmp_path):
    """A name given with --channel-names that the model does not know (a typo, another lab's name for a
    marker) is an error with the closest marker, not a skipped channel; '-' skips a channel."""
    _fails(
        capsys,
        _predict(run_dir, stack, tmp_path, "--channel-names", "DAPI,endomucinn,-"),
        "channel name 'endomucinn' (did you mean 'endomucin'?) is not a marker of the model 'run' "
        "(DAPI, endomucin, collagen); name the channel '-' to skip it",
    )
    _fails(capsys, _predict(run_dir, stack, tmp_path, "--channel-names", "DNA,endomucin,collagen"), "'DNA'")
    _fails(capsys, _predict(run_dir, stack, tmp_path, "--channel-names", "CD31,CD45,Sca1"), "'CD31'")
    assert _out_files(tmp_path) == []
    argv = [a for a in _predict(run_dir, stack, tmp_path, "--channel-names", "-,-,collagen", "--markers", "collagen")
            if a != "--quiet"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "marker-excite predict: note: --markers is deprecated here; use --use" in err and "skipping" not in err
    assert _out_files(tmp_path) == ["l.ome.tif", "p.h5"]


def test_file_channel_not_in_panel_is_skipped_with_a_notice(capsys, run_dir, tmp_path):
    image = np.random.default_rng(0).normal(size=(3, 2, 16, 16)).astype(np.float32)
    write_volume(tmp_path / "cd31.ome.tif", image, channel_names=("CD31", "DAPI", "collagen"))
    assert main([a for a in _predict(run_dir, tmp_path / "cd31.ome.tif", tmp_path) if a != "--quiet"]) == 0
    assert "note: skipping stack channel(s) CD31: not in the model's panel (DAPI, endomucin, collagen)" in (
        capsys.readouterr().err
    )
    assert _out_files(tmp_path) == ["l.ome.tif", "p.h5"]


def test_failing_command_with_an_old_spelling_prints_one_line(capsys, run_dir, stack, tmp_path):
    assert main(_predict(run_dir, stack, tmp_path, "--markers", "endoglin")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marker-excite predict: error:")


def test_marker_given_twice(capsys, run_dir, stack, tmp_path):
    _fails(capsys, _predict(run_dir, stack, tmp_path, "--channel-names", "DAPI,collagen,dapi"), "twice")
    _fails(capsys, _predict(run_dir, stack, tmp_path, "--use", "DAPI,DAPI"), "twice", "DAPI")
    assert _out_files(tmp_path) == []


def test_no_marker_at_all(capsys, run_dir, stack, tmp_path):
    _fails(capsys, _predict(run_dir, stack, tmp_path, "--use", ""), "empty marker set")
    assert _out_files(tmp_path) == []


def test_channel_count_mismatch(capsys, run_dir, stack, tmp_path):
    _fails(
        capsys,
        _predict(run_dir, stack, tmp_path, "--channel-names", "DAPI,collagen"),
        "2 marker name(s)",
        "3 channel(s)",
    )
    assert _out_files(tmp_path) == []


def test_nan_voxels_leave_no_output(capsys, run_dir, tmp_path):
    image = np.ones((3, 3, 16, 16), np.float32)
    image[2, 1, 4, 4] = np.nan
    write_volume(tmp_path / "nan.h5", image, channel_names=MARKERS)
    _fails(capsys, _predict(run_dir, tmp_path / "nan.h5", tmp_path), "NaN/Inf", "collagen", "slice 1")
    assert _out_files(tmp_path) == []  # temporary files removed too


def test_stack_smaller_than_tile_works(capsys, run_dir, tmp_path):
    write_volume(
        tmp_path / "tiny.tif",
        np.random.default_rng(1).normal(size=(3, 1, 3, 5)).astype(np.float32),
        channel_names=MARKERS,
    )
    assert main(_predict(run_dir, tmp_path / "tiny.tif", tmp_path)) == 0
    assert _out_files(tmp_path) == ["l.ome.tif", "p.h5"]
    with open_volume(tmp_path / "out" / "l.ome.tif") as vol:
        assert vol.shape_czyx == (1, 1, 3, 5)


def test_unreadable_and_truncated_files(capsys, run_dir, stack, tmp_path):
    bad = tmp_path / "garbage.tif"
    bad.write_bytes(b"this is not a tiff file at all")
    _fails(capsys, _predict(run_dir, bad, tmp_path), str(bad))
    data = stack.read_bytes()
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(data[: len(data) // 2])
    _fails(capsys, _predict(run_dir, cut, tmp_path), str(cut))
    _fails(capsys, _predict(run_dir, tmp_path / "missing.tif", tmp_path), "does not exist")
    assert _out_files(tmp_path) == []


def test_existing_output_refused_unless_overwrite(capsys, run_dir, stack, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "l.ome.tif").write_text("keep me")
    _fails(capsys, _predict(run_dir, stack, tmp_path), "already exists", "--overwrite")
    assert _out_files(tmp_path) == ["l.ome.tif"] and (tmp_path / "out" / "l.ome.tif").read_text() == "keep me"
    assert main(_predict(run_dir, stack, tmp_path, "--overwrite")) == 0
    with open_volume(tmp_path / "out" / "l.ome.tif") as vol:
        assert vol.shape_czyx == (1, 2, 16, 16)


def test_unwritable_output(capsys, run_dir, stack, tmp_path):
    blocker = tmp_path / "somefile"
    blocker.write_text("a regular file, not a folder")
    argv = ["predict", str(run_dir), str(stack), "--labels", str(blocker / "out.tif"), "--quiet"]
    _fails(capsys, argv, str(blocker))
    _fails(capsys, ["export", str(run_dir), str(blocker / "model")], str(blocker))
    _fails(
        capsys,
        ["quantify", "--labels", str(stack), "--images", str(stack), "--classes", "a", "-o", str(blocker / "f.csv")],
        str(blocker),
    )


def test_no_output_and_bad_model(capsys, run_dir, stack, tmp_path):
    _fails(capsys, ["predict", str(run_dir), str(stack)], "--labels")
    _fails(
        capsys, ["predict", str(tmp_path), str(stack), "--labels", str(tmp_path / "l.tif")], "neither a run directory"
    )
    _fails(capsys, ["info", str(tmp_path)], "neither a run directory")


def test_info_human_and_json(capsys, run_dir):
    assert main(["info", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "m1=DAPI, m2=endomucin, m3=collagen" in text and "input 28 px -> output 12 px (margin 8 px)" in text
    assert "best epoch 2 (val mean F1 0.7000)" in text
    assert main(["info", str(run_dir), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["markers"] == list(MARKERS) and card["classes"] == ["sinusoids"]


def test_resume_with_other_config_is_refused(capsys, tmp_path):
    from marker_excite.data.sample import Sample
    from marker_excite.data.store import SampleStore
    from marker_excite.models.zoo import model_config

    rng = np.random.default_rng(0)
    with SampleStore(tmp_path / "s.h5", "w") as store:
        for i in range(3):
            labels = {"sinusoids": (rng.random((1, 12, 12)) > 0.7).astype(np.uint8)}
            store.write_sample(
                Sample(f"s{i}", rng.normal(size=(3, 1, 12, 12)).astype(np.float32), MARKERS, labels=labels)
            )
    cfg = model_config("MS", markers=MARKERS, preset="small", depth=2, base_filters=2, input_size=28)
    (tmp_path / "m.json").write_text(json.dumps(cfg.to_dict()))
    base = ["train", "--store", str(tmp_path / "s.h5"), "--run", str(tmp_path / "run"), "--model-config", str(tmp_path / "m.json"),
            "--n-folds", "3", "--epochs", "1", "--quiet"]  # fmt: skip
    assert main(base) == 0
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    _fails(
        capsys,
        [*base[:-3], "--epochs", "1", "--seed", "5", "--resume", "--quiet"],
        "cannot resume",
        "train_config.seed",
    )
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    # explicit split of three samples, no test sample; --dry-run prints the plan and writes nothing
    split = ["--train-samples", "s0,s1", "--val-samples", "s2", "--test-samples", ""]
    assert (
        main([*base[:2], str(tmp_path / "s.h5"), "--run", str(tmp_path / "dry"), *base[5:7], *split, "--dry-run"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "split: train s0, s1 | validation s2 | test none" and out[-1].startswith(
        "estimated time per epoch"
    )
    assert not (tmp_path / "dry").exists()
    _fails(capsys, [*base, "--val-samples", "s2"], "--val-samples needs --train-samples")
    _fails(
        capsys,
        [*base, "--train-samples", "s0", "--val-samples", "s0", "--overwrite"],
        "s0 are both training and validation",
    )
    _fails(capsys, [*base, "--train-samples", "s0,s5", "--val-samples", "s2", "--overwrite"], "s5 are not in the store")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


def test_one_vocabulary_with_deprecated_spellings(capsys):
    from marker_excite.cli import build_parser
    from marker_excite.commands.options import join_list_values

    parser = build_parser()
    base = ["train", "--store", "s.h5", "--run", "r"]
    from marker_excite.commands.options import NOTICES

    new = parser.parse_args([*base, "--panel", "DAPI,collagen"])
    assert new.panel == "DAPI,collagen" and not getattr(new, NOTICES, None)
    old = parser.parse_args([*base, "--markers", "DAPI,collagen"])
    assert old.panel == "DAPI,collagen"
    assert getattr(old, NOTICES) == ["marker-excite train: note: --markers is deprecated here; use --panel"]
    quantify = parser.parse_args(["quantify", "-o", "q.csv", "--markers", "m_12"])
    assert quantify.use == "m_12" and "use --use" in getattr(quantify, NOTICES)[0]
    assert capsys.readouterr().err == ""  # notices are printed by the CLI once the command succeeded
    assert join_list_values(["import", "--channel-names", "-,DAPI", "--quiet"]) == [
        "import",
        "--channel-names=-,DAPI",
        "--quiet",
    ]


def test_no_silent_spacing_assumptions(capsys, tmp_path):
    import tifffile

    run_dir = make_run(tmp_path / "run", spacing=(1.0, 1.0, 1.0))[0]  # trained at 1 µm pixels
    image = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)  # ZCYX, no pixel size
    tifffile.imwrite(tmp_path / "plain.tif", image, metadata={"axes": "ZCYX"})
    names = ["--channel-names", ",".join(MARKERS)]
    _fails(
        capsys,
        _predict(run_dir, tmp_path / "plain.tif", tmp_path, *names),
        "plain.tif has no voxel size: give --spacing",
    )
    assert _out_files(tmp_path) == []
    # 0.25 µm pixels at a model of 1 µm: 16 px slices would shrink below one 12 px output tile
    _fails(
        capsys,
        _predict(run_dir, tmp_path / "plain.tif", tmp_path, *names, "--spacing", "1,0.25,0.25"),
        "would be 4 x 4 px, smaller than one output tile (12 px)",
    )
    # 64 px slices: x0.25 is announced in one line
    big = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)
    tifffile.imwrite(tmp_path / "big.tif", big, metadata={"axes": "ZCYX"})
    argv = [
        a
        for a in _predict(run_dir, tmp_path / "big.tif", tmp_path, *names, "--spacing", "1,0.25,0.25")
        if a != "--quiet"
    ]
    assert main(argv) == 0
    assert "note: resampling in-plane by x0.25: 64 x 64 px -> 16 x 16 px" in capsys.readouterr().err


def test_info_devices(capsys):
    assert main(["info", "--devices"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("tensorflow ") and any(line.startswith("device       CPU") for line in out)
    _fails(capsys, ["info"], "give a run directory or exported model, or --devices")


def test_markers_never_seen_in_training_are_refused_unless_allowed(capsys, stack, tmp_path):
    run, _, _ = make_run(tmp_path / "unseen", markers_seen=("DAPI", "endomucin"))  # no training sample had collagen
    _fails(capsys, _predict(run, stack, tmp_path, "--use", "DAPI,collagen"), "never saw collagen", "--allow-unseen")
    _fails(capsys, _predict(run, stack, tmp_path), "never saw collagen")  # all the stack's markers: collagen too
    assert _out_files(tmp_path) == []
    assert main(_predict(run, stack, tmp_path, "--use", "DAPI,endomucin")) == 0
    assert main(_predict(run, stack, tmp_path, "--use", "DAPI,collagen", "--allow-unseen", "--overwrite")) == 0
    assert main(["info", str(run)]) == 0
    assert "trained on   DAPI, endomucin (never seen: collagen; refused without --allow-unseen)" in (
        capsys.readouterr().out
    )


def test_every_command_applies_the_unseen_marker_rule(capsys, stack, tmp_path):
    """quantify and export refuse markers no training sample had, as predict does, and take the
    --allow-unseen that their error names."""
    from marker_excite.data.sample import Sample
    from marker_excite.data.store import SampleStore

    run, _, _ = make_run(tmp_path / "unseen", markers_seen=("DAPI", "endomucin"))
    image = np.random.default_rng(2).normal(size=(3, 2, 16, 16)).astype(np.float32)
    with SampleStore(tmp_path / "s.h5", "w") as store:
        store.write_sample(Sample("s1", image, MARKERS, region="diaphysis"))
    quantify = ["quantify", "--store", str(tmp_path / "s.h5"), "--model", str(run), "--sigma", "0", "--quiet"]
    _fails(capsys, [*quantify, "-o", str(tmp_path / "out" / "q.csv")], "never saw collagen", "--use", "--allow-unseen")
    zipped = ["export", str(run), str(tmp_path / "out" / "m.zip"), "--format", "bioimageio", "--sample", str(stack)]
    _fails(capsys, [*zipped, "--fixed-markers", "DAPI,collagen"], "never saw collagen", "--fixed-markers")
    _fails(
        capsys, ["export", str(run), str(tmp_path / "out" / "m"), "--allow-unseen"], "only apply to --format bioimageio"
    )
    assert _out_files(tmp_path) == []
    assert main([*quantify, "-o", str(tmp_path / "out" / "q.csv"), "--use", "DAPI,endomucin"]) == 0
    assert main([*quantify, "-o", str(tmp_path / "out" / "all.csv"), "--allow-unseen"]) == 0
    capsys.readouterr()
    assert main([*zipped, "--fixed-markers", "DAPI,collagen", "--allow-unseen"]) == 0
    assert "note: no --author given: the package names no authors" in capsys.readouterr().err
    assert _out_files(tmp_path) == ["all.csv", "m.zip", "q.csv"]
