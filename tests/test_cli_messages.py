"""What the CLI says: one stderr line for a failing command (no TensorFlow start-up lines), closest-name
hints for typos, every default in `train --help`, a note when the GPU-sized paper preset would run on a
CPU, short progress in logs."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_store

from marker_excite.cli import build_parser, main
from marker_excite.commands import train as train_cmd
from marker_excite.contract.markers import MarkerError, MarkerPanel
from marker_excite.tf_quiet import NOISE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_tiny_store(tmp_path_factory.mktemp("msg") / "tiny.h5", n_samples=4, seed=2)


def test_failing_train_prints_exactly_one_line_without_tensorflow_start_up_lines(store, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    argv = [
        "train",
        "--store",
        str(store),
        "--run",
        str(tmp_path / "run"),
        "--preset",
        "small",
        "--classes",
        "sinusoid",
    ]
    done = subprocess.run([sys.executable, "-m", "marker_excite.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "marker-excite train: error: sample 's1' has no labels for class 'sinusoid' (did you mean 'sinusoids'?); "
        "it has sinusoids"
    ]
    assert not (tmp_path / "run").exists()


def test_tensorflow_noise_filter():
    assert NOISE.match("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert NOISE.match("I0000 00:00:1795687801.787504    9215 port.cc:153] oneDNN custom operations are on.")
    assert NOISE.match("W0000 00:00:1795687801.787504    9215 cuda.cc:1] something")
    assert not NOISE.match("E0000 00:00:1795687801.787504    9215 util.cc:131] a real error")
    assert not NOISE.match("FutureWarning: a Python warning")


def test_typos_suggest_the_closest_name(store, tmp_path, capsys):
    with pytest.raises(MarkerError, match=r"unknown marker 'DAPl' \(did you mean 'DAPI'\?\); this panel has DAPI"):
        MarkerPanel().index("DAPl")
    with pytest.raises(MarkerError, match=r"unknown marker 'colagen' \(did you mean 'collagen'\?\)"):
        MarkerPanel().parse_subset("DAPI,colagen")
    argv = [
        "train",
        "--store",
        str(store),
        "--run",
        str(tmp_path / "run"),
        "--preset",
        "small",
        "--panel",
        "DAPl,endomucin",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"marker-excite train: error: --panel marker 'DAPl' (did you mean 'DAPI'?) is in no sample of {store}; "
                   "its samples have DAPI, endomucin, endoglin, collagen, CXCL12-GFP")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_train_help_shows_every_default():
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    for action in train._actions:
        if action.help in (argparse.SUPPRESS, None) or action.required or isinstance(action, argparse._HelpAction):
            continue
        if action.nargs == 0 and action.default is False:  # plain switches are off unless given
            continue
        assert "default" in action.help, action.option_strings


def test_predict_help_names_every_input_format(capsys):
    """`predict --help` and the command list say it reads OME-Zarr too (predict reads .ome.zarr folders)."""
    for argv in (["--help"], ["predict", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        line = next(line for line in out.splitlines() if "segment a whole stack" in line)
        assert "TIFF/OME-TIFF/HDF5/.ims/OME-Zarr" in line, out


def test_paper_preset_on_a_cpu_prints_a_note_with_the_estimate(store, tmp_path, capsys, monkeypatch):
    from marker_excite.data.folds import Fold
    from marker_excite.training import plan as train_plan

    args = build_parser().parse_args(["train", "--store", str(store), "--run", "r"])
    assert args.preset is None
    assert train_cmd._paper_preset_on_cpu(args) is True  # this test machine has no GPU
    assert (
        train_cmd._paper_preset_on_cpu(
            build_parser().parse_args(["train", "--store", "s", "--run", "r", "--preset", "paper"])
        )
        is False
    )

    fold = Fold(train=("s0", "s1"), val=("s2",), test=("s3",))
    plan = train_plan.TrainPlan(fold, {"s0": 30, "s1": 30}, {"s2": 20}, batch_size=2, epochs=200, seconds_per_step=4.0)
    monkeypatch.setattr(train_cmd, "dry_run", lambda *a, **k: plan)
    assert main(["train", "--store", str(store), "--run", str(tmp_path / "run"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("note: no --preset given: the paper preset is sized for a GPU and no GPU is visible; here an epoch "
                       "takes ~2:00 and its 200 epochs ~6:40:00 plus validation. On a CPU choose --preset cpu (the CPU "
                       "reproduction schedule) or --preset small (a 20-epoch demo)")  # fmt: skip
    assert main(["train", "--store", str(store), "--run", str(tmp_path / "run"), "--dry-run", "--preset", "paper"]) == 0
    assert "note:" not in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_import_progress_in_a_log_is_one_line_per_sample(tmp_path, capsys):
    from marker_excite.data.writers import write_volume

    rng = np.random.default_rng(0)
    write_volume(tmp_path / "img.ome.tif", rng.normal(size=(2, 40, 16, 16)).astype(np.float32),
                 channel_names=("DAPI", "endomucin"), spacing=(1.0, 1.0, 1.0))  # fmt: skip
    write_volume(tmp_path / "lab.ome.tif", (rng.random((40, 16, 16)) > 0.8).astype(np.uint8), spacing=(1.0, 1.0, 1.0))
    for name in ("a", "b"):
        assert main(["import", "--store", str(tmp_path / "s.h5"), "--name", name, "--image", str(tmp_path / "img.ome.tif"),
                     "--label", f"sinusoids={tmp_path / 'lab.ome.tif'}"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert [line.split(" [")[0] for line in captured.err.splitlines()] == [
        "import a 40/40 slices (100%)",
        "import b 40/40 slices (100%)",
    ]
    assert len(captured.out.splitlines()) == 2


def test_time_steps_times_the_steps_after_the_first():
    import itertools
    import time

    from marker_excite.training.plan import time_steps

    class Model:
        calls = 0

        def train_on_batch(self, x, y):
            Model.calls += 1
            time.sleep(0.02)

    batches = itertools.repeat((np.zeros((2, 4), np.float32), np.zeros((2,), np.float32)))
    seconds = time_steps(Model(), batches, n_steps=3)
    assert Model.calls == 4 and 0.02 <= seconds < 0.5  # the tracing step, then three timed ones


def test_train_seed_sets_weights_sampling_and_data_order(tmp_path):
    """One --seed for all of a training's randomness: ModelConfig.seed (initial weights, Marker Sampling
    draws) and TrainConfig.seed (data order), also over a --model-config file."""
    from marker_excite.models.zoo import model_config

    args = build_parser().parse_args(["train", "--store", "s", "--run", "r", "--preset", "small", "--seed", "7"])
    mcfg, tcfg = train_cmd.build_configs(args)
    assert mcfg.seed == 7 and tcfg.seed == 7
    (tmp_path / "m.json").write_text(json.dumps(model_config("MS", preset="small").to_dict()))
    args = build_parser().parse_args(
        ["train", "--store", "s", "--run", "r", "--model-config", str(tmp_path / "m.json"), "--seed", "3"]
    )
    mcfg, tcfg = train_cmd.build_configs(args)
    assert (mcfg.name, mcfg.seed, tcfg.seed) == ("MS", 3, 3)
    args = build_parser().parse_args(["train", "--store", "s", "--run", "r", "--preset", "small"])
    assert [c.seed for c in train_cmd.build_configs(args)] == [0, 0]
