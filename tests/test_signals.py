"""SIGTERM is handled like Ctrl-C (cleanup, exit 143); leftovers of killed runs are removed next time."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from marker_excite import atomic
from marker_excite.data.store import SampleStore
from marker_excite.data.writers import write_volume

REPO = Path(__file__).resolve().parents[1]

_SLOW_IMPORT = """
import sys, time
from marker_excite.data import importing
real = importing.resample_to_shape
def slow(*args, **kwargs):
    time.sleep(0.2)
    return real(*args, **kwargs)
importing.resample_to_shape = slow
from marker_excite.cli import main
sys.exit(main(sys.argv[1:]))
"""


def dead_pid() -> int:
    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )


def test_sigterm_during_import_cleans_up_and_exits_143(tmp_path):
    image = np.random.default_rng(0).integers(0, 4000, (1, 40, 16, 16)).astype(np.uint16)
    write_volume(tmp_path / "img.ome.tif", image, (2.0, 1.0, 1.0), ["DAPI"])
    store = tmp_path / "store.h5"
    with SampleStore(store, "w") as st:
        w = st.create_sample("s0", markers=("DAPI",), shape_zyx=(1, 4, 4))
        w.write_slice(0, np.ones((1, 4, 4), np.float32))
        w.finalize()
    before = sorted(p.name for p in Path(f"{store}.samples").iterdir())
    argv = ["import", "--store", str(store), "--name", "s1", "--image", str(tmp_path / "img.ome.tif"), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_IMPORT, *argv], env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(Path(f"{store}.samples").glob(".sample.h5.*")):  # the import is writing its temp file
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["marker-excite import: terminated"]
    assert sorted(p.name for p in Path(f"{store}.samples").iterdir()) == before  # no leftover
    with SampleStore(store) as st:
        assert st.names() == ["s0"]


def test_stale_temporaries_of_the_same_output_are_removed_by_the_next_write(tmp_path):
    out = tmp_path / "labels.ome.tif"
    host = atomic._host()
    stale = tmp_path / f".labels.ome.tif.{host}_{dead_pid()}.k2j3h4.tmp"
    stale.write_bytes(b"\0" * 4096)
    live = tmp_path / f".labels.ome.tif.{host}_{os.getppid()}.a1b2c3.tmp"  # its writer still runs
    live.write_bytes(b"")
    other_host = tmp_path / f".labels.ome.tif.elsewhere_{dead_pid()}.x9y8z7.tmp"
    other_host.write_bytes(b"")
    unrelated = tmp_path / f".probs.h5.{host}_{dead_pid()}.q1w2e3.tmp"
    unrelated.write_bytes(b"")
    write_volume(out, np.zeros((1, 2, 8, 8), np.uint8), (1.0, 1.0, 1.0), ["labels"])
    assert not stale.exists()
    assert live.exists() and other_host.exists() and unrelated.exists() and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name, other_host.name, unrelated.name])
