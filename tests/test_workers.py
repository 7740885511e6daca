"""--workers: shards in child processes, each pinned to its own cores with that many TensorFlow threads."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from marker_excite.errors import UserInputError
from marker_excite.experiments import workers as W
from marker_excite.experiments.cli import script_main


def test_cpu_groups_are_disjoint_and_balanced():
    assert W.cpu_groups(2, [0, 1]) == [(0,), (1,)]
    assert W.cpu_groups(2, [0, 1, 2]) == [(0, 1), (2,)]
    assert W.cpu_groups(3, [4, 5, 6, 7, 8, 9, 10]) == [(4, 5, 6), (7, 8), (9, 10)]
    assert W.cpu_groups(1, [0, 1]) == [(0, 1)]
    with pytest.raises(UserInputError, match="--workers must be >= 1, got 0"):
        W.cpu_groups(0, [0, 1])
    with pytest.raises(UserInputError, match="--workers 3 is more than the 2 CPU core"):
        W.cpu_groups(3, [0, 1])


def test_worker_argv_replaces_shard_and_workers():
    argv = ["--preset", "cpu", "--workers", "2", "--out", "x", "--shard=1/1", "--workers=2"]
    assert W.worker_argv(argv, 2, 2) == ["--preset", "cpu", "--out", "x", "--shard", "2/2", "--workers", "1"]


_PROBE = textwrap.dedent(
    """
    import json, os, sys
    from marker_excite.experiments.workers import pin_cpus
    pin_cpus()  # what limit_threads() does first in a real worker (without starting TensorFlow)
    shard = sys.argv[sys.argv.index("--shard") + 1]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(json.dumps({"argv": sys.argv[1:], "threads": os.environ.get("MARKER_EXCITE_THREADS"), "cpus": cpus}))
    if "--kill" in sys.argv and shard == "1/2":
        os.kill(os.getpid(), 9)
    sys.exit(3 if "--fail" in sys.argv and shard == "2/2" else 0)
    """
)


@pytest.mark.skipif(len(W.available_cpus()) < 2, reason="needs 2 CPU cores")
def test_run_workers_pins_each_shard_to_its_cores(tmp_path, capsys):
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    groups = W.cpu_groups(2, W.available_cpus())
    assert W.run_workers(str(script), ["--out", str(tmp_path), "--workers", "2"], groups, tmp_path, "probe") == 0
    seen = [json.loads((tmp_path / "logs" / f"probe.shard{k}of2.log").read_text()) for k in (1, 2)]
    for k, s in enumerate(seen, start=1):
        assert s["argv"] == ["--out", str(tmp_path), "--shard", f"{k}/2", "--workers", "1"]
        assert s["threads"] == str(len(groups[k - 1]))
        if s["cpus"] is not None:
            assert tuple(s["cpus"]) == groups[k - 1]
    assert "worker 2/2 on core(s)" in capsys.readouterr().err
    # a failing worker: its exit status is returned and its log named
    assert W.run_workers(str(script), ["--fail"], groups, tmp_path, "probe-fail") == 3
    assert "worker 2 failed (exit 3); see" in capsys.readouterr().err
    # a worker killed by a signal: 128 + 9, as a shell reports it
    assert W.run_workers(str(script), ["--kill"], groups, tmp_path, "probe-kill") == 137
    assert "worker 1 failed (exit 137)" in capsys.readouterr().err
    assert W.exit_status_of(-15) == 143 and W.exit_status_of(2) == 2


def test_limit_threads_sets_tensorflow_threads(tmp_path):
    code = (
        "from marker_excite.experiments.workers import limit_threads; import tensorflow as tf; "
        "print(limit_threads(), tf.config.threading.get_intra_op_parallelism_threads(), "
        "tf.config.threading.get_inter_op_parallelism_threads())"
    )
    env = {**os.environ, W.THREADS_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1"]
    env.pop(W.THREADS_ENV)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "None"


def test_limit_threads_leaves_tensorflow_alone_under_another_backend():
    # a --workers child or --launcher slurm task on a JAX-only GPU node must not import TensorFlow
    code = "import sys; from marker_excite.experiments.workers import limit_threads; "
    code += "print(limit_threads(), 'tensorflow' in sys.modules)"
    env = {**os.environ, W.THREADS_ENV: "3", "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["3", "False"]


def test_bad_worker_counts_are_refused_before_anything_is_written(tmp_path, capsys):
    status = script_main("fig2_sampling", ["--preset", "cpu", "--out", str(tmp_path / "o"), "--workers", "0"])
    assert status == 2 and capsys.readouterr().err == "fig2_sampling: error: --workers must be >= 1, got 0\n"
    n = len(W.available_cpus())
    assert script_main("fig2_sampling", ["--preset", "cpu", "--out", str(tmp_path / "o"), "--workers", str(n + 1)]) == 2
    assert f"--workers {n + 1} is more than the {n} CPU core(s) available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # no phantom generated for a refused command


def test_workers_and_shard_together_are_refused(tmp_path, capsys):
    status = script_main(
        "fig2_sampling", ["--preset", "cpu", "--out", str(tmp_path), "--workers", "2", "--shard", "1/2"]
    )
    assert status == 2
    assert (
        capsys.readouterr().err
        == "fig2_sampling: error: --workers runs every shard itself: give either --workers or --shard\n"
    )


def test_workers_need_the_script_itself(tmp_path, capsys):
    # called from Python (here: pytest) rather than as experiments/fig2_sampling.py: nothing to restart
    status = script_main("fig2_sampling", ["--preset", "cpu", "--out", str(tmp_path / "o"), "--workers", "2"])
    assert status == 2
    assert capsys.readouterr().err == (
        "fig2_sampling: error: --workers and --launcher slurm start experiments/fig2_sampling.py again: "
        "run it as that script\n"
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_workers_run_a_real_experiment_end_to_end(tmp_path):
    """fig3 with MS and MS-ME for one epoch (small preset): one job per worker, then one aggregation."""
    script = Path(__file__).resolve().parents[1] / "experiments" / "fig3_attention.py"
    argv = [sys.executable, str(script), "--preset", "small", "--out", str(tmp_path), "--models", "MS,MS-ME"]
    done = subprocess.run([*argv, "--epochs", "1", "--workers", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    logs = sorted((tmp_path / "logs").glob("fig3_attention.shard*of2.log"))
    assert [p.name for p in logs] == ["fig3_attention.shard1of2.log", "fig3_attention.shard2of2.log"]
    assert (
        "MS__all__sinusoids__f0 done" in logs[0].read_text() and "MS-ME__all__sinusoids__f0 done" in logs[1].read_text()
    )
    assert (tmp_path / "fig3_attention" / "results.csv").is_file()
    assert "results: " in done.stdout and done.stderr.count("fig3_attention: worker") == 2
