"""Resume checkpoints survive a crash between the two renames of the swap; stale temp folders go."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from marker_excite import atomic
from marker_excite.runs.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from marker_excite.runs.directory import RunDirError


def tiny():
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_crash_between_the_two_renames_resumes_from_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = tiny()
    save_checkpoint(tmp_path, model, optimizer, {"epoch": 1})
    saved = [np.array(v) for v in model.get_weights()]
    real = os.replace

    def crash(src, dst):  # the first rename (checkpoint -> .checkpoint.old) happens, the second does not
        if os.path.basename(str(src)).startswith(f".checkpoint.{atomic._host()}_"):
            raise KeyboardInterrupt("killed")
        real(src, dst)

    model.set_weights([w + 1 for w in saved])
    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model, optimizer, {"epoch": 2})
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint").exists() and (tmp_path / ".checkpoint.old").is_dir()
    assert has_checkpoint(tmp_path)
    fresh, fresh_opt = tiny()
    assert load_checkpoint(tmp_path, fresh, fresh_opt)["epoch"] == 1
    for a, b in zip(fresh.get_weights(), saved):
        np.testing.assert_array_equal(a, b)
    # the next save keeps the surviving checkpoint until the new one is in place, then drops it
    save_checkpoint(tmp_path, fresh, fresh_opt, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert load_checkpoint(tmp_path, *tiny())["epoch"] == 2


def test_stale_temporary_checkpoint_of_a_killed_run_is_removed_on_resume(tmp_path):
    model, optimizer = tiny()
    save_checkpoint(tmp_path, model, optimizer, {"epoch": 3})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".checkpoint.{atomic._host()}_{int(dead.stdout)}.abcd1234"
    stale.mkdir()
    (stale / "state.npz").write_bytes(b"\0" * 1000)
    live = tmp_path / f".checkpoint.{atomic._host()}_{os.getppid()}.efgh5678"  # a running process: kept
    live.mkdir()
    assert load_checkpoint(tmp_path, *tiny())["epoch"] == 3
    assert not stale.exists() and live.exists()


def test_no_complete_checkpoint_is_an_error(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    assert not has_checkpoint(tmp_path)
    with pytest.raises(RunDirError, match="no complete resume checkpoint"):
        load_checkpoint(tmp_path, *tiny())
