"""Running experiments: one training + evaluation per job, resumable and sharded across machines."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from marker_excite.analysis.results import write_results
from marker_excite.data.folds import SplitSettings, select_fold
from marker_excite.data.store import SampleStore
from marker_excite.data.synthetic import write_dataset
from marker_excite.experiments.spec import EVALUATION_CSV, RUNS, Experiment, ExperimentError, Job, Preset
from marker_excite.inference.evaluation import evaluate_run
from marker_excite.runs.directory import MODEL_CONFIG, TRAIN_CONFIG, is_run_dir
from marker_excite.runs.resume import stored_differences
from marker_excite.training.trainer import train


def job_run_dir(out_dir: str | os.PathLike, job: Job) -> Path:
    """``out_dir/runs/<job_id>``."""
    return Path(out_dir) / RUNS / job.job_id


def report_dir(out_dir: str | os.PathLike, exp: Experiment) -> Path:
    """``out_dir/<experiment name>``: the experiment's aggregated tables, statistics and figures. Runs
    live in ``out_dir/runs`` and are shared by every experiment written to ``out_dir``."""
    return Path(out_dir) / exp.name


def is_done(out_dir: str | os.PathLike, job: Job) -> bool:
    """True when the job's ``evaluation.csv`` exists."""
    return (job_run_dir(out_dir, job) / EVALUATION_CSV).is_file()


def finished_run_dirs(out_dirs: Sequence[str | os.PathLike]) -> Iterator[Path]:
    """The run directories of the finished jobs (an ``evaluation.csv``) in each output folder, in name
    order; a folder without ``runs/`` is an error that names it."""
    for out in out_dirs:
        if not (Path(out) / RUNS).is_dir():
            raise ExperimentError(f"{out}: not an experiment output folder (no {RUNS}/ in it)")
        yield from (evaluation.parent for evaluation in sorted((Path(out) / RUNS).glob(f"*/{EVALUATION_CSV}")))


def ensure_store(
    p: Preset, out_dir: str | os.PathLike, store: str | os.PathLike | None = None, *, progress: bool = True
) -> Path:
    """The sample store to train on: ``store`` if given (must exist), else ``out_dir/phantom_<phantom>.h5``,
    generated with :func:`marker_excite.data.synthetic.write_dataset` (seed 0) when missing."""
    if store is not None:
        path = Path(store)
        if not path.is_file():
            raise ExperimentError(f"sample store {path} does not exist")
        return path
    path = Path(out_dir) / f"phantom_{p.phantom}.h5"
    if not path.is_file():
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"generating the {p.phantom!r} phantom -> {path}", file=sys.stderr)
        write_dataset(path, preset=p.phantom, seed=0, progress=progress)
    return path


def fold_train_samples(store_path: str | os.PathLike, train_cfg: SplitSettings) -> tuple[str, ...]:
    """The training samples of ``train_cfg``'s split (:func:`~marker_excite.data.folds.select_fold`, the
    split ``training.train`` uses: explicit samples when the config names them, else its fold)."""
    with SampleStore(store_path, "r") as store:
        return select_fold(store, train_cfg).train


def run_job(
    job: Job,
    p: Preset,
    out_dir: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    resume: bool = True,
    train_fn: Callable | None = None,
    evaluate_fn: Callable | None = None,
    progress: bool = True,
) -> Path:
    """Train and evaluate one job; returns its ``evaluation.csv`` (see :func:`run_jobs`)."""
    train_fn = train_fn or train
    evaluate_fn = evaluate_fn or evaluate_run
    path = job_run_dir(out_dir, job)
    out = path / EVALUATION_CSV
    if resume and out.is_file():
        return out
    train_cfg = job.train_config(p)
    if job.panels:
        train_cfg = job.train_config(p, fold_train_samples(store_path, train_cfg))
    run = train_fn(
        path,
        job.model_config(p),
        train_cfg,
        store_path,
        resume=resume and is_run_dir(path),
        overwrite=not resume,
        progress=progress,
    )
    rows = evaluate_fn(run, store_path, subsets=job.eval_subsets, progress=progress)
    tagged = [{**r, "model": job.label, "job": job.job_id, "case": job.case or ""} for r in rows]
    return write_results(tagged, out)


