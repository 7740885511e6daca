"""Run an experiment's jobs in several processes side by side, each on its own share of the CPU cores.

The small networks of the ``cpu`` preset, and a job's data feed, validation and evaluation even more,
use a second core poorly: on the 2-core development machine two jobs side by side, one core each, ran
~1.8-2x as many jobs per hour as one job on both cores (bare training steps: 1.27x,
``benchmarks/bench_workers.py``; experiments/README.md, "Two jobs side by side"). :func:`run_workers` starts one child process per shard ``k/n`` of the job list (the script's
own command line with ``--shard k/n --workers 1``) with a disjoint group of cores; the child pins itself
to them where the system allows it (Linux ``sched_setaffinity``) and limits its TensorFlow threads to
the group's size (:func:`limit_threads`, from ``MARKER_EXCITE_CPUS`` / ``MARKER_EXCITE_THREADS``; on other Keras
backends, e.g. JAX on a GPU machine, the pinning alone bounds XLA's CPU thread pool, and each worker's JAX takes only its
share of the GPU's memory, :data:`JAX_MEMORY_ENV`). Each child writes its
progress to ``<out>/logs/<experiment>.shard<k>of<n>.log``; jobs stay resumable exactly as with
``--shard`` by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from marker_excite.config import split_list
from marker_excite.experiments.spec import ExperimentError

#: Environment variables that tell a worker its cores (comma-separated) and how many threads TensorFlow may use.
CPUS_ENV = "MARKER_EXCITE_CPUS"
THREADS_ENV = "MARKER_EXCITE_THREADS"
#: JAX's share of the GPU memory per process (by default JAX takes 75 % in the first process: a second fails).
JAX_MEMORY_ENV = "XLA_PYTHON_CLIENT_MEM_FRACTION"
#: of the GPU's memory, this much is divided among the workers (the rest is left to the CUDA runtime).
JAX_MEMORY_SHARED = 0.9
LOGS = "logs"


def available_cpus() -> list[int]:
    """The CPU cores this process may run on (all of ``os.cpu_count()`` where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_groups(n_workers: int, cpus: Sequence[int]) -> list[tuple[int, ...]]:
    """Split ``cpus`` into ``n_workers`` disjoint groups of nearly equal size (the first ones one larger).

    >>> cpu_groups(2, [0, 1, 2])
    [(0, 1), (2,)]
    """
    if n_workers < 1:
        raise ExperimentError(f"--workers must be >= 1, got {n_workers}")
    if n_workers > len(cpus):
        raise ExperimentError(
            f"--workers {n_workers} is more than the {len(cpus)} CPU core(s) available; use at most {len(cpus)}"
        )
    size, extra = divmod(len(cpus), n_workers)
    groups, start = [], 0
    for k in range(n_workers):
        end = start + size + (1 if k < extra else 0)
        groups.append(tuple(cpus[start:end]))
        start = end
    return groups


def pin_cpus() -> set[int] | None:
    """In a worker: run only on the cores in ``MARKER_EXCITE_CPUS`` (Linux; elsewhere only the thread
    limit applies); returns them, or None when not pinned."""
    cpus = os.environ.get(CPUS_ENV)
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    chosen = {int(c) for c in split_list(cpus, what=CPUS_ENV)}
    os.sched_setaffinity(0, chosen)
    return chosen


def _stop_with_parent() -> None:
    """Linux: ask the kernel to send this worker SIGTERM when its parent dies (so a killed parent leaves
    no orphaned workers); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def limit_threads() -> int | None:
    """In a worker (of ``--workers`` or an array task of ``--launcher slurm``): pin this process to the
    cores in ``MARKER_EXCITE_CPUS`` (where the system allows it) and, on the TensorFlow backend, limit
    TensorFlow to ``MARKER_EXCITE_THREADS`` threads (before it starts; other backends, e.g. JAX, size their
    CPU thread pools by the pinned cores); returns the thread limit, or None outside a worker."""
    value = os.environ.get(THREADS_ENV)
    if not value:
        return None
    n = int(value)
    _stop_with_parent()
    pin_cpus()
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return n  # another Keras backend (JAX on a GPU node without TensorFlow): only the pinning applies
    from marker_excite.tf_quiet import import_tensorflow

    import_tensorflow()  # only on the TensorFlow backend
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)
    return n


def drop_options(argv: Sequence[str], valued: Sequence[str] = (), flags: Sequence[str] = ()) -> list[str]:
    """``argv`` without the options ``valued`` (``--opt VALUE`` or ``--opt=VALUE``) and ``flags`` (``--opt``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in valued:
            skip = True
            continue
        if arg in flags or arg.split("=", 1)[0] in valued:
            continue
        out.append(arg)
    return out


def worker_argv(argv: Sequence[str], shard: int, n: int) -> list[str]:
    """The script's command line for worker ``shard`` of ``n``: ``--workers`` / ``--shard`` replaced."""
    return [*drop_options(argv, valued=("--workers", "--shard")), "--shard", f"{shard}/{n}", "--workers", "1"]


def run_workers(
    script: str | Sequence[str], argv: Sequence[str], groups: Sequence[tuple[int, ...]], out_dir: Path, name: str
) -> int:
    """Run ``python script argv`` as one shard process per group of cores (:func:`cpu_groups`) side by
    side; ``script`` is a script path or the interpreter arguments before ``argv`` (``["-m",
    "marker_excite"]``). Returns 0 when all succeed, else the first failing worker's exit status. Ctrl-C
    / SIGTERM stop every worker (their jobs resume on the next run)."""
    command = [script] if isinstance(script, str) else list(script)
    n_workers = len(groups)
    logs = Path(out_dir) / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    children: list[tuple[int, subprocess.Popen, Path]] = []

    def _terminate(signum, frame):
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for k, cpus in enumerate(groups, start=1):
            log = logs / f"{name}.shard{k}of{n_workers}.log"
            env = {
                JAX_MEMORY_ENV: f"{JAX_MEMORY_SHARED / n_workers:.3f}",  # unless the caller set it
                **os.environ,
                THREADS_ENV: str(len(cpus)),
                CPUS_ENV: ",".join(map(str, cpus)),
                "PYTHONUNBUFFERED": "1",  # the log shows stdout and stderr lines in the order they happen
            }
            with open(log, "ab") as fh:
                proc = subprocess.Popen(
                    [sys.executable, *command, *worker_argv(argv, k, n_workers)],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            children.append((k, proc, log))
            print(f"{name}: worker {k}/{n_workers} on core(s) {','.join(map(str, cpus))}, log {log}", file=sys.stderr)
        status = 0
        while any(p.poll() is None for _, p, _ in children):
            time.sleep(1.0)
        for k, proc, log in children:
            if proc.returncode != 0:
                code = exit_status_of(proc.returncode)
                print(f"{name}: worker {k} failed (exit {code}); see {log}", file=sys.stderr)
                status = status or code
        return status
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _, proc, _ in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30.0
        for _, proc, _ in children:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def exit_status_of(returncode: int) -> int:
    """A child's exit status as a shell reports it: ``128 + signal`` for one killed by a signal."""
    return 128 - returncode if returncode < 0 else returncode