def check_settings(job: Job, p: Preset, out_dir: str | os.PathLike) -> None:
    """Raise :class:`ExperimentError` when a finished job's stored configs differ from what ``p`` asks
    (e.g. another ``--epochs``), so old results are never silently reused. The job's settings are made
    without the store, so the fields that follow its sample names (``marker_panels``, ``train_samples``:
    :data:`~marker_excite.runs.resume.FROM_STORE`) are not compared; a run without stored configs is
    accepted as is."""
    path = job_run_dir(out_dir, job)
    expected = {MODEL_CONFIG: job.model_config(p).to_dict(), TRAIN_CONFIG: job.train_config(p).to_dict()}
    stored = {name: config for name, config in expected.items() if (path / name).is_file()}
    diffs = stored_differences(path, stored, continued=False, from_store=False)
    if diffs:
        raise ExperimentError(
            f"{path} was made with other settings ({', '.join(diffs)}); use another --out, or --no-resume to retrain"
        )


def _release_models() -> None:
    """Free the finished job's model, graphs and traced functions before the next job of the process
    (weights are seeded per job, so this changes no result)."""
    if "keras" in sys.modules:  # only when a job imported it (tests use stub jobs)
        sys.modules["keras"].backend.clear_session()
    gc.collect()


@dataclass
class RunSummary:
    """What :func:`run_jobs` did: job ids run now, skipped (already done), and still missing overall."""

    ran: list[str]
    skipped: list[str]
    remaining: list[str]
    seconds: float


def run_jobs(
    exp: Experiment,
    out_dir: str | os.PathLike,
    *,
    store: str | os.PathLike | None = None,
    shard: tuple[int, int] = (1, 1),
    resume: bool = True,
    train_fn: Callable | None = None,
    evaluate_fn: Callable | None = None,
    progress: bool = True,
) -> RunSummary:
    """Run the jobs of one shard of ``exp`` into ``out_dir/runs/<job_id>/``.

    Args:
        exp: the experiment.
        out_dir: output folder (shared by all shards).
        store: sample store; default: the preset's phantom in ``out_dir`` (generated once).
        shard: ``(i, n)``, 1-based: run jobs i, i+n, i+2n, ... of ``exp.jobs``.
        resume: skip jobs whose ``evaluation.csv`` exists and resume interrupted trainings;
            False retrains every job of the shard from scratch.
        train_fn, evaluate_fn: replace ``training.train`` / ``evaluation.evaluate_run`` (tests).
        progress: print one line per job (and the training progress).
    """
    start = time.perf_counter()
    jobs = exp.shard(*shard)
    store_path = ensure_store(exp.preset, out_dir, store, progress=progress)
    ran, skipped = [], []
    if resume:
        for job in jobs:
            if is_done(out_dir, job):
                check_settings(job, exp.preset, out_dir)
    for k, job in enumerate(jobs, start=1):
        if resume and is_done(out_dir, job):
            skipped.append(job.job_id)
            continue
        t0 = time.perf_counter()
        if progress:
            print(
                f"[{exp.name} shard {shard[0]}/{shard[1]}] job {k}/{len(jobs)}: {job.job_id}",
                file=sys.stderr,
                flush=True,
            )
        run_job(
            job,
            exp.preset,
            out_dir,
            store_path,
            resume=resume,
            train_fn=train_fn,
            evaluate_fn=evaluate_fn,
            progress=progress,
        )
        _release_models()
        ran.append(job.job_id)
        if progress:
            print(f"[{exp.name}] {job.job_id} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    remaining = [j.job_id for j in exp.jobs if not is_done(out_dir, j)]
    return RunSummary(ran, skipped, remaining, time.perf_counter() - start)
